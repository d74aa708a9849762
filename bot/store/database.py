"""The SQLite connection: WAL, foreign keys, numbered migrations, one writer at a time.

All writes go through `Database.transaction()` (a unit of work, BEGIN IMMEDIATE .. COMMIT) or
`Database.write()` (one autocommitted statement). Both hold one asyncio lock, because a single
aiosqlite connection is shared: without the lock, a write from one coroutine would land inside
another coroutine's open transaction and share its fate.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import re
import sqlite3
import stat
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from bot import metrics
from bot.store.aiosqlite_internals import on_its_thread, raw_connection
from bot.store.dialect import SQLITE

T = TypeVar("T")

log = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class StoreError(Exception):
    """A database problem phrased for the operator (one line)."""


# Set while the current task (and tasks it starts) holds the write lock inside a unit of work: its
# reads must see its own uncommitted rows, so they run on the writing connection.
_in_unit_of_work: contextvars.ContextVar[Database | None] = contextvars.ContextVar("_in_unit_of_work", default=None)

PRIVATE_FOLDER = 0o700
PRIVATE_FILE = 0o600
DB_FILE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def prepare_location(path: Path, *, create_file: bool = True) -> None:
    """Create the database's folder (0700) if missing, and make its files owner-only (0600).

    The folder mode is applied only to folders created here: a folder that already exists (a home
    directory, /var/lib/...) is the operator's and is left as it is. The files are the bot's: a new
    database is created 0600 before SQLite opens it (SQLite gives -wal and -shm the database file's
    mode), and existing files readable by others are tightened at every open.
    """
    folder = path.parent
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    for created in reversed(missing):  # every folder made here is private, not only the last one
        try:
            created.mkdir(exist_ok=True)
            created.chmod(PRIVATE_FOLDER)  # mkdir's mode is filtered by the umask; be explicit
        except OSError as exc:
            raise StoreError(f"cannot create database folder {created}: {exc.strerror}") from None
    if create_file and not path.exists():
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
            path.chmod(PRIVATE_FILE)
        except FileExistsError:
            pass
        except OSError as exc:
            raise StoreError(f"cannot create database {path}: {exc.strerror}") from None
    for suffix in DB_FILE_SUFFIXES:
        tighten(Path(f"{path}{suffix}"))


def tighten(file: Path) -> None:
    """Owner-only access to one of the database's files, if it exists and others can read it."""
    try:
        st_mode = file.stat().st_mode
        mode = st_mode & 0o777
        if stat.S_ISREG(st_mode) and mode & 0o077:
            file.chmod(mode & 0o700)
            log.info("database file %s was readable by others (%o); made it owner-only", file, mode)
    except FileNotFoundError:
        pass
    except OSError as exc:  # not ours (another user's file opened read-only): leave it, SQLite will say
        log.debug("cannot tighten %s: %s", file, exc)


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
    """One writing connection (writes serialised by a lock) and, for a file database, one reading one.

    Reads (`fetchone`, `fetchall`, `scalar`) never see another task's uncommitted writes: in WAL mode
    the reading connection sees the last committed state without waiting for the writer. Inside a
    unit of work (`transaction`, `run_in_transaction`, `write`), the same task's reads run on the
    writing connection and see its own rows. Without a second connection (`:memory:`, URIs), a read
    waits for the write lock instead.
    """

    dialect = SQLITE

    def __init__(self, conn: aiosqlite.Connection, path: Path, reader: aiosqlite.Connection | None = None) -> None:
        self.conn = conn
        self.path = path
        self.location = str(path)
        self.reader = reader
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path | str, *, migrate: bool = True, password: str | None = None) -> Database:
        """Open (creating if needed) and bring the schema up to date.

        A `postgresql://` URL opens the PostgreSQL store (`password`: see bot.store.postgres).
        """
        from bot.store.postgres import PostgresDatabase, is_postgres_url

        if is_postgres_url(path):
            return await PostgresDatabase.open_url(str(path), migrate=migrate, password=password)
        uri = str(path).startswith("file:")  # e.g. file:/srv/rv.sqlite3?mode=ro
        path = Path(path)
        on_disk = str(path) != ":memory:" and not uri
        if on_disk:
            prepare_location(path)
        conn = await _connect(path, uri=uri)
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
            if on_disk:
                db.reader = await db._open_reader()
        except BaseException:
            await conn.close()
            raise
        return db

    async def _open_reader(self) -> aiosqlite.Connection:
        """The reading connection: query-only, so a bug can't write outside the lock through it."""
        reader = await _connect(self.path, uri=False)
        reader.row_factory = aiosqlite.Row
        try:
            await reader.execute("PRAGMA busy_timeout = 5000")
            await reader.execute("PRAGMA foreign_keys = ON")
            await reader.execute("PRAGMA query_only = ON")
        except BaseException:
            await reader.close()
            raise
        return reader

    async def _configure(self) -> None:
        try:
            await self.conn.execute("PRAGMA busy_timeout = 5000")
            mode = await self._scalar_on_writer("PRAGMA journal_mode = WAL")
            await self.conn.execute("PRAGMA synchronous = NORMAL")
            await self.conn.execute("PRAGMA foreign_keys = ON")
            # A read-only file opens fine; find out now rather than at the first write.
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                version = await self._scalar_on_writer("PRAGMA user_version")
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

    async def server_version(self) -> str:
        """The engine and its version, e.g. "SQLite 3.40.1" (for `readersviews check`)."""
        return f"SQLite {sqlite3.sqlite_version}"

    async def schema_version(self) -> int:
        return int(await self._scalar_on_writer("PRAGMA user_version") or 0)

    async def _scalar_on_writer(self, sql: str) -> Any:
        rows = list(await self.conn.execute_fetchall(sql))
        return rows[0][0] if rows else None

    async def migrate(self, up_to: int | None = None) -> list[str]:
        """Apply every migration newer than the DB's version (up to `up_to`), each in its own transaction."""
        applied = []
        current = await self.schema_version()
        for version, name, sql in migration_files():
            if version <= current:
                continue
            if up_to is not None and version > up_to:
                break
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

    async def listen_jobs(self, callback: Callable[[str], None]) -> None:
        """Wake-ups from other processes (PostgreSQL only): one process per SQLite file, so none."""

    async def notify_job(self, job: str) -> None:
        """Wake the process running `job` in another process (PostgreSQL only): none with SQLite."""

    async def claim_jobs(self, jobs: Sequence[str]) -> list[str]:
        """The jobs (bot.claims) this process holds of `jobs`: all of them (one process per SQLite file)."""
        return list(jobs)

    async def close(self) -> None:
        async with self._lock:
            if self.reader is not None:
                await self.reader.close()
            await self.conn.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        """One unit of work: everything inside commits together or not at all."""
        async with self._lock:
            token = _in_unit_of_work.set(self)
            try:
                await self.conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self.conn
                except BaseException:
                    await self.conn.execute("ROLLBACK")
                    raise
                await self.conn.execute("COMMIT")
                metrics.DB_WRITES.inc()
            finally:
                _in_unit_of_work.reset(token)

    async def run_in_transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(connection)` on the database's thread as one transaction, in one hop.

        Each `await` on aiosqlite is a round trip to its thread, and under load the way back waits
        for a full turn of the event loop. A hot path with many statements (a batch of sign-ons:
        four lookups, an upsert, an update) writes them as plain synchronous sqlite3 code here
        instead: measured in a sign-on burst, 16 hops per batch became 1.

        aiosqlite offers no public way to run a callable on its thread: see `bot.store.aiosqlite_internals`.
        """

        def body() -> T:
            raw = raw_connection(self.conn)
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
            return await on_its_thread(self.conn, body)

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
        rows = await self._read(sql, params)
        return next(iter(rows), None)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        return list(await self._read(sql, params))

    async def _read(self, sql: str, params: Sequence[Any]) -> Iterable[aiosqlite.Row]:
        """Committed rows only, unless the caller is inside its own unit of work (then its view)."""
        if _in_unit_of_work.get() is self:
            return await self.conn.execute_fetchall(sql, params)
        if self.reader is not None:
            return await self.reader.execute_fetchall(sql, params)
        async with self._lock:
            return await self.conn.execute_fetchall(sql, params)

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


async def _connect(path: Path, *, uri: bool) -> aiosqlite.Connection:
    connection = aiosqlite.connect(str(path), isolation_level=None, uri=uri)
    try:
        return await connection
    except sqlite3.Error as exc:
        # aiosqlite stops its thread after a failed connect but does not wait for it: wait here, or
        # the thread reports to a closed event loop at exit and prints a traceback.
        await asyncio.to_thread(connection._thread.join, 5)
        raise StoreError(f"cannot open database {path}: {exc}") from None


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
