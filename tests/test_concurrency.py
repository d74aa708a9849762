"""The one group-commit loop (`Batcher`) that signatures, sign-context reads and recorded replies share."""

from __future__ import annotations

import asyncio

import pytest

from bot.concurrency import Batcher, KeyedLock, map_bounded
from bot.letters import Recorder


async def test_a_full_batch_runs_at_once_and_drain_cuts_the_linger_short() -> None:
    """Posted items wait (linger) for a batch to fill; a full one runs at once, `drain` runs the rest now."""
    batches: list[list[int]] = []

    async def run(items: list[int]) -> list[None]:
        batches.append(items)
        return [None] * len(items)

    batcher: Batcher[int, None] = Batcher(run, name="test", max_batch=4, linger=3600)
    for n in range(10):
        batcher.post(n)
    await batcher.drain()  # would wait an hour for the last two if it lingered
    assert batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert (batcher.done, batcher.failed, batcher.queued) == (10, 0, 0)


async def test_a_failed_batch_fails_its_callers_and_the_next_batch_still_runs() -> None:
    calls = 0

    async def run(items: list[str]) -> list[str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("disk full")
        return [item.upper() for item in items]

    batcher: Batcher[str, str] = Batcher(run, name="test", max_batch=1)
    first = asyncio.create_task(batcher.submit("a"))
    second = asyncio.create_task(batcher.submit("b"))
    with pytest.raises(OSError, match="disk full"):
        await first
    assert await second == "B"
    assert (batcher.done, batcher.failed) == (1, 1)


async def test_the_reply_recorder_is_the_shared_group_commit() -> None:
    """Recorded replies go through the same loop as signatures, not a second copy of it."""
    assert issubclass(Recorder, Batcher)


async def test_map_bounded_keeps_order_and_limit() -> None:
    running = peak = 0

    async def square(n: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0)
        running -= 1
        return n * n

    assert await map_bounded(square, list(range(10)), 3) == [n * n for n in range(10)]
    assert peak == 3


async def test_keyed_lock_holds_one_per_key_and_forgets_free_keys() -> None:
    locks = KeyedLock()
    inside: list[str] = []
    most = {"a": 0}

    async def work(key: str) -> None:
        async with locks.hold(key):
            inside.append(key)
            most[key] = max(most.get(key, 0), inside.count(key))
            await asyncio.sleep(0)
            inside.remove(key)

    await asyncio.gather(*(work("a") for _ in range(5)), *(work("b") for _ in range(3)))
    assert most == {"a": 1, "b": 1}  # never two holders of one key
    assert len(locks) == 0  # nothing kept for keys nobody holds
