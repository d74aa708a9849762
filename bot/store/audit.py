"""The audit log: who did what to which entity, and when."""

from __future__ import annotations

import json
from typing import Any

import aiosqlite

from bot.clock import Clock, to_db
from bot.store.database import Database


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
        sql = "INSERT INTO audit_log (guild_id, actor_id, action, entity, detail, created_at) VALUES (?, ?, ?, ?, ?, ?)"
        params = (guild_id, actor_id, action, entity, json.dumps(detail or {}), to_db(self._clock.now()))
        if conn is not None:
            await conn.execute(sql, params)
        else:
            await self._db.write(sql, params)

    async def for_entity(self, entity: str) -> list[dict[str, Any]]:
        rows = await self._db.fetchall("SELECT * FROM audit_log WHERE entity = ? ORDER BY id", (entity,))
        return [dict(row) for row in rows]
