"""The outbox worker: delivers queued items to the site exactly once, in order per entity.

Exactly once, across crashes, comes from three things together:
- the row and the state change it mirrors commit in one transaction (`OutboxRepo.enqueue`);
- a row is marked done only after the site answered (done marks of a claimed batch commit together);
  a crash in between leaves it inflight, and `recover()` turns that into pending, "outcome unknown";
- a create with an unknown outcome first asks the site (`adapter.lookup`: WordPress by slug, the
  webhook by re-sending the same Idempotency-Key) before creating again.
Updates and retracts are idempotent by themselves, and use the remote id stored by the create.

Failures: transient ones are retried with exponential back-off and jitter (base 2 s, cap 1 h,
Retry-After honoured); permanent ones, and transient ones that last `max_attempts`, park the row
as dead and send exactly one alert saying what to fix and how to retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import timedelta

from pydantic import ValidationError

from bot import metrics
from bot.clock import Clock, to_db
from bot.logs import entity_ids
from bot.site.base import PermanentSiteError, RemoteRef, SiteAdapter, SiteItem, TransientSiteError
from bot.store.outbox import OutboxRepo, OutboxRow

log = logging.getLogger(__name__)

AlertHook = Callable[[str], Awaitable[None]]
DeliveredHook = Callable[[OutboxRow, RemoteRef], Awaitable[None]]


class OutboxWorker:
    def __init__(
        self,
        repo: OutboxRepo,
        adapter: SiteAdapter,
        clock: Clock,
        *,
        alert: AlertHook | None = None,
        on_delivered: DeliveredHook | None = None,
        batch: int = 50,
        base_delay: float = 2.0,
        max_delay: float = 3600.0,
        max_attempts: int = 25,
        idle_poll: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        self.repo = repo
        self.adapter = adapter
        self.clock = clock
        self._alert = alert
        self._on_delivered = on_delivered
        self.batch = batch
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_attempts = max_attempts
        # Bounds how long a change made by another process (`readersviews outbox retry`) waits.
        self.idle_poll = idle_poll
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    # -- running --------------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Deliver everything due now (including what becomes claimable as creates finish).

        Returns how many rows were delivered.
        """
        await self.send_owed_alerts()
        delivered = 0
        while not self._stopping:
            rows = await self.repo.claim_due(self.batch)
            if not rows:
                break
            done: list[tuple[OutboxRow, RemoteRef]] = []
            handled = 0
            try:
                for row in rows:
                    if self._stopping:
                        break
                    ref = await self._deliver(row)
                    handled += 1
                    if ref is not None:
                        done.append((row, ref))
            finally:
                # Group commit: one transaction for the batch. Until it commits, a crash leaves
                # these rows inflight, and recovery finds them on the site by lookup.
                await asyncio.shield(self._settle(done, [row.id for row in rows[handled:]]))
            delivered += len(done)
        return delivered

    async def _settle(self, done: list[tuple[OutboxRow, RemoteRef]], unsent: list[int]) -> None:
        await self.repo.mark_delivered(done)
        for row, ref in done:
            log.info(
                "outbox #%s %s %s delivered (remote %s)",
                row.id,
                row.kind,
                row.entity,
                ref.remote_id,
                extra=entity_ids(row.entity, outbox_id=row.id),
            )
        metrics.SITE_DELIVERIES.labels("delivered").inc(len(done))
        await self.repo.release(unsent)

    def notify(self) -> None:
        """Something was enqueued: wake the background loop now rather than at the next poll."""
        self._wake.set()

    def start(self, *, recover: bool = True) -> None:
        """Run the background loop; with `recover`, first requeue rows a dead process left inflight."""
        if self._task is not None and not self._task.done():
            return
        self._stopping = False
        self._task = asyncio.create_task(self._loop(recover), name="outbox-worker")

    async def stop(self, grace: float = 5.0) -> None:
        """Finish the item being sent (up to `grace` seconds), then stop."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=grace)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _loop(self, recover: bool) -> None:
        if recover:
            count = await self.repo.recover()
            if count:
                log.warning("outbox: %d item(s) were being sent when the bot stopped; checking the site first", count)
        while not self._stopping:
            self._wake.clear()
            try:
                await self.run_once()
                delay = await self._idle_delay()
            except Exception:
                log.exception("outbox worker pass failed; trying again shortly")
                delay = 5.0
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)

    async def _idle_delay(self) -> float:
        due = await self.repo.next_due_at()
        if due is None:
            return self.idle_poll
        return max(0.0, min(self.idle_poll, (due - self.clock.now()).total_seconds()))

    # -- one delivery ---------------------------------------------------------------------------

    async def _deliver(self, row: OutboxRow) -> RemoteRef | None:
        """Send one row; the RemoteRef on success (the caller marks it done), None otherwise."""
        try:
            item = SiteItem.model_validate(row.payload).model_copy(
                update={"idempotency_key": row.idempotency_key, "occurred_at": to_db(row.created_at)}
            )
        except ValidationError as exc:
            await self._park(
                row,
                f"the outbox item's payload is unreadable ({exc.error_count()} problem(s)); "
                "was it written by another version of readersviews?",
            )
            return None
        try:
            ref = await self._send(row, item)
        except PermanentSiteError as exc:
            await self._park(row, str(exc))
            return None
        except TransientSiteError as exc:
            await self._later(row, str(exc), retry_after=exc.retry_after, outcome_unknown=exc.outcome_unknown)
            return None
        except asyncio.CancelledError:
            # Stopped mid-send: we cannot know whether the site applied it.
            await asyncio.shield(
                self.repo.mark_retry(row.id, "interrupted: outcome unknown", self.clock.now(), outcome_unknown=True)
            )
            raise
        except Exception as exc:
            log.exception("outbox #%s (%s %s): unexpected error", row.id, row.kind, row.entity)
            await self._later(
                row, f"unexpected error: {type(exc).__name__}: {exc}", retry_after=None, outcome_unknown=True
            )
            return None
        if self._on_delivered is not None:
            try:
                await self._on_delivered(row, ref)
            except Exception:
                log.exception("outbox #%s delivered, but the on_delivered hook failed", row.id)
        return ref

    async def _send(self, row: OutboxRow, item: SiteItem) -> RemoteRef:
        action = row.action
        remote = row.site_remote
        if action == "retract":
            if remote is None:
                # No id stored, but a create whose answer was lost (or that was given up on) may
                # still have made the post: look for it, as an update does, before calling it done.
                remote = await self.adapter.lookup(item)
                if remote is None:
                    return RemoteRef(None, None)
                log.info(
                    "outbox #%s: %s was on the site without a stored id (%s)", row.id, row.entity, remote.remote_id
                )
            await self.adapter.retract(remote.remote_id, item)
            return remote
        if action == "update" and remote is not None:
            return await self.adapter.update(remote.remote_id, item)
        if action not in ("create", "update"):
            raise PermanentSiteError(f"unknown outbox action {row.kind!r}")
        if remote is not None:
            # Created already (a re-queued create): make the site match instead of duplicating.
            return await self.adapter.update(remote.remote_id, item)
        # A create, or an update of something whose create never went through.
        if row.outcome_unknown or action == "update":
            found = await self.adapter.lookup(item)
            if found is not None:
                log.info("outbox #%s: %s was already on the site (%s)", row.id, row.entity, found.remote_id)
                return await self.adapter.update(found.remote_id, item) if action == "update" else found
        return await self.adapter.create(item)

    def backoff(self, attempts: int, retry_after: float | None = None) -> float:
        """Seconds until the next attempt after `attempts` failed ones."""
        if retry_after is not None and retry_after > 0:
            return max(1.0, min(retry_after, 24 * 3600.0))
        ceiling = min(self.max_delay, self.base_delay * 2 ** max(0, attempts - 1))
        # "Equal jitter": at least half the back-off, so a failing site is not hammered.
        return max(0.001, ceiling / 2 + self._rng.uniform(0, ceiling / 2))

    async def _later(self, row: OutboxRow, error: str, *, retry_after: float | None, outcome_unknown: bool) -> None:
        if row.attempts >= self.max_attempts:
            await self._park(
                row, f"gave up after {row.attempts} attempts; last error: {error}", outcome_unknown=outcome_unknown
            )
            return
        delay = self.backoff(row.attempts, retry_after)
        metrics.SITE_DELIVERIES.labels("retry").inc()
        log.warning(
            "outbox #%s %s %s: attempt %d failed (%s); retrying in %.1fs",
            row.id,
            row.kind,
            row.entity,
            row.attempts,
            error,
            delay,
        )
        await self.repo.mark_retry(
            row.id, error, self.clock.now() + timedelta(seconds=delay), outcome_unknown=outcome_unknown
        )

    async def _park(self, row: OutboxRow, error: str, *, outcome_unknown: bool = False) -> None:
        metrics.SITE_DELIVERIES.labels("dead").inc()
        log.error("outbox #%s %s %s is dead: %s", row.id, row.kind, row.entity, error)
        await self.repo.mark_dead(row.id, error, outcome_unknown=outcome_unknown)
        await self.send_owed_alerts()

    async def send_owed_alerts(self) -> None:
        """One alert per dead row (also those a crash kept from being announced)."""
        for row in await self.repo.unalerted_dead():
            text = alert_text(row)
            if self._alert is None:
                log.warning("%s", text)
            else:
                try:
                    await self._alert(text)
                except Exception:
                    log.exception("could not send the outbox alert for #%s; will try again", row.id)
                    return
            await self.repo.mark_alerted(row.id)


def alert_text(row: OutboxRow) -> str:
    """What the operator reads: what failed, why (with the fix), and the command to resume."""
    what = {"create": "publishing", "update": "updating", "retract": "taking down"}.get(row.action, row.action)
    unknown = " (the site may have applied it: its last answer was lost)" if row.outcome_unknown else ""
    return (
        f"Site mirroring stopped {what} {row.entity} (outbox #{row.id}): {row.last_error}{unknown}. "
        f"Once fixed, run `readersviews outbox retry {row.id}` (or `readersviews outbox drop {row.id}` "
        f"to give up on it); later items for {row.entity} wait until then."
    )
