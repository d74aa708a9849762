"""Feeds: where each one posts, its settings chosen in Discord, and its polling state."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiosqlite

from bot import metrics
from bot.clock import Clock, from_db, to_db
from bot.store.audit import insert_audit
from bot.store.database import Database, StoreError
from bot.store.dialect import json_flag
from bot.store.tenancy import only_guilds

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeedRow:
    id: int
    guild_id: int
    url: str
    channel_id: int
    channel_kind: str
    tag_map: dict[str, str]
    poll_interval: int
    etag: str | None
    last_modified: str | None
    last_poll_at: datetime | None
    last_ok_at: datetime | None
    last_status: str | None
    next_poll_at: datetime | None
    consecutive_errors: int
    last_error: str | None
    alerted: bool
    enabled: bool
    disabled_reason: str | None
    title: str | None
    item_count: int
    settings: dict[str, Any] = field(default_factory=dict)  # chosen in Discord: filters, formats, ...

    @classmethod
    def from_row(cls, row: aiosqlite.Row) -> FeedRow:
        return cls(
            id=row["id"],
            guild_id=row["guild_id"],
            url=row["url"],
            channel_id=row["channel_id"],
            channel_kind=row["channel_kind"],
            tag_map=json.loads(row["tag_map"]),
            poll_interval=row["poll_interval"],
            etag=row["etag"],
            last_modified=row["last_modified"],
            last_poll_at=from_db(row["last_poll_at"]),
            last_ok_at=from_db(row["last_ok_at"]),
            last_status=row["last_status"],
            next_poll_at=from_db(row["next_poll_at"]),
            consecutive_errors=row["consecutive_errors"],
            last_error=row["last_error"],
            alerted=bool(row["alerted"]),
            enabled=bool(row["enabled"]),
            disabled_reason=row["disabled_reason"],
            title=row["title"],
            item_count=row["item_count"],
            settings=json.loads(row["settings"] or "{}"),
        )


_FIND = "SELECT * FROM feeds WHERE guild_id = ? AND url = ? AND channel_id = ?"


class TooManyFeeds(StoreError):
    """The server already has as many feeds as `FeedsRepo.add`'s `limit` allows."""

    def __init__(self, count: int) -> None:
        super().__init__(f"the server has {count} feeds already")
        self.count = count


class FeedExists(StoreError):
    """The feed already posts into that channel (found in `FeedsRepo.add`'s transaction)."""


class FeedsRepo:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def add(
        self,
        *,
        guild_id: int,
        url: str,
        channel_id: int,
        channel_kind: str,
        tag_map: dict[str, str],
        poll_interval: int,
        created_by: int | None,
        limit: int = 0,
        first_poll_at: datetime | None = None,
    ) -> int:
        """Add a feed, due at `first_poll_at` (default: now); with a `limit`, raise `TooManyFeeds` if the
        server has that many already (counted in the insert's transaction, so concurrent adds can't
        pass it together)."""
        now = to_db(self._clock.now())
        due = to_db(first_poll_at) if first_poll_at is not None else now
        async with self._db.transaction() as conn:
            if limit and (count := await _feed_count(conn, guild_id)) >= limit:
                raise TooManyFeeds(count)
            # Checked here too: two adds of one feed at once both passed the caller's check.
            if await (await conn.execute(_FIND, (guild_id, url, channel_id))).fetchone():
                raise FeedExists(url)
            cursor = await conn.execute(
                "INSERT INTO feeds (guild_id, url, channel_id, channel_kind, tag_map, poll_interval, next_poll_at,"
                " created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    guild_id,
                    url,
                    channel_id,
                    channel_kind,
                    json.dumps(tag_map),
                    poll_interval,
                    due,
                    now,
                    created_by,
                ),
            )
            feed_id = int(cursor.lastrowid or 0)
            await _audit(conn, guild_id, created_by, "feed.add", feed_id, {"url": url, "channel_id": channel_id}, now)
        return feed_id

    async def count(self, guild_id: int) -> int:
        row = await self._db.fetchone("SELECT COUNT(*) AS n FROM feeds WHERE guild_id = ?", (guild_id,))
        return int(row["n"]) if row else 0

    async def get(self, feed_id: int) -> FeedRow | None:
        row = await self._db.fetchone("SELECT * FROM feeds WHERE id = ?", (feed_id,))
        return FeedRow.from_row(row) if row else None

    async def find(self, guild_id: int, url: str, channel_id: int) -> FeedRow | None:
        row = await self._db.fetchone(_FIND, (guild_id, url, channel_id))
        return FeedRow.from_row(row) if row else None

    async def in_guild(self, guild_id: int) -> list[FeedRow]:
        rows = await self._db.fetchall("SELECT * FROM feeds WHERE guild_id = ? ORDER BY id", (guild_id,))
        return [FeedRow.from_row(r) for r in rows]

    async def due(self, now: datetime, guilds: frozenset[int] | None = None) -> list[FeedRow]:
        """Enabled feeds due for a poll; with `guilds`, only those servers' (the others are not served)."""
        only, params = only_guilds(guilds)
        rows = await self._db.fetchall(
            f"SELECT * FROM feeds WHERE enabled = 1 AND (next_poll_at IS NULL OR next_poll_at <= ?){only}"
            " ORDER BY next_poll_at",
            (to_db(now), *params),
        )
        return [FeedRow.from_row(r) for r in rows]

    async def with_work(self, guilds: frozenset[int] | None = None) -> list[FeedRow]:
        """Enabled feeds with articles waiting to be posted or edited (with `guilds`, of those servers)."""
        only, params = only_guilds(guilds)
        rows = await self._db.fetchall(
            "SELECT * FROM feeds WHERE enabled = 1 AND id IN (SELECT feed_id FROM articles"
            f" WHERE status IN ('pending', 'posting') OR needs_edit = 1 OR thread_step = 'wanted'){only} ORDER BY id",
            params,
        )
        return [FeedRow.from_row(r) for r in rows]

    async def with_archive_links(self, guilds: frozenset[int] | None = None) -> list[FeedRow]:
        """Enabled feeds that chose "From the archives" replies (with `guilds`, of those servers)."""
        only, params = only_guilds(guilds)
        rows = await self._db.fetchall(
            f"SELECT * FROM feeds WHERE enabled = 1 AND {json_flag(self._db.dialect, 'settings', 'archive_links')}"
            f"{only} ORDER BY id",
            params,
        )
        return [FeedRow.from_row(r) for r in rows]

    async def next_due_at(self, guilds: frozenset[int] | None = None) -> datetime | None:
        """When the next poll is due. Feeds of servers outside `guilds` never count: they are never
        polled, so their next_poll_at stays in the past and would wake the poller every second."""
        only, params = only_guilds(guilds)
        value = await self._db.scalar(f"SELECT min(next_poll_at) FROM feeds WHERE enabled = 1{only}", params)
        return from_db(value)

    async def remove(self, feed_id: int, *, actor_id: int | None) -> None:
        now = to_db(self._clock.now())
        async with self._db.transaction() as conn:
            row = await (await conn.execute("SELECT guild_id, url FROM feeds WHERE id = ?", (feed_id,))).fetchone()
            await conn.execute("DELETE FROM feeds WHERE id = ?", (feed_id,))
            if row:
                await _audit(conn, row["guild_id"], actor_id, "feed.remove", feed_id, {"url": row["url"]}, now)

    async def update_settings(
        self, feed_id: int, change: Callable[[dict[str, Any]], dict[str, Any]], *, actor_id: int | None, what: str
    ) -> dict[str, Any]:
        """Read, change and write a feed's settings in one transaction (two admins can't lose each other's
        change); audited as `feed.settings` with `what`. Returns the new settings."""
        now = to_db(self._clock.now())
        async with self._db.transaction() as conn:
            row = await (await conn.execute("SELECT guild_id, settings FROM feeds WHERE id = ?", (feed_id,))).fetchone()
            if row is None:
                raise LookupError(f"no feed #{feed_id}")
            settings = change(json.loads(row["settings"] or "{}"))
            await conn.execute("UPDATE feeds SET settings = ? WHERE id = ?", (json.dumps(settings), feed_id))
            await _audit(conn, row["guild_id"], actor_id, "feed.settings", feed_id, {"change": what}, now)
        return settings

    async def set_enabled(self, feed_id: int, enabled: bool, *, reason: str | None, actor_id: int | None) -> None:
        now = to_db(self._clock.now())
        async with self._db.transaction() as conn:
            await conn.execute(
                "UPDATE feeds SET enabled = ?, disabled_reason = ?, next_poll_at = ?,"
                " consecutive_errors = CASE WHEN ? THEN 0 ELSE consecutive_errors END WHERE id = ?",
                (int(enabled), None if enabled else reason, now, int(enabled), feed_id),
            )
            row = await (await conn.execute("SELECT guild_id FROM feeds WHERE id = ?", (feed_id,))).fetchone()
            action = "feed.resume" if enabled else "feed.pause"
            await _audit(conn, row["guild_id"] if row else None, actor_id, action, feed_id, {"reason": reason}, now)

    async def record_poll(
        self,
        feed_id: int,
        *,
        status: str,
        next_poll_at: datetime,
        etag: str | None = None,
        last_modified: str | None = None,
        error: str | None = None,
        title: str | None = None,
        item_count: int | None = None,
        alerted: bool | None = None,
    ) -> None:
        """Store the outcome of one poll: success resets the error streak, failure extends it."""
        metrics.FEED_POLLS.labels(status).inc()
        now = to_db(self._clock.now())
        if error is None:
            await self._db.write(
                "UPDATE feeds SET last_poll_at = ?, last_ok_at = ?, last_status = ?, next_poll_at = ?,"
                " etag = COALESCE(?, etag), last_modified = COALESCE(?, last_modified), consecutive_errors = 0,"
                " last_error = NULL, title = COALESCE(?, title), item_count = COALESCE(?, item_count),"
                " alerted = COALESCE(?, alerted) WHERE id = ?",
                (now, now, status, to_db(next_poll_at), etag, last_modified, title, item_count, alerted, feed_id),
            )
        else:
            await self._db.write(
                "UPDATE feeds SET last_poll_at = ?, last_status = ?, next_poll_at = ?,"
                " consecutive_errors = consecutive_errors + 1, last_error = ?, alerted = COALESCE(?, alerted)"
                " WHERE id = ?",
                (now, status, to_db(next_poll_at), error, alerted, feed_id),
            )


async def _audit(
    conn: aiosqlite.Connection,
    guild_id: int | None,
    actor_id: int | None,
    action: str,
    feed_id: int,
    detail: dict[str, Any],
    now: str | None,
) -> None:
    await insert_audit(
        conn,
        guild_id=guild_id,
        actor_id=actor_id,
        action=action,
        entity=f"feed:{feed_id}",
        detail=detail,
        created_at=now,
    )


async def _feed_count(conn: aiosqlite.Connection, guild_id: int) -> int:
    cursor = await conn.execute("SELECT COUNT(*) FROM feeds WHERE guild_id = ?", (guild_id,))
    row = await cursor.fetchone()
    return int(row[0]) if row else 0
