"""Readers' views: members' replies recorded from article threads, and the letters made of them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import aiosqlite

from bot.clock import Clock, to_db
from bot.store.database import Database


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


_INSERT = (
    "INSERT INTO contributions (guild_id, message_id, channel_id, article_id, reply_to_message_id,"
    " author_id, author_name, content, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (message_id) DO NOTHING"
)


def _row(c: NewContribution) -> tuple[object, ...]:
    return (
        c.guild_id,
        c.message_id,
        c.channel_id,
        c.article_id,
        c.reply_to_message_id,
        c.author_id,
        c.author_name,
        c.content,
        to_db(c.created_at),
    )


class ContributionsRepo:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def record(self, contribution: NewContribution) -> int:
        """Record one reply (idempotent on the Discord message id); returns the row id or 0 if known."""
        return await self._db.write(_INSERT, _row(contribution))

    async def record_many(self, contributions: list[NewContribution]) -> None:
        """Group commit: many replies in one transaction."""
        await self._db.write_many(_INSERT, [_row(c) for c in contributions])

    async def get_by_message(self, message_id: int) -> aiosqlite.Row | None:
        return await self._db.fetchone("SELECT * FROM contributions WHERE message_id = ?", (message_id,))
