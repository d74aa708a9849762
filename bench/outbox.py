"""Outbox delivery: throughput against raw HTTP, and exactly-once under failures and kill -9.

1. Drain 2,000 letters through OutboxWorker + WordPressAdapter to a loopback fake WordPress
   running in its own process, vs raw sequential httpx POSTs of the same bodies to the same
   server. Target: worker ≥ 60% of raw.
2. The same 2,000 letters with 30% of answers 503, while the worker process (same SQLite file) is
   SIGKILLed 3 times at random moments and restarted. The server counts unique posts, duplicates
   (must be 0) and missing (must be 0).

Prints figures and ratios; asserts nothing about time. `python bench/outbox.py`
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bot.clock import SystemClock  # noqa: E402
from bot.config import WordPressSettings  # noqa: E402
from bot.outbox import OutboxWorker  # noqa: E402
from bot.site.compose import Letter, compose_letter  # noqa: E402
from bot.site.wordpress import WordPressAdapter  # noqa: E402
from bot.store.database import Database  # noqa: E402
from bot.store.outbox import OutboxRepo  # noqa: E402

ITEMS = 2000
KILLS = 3
ROUNDS = 2
FAIL_RATIO = 0.3
USER, PASSWORD = "editor", "abcd EFGH 1234 ijkl MNOP 5678"  # tests/sitefake.py defaults
# Back-off for the bench: the shape of production's (doubling, jitter), scaled to seconds.
BASE_DELAY, MAX_DELAY = 0.05, 1.0


def items() -> list:
    return [
        compose_letter(
            Letter(
                id=i, text=f"Letter number {i}: **bridges** matter.", byline=f"Reader {i}", title=f"Bench letter {i}"
            ),
            disclaimer="Opinions are the writers' own.",
        )
        for i in range(1, ITEMS + 1)
    ]


def start_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "sitefake.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("READY "):
        proc.kill()
        raise SystemExit(f"fake site did not start: {line!r}")
    return proc, line.split(" ", 1)[1]


async def control(client: httpx.AsyncClient, url: str, action: str, body: dict | None = None) -> dict:
    """Talk to the fake site's control endpoints (GET without a body, POST with one)."""
    if body is None:
        response = await client.get(f"{url}/_fake/{action}")
    else:
        response = await client.post(f"{url}/_fake/{action}", json=body)
    return response.json()


async def enqueue_all(db_path: Path) -> float:
    db = await Database.open(db_path)
    repo = OutboxRepo(db, SystemClock())
    started = time.perf_counter()
    async with db.transaction() as conn:
        for item in items():
            await repo.enqueue_item(conn, "create", item, revision=1)
    elapsed = time.perf_counter() - started
    await db.close()
    return elapsed


def adapter(url: str, client: httpx.AsyncClient) -> WordPressAdapter:
    return WordPressAdapter(WordPressSettings(url=url, username=USER, timeout=10), PASSWORD, client)


async def raw_posts(url: str, client: httpx.AsyncClient) -> float:
    auth = httpx.BasicAuth(USER, PASSWORD)
    bodies = [{"title": it.title, "content": it.html, "status": "pending", "slug": it.slug} for it in items()]
    started = time.perf_counter()
    for body in bodies:
        response = await client.post(f"{url}/wp-json/wp/v2/posts", json=body, auth=auth)
        response.raise_for_status()
    return time.perf_counter() - started


async def drain(db_path: Path, url: str, client: httpx.AsyncClient) -> tuple[float, int]:
    db = await Database.open(db_path)
    clock = SystemClock()
    worker = OutboxWorker(OutboxRepo(db, clock), adapter(url, client), clock)
    started = time.perf_counter()
    delivered = await worker.run_once()
    elapsed = time.perf_counter() - started
    await db.close()
    return elapsed, delivered


async def part_one(url: str, tmp: Path) -> None:
    """Alternate raw and worker runs and compare the best of each (the machine is shared)."""
    raw_times, worker_times, enqueue_times = [], [], []
    async with httpx.AsyncClient() as client:
        for round_ in range(ROUNDS):
            await control(client, url, "reset", {})
            raw_times.append(await raw_posts(url, client))
            await control(client, url, "reset", {})
            db_path = tmp / f"one-{round_}.sqlite3"
            enqueue_times.append(await enqueue_all(db_path))
            elapsed, delivered = await drain(db_path, url, client)
            if delivered != ITEMS:
                print(f"!! worker delivered {delivered} of {ITEMS}")
            worker_times.append(elapsed)
        stats = await control(client, url, "stats")
    raw_rate, worker_rate = ITEMS / min(raw_times), ITEMS / min(worker_times)
    raw_runs = ", ".join(f"{t:.2f}" for t in raw_times)
    worker_runs = ", ".join(f"{t:.2f}" for t in worker_times)
    print(f"raw httpx sequential POSTs : {ITEMS} items, runs {raw_runs} s; best {raw_rate:5.0f}/s")
    print(f"outbox worker drain        : {ITEMS} items, runs {worker_runs} s; best {worker_rate:5.0f}/s")
    print(f"enqueue (one transaction)  : {ITEMS / min(enqueue_times):5.0f} items/s")
    print(f"ratio worker/raw           : {worker_rate / raw_rate:.2f}  (target >= 0.60)")
    print(f"server (last run): unique posts {stats['unique_posts']}, duplicates {stats['duplicate_posts']}")


async def backlog_left(db_path: Path) -> int:
    db = await Database.open(db_path)
    counts = await OutboxRepo(db, SystemClock()).backlog()
    await db.close()
    return counts["pending"] + counts["inflight"]


def part_two(url: str, tmp: Path) -> None:
    """Subprocess control is synchronous on purpose: this process only watches and kills."""
    db_path = tmp / "two.sqlite3"
    rng = random.Random()
    asyncio.run(_prepare_two(url, db_path))
    started = time.perf_counter()
    kills, runs = 0, 0
    while True:
        runs += 1
        proc = subprocess.Popen([sys.executable, __file__, "--worker", str(db_path), url], cwd=ROOT)
        if kills < KILLS:
            try:
                proc.wait(timeout=rng.uniform(0.3, 1.5))
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                kills += 1
                continue
        else:
            proc.wait(timeout=300)
        if asyncio.run(backlog_left(db_path)) == 0:
            break
    elapsed = time.perf_counter() - started
    stats, counts = asyncio.run(_results_two(url, db_path))
    missing = ITEMS - stats["unique_posts"]
    print(f"{ITEMS} items, {FAIL_RATIO:.0%} answers 503, worker SIGKILLed {kills}x ({runs} runs), {elapsed:.1f} s")
    print(f"server requests {stats['requests']}, posts created {stats['applied']}")
    print(f"unique items on site : {stats['unique_posts']}")
    print(f"duplicates           : {stats['duplicate_posts']}  (must be 0)")
    print(f"missing              : {missing}  (must be 0)")
    print(f"outbox rows          : {counts}")


async def _prepare_two(url: str, db_path: Path) -> None:
    async with httpx.AsyncClient() as client:
        await control(client, url, "reset", {})
        await control(client, url, "faults", {"fail_ratio": FAIL_RATIO, "status": 503})
    await enqueue_all(db_path)


async def _results_two(url: str, db_path: Path) -> tuple[dict, dict[str, int]]:
    async with httpx.AsyncClient() as client:
        await control(client, url, "faults", {"fail_ratio": 0})
        stats = await control(client, url, "stats")
    db = await Database.open(db_path)
    counts = await OutboxRepo(db, SystemClock()).backlog()
    await db.close()
    return stats, counts


async def worker_process(db_path: Path, url: str) -> None:
    """One worker 'bot process': recover, deliver until nothing is left, exit."""
    logging.basicConfig(level=logging.ERROR)  # every injected 503 would log a warning
    db = await Database.open(db_path)
    clock = SystemClock()
    repo = OutboxRepo(db, clock)
    recovered = await repo.recover()
    if recovered:
        print(f"   restarted worker: {recovered} item(s) were inflight at the kill; looked up before re-creating")
    async with httpx.AsyncClient() as client:
        # Probes (site-wide incident checks) on the bench's short scale too: a 503 streak may open one.
        worker = OutboxWorker(
            repo,
            adapter(url, client),
            clock,
            base_delay=BASE_DELAY,
            max_delay=MAX_DELAY,
            probe_base=BASE_DELAY,
            probe_max=MAX_DELAY,
        )
        worker.idle_poll = 0.2
        worker.start(recover=False)
        while True:
            await asyncio.sleep(0.05)
            counts = await repo.backlog()
            if counts["pending"] + counts["inflight"] == 0:
                break
        await worker.stop()
    await db.close()


def main() -> None:
    if len(sys.argv) >= 4 and sys.argv[1] == "--worker":
        asyncio.run(worker_process(Path(sys.argv[2]), sys.argv[3]))
        return
    server, url = start_server()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"-- 1. throughput: {ITEMS} creates, loopback fake WordPress in its own process")
            asyncio.run(part_one(url, Path(tmp)))
            print(f"-- 2. exactly once: {FAIL_RATIO:.0%} 503s and {KILLS} SIGKILLs of the worker process")
            part_two(url, Path(tmp))
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
