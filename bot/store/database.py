"""The SQLite connection: WAL, foreign keys, numbered migrations, one writer at a time.

All writes go through `Database.transaction()` (a unit of work, BEGIN IMMEDIATE .. COMMIT) or
`Database.write()` (one autocommitted statement). Both hold one asyncio lock, because a single
aiosqlite connection is shared: without the lock, a write from one coroutine would land inside
another coroutine's open transaction and share its fate.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from bot import metrics

T = TypeVar("T")

log = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class StoreError(Exception):
    """A database problem phrased for the operator (one line)."""


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every numbered migration shipped in bot/store/migrations."""
    found = []
    for entry in resources.files("bot.store").joinpath("migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    for expected, (version, name, _) in enumerate(found, start=1):
        if version != expected:
            raise StoreError(f"migration {name} is out of sequence (expected {expected:04d}_...)")
    return found


def latest_version() -> int:
    return len(migration_files())


class Database:
    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path | str, *, migrate: bool = True) -> Database:
        """Open (creating if needed) and bring the schema up to date."""
        uri = str(path).startswith("file:")  # e.g. file:/srv/rv.sqlite3?mode=ro
        path = Path(path)
        if str(path) != ":memory:" and not uri:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create database folder {path.parent}: {exc.strerror}") from None
        try:
            conn = await aiosqlite.connect(str(path), isolation_level=None, uri=uri)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {path}: {exc}") from None
        conn.row_factory = aiosqlite.Row
        db = cls(conn, path)
        try:
            await db._configure()
            version = await db.schema_version()
            latest = latest_version()
            if version > latest:
                raise StoreError(
                    f"database {path} has schema version {version}, newer than this readersviews "
                    f"understands ({latest}); upgrade readersviews or use a backup"
                )
            if migrate:
                await db.migrate()
        except BaseException:
            await conn.close()
            raise
        return db

    async def _configure(self) -> None:
        try:
            await self.conn.execute("PRAGMA busy_timeout = 5000")
            mode = await self._scalar("PRAGMA journal_mode = WAL")
            await self.conn.execute("PRAGMA synchronous = NORMAL")
            await self.conn.execute("PRAGMA foreign_keys = ON")
            # A read-only file opens fine; find out now rather than at the first write.
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                version = await self._scalar("PRAGMA user_version")
                await self.conn.execute(f"PRAGMA user_version = {int(version)}")
            finally:
                await self.conn.execute("ROLLBACK")
        except sqlite3.OperationalError as exc:
            if "readonly" in str(exc) or "read-only" in str(exc):
                raise StoreError(f"database {self.path} is read-only: check the file's permissions") from None
            raise StoreError(f"cannot use database {self.path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"database {self.path} is not a readersviews SQLite database: {exc}") from None
        if str(self.path) != ":memory:" and str(mode).lower() != "wal":
            log.warning("database %s: journal mode is %s, not WAL", self.path, mode)

    async def schema_version(self) -> int:
        return int(await self._scalar("PRAGMA user_version") or 0)

    async def migrate(self) -> list[str]:
        """Apply every migration newer than the DB's version, each in its own transaction."""
        applied = []
        current = await self.schema_version()
        for version, name, sql in migration_files():
            if version <= current:
                continue
            async with self._lock:
                # executescript would COMMIT first; run statements one by one inside our transaction.
                await self.conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _split_sql(sql):
                        await self.conn.execute(statement)
                    await self.conn.execute(f"PRAGMA user_version = {version}")
                    await self.conn.execute("COMMIT")
                except BaseException:
                    await self.conn.execute("ROLLBACK")
                    raise
            log.info("applied migration %s", name)
            applied.append(name)
        return applied

    async def close(self) -> None:
        async with self._lock:
            await self.conn.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One unit of work: everything inside commits together or not at all."""
        async with self._lock:
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                await self.conn.execute("ROLLBACK")
                raise
            await self.conn.execute("COMMIT")
            metrics.DB_WRITES.inc()

    async def run_in_transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(connection)` on the database's thread as one transaction, in one hop.

        Each `await` on aiosqlite is a round trip to its thread, and under load the way back waits
        for a full turn of the event loop. A hot path with many statements (a batch of sign-ons:
        four lookups, an upsert, an update) writes them as plain synchronous sqlite3 code here
        instead: measured in a sign-on burst, 16 hops per batch became 1.

        aiosqlite offers no public way to run a callable on its thread; this uses `_execute`, its
        one internal entry point for that (tests/test_store.py covers it).
        """

        def body() -> T:
            raw: sqlite3.Connection = self.conn._conn
            raw.execute("BEGIN IMMEDIATE")
            try:
                result = work(raw)
            except BaseException:
                raw.execute("ROLLBACK")
                raise
            raw.execute("COMMIT")
            metrics.DB_WRITES.inc()
            return result

        async with self._lock:
            return await self.conn._execute(body)  # type: ignore[no-any-return]

    async def write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One autocommitted statement; returns lastrowid (for inserts) or rowcount."""
        async with self._lock:
            cursor = await self.conn.execute(sql, params)
            metrics.DB_WRITES.inc()
            # A finished INSERT/UPDATE cursor holds nothing; closing it would cost another thread hop.
            if cursor.rowcount == 0:
                return 0
            return int((cursor.lastrowid or 0) if sql.lstrip()[:6].upper() == "INSERT" else cursor.rowcount)

    async def write_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Many rows in one transaction (group commit), in one hop."""
        await self.run_in_transaction(lambda conn: conn.executemany(sql, rows))

    # Reads run and fetch in one hop to the connection's thread: with a cursor, another
    # coroutine's statement could run on the shared connection between execute and fetch.
    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> aiosqlite.Row | None:
        rows = await self.conn.execute_fetchall(sql, params)
        return next(iter(rows), None)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        return list(await self.conn.execute_fetchall(sql, params))

    async def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = await self.fetchone(sql, params)
        return None if row is None else row[0]

    scalar = _scalar

    async def table_counts(self) -> dict[str, int]:
        names = [
            row[0]
            for row in await self.fetchall(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        return {name: int(await self._scalar(f'SELECT count(*) FROM "{name}"')) for name in names}


def _split_sql(script: str) -> list[str]:
    """Split a migration into complete statements (sqlite3 knows where one ends)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not all(part.strip().startswith("--") or not part.strip() for part in buffer.splitlines()):
        raise StoreError(f"migration has an unterminated statement: {buffer.strip()[:60]!r}")
    return statements
