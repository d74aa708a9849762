"""SQLite against PostgreSQL, same machine, same run: a sign-on burst and an outbox drain.

    scripts/postgres-local.sh up; set -a; . /tmp/readersviews-pg/env; set +a
    .venv/bin/python bench/stores.py          # needs READERSVIEWS_TEST_PG_URL (and PGPASSWORD)

- Sign-on burst: BURST members sign one statement at once through StatementService.sign (its
  group commit: batches of concurrent sign-ons in one transaction, bot.statements.SignatureWriter),
  then every member signs again (an update). Figures: sign-ons per second, and the p99 of one
  sign-on's wait.
- Outbox drain: ITEMS letters queued, then delivered by one OutboxWorker pass to the loopback fake
  WordPress (tests/sitefake.py); figures: items per second, and the store's share (the same posts
  sent with plain httpx take the rest).

Each PostgreSQL run uses a fresh schema of its own, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
import httpx

from bench.outbox import adapter, items, raw_posts, start_server
from bot.clock import SystemClock
from bot.outbox import OutboxWorker
from bot.statements import SignRequest, StatementService
from bot.store import Store
from bot.store.outbox import OutboxRepo
from bot.store.statements import StatementsRepo

BURST = 2000
ROUNDS = 2
GUILD = 7


async def fresh_schema(base: str) -> tuple[str, str]:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(base)
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    await conn.close()
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}search_path={schema}", schema


async def drop_schema(base: str, schema: str) -> None:
    conn = await asyncpg.connect(base)
    await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    await conn.close()


async def signons(location: str) -> tuple[float, float, float]:
    """(sign-ons/s first round, updates/s second round, p99 wait in ms over both)."""
    clock = SystemClock()
    store = await Store.open(location, clock)
    service = StatementService(store, StatementsRepo(store.db, clock), clock, site_update_minutes=10)
    try:
        draft = await service.create_draft(
            guild_id=GUILD,
            organizer_id=1,
            title="Bench",
            body="We sign.",
            channel_id=5,
            closes_at=None,
            allow_organizations=True,
        )
        statement = await service.publish(draft.id, channel_id=5, message_id=6, actor_id=1)
        waits: list[float] = []
        rates = []

        async def one(user: int, name: str) -> None:
            started = time.perf_counter()
            await service.sign(SignRequest(statement.id, user, "individual", name, guild_id=GUILD))
            waits.append(time.perf_counter() - started)

        for round_ in range(2):
            started = time.perf_counter()
            await asyncio.gather(*(one(1000 + i, f"Member {i} r{round_}") for i in range(BURST)))
            rates.append(BURST / (time.perf_counter() - started))
        count = await store.db.scalar("SELECT count(*) FROM signatures WHERE withdrawn_at IS NULL")
        assert count == BURST, f"{count} live signatures, expected {BURST}"
        return rates[0], rates[1], statistics.quantiles(waits, n=100)[98] * 1000
    finally:
        await service.aclose()
        await store.close()


async def outbox_drain(location: str, url: str, client: httpx.AsyncClient) -> tuple[float, int]:
    store = await Store.open(location, SystemClock())
    try:
        repo = OutboxRepo(store.db, store.clock)
        async with store.db.transaction() as conn:
            for item in items():
                await repo.enqueue_item(conn, "create", item, revision=1)
        worker = OutboxWorker(repo, adapter(url, client), store.clock)
        started = time.perf_counter()
        delivered = await worker.run_once()
        return time.perf_counter() - started, delivered
    finally:
        await store.close()


async def main() -> None:
    base = os.environ.get("READERSVIEWS_TEST_PG_URL")
    if not base:
        # Skipped, not failed: `bench/run.py` runs every benchmark, and the others need no PostgreSQL.
        print("skipped: set READERSVIEWS_TEST_PG_URL (bash scripts/postgres-local.sh up; see README)")
        return
    server, url = start_server()
    results: dict[str, dict[str, list[float]]] = {"sqlite": {}, "postgres": {}}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with httpx.AsyncClient() as client:
                for round_ in range(ROUNDS):
                    for store in ("sqlite", "postgres"):
                        schema = ""
                        if store == "sqlite":
                            location = str(Path(tmp) / f"s{round_}.sqlite3")
                            drain_location = str(Path(tmp) / f"o{round_}.sqlite3")
                        else:
                            location, schema = await fresh_schema(base)
                            drain_location = location
                        try:
                            first, again, p99 = await signons(location)
                            seconds, delivered = await outbox_drain(drain_location, url, client)
                        finally:
                            if schema:
                                await drop_schema(base, schema)
                        figures = results[store]
                        figures.setdefault("sign-ons/s", []).append(first)
                        figures.setdefault("re-signs/s", []).append(again)
                        figures.setdefault("sign-on p99 ms", []).append(p99)
                        figures.setdefault("outbox items/s", []).append(delivered / seconds)
                    http_only = await raw_posts(url, client)
                    results.setdefault("plain httpx", {}).setdefault("posts/s", []).append(len(items()) / http_only)
    finally:
        server.kill()
        server.wait()
    print(f"sign-on burst: {BURST} members at once, then each again; outbox: {len(items())} letters; best of {ROUNDS}")
    for name in ("sign-ons/s", "re-signs/s", "sign-on p99 ms", "outbox items/s"):
        pick = min if "p99" in name else max
        lite, pg = pick(results["sqlite"][name]), pick(results["postgres"][name])
        print(f"  {name:<16} SQLite {lite:>8.0f}   PostgreSQL {pg:>8.0f}   PostgreSQL/SQLite {pg / lite:.2f}")
    ceiling = max(results["plain httpx"]["posts/s"])
    print(f"  plain httpx posts/s to the same fake site (ceiling for the drain): {ceiling:.0f}")


if __name__ == "__main__":
    asyncio.run(main())
