"""Per-server settings (made from Discord with `/readersviews setup`) and bot-wide meta values."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from bot.clock import Clock, to_db
from bot.store.audit import insert_audit
from bot.store.database import Database

SettingKind = Literal["channel", "role", "text", "bool", "int"]


@dataclass(frozen=True)
class SettingSpec:
    key: str
    kind: SettingKind
    label: str
    help: str


# Every per-server setting, in the order /readersviews settings shows them. The setup command's
# option for a setting is named after its key without the `_id` suffix.
SETTINGS: dict[str, SettingSpec] = {
    spec.key: spec
    for spec in (
        SettingSpec("alert_channel_id", "channel", "Alert channel", "where the bot reports problems (feeds, site)"),
        SettingSpec("review_channel_id", "channel", "Review channel", "where editors review submitted letters"),
        SettingSpec("editor_role_id", "role", "Editor role", "members who review letters"),
        SettingSpec("organizer_role_id", "role", "Organizer role", "members who run statements"),
    )
}


def setup_option(key: str) -> str:
    """The `/readersviews setup` option that sets `key`."""
    return key.removesuffix("_id")


class GuildSettingsRepo:
    def __init__(self, db: Database, clock: Clock, seeds: dict[int, dict[str, Any]] | None = None) -> None:
        self._db = db
        self._clock = clock
        self._seeds = seeds or {}

    async def get_all(self, guild_id: int) -> dict[str, Any]:
        """Stored values over file seeds; keys never set are absent."""
        values = {k: v for k, v in self._seeds.get(guild_id, {}).items() if v is not None}
        rows = await self._db.fetchall("SELECT key, value FROM guild_settings WHERE guild_id = ?", (guild_id,))
        for row in rows:
            values[row["key"]] = json.loads(row["value"])
        return {k: v for k, v in values.items() if v is not None}

    async def get(self, guild_id: int, key: str) -> Any:
        return (await self.get_all(guild_id)).get(key)

    async def set_many(self, guild_id: int, values: dict[str, Any], *, actor_id: int | None) -> None:
        now = to_db(self._clock.now())
        unknown = set(values) - set(SETTINGS)
        if unknown:
            raise KeyError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        async with self._db.transaction() as conn:
            for key, value in values.items():
                await conn.execute(
                    "INSERT INTO guild_settings (guild_id, key, value, updated_at, updated_by) VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT (guild_id, key) DO UPDATE SET value = excluded.value,"
                    " updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                    (guild_id, key, json.dumps(value), now, actor_id),
                )
            await insert_audit(
                conn,
                guild_id=guild_id,
                actor_id=actor_id,
                action="settings.update",
                entity=f"guild:{guild_id}",
                detail=values,
                created_at=now,
            )


class MetaRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, key: str) -> str | None:
        row = await self._db.fetchone("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else str(row["value"])

    async def set(self, key: str, value: str) -> None:
        await self._db.write(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
