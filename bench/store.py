"""Repository single-row insert rate vs raw aiosqlite per-row commits on the same kind of file.

Target (issue 3): repository ≥ 60% of raw.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiosqlite

from bot.clock import SystemClock
from bot.store import Store
from bot.store.contributions import NewContribution

ROWS = 3000
ROUNDS = 3


def contribution(i: int) -> NewContribution:
    return NewContribution(
        guild_id=1,
        message_id=10_000_000 + i,
        channel_id=2,
        author_id=3 + i % 50,
        author_name="Reader",
        content="A reply of ordinary length, the kind members write under an article. " * 3,
        created_at=datetime.now(UTC),
    )


async def raw_rate(path: Path, offset: int) -> float:
    """Plain aiosqlite: INSERT then commit for every row (same pragmas as the store)."""
    conn = await aiosqlite.connect(path)
    await conn.execute("PRAGMA synchronous = NORMAL")
    await conn.execute("PRAGMA foreign_keys = ON")
    start = time.perf_counter()
    for i in range(ROWS):
        c = contribution(offset + i)
        await conn.execute(
            "INSERT INTO contributions (guild_id, message_id, channel_id, author_id, author_name, content, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (c.guild_id, c.message_id, c.channel_id, c.author_id, c.author_name, c.content, c.created_at.isoformat()),
        )
        await conn.commit()
    elapsed = time.perf_counter() - start
    await conn.close()
    return ROWS / elapsed


async def repo_rate(store: Store, offset: int) -> float:
    start = time.perf_counter()
    for i in range(ROWS):
        await store.contributions.record(contribution(offset + i))
    return ROWS / (time.perf_counter() - start)


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.sqlite3"
        store = await Store.open(path, SystemClock())
        raws, repos = [], []
        # Interleave rounds so drift on a noisy machine hits both sides alike.
        for round_ in range(ROUNDS):
            raws.append(await raw_rate(path, offset=(2 * round_) * ROWS))
            repos.append(await repo_rate(store, offset=(2 * round_ + 1) * ROWS))
        await store.close()
    raw, repo = max(raws), max(repos)
    print(f"raw aiosqlite insert+commit: {raw:,.0f} rows/s (best of {ROUNDS} × {ROWS})")
    print(f"repository record():         {repo:,.0f} rows/s")
    print(f"ratio repository/raw:        {repo / raw:.2f}  (target ≥ 0.60)")


if __name__ == "__main__":
    asyncio.run(main())
