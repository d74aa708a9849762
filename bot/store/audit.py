"""The audit log: who did what to which entity, and when."""

from __future__ import annotations

import json
from typing import Any

import aiosqlite

from bot.clock import Clock, to_db
from bot.store.database import Database

_INSERT = "INSERT INTO audit_log (guild_id, actor_id, action, entity, detail, created_at) VALUES (?, ?, ?, ?, ?, ?)"


async def insert_audit(
    conn: aiosqlite.Connection,
    *,
    guild_id: int | None,
    actor_id: int | None,
    action: str,
    entity: str | None,
    detail: dict[str, Any],
    created_at: str | None,
) -> None:
    """One audit row inside the caller's open transaction, so it commits with the change it records."""
    await conn.execute(_INSERT, (guild_id, actor_id, action, entity, json.dumps(detail), created_at))


class AuditRepo:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def record(
        self,
        action: str,
        *,
        guild_id: int | None,
        actor_id: int | None,
        entity: str | None = None,
        detail: dict[str, Any] | None = None,
        conn: aiosqlite.Connection | None = None,
    ) -> None:
        """Record an action; pass `conn` to make it part of an open transaction."""
        now = to_db(self._clock.now())
        if conn is not None:
            await insert_audit(
                conn,
                guild_id=guild_id,
                actor_id=actor_id,
                action=action,
                entity=entity,
                detail=detail or {},
                created_at=now,
            )
        else:
            await self._db.write(_INSERT, (guild_id, actor_id, action, entity, json.dumps(detail or {}), now))

    async def for_entity(self, entity: str) -> list[dict[str, Any]]:
        rows = await self._db.fetchall("SELECT * FROM audit_log WHERE entity = ? ORDER BY id", (entity,))
        return [dict(row) for row in rows]
