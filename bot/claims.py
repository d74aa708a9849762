"""Work that is not per server runs in one process at a time: job claims.

Several processes (one per shard set, `discord.shard_ids`) may share one PostgreSQL database. Each
serves the interactions and messages of its own servers, but the background jobs below work on
everyone's rows: if every process ran them, two would poll the same feed or deliver the same outbox
item at once. So each job is claimed: the process holding a job's claim runs it, the others leave
it alone and try to take the claim over every `retry_seconds`.

A claim is a PostgreSQL session advisory lock held by the process's guard connection (see
`PostgresDatabase.hold_guard`). PostgreSQL releases it when that connection ends, so a process that
dies (SIGKILL, OOM, a lost machine once its TCP connection times out) gives its jobs up without any
expiry to wait for, and another process takes them over at its next try. With SQLite there is one
process per database, which holds every claim.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from bot.store.database import Database
from bot.store.dialect import POSTGRES

log = logging.getLogger(__name__)

FEEDS = "feeds"  # feed polling and posting (cogs.articles)
STATEMENTS = "statements"  # statement deadlines, site updates, close announcements (cogs.statements)
OUTBOX = "outbox"  # delivery to the site (bot.outbox)
NOTICES = "notices"  # messages owed to letter writers and editors (cogs.letter_notices)
SITE_STATUS = "site-status"  # letters still with the site's editors (cogs.letter_notices)
RETENTION = "retention"  # purge of expired recorded replies (cogs.readers_views)
JOBS = (FEEDS, STATEMENTS, OUTBOX, NOTICES, SITE_STATUS, RETENTION)


class JobClaims:
    """The jobs this process runs; `holds(job)` is checked by each job's loop before a round."""

    def __init__(self, db: Database, *, retry_seconds: float = 5.0) -> None:
        self._db = db
        self.retry_seconds = retry_seconds
        # One process per SQLite file: it holds every job from the start.
        self._held: set[str] = set(JOBS) if db.dialect != POSTGRES else set()
        self._listeners: list[Callable[[str], None]] = []
        self._wake_ups: dict[str, list[Callable[[], None]]] = {}
        self._notifying: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

    def holds(self, job: str) -> bool:
        return job in self._held

    @property
    def held(self) -> frozenset[str]:
        return frozenset(self._held)

    def on_wake(self, job: str, wake_up: Callable[[], None]) -> None:
        """`wake_up()` (this process's, e.g. setting the job loop's event) when another process has
        work for `job` while this one holds it (see `wake`)."""
        self._wake_ups.setdefault(job, []).append(wake_up)

    def wake(self, job: str) -> None:
        """There is work for `job` now: a process that does not hold it tells the one that does
        (PostgreSQL NOTIFY), instead of leaving the work to that process's next idle poll."""
        if job in self._held:
            return  # the caller has already woken its own loop
        task = asyncio.create_task(self._notify(job), name=f"wake-{job}")
        self._notifying.add(task)
        task.add_done_callback(self._notifying.discard)

    async def _notify(self, job: str) -> None:
        try:
            await self._db.notify_job(job)
        except Exception:
            log.warning("could not wake the %s job in the process running it", job, exc_info=True)

    def _woken(self, job: str) -> None:
        if job in self._held:
            for wake_up in self._wake_ups.get(job, []):
                wake_up()

    def on_claimed(self, listener: Callable[[str], None]) -> None:
        """`listener(job)` when this process takes a job's claim (at start, or taking over)."""
        self._listeners.append(listener)

    async def start(self) -> None:
        """Claim what is free now; keep trying for the rest in the background."""
        await self._db.listen_jobs(self._woken)
        await self.try_claims()
        if set(JOBS) - self._held:
            self._task = asyncio.create_task(self._retry(), name="job-claims")

    async def try_claims(self) -> set[str]:
        """One attempt at every job not held yet; returns the jobs taken now."""
        wanted = [job for job in JOBS if job not in self._held]
        taken = set(await self._db.claim_jobs(wanted)) if wanted else set()
        for job in JOBS:
            if job in taken:
                self._held.add(job)
                log.info("this process runs the %s job", job)
                for listener in self._listeners:
                    listener(job)
        return taken

    async def _retry(self) -> None:
        while set(JOBS) - self._held:
            await asyncio.sleep(self.retry_seconds)
            try:
                await self.try_claims()
            except Exception:
                log.exception("could not claim jobs; trying again in %.0f s", self.retry_seconds)

    async def stop(self) -> None:
        for pending in list(self._notifying):
            pending.cancel()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


__all__ = ["FEEDS", "JOBS", "NOTICES", "OUTBOX", "RETENTION", "SITE_STATUS", "STATEMENTS", "JobClaims"]
