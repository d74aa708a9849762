"""Generic concurrency machinery, with no knowledge of Discord, letters or statements.

- `Batcher`: group commit. Calls (or fire-and-forget posts) queue up; one worker runs everything
  queued in one `run(batch)` call, so a burst costs one database hop per batch instead of one per
  call. Used by the signature writer and sign-context reader (`bot.statements`) and the reply
  recorder (`bot.letters.Recorder`).
- `Debouncer`: at most one flush per key per interval, always one after the last mark.
- `KeyedLock`: one holder per key at a time (e.g. one card posted per letter), forgotten when free.
- `map_bounded`: `gather` with at most N at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, Literal, TypeVar, overload

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """Calls queue up; one worker runs everything queued in one `run(batch)` call (its results in
    the same order), so a burst costs one database hop per batch instead of one per call.

    Each call still starts its batch after it was queued, so it sees every change committed before.
    A failed batch fails each of its calls with the error (a `post`ed item's failure is logged and
    counted in `failed`); a cancelled worker fails them with "stopped" and stops.

    `linger`: seconds the worker waits for a batch to fill (up to `max_batch`) before running it;
    0 runs at once, and the next batch forms from what arrives while this one runs.
    """

    def __init__(
        self, run: Callable[[list[T]], Awaitable[list[R]]], *, name: str, max_batch: int, linger: float = 0.0
    ) -> None:
        self._run = run
        self.name = name
        self.max_batch = max_batch
        self.linger = linger
        self._queue: list[tuple[T, asyncio.Future[R] | None]] = []
        self._worker: asyncio.Task[None] | None = None
        self._full = asyncio.Event()  # the queue holds a whole batch, or a drain wants it now
        self._draining = 0
        self.batches = 0
        self.done = 0  # items run
        self.failed = 0  # items whose batch failed

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def submit(self, item: T) -> R:
        """Queue `item` and wait for its result."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._enqueue(item, future)
        return await asyncio.shield(future)

    def post(self, item: T) -> None:
        """Queue `item` without waiting (`drain` waits for it)."""
        self._enqueue(item, None)

    def _enqueue(self, item: T, future: asyncio.Future[R] | None) -> None:
        self._queue.append((item, future))
        if len(self._queue) >= self.max_batch:
            self._full.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work(), name=self.name)

    async def _work(self) -> None:
        while self._queue:
            if self.linger > 0 and not self._draining and len(self._queue) < self.max_batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), timeout=self.linger)
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            if len(self._queue) < self.max_batch:
                self._full.clear()
            try:
                results = await self._run([item for item, _ in batch])
            except BaseException as exc:
                self.failed += len(batch)
                for _, future in batch:
                    if future is not None and not future.done():
                        future.set_exception(
                            exc if isinstance(exc, Exception) else RuntimeError(f"{self.name} stopped")
                        )
                if not isinstance(exc, Exception):
                    raise
                log.exception("%s: a batch of %d failed", self.name, len(batch))
                continue
            self.batches += 1
            self.done += len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future is not None and not future.done():
                    future.set_result(result)

    async def drain(self) -> None:
        """Run everything queued so far without lingering, and wait for it (and a batch being run)."""
        self._draining += 1
        self._full.set()
        try:
            while self._worker is not None and not self._worker.done():
                await asyncio.shield(self._worker)
        finally:
            self._draining -= 1


class KeyedLock:
    """`async with locks.hold(key)`: one holder per key at a time; a key nobody holds or waits for
    takes no memory."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: Hashable) -> Any:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class Debouncer:
    """At most one flush per key per `interval` seconds, and always one after the last mark.

    `mark(key)` says "the shown state is stale"; the first mark after a quiet spell flushes at once,
    later ones wait until `interval` has passed since the previous flush *finished*, so however
    fast marks come, flushes (message edits) are spaced by at least `interval`.

    A flush that raises is retried: the key stays marked and the spacing doubles with each failure
    in a row (from `interval` up to `max_backoff`), back to `interval` after a success. A flush
    that should not be retried (the target is gone) returns instead of raising.
    """

    def __init__(
        self, flush: Callable[[Any], Awaitable[None]], interval: float = 5.0, *, max_backoff: float = 300.0
    ) -> None:
        self._flush = flush
        self.interval = interval
        self.max_backoff = max_backoff
        self._dirty: set[Hashable] = set()
        self._tasks: dict[Hashable, asyncio.Task[None]] = {}
        self._last: dict[Hashable, float] = {}
        self._failures: dict[Hashable, int] = {}
        self.flushes = 0

    def spacing(self, failures: int) -> float:
        """Seconds between flushes of a key after `failures` failed flushes in a row."""
        if failures <= 0:
            return self.interval
        return max(self.interval, min(self.max_backoff, self.interval * 2 ** min(failures, 32)))

    def mark(self, key: Hashable) -> None:
        self._dirty.add(key)
        if key not in self._tasks:
            self._tasks[key] = asyncio.create_task(self._run(key), name=f"debounce-{key}")

    async def _run(self, key: Hashable) -> None:
        loop = asyncio.get_running_loop()
        try:
            while key in self._dirty:
                spacing = self.spacing(self._failures.get(key, 0))
                wait = self._last.get(key, float("-inf")) + spacing - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                self._dirty.discard(key)
                try:
                    await self._flush(key)
                    self.flushes += 1
                    self._failures.pop(key, None)
                except Exception as exc:
                    failures = self._failures[key] = self._failures.get(key, 0) + 1
                    self._dirty.add(key)  # the shown state is still stale: try again, later
                    retry = self.spacing(failures)
                    if failures == 1:
                        log.exception("refreshing %s failed; retrying in %.0f s", key, retry)
                    else:
                        log.warning("refreshing %s failed %d times in a row (%s); retrying in %.0f s",
                                    key, failures, exc, retry)  # fmt: skip
                finally:
                    self._last[key] = loop.time()
        finally:
            self._tasks.pop(key, None)

    def pending(self) -> bool:
        return bool(self._tasks)

    def is_marked(self, key: Hashable) -> bool:
        """A refresh of `key` is still owed."""
        return key in self._dirty

    async def wait_idle(self) -> None:
        """Return once every owed flush has run."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def aclose(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@overload
async def map_bounded(func: Callable[[T], Awaitable[R]], items: list[T], limit: int) -> list[R]: ...
@overload
async def map_bounded(
    func: Callable[[T], Awaitable[R]], items: list[T], limit: int, *, return_exceptions: Literal[True]
) -> list[R | BaseException]: ...
async def map_bounded(
    func: Callable[[T], Awaitable[R]], items: list[T], limit: int, *, return_exceptions: bool = False
) -> list[Any]:
    """`func` over `items`, at most `limit` at a time, results in order."""
    slots = asyncio.Semaphore(limit)

    async def one(item: T) -> R:
        async with slots:
            return await func(item)

    return list(await asyncio.gather(*(one(item) for item in items), return_exceptions=return_exceptions))
