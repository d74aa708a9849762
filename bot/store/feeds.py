"""Feeds and the articles seen in them (dedupe by guid per feed, surviving restarts)."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiosqlite

from bot import metrics
from bot.clock import Clock, from_db, to_db
from bot.logs import ids
from bot.store.audit import insert_audit
from bot.store.database import Database
from bot.store.dialect import json_array_values

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


@dataclass(frozen=True)
class ArticleRow:
    id: int
    feed_id: int
    guid: str
    title: str
    link: str
    summary: str
    published_at: datetime | None
    content_hash: str
    status: str
    status_reason: str | None
    thread_id: int | None
    message_id: int | None
    channel_id: int | None
    categories: list[str]
    needs_edit: bool
    # When posted; while 'posting' (or 'failed'), when the post was first attempted.
    posted_at: datetime | None = None
    # A text post's discussion thread: None (nothing to do), 'wanted' (find or make it), 'given_up'.
    thread_step: str | None = None
    author: str | None = None
    image_url: str | None = None
    link_key: str = ""
    archive_state: str | None = None

    @classmethod
    def from_row(cls, row: aiosqlite.Row) -> ArticleRow:
        return cls(
            id=row["id"],
            feed_id=row["feed_id"],
            guid=row["guid"],
            title=row["title"],
            link=row["link"],
            summary=row["summary"],
            published_at=from_db(row["published_at"]),
            content_hash=row["content_hash"],
            status=row["status"],
            status_reason=row["status_reason"],
            thread_id=row["thread_id"],
            message_id=row["message_id"],
            channel_id=row["channel_id"],
            categories=json.loads(row["categories"] or "[]"),
            needs_edit=bool(row["needs_edit"]),
            posted_at=from_db(row["posted_at"]),
            thread_step=row["thread_step"],
            author=row["author"],
            image_url=row["image_url"],
            link_key=row["link_key"],
            archive_state=row["archive_state"],
        )


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
    ) -> int:
        now = to_db(self._clock.now())
        async with self._db.transaction() as conn:
            cursor = await conn.execute(
                "INSERT INTO feeds (guild_id, url, channel_id, channel_kind, tag_map, poll_interval, next_poll_at,"
                " created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (guild_id, url, channel_id, channel_kind, json.dumps(tag_map), poll_interval, now, now, created_by),
            )
            feed_id = int(cursor.lastrowid or 0)
            await _audit(conn, guild_id, created_by, "feed.add", feed_id, {"url": url, "channel_id": channel_id}, now)
        return feed_id

    async def get(self, feed_id: int) -> FeedRow | None:
        row = await self._db.fetchone("SELECT * FROM feeds WHERE id = ?", (feed_id,))
        return FeedRow.from_row(row) if row else None

    async def find(self, guild_id: int, url: str, channel_id: int) -> FeedRow | None:
        row = await self._db.fetchone(
            "SELECT * FROM feeds WHERE guild_id = ? AND url = ? AND channel_id = ?", (guild_id, url, channel_id)
        )
        return FeedRow.from_row(row) if row else None

    async def in_guild(self, guild_id: int) -> list[FeedRow]:
        rows = await self._db.fetchall("SELECT * FROM feeds WHERE guild_id = ? ORDER BY id", (guild_id,))
        return [FeedRow.from_row(r) for r in rows]

    async def due(self, now: datetime, guilds: frozenset[int] | None = None) -> list[FeedRow]:
        """Enabled feeds due for a poll; with `guilds`, only those servers' (the others are not served)."""
        only, params = _only(guilds)
        rows = await self._db.fetchall(
            f"SELECT * FROM feeds WHERE enabled = 1 AND (next_poll_at IS NULL OR next_poll_at <= ?){only}"
            " ORDER BY next_poll_at",
            (to_db(now), *params),
        )
        return [FeedRow.from_row(r) for r in rows]

    async def with_work(self, guilds: frozenset[int] | None = None) -> list[FeedRow]:
        """Enabled feeds with articles waiting to be posted or edited (with `guilds`, of those servers)."""
        only, params = _only(guilds)
        rows = await self._db.fetchall(
            "SELECT * FROM feeds WHERE enabled = 1 AND id IN (SELECT feed_id FROM articles"
            f" WHERE status IN ('pending', 'posting') OR needs_edit = 1 OR thread_step = 'wanted'){only} ORDER BY id",
            params,
        )
        return [FeedRow.from_row(r) for r in rows]

    async def next_due_at(self, guilds: frozenset[int] | None = None) -> datetime | None:
        """When the next poll is due. Feeds of servers outside `guilds` never count: they are never
        polled, so their next_poll_at stays in the past and would wake the poller every second."""
        only, params = _only(guilds)
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


class ArticlesRepo:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def known(self, feed_id: int) -> dict[str, tuple[int, str, str]]:
        """guid -> (article id, content hash, status) for everything seen in a feed."""
        rows = await self._db.fetchall(
            "SELECT id, guid, content_hash, status FROM articles WHERE feed_id = ?", (feed_id,)
        )
        return {r["guid"]: (r["id"], r["content_hash"], r["status"]) for r in rows}

    async def insert_many(self, feed_id: int, items: list[dict[str, Any]], *, channel_id: int | None = None) -> int:
        """Insert newly seen articles; an already-known guid is left alone (dedupe survives races).

        With `channel_id`, an article to be posted that another feed of the channel already has
        (posted, or on its way: same normalised link or same guid) is recorded as seen instead: a
        channel gets an article once, whichever of its feeds brings it first. The check and the
        insert are one transaction, so two feeds polled at once can't both queue it. Returns how
        many were such duplicates.
        """
        now = to_db(self._clock.now())
        rows = [self._article_values(feed_id, item, now) for item in items]

        def work(conn: sqlite3.Connection) -> int:
            duplicates = 0
            if (
                channel_id is not None
                and conn.execute(
                    "SELECT 1 FROM feeds WHERE channel_id = ? AND id != ? LIMIT 1", (channel_id, feed_id)
                ).fetchone()
            ):
                for number, item in enumerate(items):
                    if item["status"] != "pending":
                        continue
                    other = _in_channel_already(conn, channel_id, feed_id, item.get("link_key", ""), item["guid"])
                    if other is not None:
                        values = list(rows[number])
                        values[7], values[8] = "seen", f"already in this channel through feed #{other}"
                        rows[number] = tuple(values)
                        duplicates += 1
            conn.executemany(_INSERT_ARTICLE, rows)
            return duplicates

        return await self._db.run_in_transaction(work)

    @staticmethod
    def _article_values(feed_id: int, item: dict[str, Any], now: str | None) -> tuple[Any, ...]:
        return (
            feed_id,
            item["guid"],
            item["title"],
            item["link"],
            item["summary"],
            to_db(item["published"]),
            item["content_hash"],
            item["status"],
            item.get("reason"),
            json.dumps(item.get("categories", [])),
            now,
            item.get("author"),
            item.get("image_url"),
            item.get("link_key", ""),
        )

    async def mark_changed(self, article_id: int, *, title: str, summary: str, content_hash: str) -> None:
        """A posted article's title or summary changed on the site: edit the post later.

        Also while 'posting': the interrupted post, if found, was made from the older version.
        """
        await self._db.write(
            "UPDATE articles SET title = ?, summary = ?, content_hash = ?,"
            " needs_edit = CASE WHEN status IN ('posted', 'posting') THEN 1 ELSE 0 END WHERE id = ?",
            (title, summary, content_hash, article_id),
        )

    async def pending(self, feed_id: int, limit: int) -> list[ArticleRow]:
        rows = await self._db.fetchall(
            "SELECT * FROM articles WHERE feed_id = ? AND status IN ('pending', 'posting')"
            " ORDER BY published_at IS NULL, published_at, id LIMIT ?",
            (feed_id, limit),
        )
        return [ArticleRow.from_row(r) for r in rows]

    async def needing_edit(self, feed_id: int) -> list[ArticleRow]:
        rows = await self._db.fetchall(
            "SELECT * FROM articles WHERE feed_id = ? AND needs_edit = 1 AND status = 'posted'", (feed_id,)
        )
        return [ArticleRow.from_row(r) for r in rows]

    async def threads_wanted(self, feed_id: int, limit: int) -> list[ArticleRow]:
        """Posted text-channel articles whose discussion thread is still to be found or made (oldest first)."""
        rows = await self._db.fetchall(
            "SELECT * FROM articles WHERE feed_id = ? AND status = 'posted' AND thread_step = 'wanted'"
            " AND message_id IS NOT NULL ORDER BY id LIMIT ?",
            (feed_id, limit),
        )
        return [ArticleRow.from_row(r) for r in rows]

    async def mark_thread(self, article_id: int, thread_id: int) -> None:
        """A text post's discussion thread is made (or found): replies in it are now recorded."""
        await self._db.write(
            "UPDATE articles SET thread_id = ?, thread_step = NULL WHERE id = ?", (thread_id, article_id)
        )
        log.info("article %s: discussion thread %s recorded", article_id, thread_id)

    async def thread_given_up(self, article_id: int) -> None:
        await self._db.write("UPDATE articles SET thread_step = 'given_up' WHERE id = ?", (article_id,))

    async def mark_posting(self, article_id: int) -> None:
        """Written before the Discord call: after a crash, 'posting' means 'check before posting again'.

        posted_at then records when the attempt started (see `last_post_before`).
        """
        await self._db.write(
            "UPDATE articles SET status = 'posting', posted_at = ? WHERE id = ? AND status = 'pending'",
            (to_db(self._clock.now()), article_id),
        )

    async def last_post_before(self, channel_id: int, moment: datetime) -> int:
        """The newest Discord id recorded in a channel before `moment` (0 if none).

        A post made by an attempt that started at `moment` has a larger id: Discord ids grow with
        time, and these were all created before they were recorded. Both times are our clock's.
        """
        value = await self._db.scalar(
            "SELECT max(max(coalesce(message_id, 0), coalesce(thread_id, 0))) FROM articles"
            " WHERE channel_id = ? AND status = 'posted' AND posted_at < ?",
            (channel_id, to_db(moment)),
        )
        return int(value or 0)

    async def is_recorded_post(self, post_id: int) -> bool:
        """Whether a Discord message or thread is already recorded as some article's post."""
        value = await self._db.scalar(
            "SELECT 1 FROM articles WHERE message_id = ? OR thread_id = ? LIMIT 1", (post_id, post_id)
        )
        return value is not None

    async def mark_posted(
        self,
        article_id: int,
        *,
        channel_id: int,
        thread_id: int | None,
        message_id: int,
        thread_wanted: bool = False,
        posted_hash: str | None = None,
    ) -> None:
        """Record the post. `thread_wanted`: a text post whose thread is still to make (recorded first, so a
        crash before it is recovered). `posted_hash`: the content the post was made from; a pending edit
        is dropped only if that is still the article's content (None: unknown, so the edit is kept)."""
        await self._db.write(
            "UPDATE articles SET status = 'posted', status_reason = NULL, channel_id = ?, thread_id = ?,"
            " message_id = ?, posted_at = ?, thread_step = ?,"
            " needs_edit = CASE WHEN content_hash = ? THEN 0 ELSE needs_edit END WHERE id = ?",
            (
                channel_id,
                thread_id,
                message_id,
                to_db(self._clock.now()),
                "wanted" if thread_wanted else None,
                posted_hash,
                article_id,
            ),
        )
        metrics.ARTICLES_POSTED.inc()
        log.info(
            "article %s posted (message %s)",
            article_id,
            message_id,
            extra=ids(article_id=article_id, channel_id=channel_id, thread_id=thread_id, message_id=message_id),
        )

    async def mark_edited(self, article_id: int) -> None:
        await self._db.write(
            "UPDATE articles SET needs_edit = 0, updated_at = ? WHERE id = ?", (to_db(self._clock.now()), article_id)
        )

    async def mark_failed(self, article_id: int, reason: str) -> None:
        await self._db.write(
            "UPDATE articles SET status = 'failed', status_reason = ?, needs_edit = 0 WHERE id = ?",
            (reason, article_id),
        )
        metrics.ARTICLES_FAILED.inc()

    async def reset_failed(self, feed_id: int) -> int:
        """After a feed is resumed, articles that failed because the channel was unusable get another go.

        They go back as 'posting', not 'pending': a failure may have come after Discord made the post,
        so the channel is checked for it before posting again. One whose message is known is posted.
        """
        retried = await self._db.write(
            "UPDATE articles SET status = CASE WHEN message_id IS NOT NULL THEN 'posted' ELSE 'posting' END,"
            " status_reason = NULL WHERE feed_id = ? AND status = 'failed'",
            (feed_id,),
        )
        await self._db.write(
            "UPDATE articles SET thread_step = 'wanted' WHERE feed_id = ? AND thread_step = 'given_up'", (feed_id,)
        )
        return retried

    async def needing_archive(self, feed_id: int, since: datetime, limit: int) -> list[ArticleRow]:
        """Articles posted with a thread since `since` whose "From the archives" reply is not handled yet."""
        rows = await self._db.fetchall(
            "SELECT * FROM articles WHERE feed_id = ? AND status = 'posted' AND thread_id IS NOT NULL"
            " AND archive_state IS NULL AND posted_at >= ? ORDER BY posted_at, id LIMIT ?",
            (feed_id, to_db(since), limit),
        )
        return [ArticleRow.from_row(r) for r in rows]

    async def mark_archive(self, article_id: int, state: str) -> None:
        await self._db.write("UPDATE articles SET archive_state = ? WHERE id = ?", (state, article_id))

    async def posted_in_guild_sharing(
        self, guild_id: int, categories: list[str], exclude_id: int, limit: int
    ) -> list[ArticleRow]:
        """Articles posted in a server that share one of `categories` (case-insensitive), newest first."""
        keys = sorted({c.strip().lower() for c in categories if c.strip()})[:20]
        if not keys:
            return []
        marks = ", ".join("?" for _ in keys)
        # EXISTS, not a join with DISTINCT: PostgreSQL wants a DISTINCT query's ORDER BY in its select list.
        values = json_array_values(self._db.dialect, "a.categories", "c")
        rows = await self._db.fetchall(
            "SELECT a.* FROM articles a JOIN feeds f ON f.id = a.feed_id"
            " WHERE f.guild_id = ? AND a.status = 'posted' AND a.id != ?"
            f" AND EXISTS (SELECT 1 FROM {values} WHERE lower(c.value) IN ({marks}))"
            " ORDER BY coalesce(a.published_at, a.posted_at) DESC, a.id DESC LIMIT ?",
            (guild_id, exclude_id, *keys, limit),
        )
        return [ArticleRow.from_row(r) for r in rows]

    async def find(self, feed_id: int, key: str) -> ArticleRow | None:
        """By guid or link (for `/feed diagnose`)."""
        row = await self._db.fetchone(
            "SELECT * FROM articles WHERE feed_id = ? AND (guid = ? OR link = ?) ORDER BY id DESC LIMIT 1",
            (feed_id, key, key),
        )
        return ArticleRow.from_row(row) if row else None

    async def by_thread(self, thread_id: int) -> ArticleRow | None:
        row = await self._db.fetchone("SELECT * FROM articles WHERE thread_id = ?", (thread_id,))
        return ArticleRow.from_row(row) if row else None

    async def get(self, article_id: int) -> ArticleRow | None:
        row = await self._db.fetchone("SELECT * FROM articles WHERE id = ?", (article_id,))
        return ArticleRow.from_row(row) if row else None

    async def counts(self, feed_id: int) -> dict[str, int]:
        rows = await self._db.fetchall(
            "SELECT status, count(*) AS n FROM articles WHERE feed_id = ? GROUP BY status", (feed_id,)
        )
        return {r["status"]: int(r["n"]) for r in rows}


_INSERT_ARTICLE = (
    "INSERT INTO articles (feed_id, guid, title, link, summary, published_at, content_hash, status,"
    " status_reason, categories, first_seen_at, author, image_url, link_key)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (feed_id, guid) DO NOTHING"
)
# Statuses of an article that is, or is about to be, in its channel ('seen' ones never will be).
_IN_CHANNEL = "('pending', 'posting', 'posted', 'failed')"


def _in_channel_already(conn: sqlite3.Connection, channel_id: int, feed_id: int, key: str, guid: str) -> int | None:
    """The id of another feed of the channel that has this article (by normalised link, then guid)."""
    for column, value in (("link_key", key), ("guid", guid)):
        if not value:
            continue
        row = conn.execute(
            f"SELECT a.feed_id FROM articles a JOIN feeds f ON f.id = a.feed_id WHERE a.{column} = ?"
            f" AND a.feed_id != ? AND f.channel_id = ? AND a.status IN {_IN_CHANNEL} LIMIT 1",
            (value, feed_id, channel_id),
        ).fetchone()
        if row is not None:
            return int(row[0])
    return None


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


def _only(guilds: frozenset[int] | None) -> tuple[str, tuple[int, ...]]:
    """A `guild_id IN (...)` condition for the served servers; none when every server is served."""
    if guilds is None:
        return "", ()
    ids = tuple(sorted(guilds))
    return f" AND guild_id IN ({', '.join('?' * len(ids))})", ids
