"""The store: one database (SQLite, or PostgreSQL) behind small repositories, one per aggregate.

The repositories speak plain SQL with `?` parameters; on PostgreSQL, bot.store.dialect rewrites it
where the two differ. `Store.open` applies migrations, so a fresh database is ready to use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.clock import Clock
from bot.store.articles import ArticlesRepo
from bot.store.audit import AuditRepo
from bot.store.contributions import ContributionsRepo
from bot.store.database import Database, StoreError, latest_version
from bot.store.feeds import FeedsRepo
from bot.store.notices import NoticesRepo
from bot.store.outbox import OutboxRepo
from bot.store.settings import GuildSettingsRepo, MetaRepo
from bot.store.statements import StatementsRepo

__all__ = ["Store", "StoreError", "latest_version"]


class Store:
    def __init__(self, db: Database, clock: Clock, seeds: dict[int, dict[str, Any]] | None = None) -> None:
        self.db = db
        self.clock = clock
        self.settings = GuildSettingsRepo(db, clock, seeds)
        self.meta = MetaRepo(db)
        self.audit = AuditRepo(db, clock)
        self.contributions = ContributionsRepo(db, clock)
        self.feeds = FeedsRepo(db, clock)
        self.articles = ArticlesRepo(db, clock)
        self.outbox = OutboxRepo(db, clock)
        self.notices = NoticesRepo(db, clock)
        self.statements = StatementsRepo(db, clock)

    @classmethod
    async def open(
        cls,
        path: Path | str,
        clock: Clock,
        *,
        seeds: dict[int, dict[str, Any]] | None = None,
        migrate: bool = True,
        password: str | None = None,
    ) -> Store:
        """`path`: a SQLite file, or a `postgresql://` URL (`password` for it, else libpq's PGPASSWORD/.pgpass)."""
        return cls(await Database.open(path, migrate=migrate, password=password), clock, seeds)

    async def close(self) -> None:
        await self.db.close()
