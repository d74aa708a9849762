"""Messages owed to people after a letter's site event: the writer's DM, the thread, the editor.

Each is queued in the same transaction as the change it announces, and a worker sends it and marks
it sent. (letter, event, audience) is unique, so an event seen twice (a redelivery after a crash,
a second status check) never queues a second message.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import aiosqlite

from bot.clock import Clock, to_db
from bot.store.database import Database

AUDIENCES = ("writer", "thread", "editor")


@dataclass(frozen=True, slots=True)
class Notice:
    id: int
    letter_id: int
    event: str
    audience: str
    attempts: int


class NoticesRepo:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def queue(self, conn: aiosqlite.Connection, letter_id: int, event: str, audiences: Iterable[str]) -> None:
        """Inside the caller's transaction: owe `event` to each audience (once, ever)."""
        now = to_db(self._clock.now())
        await conn.executemany(
            "INSERT OR IGNORE INTO letter_notices (letter_id, event, audience, created_at) VALUES (?, ?, ?, ?)",
            [(letter_id, event, audience, now) for audience in audiences],
        )

    async def due(self, limit: int = 50, *, max_attempts: int = 10) -> list[Notice]:
        rows = await self._db.fetchall(
            "SELECT id, letter_id, event, audience, attempts FROM letter_notices"
            " WHERE sent_at IS NULL AND attempts < ? ORDER BY id LIMIT ?",
            (max_attempts, limit),
        )
        return [Notice(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    async def mark_sent(self, notice_id: int, note: str | None = None) -> None:
        """Done (`note`: why it could not be delivered, e.g. the writer's DMs are closed)."""
        await self._db.write(
            "UPDATE letter_notices SET sent_at = ?, last_error = ? WHERE id = ?",
            (to_db(self._clock.now()), note, notice_id),
        )

    async def mark_failed(self, notice_id: int, error: str) -> None:
        await self._db.write(
            "UPDATE letter_notices SET attempts = attempts + 1, last_error = ? WHERE id = ?", (error, notice_id)
        )

    async def for_letter(self, letter_id: int) -> list[tuple[str, str, bool]]:
        """(event, audience, sent) for a letter, oldest first (for tests and status)."""
        rows = await self._db.fetchall(
            "SELECT event, audience, sent_at IS NOT NULL FROM letter_notices WHERE letter_id = ? ORDER BY id",
            (letter_id,),
        )
        return [(r[0], r[1], bool(r[2])) for r in rows]
