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

A failure of the whole site is one incident, not one dead row per item: credentials refused (or
another `site_wide` refusal), or transient failures that persist while a probe (`adapter.check`)
fails too. Then the item goes back to waiting (the attempt does not count), one alert goes out (for
a site down only once `down_alert_probes` probes failed as well), and the worker claims nothing
until a probe succeeds (probes back off from 30 s to 10 min; a restart or
`readersviews outbox retry --all` probes at once); then one recovery note, and delivery resumes.

Items of a server the bot no longer serves (`served_guilds`, from `discord.allowed_guild_ids`) are
held: left pending, neither delivered nor given up, until the server is listed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime, timedelta

from pydantic import ValidationError

from bot import metrics
from bot.clock import Clock, to_db
from bot.logs import entity_ids
from bot.site.base import PermanentSiteError, RemoteRef, SiteAdapter, SiteItem, TransientSiteError, redact_text, short
from bot.store.outbox import OutboxRepo, OutboxRow, SiteIncident, SiteIncidentRepo

log = logging.getLogger(__name__)

AlertHook = Callable[[str], Awaitable[None]]
# One item's alert (it names the item, so it goes to that item's server only).
ItemAlertHook = Callable[[OutboxRow, str], Awaitable[None]]
DeliveredHook = Callable[[OutboxRow, RemoteRef], Awaitable[None]]
IncidentHook = Callable[[SiteIncident | None], Awaitable[None]]


class OutboxWorker:
    def __init__(
        self,
        repo: OutboxRepo,
        adapter: SiteAdapter,
        clock: Clock,
        *,
        alert: ItemAlertHook | None = None,
        on_delivered: DeliveredHook | None = None,
        batch: int = 50,
        base_delay: float = 2.0,
        max_delay: float = 3600.0,
        max_attempts: int = 25,
        idle_poll: float = 30.0,
        rng: random.Random | None = None,
        incidents: SiteIncidentRepo | None = None,
        site_alert: AlertHook | None = None,
        on_incident: IncidentHook | None = None,
        down_after: int = 5,
        probe_base: float = 30.0,
        probe_max: float = 600.0,
        down_alert_probes: int = 3,
        retention: timedelta | None = timedelta(days=30),
        served_guilds: Collection[int] | None = None,
    ) -> None:
        self.repo = repo
        # None: every server's items are delivered; else only these servers' (and items of none).
        self.served_guilds = frozenset(served_guilds) if served_guilds is not None else None
        self.incidents = incidents or SiteIncidentRepo(repo.db, clock)
        # Site-wide alerts name no item, so they go to every server (the per-item hook routes by item).
        self._site_alert = site_alert
        self._on_incident = on_incident
        # Consecutive transient failures (any item) after which the site itself is probed.
        self.down_after = down_after
        self.probe_base = probe_base
        self.probe_max = probe_max
        # A site that is down is announced once this many probes failed too (~3.5 min with the
        # defaults): a flaky site that recovers at the next probe costs no alert and no note.
        self.down_alert_probes = down_alert_probes
        self._failures = 0
        self._incident_opened = False
        # Delivered rows (and the letter texts in their payloads) are deleted after `retention`.
        self.retention = retention
        self._next_purge: datetime | None = None
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
        self.on_notify: Callable[[], None] | None = None
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
        await self.purge_delivered()
        self._incident_opened = False
        if not await self._site_available():
            return 0
        delivered = 0
        while not self._stopping and not self._incident_opened:
            rows = await self.repo.claim_due(self.batch, served=self.served_guilds)
            if not rows:
                break
            done: list[tuple[OutboxRow, RemoteRef]] = []
            handled = 0
            try:
                for row in rows:
                    if self._stopping or self._incident_opened:
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
        if self.on_notify is not None:
            self.on_notify()  # e.g. wake the process that delivers, if it is another (bot.claims)

    def wake_up(self) -> None:
        """Wake this process's loop only (another process enqueued something)."""
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
            # A restart is how an operator applies a fixed password: look at the site again now.
            if await self.incidents.probe_now():
                log.info("outbox: a site incident was open when the bot stopped; probing the site now")
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
        incident = await self.incidents.get()
        if incident is not None and incident.open:
            # Items are due, but nothing is claimed until the next probe.
            return max(0.0, min(self.idle_poll, (incident.next_probe_at - self.clock.now()).total_seconds()))
        due = await self.repo.next_due_at(served=self.served_guilds)
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
            if exc.site_wide:
                await self._wait_for_site(row, "credentials", str(exc))
                return None
            await self._park(row, str(exc))
            return None
        except TransientSiteError as exc:
            self._failures += 1
            if self._failures >= self.down_after or row.attempts >= self.max_attempts:
                failing = await self._check_site()
                if failing is not None:
                    kind, reason = failing
                    await self._wait_for_site(row, kind, reason, outcome_unknown=exc.outcome_unknown)
                    return None
                self._failures = 0  # the site answers: these failures are the items' own
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
        self._failures = 0
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
        error = redact_text(error)  # a site's error body may quote our credentials back: never store or log them
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
        error = redact_text(error)
        metrics.SITE_DELIVERIES.labels("dead").inc()
        log.error("outbox #%s %s %s is dead: %s", row.id, row.kind, row.entity, error)
        await self.repo.mark_dead(row.id, error, outcome_unknown=outcome_unknown)
        await self.send_owed_alerts()

    async def purge_delivered(self, *, force: bool = False) -> int:
        """Delete rows delivered more than `retention` ago (at most once an hour unless forced)."""
        now = self.clock.now()
        if self.retention is None or (not force and self._next_purge is not None and now < self._next_purge):
            return 0
        self._next_purge = now + timedelta(hours=1)
        removed = await self.repo.purge_done(now - self.retention)
        if removed:
            log.info("outbox: deleted %d item(s) delivered more than %s ago", removed, self.retention)
        return removed

    # -- site-wide incidents --------------------------------------------------------------------

    def probe_delay(self, probes: int) -> float:
        """Seconds until the next probe after `probes` failed ones (30 s doubling, capped at 10 min)."""
        return min(self.probe_max, self.probe_base * 2 ** max(0, probes))

    async def _check_site(self) -> tuple[str, str] | None:
        """Probe the site: None if it accepts the bot, else (incident kind, reason)."""
        try:
            await self.adapter.check()
        except PermanentSiteError as exc:
            return "credentials", str(exc)
        except TransientSiteError as exc:
            return "down", str(exc)
        except Exception as exc:
            log.exception("probing the site failed unexpectedly")
            return "down", f"{type(exc).__name__}: {short(str(exc), 160)}"
        return None

    async def _wait_for_site(self, row: OutboxRow, kind: str, reason: str, *, outcome_unknown: bool = False) -> None:
        """The site refuses everything: this row waits (uncounted) and one incident is opened."""
        self._incident_opened = True
        await self.repo.wait_for_site(row.id, f"waiting for the site: {reason}", outcome_unknown=outcome_unknown)
        opened = await self.incidents.open(kind, reason, self.clock.now() + timedelta(seconds=self.probe_delay(0)))
        if not opened:
            return
        log.error("site incident (%s): %s; deliveries wait until the site accepts them again", kind, reason)
        incident = await self.incidents.get()
        if incident is not None:
            await self._maybe_alert(incident)
            await self._incident_changed(incident)

    async def _site_available(self) -> bool:
        """False while an incident is open and its next probe fails (or is not due yet)."""
        incident = await self.incidents.get()
        if incident is None:
            return True
        if not incident.open:
            await self._note_recovery(incident)
            return True
        await self._maybe_alert(incident)
        if incident.next_probe_at > self.clock.now():
            return False
        failing = await self._check_site()
        if failing is not None:
            _kind, reason = failing
            delay = self.probe_delay(incident.probes + 1)
            log.warning("site still unavailable (%s); next check in %.0fs", reason, delay)
            await self.incidents.probe_failed(reason, self.clock.now() + timedelta(seconds=delay))
            updated = await self.incidents.get()
            if updated is not None:
                await self._maybe_alert(updated)
            return False
        log.warning("the site accepts deliveries again (incident since %s)", to_db(incident.started_at))
        self._failures = 0
        await self.incidents.resolve()
        await self._note_recovery(incident)
        await self._incident_changed(None)
        return True

    async def _maybe_alert(self, incident: SiteIncident) -> None:
        """The incident's one alert: at once for refused credentials, after a few failed probes for a site down."""
        if incident.alerted_at is not None or not incident.open:
            return
        if incident.kind != "credentials" and incident.probes < self.down_alert_probes:
            return
        await self._alert_incident(incident)

    async def _alert_incident(self, incident: SiteIncident) -> None:
        if await self._send_site_alert(incident_text(incident, await self.repo.waiting())):
            await self.incidents.mark_alerted()

    async def _note_recovery(self, incident: SiteIncident) -> None:
        """One note that delivery resumed (none if the incident was never announced)."""
        if incident.alerted_at is not None:
            waiting = await self.repo.waiting()
            if not await self._send_site_alert(recovery_text(incident, self.clock.now(), waiting)):
                return
        await self.incidents.forget()

    async def _send_site_alert(self, text: str) -> bool:
        if self._site_alert is None:
            log.warning("%s", text)
            return True
        try:
            await self._site_alert(text)
        except Exception:
            log.exception("could not send a site alert; will try again")
            return False
        return True

    async def _incident_changed(self, incident: SiteIncident | None) -> None:
        if self._on_incident is None:
            return
        try:
            await self._on_incident(incident)
        except Exception:
            log.exception("site incident listener failed")

    async def send_owed_alerts(self) -> None:
        """One alert per dead row (also those a crash kept from being announced)."""
        for row in await self.repo.unalerted_dead():
            text = alert_text(row)
            if self._alert is None:
                log.warning("%s", text)
            else:
                try:
                    await self._alert(row, text)
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


def incident_text(incident: SiteIncident, waiting: int) -> str:
    """The one alert of a site-wide incident: what is wrong, that nothing is lost, how it resumes."""
    if incident.kind == "credentials":
        what = f"the site refuses the bot: {incident.reason}"
        fix = (
            "Fix it, then restart the bot (a new password is read at start) or run "
            "`readersviews outbox retry --all`; delivery also resumes by itself once a check of the site succeeds."
        )
    else:
        what = f"the site is not answering: {incident.reason}"
        fix = (
            "Delivery resumes by itself once a check of the site succeeds (I check every few minutes; "
            "`readersviews outbox retry --all` checks at once)."
        )
    return f"Site mirroring is paused, {what}. Nothing is lost: {waiting} item(s) wait and none is given up. {fix}"


def recovery_text(incident: SiteIncident, now: datetime, waiting: int) -> str:
    minutes = max(1, round((now - incident.started_at).total_seconds() / 60))
    return (
        f"Site mirroring resumed: the site accepts deliveries again after {minutes} minute(s). "
        f"{waiting} waiting item(s) are being delivered now."
    )
