"""The outbox: everything to send to the site, written in the same transaction as the change.

Rows move pending -> inflight -> done, or back to pending with a later `next_attempt_at`, or to
dead (a person must act: `retry` or `drop`). Delivery is strictly ordered per entity: a row is
claimable only when every older row of its entity is done, so an update never overtakes its
create. A dead row therefore holds back the rows behind it until it is retried or dropped.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiosqlite

from bot.clock import Clock, from_db, to_db
from bot.site.base import RemoteRef, SiteItem
from bot.store.database import Database
from bot.store.dialect import json_array_values

STATES = ("pending", "inflight", "done", "dead")
ACTIONS = ("create", "update", "retract")


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    kind: str
    entity: str
    payload: dict[str, Any]
    idempotency_key: str
    state: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    remote_id: str | None
    remote_url: str | None
    created_at: datetime
    updated_at: datetime
    outcome_unknown: bool
    alerted_at: datetime | None
    guild_id: int | None = None
    """The server the item belongs to (None: no server owns it)."""
    site_remote: RemoteRef | None = None
    """Where the entity lived on the site when the row was claimed (filled by `claim_due` only)."""

    @property
    def action(self) -> str:
        """create | update | retract (the part of `kind` after the last dot)."""
        return self.kind.rsplit(".", 1)[-1]

    @classmethod
    def from_row(cls, row: aiosqlite.Row, *, with_remote: bool = False) -> OutboxRow:
        return cls(
            id=row["id"],
            kind=row["kind"],
            entity=row["entity"],
            payload=json.loads(row["payload"]),
            idempotency_key=row["idempotency_key"],
            state=row["state"],
            attempts=row["attempts"],
            next_attempt_at=_dt(row["next_attempt_at"]),
            last_error=row["last_error"],
            remote_id=row["remote_id"],
            remote_url=row["remote_url"],
            created_at=_dt(row["created_at"]),
            updated_at=_dt(row["updated_at"]),
            outcome_unknown=bool(row["outcome_unknown"]),
            alerted_at=from_db(row["alerted_at"]),
            guild_id=row["guild_id"],
            site_remote=RemoteRef(row["r_remote_id"], row["r_remote_url"])
            if with_remote and row["r_entity"] is not None
            else None,
        )


def _dt(text: str) -> datetime:
    moment = from_db(text)
    assert moment is not None
    return moment


def site_key(entity: str, action: str, revision: str | int) -> str:
    """The idempotency key convention: one key per intended delivery, e.g. "letter:42:update:3"."""
    return f"{entity}:{action}:{revision}"


async def _statement_guild(conn: aiosqlite.Connection, entity: str) -> int | None:
    async with conn.execute("SELECT guild_id FROM statements WHERE 'statement:' || id = ?", (entity,)) as cursor:
        found = await cursor.fetchone()
    return int(found[0]) if found else None


def served_condition(dialect: str) -> str:
    """Rows of servers the bot serves (a JSON list of ids; NULL: every server) and rows of no server.

    The list's elements come through the dialect's JSON hook (PostgreSQL has no array `json_each`); the
    first parameter is cast so that PostgreSQL knows its type when it is only compared with NULL.
    """
    ids = json_array_values(dialect, "?", "s")
    return (
        f"(CAST(? AS TEXT) IS NULL OR o.guild_id IS NULL OR o.guild_id IN (SELECT CAST(s.value AS BIGINT) FROM {ids}))"
    )


def _served(guild_ids: Collection[int] | None) -> tuple[str | None, str | None]:
    served = None if guild_ids is None else json.dumps(sorted(guild_ids))
    return served, served


class OutboxRepo:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    @property
    def db(self) -> Database:
        return self._db

    # -- writing, inside the caller's transaction ------------------------------------------------

    async def enqueue(
        self,
        conn: aiosqlite.Connection,
        *,
        kind: str,
        entity: str,
        payload: dict[str, Any],
        idempotency_key: str,
        guild_id: int | None,
        delay: timedelta | None = None,
    ) -> int:
        """Queue one delivery inside an open transaction (`async with db.transaction() as conn`).

        `guild_id`: the server the item belongs to (alerts go there; held while it isn't served).
        Returns the row id; enqueuing a key that is already queued (or done) changes nothing and
        returns the existing row's id.
        """
        now = self._clock.now()
        stamp = to_db(now)
        due = to_db(now + delay) if delay else stamp
        cursor = await conn.execute(
            "INSERT OR IGNORE INTO outbox (kind, entity, payload, idempotency_key, state, attempts,"
            " next_attempt_at, created_at, updated_at, guild_id) VALUES (?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?)",
            (kind, entity, json.dumps(payload, separators=(",", ":")), idempotency_key, due, stamp, stamp, guild_id),
        )
        inserted = cursor.rowcount
        row_id = cursor.lastrowid
        await cursor.close()
        if inserted:
            return int(row_id or 0)
        async with conn.execute("SELECT id FROM outbox WHERE idempotency_key = ?", (idempotency_key,)) as cur:
            found = await cur.fetchone()
        return int(found[0]) if found else 0

    async def enqueue_item(
        self,
        conn: aiosqlite.Connection,
        action: str,
        item: SiteItem,
        *,
        revision: str | int,
        guild_id: int | None = None,
    ) -> int:
        """Queue a composed item: kind "<item.kind>.<action>", key "<entity>:<action>:<revision>".

        `revision` tells deliveries of the same entity apart (e.g. the row's version counter): the
        same revision enqueued twice (a double click) is one delivery. `guild_id`: the item's server.
        """
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, not {action!r}")
        if guild_id is None and item.kind == "statement":
            # Until bot.statements passes its statement's server: read it from the statement's row.
            guild_id = await _statement_guild(conn, item.entity)
        return await self.enqueue(
            conn,
            kind=f"{item.kind}.{action}",
            entity=item.entity,
            payload=item.model_dump(mode="json", exclude={"idempotency_key", "occurred_at"}),
            idempotency_key=site_key(item.entity, action, revision),
            guild_id=guild_id,
        )

    # -- the worker's side ----------------------------------------------------------------------

    async def claim_due(self, limit: int = 50, *, served: Collection[int] | None = None) -> list[OutboxRow]:
        """Mark up to `limit` due rows inflight and return them (oldest due first).

        Only the oldest not-done row of each entity is eligible, so per-entity order holds. `served`:
        the servers the bot serves (None: all); other servers' rows are held, pending, untouched.
        """
        now = to_db(self._clock.now())
        async with self._db.transaction() as conn:
            async with conn.execute(
                "SELECT o.id FROM outbox o WHERE o.state = 'pending' AND o.next_attempt_at <= ?"
                f" AND {served_condition(self._db.dialect)}"
                " AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.entity = o.entity AND p.id < o.id"
                " AND p.state != 'done') ORDER BY o.next_attempt_at, o.id LIMIT ?",
                (now, *_served(served), limit),
            ) as cursor:
                ids = [row[0] for row in await cursor.fetchall()]
            if not ids:
                return []
            marks = ",".join("?" * len(ids))
            await conn.execute(
                f"UPDATE outbox SET state = 'inflight', attempts = attempts + 1, updated_at = ? WHERE id IN ({marks})",
                (now, *ids),
            )
            async with conn.execute(
                "SELECT o.*, r.entity AS r_entity, r.remote_id AS r_remote_id, r.remote_url AS r_remote_url"
                f" FROM outbox o LEFT JOIN remote_objects r ON r.entity = o.entity WHERE o.id IN ({marks})",
                ids,
            ) as cursor:
                rows = {row["id"]: OutboxRow.from_row(row, with_remote=True) for row in await cursor.fetchall()}
        return [rows[i] for i in ids]

    async def next_due_at(self, *, served: Collection[int] | None = None) -> datetime | None:
        """When the earliest claimable row becomes due (None: nothing pending that could run)."""
        value = await self._db.scalar(
            "SELECT min(o.next_attempt_at) FROM outbox o WHERE o.state = 'pending'"
            f" AND {served_condition(self._db.dialect)}"
            " AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.entity = o.entity AND p.id < o.id"
            " AND p.state != 'done')",
            _served(served),
        )
        return from_db(value)

    async def mark_delivered(self, deliveries: Sequence[tuple[OutboxRow, RemoteRef]]) -> None:
        """Delivered, in one transaction: rows done, and where each entity lives (a retract forgets it)."""
        if not deliveries:
            return
        now = to_db(self._clock.now())
        async with self._db.transaction() as conn:
            await conn.executemany(
                "UPDATE outbox SET state = 'done', remote_id = ?, remote_url = ?, last_error = NULL,"
                " outcome_unknown = 0, updated_at = ? WHERE id = ?",
                [(ref.remote_id, ref.url, now, row.id) for row, ref in deliveries],
            )
            gone = [(row.entity,) for row, _ in deliveries if row.action == "retract"]
            if gone:
                await conn.executemany("DELETE FROM remote_objects WHERE entity = ?", gone)
            live = [(row.entity, ref.remote_id, ref.url, now) for row, ref in deliveries if row.action != "retract"]
            if live:
                await conn.executemany(
                    "INSERT INTO remote_objects (entity, remote_id, remote_url, updated_at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (entity) DO UPDATE SET"
                    " remote_id = coalesce(excluded.remote_id, remote_objects.remote_id),"
                    " remote_url = coalesce(excluded.remote_url, remote_objects.remote_url),"
                    " updated_at = excluded.updated_at",
                    live,
                )

    async def release(self, row_ids: Sequence[int]) -> None:
        """Claimed rows that were never sent go back to pending as they were (the worker stopped)."""
        if not row_ids:
            return
        marks = ",".join("?" * len(row_ids))
        await self._db.write(
            f"UPDATE outbox SET state = 'pending', attempts = max(0, attempts - 1) WHERE state = 'inflight'"
            f" AND id IN ({marks})",
            tuple(row_ids),
        )

    async def mark_retry(
        self, row_id: int, error: str, next_attempt_at: datetime, *, outcome_unknown: bool = False
    ) -> None:
        """Back to pending until `next_attempt_at`; `outcome_unknown` sticks until the row is done."""
        await self._db.write(
            "UPDATE outbox SET state = 'pending', last_error = ?, next_attempt_at = ?,"
            " outcome_unknown = max(outcome_unknown, ?), updated_at = ? WHERE id = ?",
            (error, to_db(next_attempt_at), int(outcome_unknown), to_db(self._clock.now()), row_id),
        )

    async def wait_for_site(self, row_id: int, error: str, *, outcome_unknown: bool = False) -> None:
        """Back to pending, due as soon as the site incident ends; this attempt does not count."""
        now = to_db(self._clock.now())
        await self._db.write(
            "UPDATE outbox SET state = 'pending', attempts = max(0, attempts - 1), last_error = ?,"
            " next_attempt_at = ?, outcome_unknown = max(outcome_unknown, ?), updated_at = ? WHERE id = ?",
            (error, now, int(outcome_unknown), now, row_id),
        )

    async def mark_dead(self, row_id: int, error: str, *, outcome_unknown: bool = False) -> None:
        """Give up until a person acts; the alert is owed until `mark_alerted`.

        `outcome_unknown` (the last attempt timed out, say) sticks as in `mark_retry`.
        """
        await self._db.write(
            "UPDATE outbox SET state = 'dead', last_error = ?, alerted_at = NULL,"
            " outcome_unknown = max(outcome_unknown, ?), updated_at = ? WHERE id = ?",
            (error, int(outcome_unknown), to_db(self._clock.now()), row_id),
        )

    async def mark_alerted(self, row_id: int) -> None:
        await self._db.write("UPDATE outbox SET alerted_at = ? WHERE id = ?", (to_db(self._clock.now()), row_id))

    async def unalerted_dead(self) -> list[OutboxRow]:
        rows = await self._db.fetchall("SELECT * FROM outbox WHERE state = 'dead' AND alerted_at IS NULL ORDER BY id")
        return [OutboxRow.from_row(row) for row in rows]

    async def recover(self) -> int:
        """At start-up: rows left inflight by a dead process go back to pending, outcome unknown.

        Call it before the worker starts and while no other process delivers from this database.
        """
        now = to_db(self._clock.now())
        return await self._db.write(
            "UPDATE outbox SET state = 'pending', outcome_unknown = 1, next_attempt_at = ?,"
            " last_error = coalesce(last_error, 'interrupted: outcome unknown'), updated_at = ?"
            " WHERE state = 'inflight'",
            (now, now),
        )

    # -- reading and operator actions -----------------------------------------------------------

    async def get(self, row_id: int) -> OutboxRow | None:
        row = await self._db.fetchone("SELECT * FROM outbox WHERE id = ?", (row_id,))
        return OutboxRow.from_row(row) if row else None

    async def list(
        self, states: Iterable[str] = ("pending", "inflight", "dead"), *, limit: int = 100
    ) -> list[OutboxRow]:
        wanted = [state for state in states if state in STATES]
        if not wanted:
            return []
        marks = ",".join("?" * len(wanted))
        rows = await self._db.fetchall(
            f"SELECT * FROM outbox WHERE state IN ({marks}) ORDER BY id LIMIT ?", (*wanted, limit)
        )
        return [OutboxRow.from_row(row) for row in rows]

    async def for_guild(self, guild_id: int, states: Iterable[str], *, limit: int = 100) -> builtins.list[OutboxRow]:
        """A server's rows in `states` (oldest first); other servers' items stay hidden."""
        wanted = [state for state in states if state in STATES]
        marks = ",".join("?" * len(wanted))
        rows = await self._db.fetchall(
            f"SELECT * FROM outbox WHERE guild_id = ? AND state IN ({marks}) ORDER BY id LIMIT ?",
            (guild_id, *wanted, limit),
        )
        return [OutboxRow.from_row(row) for row in rows]

    async def for_entity(self, entity: str) -> builtins.list[OutboxRow]:
        rows = await self._db.fetchall("SELECT * FROM outbox WHERE entity = ? ORDER BY id", (entity,))
        return [OutboxRow.from_row(row) for row in rows]

    async def retry(self, row_id: int) -> bool:
        """A dead (or waiting) row is due now, with a fresh back-off. False if there is no such row."""
        now = to_db(self._clock.now())
        changed = await self._db.write(
            "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?, alerted_at = NULL,"
            " updated_at = ? WHERE id = ? AND state IN ('dead', 'pending')",
            (now, now, row_id),
        )
        return changed > 0

    async def retry_all(self) -> int:
        """Every dead or waiting row due now with a fresh back-off (`outbox retry --all`)."""
        now = to_db(self._clock.now())
        return await self._db.write(
            "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?, alerted_at = NULL,"
            " updated_at = ? WHERE state IN ('dead', 'pending')",
            (now, now),
        )

    async def waiting(self) -> int:
        """Rows not yet delivered (pending, inflight or dead)."""
        return int(await self._db.scalar("SELECT count(*) FROM outbox WHERE state != 'done'") or 0)

    async def drop(self, row_id: int) -> bool:
        """Forget a pending or dead row (it will never be sent). False if there is no such row."""
        changed = await self._db.write("DELETE FROM outbox WHERE id = ? AND state IN ('dead', 'pending')", (row_id,))
        return changed > 0

    async def backlog(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for row in await self._db.fetchall("SELECT state, count(*) FROM outbox GROUP BY state"):
            counts[row[0]] = int(row[1])
        return counts

    async def remote_for(self, entity: str) -> RemoteRef | None:
        """Where the entity lives on the site; None if it was never created (or was retracted)."""
        row = await self._db.fetchone("SELECT remote_id, remote_url FROM remote_objects WHERE entity = ?", (entity,))
        return RemoteRef(row[0], row[1]) if row else None

    async def purge_done(self, before: datetime) -> int:
        """Delete delivered rows last touched before `before` (remote_objects is kept)."""
        return await self._db.write("DELETE FROM outbox WHERE state = 'done' AND updated_at < ?", (to_db(before),))

    async def cancel_undelivered(self, conn: aiosqlite.Connection, entity: str) -> bool:
        """Inside the caller's transaction: drop the entity's creates and updates the site never applied.

        A row goes if it waits or was given up (pending/dead) and no attempt of it ever had an
        unknown outcome (`outcome_unknown` is sticky, and recorded for dead rows too): every
        attempt failed in a way that certainly left the site unchanged (refused connection, a
        4xx). A row being sent (inflight) or that may have been applied stays. Returns True if
        the entity is, or may be, on the site, i.e. a retract must still be queued behind what
        remains (it looks the post up when no id is stored).
        """
        cursor = await conn.execute(
            "DELETE FROM outbox WHERE entity = ? AND state IN ('pending', 'dead') AND outcome_unknown = 0"
            " AND kind NOT LIKE '%.retract'",
            (entity,),
        )
        await cursor.close()
        async with conn.execute(
            "SELECT EXISTS (SELECT 1 FROM remote_objects WHERE entity = ?)"
            " OR EXISTS (SELECT 1 FROM outbox WHERE entity = ? AND kind NOT LIKE '%.retract')",
            (entity, entity),
        ) as cursor:
            found = await cursor.fetchone()
        return bool(found and found[0])


@dataclass(frozen=True, slots=True)
class SiteIncident:
    """The site refuses the bot (credentials) or is down: items wait until a probe succeeds."""

    kind: str
    reason: str
    started_at: datetime
    next_probe_at: datetime
    probes: int
    alerted_at: datetime | None
    resolved_at: datetime | None

    @property
    def open(self) -> bool:
        return self.resolved_at is None


class SiteIncidentRepo:
    """The one site-wide incident (table `site_incident`, a single row), shared with the CLI."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def get(self) -> SiteIncident | None:
        rows = list(await self._db.fetchall("SELECT * FROM site_incident WHERE id = 1"))
        if not rows:
            return None
        row = rows[0]
        return SiteIncident(
            kind=row["kind"],
            reason=row["reason"],
            started_at=_dt(row["started_at"]),
            next_probe_at=_dt(row["next_probe_at"]),
            probes=int(row["probes"]),
            alerted_at=from_db(row["alerted_at"]),
            resolved_at=from_db(row["resolved_at"]),
        )

    async def open(self, kind: str, reason: str, next_probe_at: datetime) -> bool:
        """Start an incident; False (and nothing changes) if one is already open."""
        now = to_db(self._clock.now())
        changed = await self._db.write(
            "INSERT INTO site_incident (id, kind, reason, started_at, next_probe_at, probes) VALUES (1, ?, ?, ?, ?, 0)"
            " ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, reason = excluded.reason,"
            " started_at = excluded.started_at, next_probe_at = excluded.next_probe_at, probes = 0,"
            " alerted_at = NULL, resolved_at = NULL, noted_at = NULL WHERE site_incident.resolved_at IS NOT NULL",
            (kind, reason, now, to_db(next_probe_at)),
        )
        return changed > 0

    async def mark_alerted(self) -> None:
        await self._db.write("UPDATE site_incident SET alerted_at = ? WHERE id = 1", (to_db(self._clock.now()),))

    async def probe_failed(self, reason: str, next_probe_at: datetime) -> None:
        await self._db.write(
            "UPDATE site_incident SET probes = probes + 1, reason = ?, next_probe_at = ?"
            " WHERE id = 1 AND resolved_at IS NULL",
            (reason, to_db(next_probe_at)),
        )

    async def probe_now(self) -> bool:
        """Ask the running bot to probe the site at its next pass (`outbox retry --all`)."""
        now = to_db(self._clock.now())
        return (
            await self._db.write(
                "UPDATE site_incident SET next_probe_at = ? WHERE id = 1 AND resolved_at IS NULL", (now,)
            )
            > 0
        )

    async def resolve(self) -> None:
        """A probe succeeded: the recovery note is owed until `forget`."""
        await self._db.write(
            "UPDATE site_incident SET resolved_at = ? WHERE id = 1 AND resolved_at IS NULL",
            (to_db(self._clock.now()),),
        )

    async def forget(self) -> None:
        """The recovery note was sent (or was never owed: no alert had gone out)."""
        await self._db.write("DELETE FROM site_incident WHERE id = 1 AND resolved_at IS NOT NULL")
