"""The articles seen in each feed: dedupe by guid per feed (and by link per channel), and each one's post."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiosqlite

from bot import metrics
from bot.clock import Clock, from_db, to_db
from bot.logs import ids
from bot.store.database import Database
from bot.store.dialect import json_array_values

log = logging.getLogger(__name__)


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


class ArticlesRepo:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def backfill_link_keys(self, key_of: Callable[[str], str], batch: int = 1000) -> int:
        """Fill in `link_key` for articles stored before it existed (migration 0010 left them ''), so
        that the cross-feed dedupe sees them. Returns how many were filled; cheap once done."""
        last = filled = 0
        while True:
            rows = await self._db.fetchall(
                "SELECT id, link FROM articles WHERE link_key = '' AND link != '' AND id > ? ORDER BY id LIMIT ?",
                (last, batch),
            )
            if not rows:
                return filled
            last = rows[-1]["id"]
            keys = [(key, row["id"]) for row in rows if (key := key_of(row["link"]))]

            def fill(conn: sqlite3.Connection, keys: list[tuple[str, int]] = keys) -> None:
                conn.executemany("UPDATE articles SET link_key = ? WHERE id = ? AND link_key = ''", keys)

            await self._db.run_in_transaction(fill)
            filled += len(keys)

    async def known(self, feed_id: int) -> dict[str, tuple[int, str, str, str | None, str | None]]:
        """guid -> (article id, content hash, status, author, image URL) for everything seen in a feed."""
        rows = await self._db.fetchall(
            "SELECT id, guid, content_hash, status, author, image_url FROM articles WHERE feed_id = ?", (feed_id,)
        )
        return {r["guid"]: (r["id"], r["content_hash"], r["status"], r["author"], r["image_url"]) for r in rows}

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

    async def mark_changed(
        self,
        article_id: int,
        *,
        title: str,
        summary: str,
        content_hash: str,
        author: str | None = None,
        image_url: str | None = None,
    ) -> None:
        """A posted article's title, summary, byline or image changed on the site: edit the post later.

        Also while 'posting': the interrupted post, if found, was made from the older version.
        """
        await self._db.write(
            "UPDATE articles SET title = ?, summary = ?, content_hash = ?, author = ?, image_url = ?,"
            " needs_edit = CASE WHEN status IN ('posted', 'posting') THEN 1 ELSE 0 END WHERE id = ?",
            (title, summary, content_hash, author, image_url, article_id),
        )

    async def record_byline(self, article_id: int, *, author: str | None, image_url: str | None) -> None:
        """Byline and image of an article stored before they were recorded: kept, the post left as it is."""
        await self._db.write(
            "UPDATE articles SET author = ?, image_url = ? WHERE id = ?", (author, image_url, article_id)
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
        self,
        guild_id: int,
        categories: list[str],
        exclude_id: int,
        limit: int,
        channel_ids: Collection[int] | None = None,
    ) -> list[ArticleRow]:
        """Articles posted in a server (with `channel_ids`, in those of its channels) that share one of
        `categories` (case-insensitive), newest first."""
        keys = sorted({c.strip().lower() for c in categories if c.strip()})[:20]
        if not keys or (channel_ids is not None and not channel_ids):
            return []
        marks = ", ".join("?" for _ in keys)
        channels = sorted(channel_ids or ())
        in_channels = f" AND f.channel_id IN ({', '.join('?' for _ in channels)})" if channel_ids is not None else ""
        # EXISTS, not a join with DISTINCT: PostgreSQL wants a DISTINCT query's ORDER BY in its select list.
        values = json_array_values(self._db.dialect, "a.categories", "c")
        rows = await self._db.fetchall(
            "SELECT a.* FROM articles a JOIN feeds f ON f.id = a.feed_id"
            " WHERE f.guild_id = ? AND a.status = 'posted' AND a.id != ?"
            f" AND EXISTS (SELECT 1 FROM {values} WHERE lower(c.value) IN ({marks})){in_channels}"
            " ORDER BY coalesce(a.published_at, a.posted_at) DESC, a.id DESC LIMIT ?",
            (guild_id, exclude_id, *keys, *channels, limit),
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
