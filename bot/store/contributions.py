"""Readers' views: members' replies recorded from article threads, and the letters made of them.

Review actions use optimistic concurrency: every change names the `version` it read and bumps it
(`UPDATE ... WHERE id = ? AND version = ?`), so of two editors clicking at once exactly one wins.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiosqlite

from bot.clock import Clock, from_db, to_db
from bot.store.database import Database
from bot.store.dialect import POSTGRES

# Letters whose site copy exists or is on its way: never deleted by /letter forget or the purge.
LIVE_STATES = ("approved", "published")
# A letter an editor is looking at (or can still be asked about).
OPEN_STATES = ("submitted", "nominated")


LETTER_ENTITY = "letter:"


def letter_id_of(entity: str) -> int | None:
    """The letter an outbox or site entity names (the inverse of `Contribution.entity`); None if none."""
    ident = entity.removeprefix(LETTER_ENTITY)
    return int(ident) if ident != entity and ident.isdigit() else None


@dataclass(frozen=True)
class NewContribution:
    guild_id: int
    message_id: int | None
    channel_id: int
    author_id: int
    author_name: str
    content: str
    created_at: datetime
    article_id: int | None = None
    reply_to_message_id: int | None = None


@dataclass(frozen=True)
class Contribution:
    """One row of `contributions`: a recorded reply, or a letter in some review state."""

    id: int
    guild_id: int
    message_id: int | None
    channel_id: int
    article_id: int | None
    reply_to_message_id: int | None
    author_id: int
    author_name: str
    content: str
    original_content: str | None
    created_at: datetime
    edited_at: datetime | None
    deleted_at: datetime | None
    state: str
    consent: str
    byline: str | None
    location: str | None
    reviewer_id: int | None
    review_note: str | None
    flags: tuple[str, ...]
    review_message_id: int | None
    review_channel_id: int | None
    remote_id: str | None
    remote_url: str | None
    submitted_at: datetime | None
    decided_at: datetime | None
    version: int
    remote_status: str | None = None
    """The post's status on the site as last seen (pending, draft, publish, trash, deleted; None: unknown)."""

    @property
    def entity(self) -> str:
        return f"{LETTER_ENTITY}{self.id}"

    @classmethod
    def from_row(cls, row: aiosqlite.Row) -> Contribution:
        created = from_db(row["created_at"])
        assert created is not None
        return cls(
            id=row["id"],
            guild_id=row["guild_id"],
            message_id=row["message_id"],
            channel_id=row["channel_id"],
            article_id=row["article_id"],
            reply_to_message_id=row["reply_to_message_id"],
            author_id=row["author_id"],
            author_name=row["author_name"],
            content=row["content"],
            original_content=row["original_content"],
            created_at=created,
            edited_at=from_db(row["edited_at"]),
            deleted_at=from_db(row["deleted_at"]),
            state=row["state"],
            consent=row["consent"],
            byline=row["byline"],
            location=row["location"],
            reviewer_id=row["reviewer_id"],
            review_note=row["review_note"],
            flags=tuple(json.loads(row["flags"] or "[]")),
            review_message_id=row["review_message_id"],
            review_channel_id=row["review_channel_id"],
            remote_id=row["remote_id"],
            remote_url=row["remote_url"],
            submitted_at=from_db(row["submitted_at"]),
            decided_at=from_db(row["decided_at"]),
            version=row["version"],
            remote_status=row["remote_status"] if "remote_status" in row.keys() else None,  # noqa: SIM118 (sqlite3.Row)
        )


@dataclass(frozen=True)
class ArticleRef:
    """What a letter needs to know about the article it answers."""

    id: int
    title: str
    link: str
    thread_id: int | None
    channel_id: int | None


_INSERT = (
    "INSERT INTO contributions (guild_id, message_id, channel_id, article_id, reply_to_message_id,"
    " author_id, author_name, content, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (message_id) DO NOTHING"
)

# Columns a state change may set (everything else is fixed at recording time).
_UPDATABLE = frozenset(
    {
        "content",
        "original_content",
        "state",
        "consent",
        "byline",
        "location",
        "reviewer_id",
        "review_note",
        "flags",
        "review_message_id",
        "review_channel_id",
        "remote_id",
        "remote_url",
        "submitted_at",
        "decided_at",
        "edited_at",
        "deleted_at",
        "new_account",
    }
)


def contribution_row(
    guild_id: int,
    message_id: int | None,
    channel_id: int,
    article_id: int | None,
    reply_to_message_id: int | None,
    author_id: int,
    author_name: str,
    content: str,
    created_at: datetime,
) -> tuple[object, ...]:
    """The row `record_rows` inserts, without building a NewContribution (cheaper per message)."""
    return (
        guild_id,
        message_id,
        channel_id,
        article_id,
        reply_to_message_id,
        author_id,
        author_name,
        content,
        to_db(created_at),
    )


def row_of(c: NewContribution) -> tuple[object, ...]:
    """The insert row for a NewContribution."""
    return contribution_row(
        c.guild_id,
        c.message_id,
        c.channel_id,
        c.article_id,
        c.reply_to_message_id,
        c.author_id,
        c.author_name,
        c.content,
        c.created_at,
    )


_WAITING_NEW = "SELECT count(*) FROM contributions WHERE guild_id = ? AND state = 'submitted' AND new_account = 1"


def _db_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return to_db(value)
    if isinstance(value, (tuple, list)):
        return json.dumps(list(value))
    return value


class ContributionsRepo:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    @property
    def db(self) -> Database:
        return self._db

    # -- recording --------------------------------------------------------------------------------

    async def record(self, contribution: NewContribution) -> int:
        """Record one reply (idempotent on the Discord message id); returns the row id or 0 if known."""
        return await self._db.write(_INSERT, row_of(contribution))

    async def record_rows(self, rows: list[tuple[object, ...]]) -> None:
        """Group commit of ready-made rows (see `contribution_row`): the recording hot path."""
        await self._db.write_many(_INSERT, rows)

    async def get_by_message(self, message_id: int) -> aiosqlite.Row | None:
        return await self._db.fetchone("SELECT * FROM contributions WHERE message_id = ?", (message_id,))

    async def by_message(self, message_id: int) -> Contribution | None:
        row = await self.get_by_message(message_id)
        return Contribution.from_row(row) if row else None

    async def get(self, contribution_id: int) -> Contribution | None:
        row = await self._db.fetchone("SELECT * FROM contributions WHERE id = ?", (contribution_id,))
        return Contribution.from_row(row) if row else None

    async def insert_letter(self, conn: aiosqlite.Connection, contribution: NewContribution) -> int:
        """Inside a transaction: a letter written with /letter submit (no Discord message behind it); its id."""
        cursor = await conn.execute(
            "INSERT INTO contributions (guild_id, message_id, channel_id, article_id, reply_to_message_id,"
            " author_id, author_name, content, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            row_of(contribution),
        )
        row_id = cursor.lastrowid
        await cursor.close()
        return int(row_id or 0)

    async def apply_edit(self, message_id: int, content: str, edited_at: datetime) -> None:
        """The member edited their message: the record follows while no editor has approved or edited it.

        A withdrawn letter follows too (it may be submitted again, and is reviewed afresh then), so
        an earlier editor's edit of it is dropped along with the text it edited.
        """
        await self._db.write(
            "UPDATE contributions SET content = ?, original_content = NULL, edited_at = ?, version = version + 1"
            " WHERE message_id = ? AND (state IN ('recorded', 'nominated', 'declined', 'withdrawn')"
            " OR (state = 'submitted' AND original_content IS NULL))",
            (content, to_db(edited_at), message_id),
        )

    async def keep_writer_edit(self, message_id: int, content: str, edited_at: datetime) -> None:
        """The writer edited a letter in review that an editor has edited: keep their text beside the editor's.

        The editor's text stays what would be published; the writer's new text replaces the kept
        original, and the version moves so an Approve pressed on the older card is refused.
        """
        await self._db.write(
            "UPDATE contributions SET original_content = ?, edited_at = ?, version = version + 1"
            " WHERE message_id = ? AND state = 'submitted' AND original_content IS NOT NULL",
            (content, to_db(edited_at), message_id),
        )

    async def mark_deleted(self, message_ids: Iterable[int], deleted_at: datetime) -> None:
        await self._db.write_many(
            "UPDATE contributions SET deleted_at = ? WHERE message_id = ? AND deleted_at IS NULL",
            [(to_db(deleted_at), mid) for mid in message_ids],
        )

    # -- state changes ----------------------------------------------------------------------------

    async def update_if_version(
        self, conn: aiosqlite.Connection, contribution_id: int, version: int, fields: Mapping[str, Any]
    ) -> bool:
        """Inside a transaction: apply `fields` and bump the version, only if nobody changed the row since."""
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise KeyError(f"not updatable: {', '.join(sorted(unknown))}")
        sets = ", ".join(f"{name} = ?" for name in fields)
        cursor = await conn.execute(
            f"UPDATE contributions SET {sets}, version = version + 1 WHERE id = ? AND version = ?",
            (*(_db_value(v) for v in fields.values()), contribution_id, version),
        )
        changed = cursor.rowcount
        await cursor.close()
        return changed == 1

    async def get_in(self, conn: aiosqlite.Connection, contribution_id: int) -> Contribution | None:
        async with conn.execute("SELECT * FROM contributions WHERE id = ?", (contribution_id,)) as cursor:
            row = await cursor.fetchone()
        return Contribution.from_row(row) if row else None

    async def set_review_message(self, contribution_id: int, channel_id: int, message_id: int) -> None:
        """Where the queue message lives (not a review decision: the version is left alone)."""
        await self._db.write(
            "UPDATE contributions SET review_channel_id = ?, review_message_id = ? WHERE id = ?",
            (channel_id, message_id, contribution_id),
        )

    async def add_flag(self, contribution_id: int, flag: str) -> None:
        """Append a note for editors (e.g. deleted on Discord after approval); the version is left alone."""
        if self._db.dialect == POSTGRES:
            sql = (
                "UPDATE contributions SET flags = (flags::jsonb || jsonb_build_array(?::text))::text"
                " WHERE id = ? AND NOT flags::jsonb @> jsonb_build_array(?::text)"
            )
        else:
            sql = (
                "UPDATE contributions SET flags = json_insert(flags, '$[#]', ?)"
                " WHERE id = ? AND NOT EXISTS (SELECT 1 FROM json_each(flags) WHERE value = ?)"
            )
        await self._db.write(sql, (flag, contribution_id, flag))

    async def set_site_status(
        self,
        conn: aiosqlite.Connection,
        contribution_id: int,
        remote_id: str | None,
        url: str | None,
        status: str | None,
        checked_at: datetime,
    ) -> None:
        """Inside the caller's transaction: where the letter is on the site and what the site says of it."""
        await conn.execute(
            "UPDATE contributions SET remote_id = coalesce(?, remote_id), remote_url = coalesce(?, remote_url),"
            " remote_status = ?, remote_checked_at = ? WHERE id = ?",
            (remote_id, url, status, to_db(checked_at), contribution_id),
        )

    async def awaiting_site_editors(self, statuses: tuple[str, ...], *, limit: int = 100) -> list[Contribution]:
        """Published letters whose post is still with the site's editors, least recently checked first."""
        marks = ",".join("?" * len(statuses))
        rows = await self._db.fetchall(
            f"SELECT * FROM contributions WHERE state = 'published' AND remote_id IS NOT NULL"
            f" AND remote_status IN ({marks}) ORDER BY coalesce(remote_checked_at, ''), id LIMIT ?",
            (*statuses, limit),
        )
        return [Contribution.from_row(row) for row in rows]

    async def in_state(self, state: str, *, limit: int = 200) -> list[Contribution]:
        rows = await self._db.fetchall(
            "SELECT * FROM contributions WHERE state = ? ORDER BY id LIMIT ?", (state, limit)
        )
        return [Contribution.from_row(row) for row in rows]

    # -- queries ----------------------------------------------------------------------------------

    async def by_author(self, guild_id: int, author_id: int, *, limit: int = 25) -> list[Contribution]:
        rows = await self._db.fetchall(
            "SELECT * FROM contributions WHERE guild_id = ? AND author_id = ? ORDER BY id DESC LIMIT ?",
            (guild_id, author_id, limit),
        )
        return [Contribution.from_row(r) for r in rows]

    async def count_by_author(self, guild_id: int, author_id: int) -> dict[str, int]:
        rows = await self._db.fetchall(
            "SELECT state, count(*) FROM contributions WHERE guild_id = ? AND author_id = ? GROUP BY state",
            (guild_id, author_id),
        )
        return {r[0]: int(r[1]) for r in rows}

    async def submissions_since(self, guild_id: int, author_id: int, since: datetime) -> int:
        """Letters this member sent to the queue since `since` (for the daily limit)."""
        return int(
            await self._db.scalar(
                "SELECT count(*) FROM contributions WHERE guild_id = ? AND author_id = ? AND submitted_at >= ?",
                (guild_id, author_id, to_db(since)),
            )
            or 0
        )

    async def submissions_since_in(
        self, conn: aiosqlite.Connection, guild_id: int, author_id: int, since: datetime
    ) -> int:
        """Inside a transaction: `submissions_since`, so the daily limit is checked and counted at once."""
        async with conn.execute(
            "SELECT count(*) FROM contributions WHERE guild_id = ? AND author_id = ? AND submitted_at >= ?",
            (guild_id, author_id, to_db(since)),
        ) as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def waiting_from_new_accounts(self, guild_id: int) -> int:
        """Letters of new accounts waiting for review in this server."""
        return int(await self._db.scalar(_WAITING_NEW, (guild_id,)) or 0)

    async def waiting_from_new_accounts_in(self, conn: aiosqlite.Connection, guild_id: int) -> int:
        """Inside a transaction: letters of new accounts waiting for review in this server."""
        async with conn.execute(_WAITING_NEW, (guild_id,)) as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def same_text(self, guild_id: int, content: str, exclude_id: int) -> int | None:
        """The id of an earlier letter with this exact text (recorded replies don't count)."""
        value = await self._db.scalar(
            "SELECT id FROM contributions WHERE guild_id = ? AND state NOT IN ('recorded', 'declined')"
            " AND content = ? AND id != ? ORDER BY id LIMIT 1",
            (guild_id, content, exclude_id),
        )
        return int(value) if value is not None else None

    async def for_digest(self, guild_id: int, since: datetime, until: datetime) -> list[Contribution]:
        rows = await self._db.fetchall(
            "SELECT * FROM contributions WHERE guild_id = ? AND state IN ('approved', 'published')"
            " AND decided_at >= ? AND decided_at < ? ORDER BY decided_at, id",
            (guild_id, to_db(since), to_db(until)),
        )
        return [Contribution.from_row(r) for r in rows]

    async def unposted_queue(self, guild_id: int, *, limit: int = 20) -> list[Contribution]:
        """Submitted letters that have no queue message yet (the review channel was not set)."""
        rows = await self._db.fetchall(
            "SELECT * FROM contributions WHERE guild_id = ? AND state = 'submitted' AND review_message_id IS NULL"
            " ORDER BY id LIMIT ?",
            (guild_id, limit),
        )
        return [Contribution.from_row(r) for r in rows]

    async def forget(self, guild_id: int, author_id: int) -> list[Contribution]:
        """Delete a member's unpublished contributions; returns what was deleted."""
        async with self._db.transaction() as conn:
            async with conn.execute(
                "SELECT * FROM contributions WHERE guild_id = ? AND author_id = ? AND state NOT IN (?, ?)",
                (guild_id, author_id, *LIVE_STATES),
            ) as cursor:
                doomed = [Contribution.from_row(r) for r in await cursor.fetchall()]
            if doomed:
                marks = ",".join("?" * len(doomed))
                await conn.execute(f"DELETE FROM contributions WHERE id IN ({marks})", [c.id for c in doomed])
        return doomed

    async def purge_recorded(self, before: datetime) -> int:
        """Recorded replies nobody submitted (or declined nominations) expire after the retention period."""
        return await self._db.write(
            "DELETE FROM contributions WHERE state IN ('recorded', 'declined') AND created_at < ?", (to_db(before),)
        )

    # -- articles, as letters see them --------------------------------------------------------------

    async def article(self, article_id: int, *, guild_id: int | None = None) -> ArticleRef | None:
        """The article; with `guild_id`, only if one of that server's feeds posted it."""
        if guild_id is None:
            row = await self._db.fetchone(
                "SELECT id, title, link, thread_id, channel_id FROM articles WHERE id = ?", (article_id,)
            )
        else:
            row = await self._db.fetchone(
                "SELECT a.id, a.title, a.link, a.thread_id, coalesce(a.channel_id, f.channel_id) FROM articles a"
                " JOIN feeds f ON f.id = a.feed_id WHERE a.id = ? AND f.guild_id = ?",
                (article_id, guild_id),
            )
        return ArticleRef(row[0], row[1], row[2], row[3], row[4]) if row else None

    async def article_for_thread(self, thread_id: int) -> int | None:
        # A text post's thread has the id of its message, recorded before the thread is made: a reply
        # that arrives before the thread itself is recorded still belongs to the article.
        value = await self._db.scalar(
            "SELECT id FROM articles WHERE thread_id = ? OR (message_id = ? AND thread_step = 'wanted') LIMIT 1",
            (thread_id, thread_id),
        )
        return int(value) if value is not None else None

    async def recent_articles(self, guild_id: int, query: str = "", *, limit: int = 25) -> list[ArticleRef]:
        """Posted articles of this server, newest first, optionally filtered by title."""
        rows = await self._db.fetchall(
            "SELECT a.id, a.title, a.link, a.thread_id, coalesce(a.channel_id, f.channel_id) FROM articles a"
            " JOIN feeds f ON f.id = a.feed_id"
            " WHERE f.guild_id = ? AND a.status = 'posted' AND a.title LIKE ? ESCAPE '\\'"
            " ORDER BY coalesce(a.posted_at, a.first_seen_at) DESC, a.id DESC LIMIT ?",
            (guild_id, "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%", limit),
        )
        return [ArticleRef(r[0], r[1], r[2], r[3], r[4]) for r in rows]
