"""The PostgreSQL store (asyncpg) behind the same `Database` interface as SQLite.

`database.url: postgresql://user@host:port/db` selects it. The repositories keep their SQLite SQL;
`bot.store.dialect` rewrites each statement once (parameters, INSERT OR IGNORE, scalar max/min,
LIKE) and the numbered migrations are translated the same way (64-bit integers, identity ids).

- The schema version is one row in `schema_version` (SQLite keeps it in `PRAGMA user_version`);
  a newer version than this readersviews knows is refused in one line, as with SQLite.
- Writes in one process are serialised by one lock, as with SQLite, so the repositories' units of
  work behave the same; each runs on a pooled connection in one PostgreSQL transaction. Reads run
  on any pooled connection and see committed rows, except inside the task's own unit of work.
- Migrations take an advisory lock, so processes starting together apply each migration once.
- The password comes from the caller (`READERSVIEWS_DATABASE_PASSWORD`) or, as libpq does, from
  `PGPASSWORD` or `~/.pgpass`. A password inside the URL is refused by the config.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import re
import socket
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

from bot import metrics
from bot.store.database import Database, StoreError, _split_sql, latest_version, migration_files
from bot.store.dialect import POSTGRES, ddl_to_postgres, has_returning, insert_table, to_postgres

T = TypeVar("T")

log = logging.getLogger(__name__)

URL_SCHEMES = ("postgresql://", "postgres://")
JOB_CHANNEL = "readersviews_jobs"  # LISTEN/NOTIFY channel: "<schema>:<job>" wakes the job's holder
MIGRATION_LOCK = 0x5256_0001  # pg_advisory_xact_lock key: "RV", migrations
_ROWS_READ = re.compile(r"^\s*(SELECT|WITH|VALUES|SHOW)\b", re.IGNORECASE)


def is_postgres_url(location: object) -> bool:
    return isinstance(location, str) and location.startswith(URL_SCHEMES)


def display_url(url: str) -> str:
    """The URL without any password (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}@{host}" if parts.username else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class PgCursor:
    """What a statement left: rows (SELECT or RETURNING), rows affected, the new row's id."""

    def __init__(self, rows: Sequence[Any], rowcount: int, lastrowid: int | None) -> None:
        self._rows = list(rows)
        self.rowcount = rowcount
        self.lastrowid = lastrowid

    async def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None

    async def fetchall(self) -> list[Any]:
        return list(self._rows)

    async def close(self) -> None:
        return None


class _Call:
    """`await conn.execute(...)` or `async with conn.execute(...) as cursor`, as aiosqlite allows."""

    def __init__(self, pending: Any) -> None:
        self._pending = pending

    def __await__(self) -> Any:
        return self._pending.__await__()

    async def __aenter__(self) -> PgCursor:
        return cast(PgCursor, await self._pending)

    async def __aexit__(self, *exc: object) -> None:
        return None


class PgConnection:
    """One asyncpg connection with the subset of aiosqlite's API the repositories use."""

    def __init__(self, raw: Any, id_tables: frozenset[str]) -> None:
        self.raw = raw
        self._id_tables = id_tables

    def execute(self, sql: str, parameters: Iterable[Any] | None = None) -> _Call:
        return _Call(self.run(sql, tuple(parameters or ())))

    async def run(self, sql: str, args: Sequence[Any]) -> PgCursor:
        query = to_postgres(sql)
        table = insert_table(query)
        if _ROWS_READ.match(query) or has_returning(query):
            rows = await self.raw.fetch(query, *args)
            last = rows[0]["id"] if table and rows and "id" in rows[0].keys() else None  # noqa: SIM118
            return PgCursor(rows, len(rows), last)
        if table is not None and table in self._id_tables:
            rows = await self.raw.fetch(f"{query} RETURNING id", *args)
            return PgCursor([], len(rows), int(rows[0][0]) if rows else None)
        status = await self.raw.execute(query, *args)
        return PgCursor([], _affected(status), None)

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> None:
        rows = [tuple(p) for p in parameters]
        if rows:
            await self.raw.executemany(to_postgres(sql), rows)

    async def execute_fetchall(self, sql: str, parameters: Iterable[Any] | None = None) -> list[Any]:
        return list(await self.raw.fetch(to_postgres(sql), *tuple(parameters or ())))


def _affected(status: str) -> int:
    """Rows affected from a command tag ("UPDATE 3", "INSERT 0 1", "DELETE 0")."""
    last = status.rsplit(" ", 1)[-1] if status else ""
    return int(last) if last.isdigit() else 0


class _SyncCursor:
    def __init__(self, cursor: PgCursor) -> None:
        self._cursor = cursor
        self.rowcount = cursor.rowcount
        self.lastrowid = cursor.lastrowid

    def fetchall(self) -> list[Any]:
        return list(self._cursor._rows)

    def fetchone(self) -> Any:
        return self._cursor._rows[0] if self._cursor._rows else None


class _SyncBridge:
    """A synchronous, sqlite3-shaped connection for `run_in_transaction` work, run in a thread.

    Each call hands the statement to the event loop (where the transaction's connection lives) and
    waits for it; the task that owns the transaction is meanwhile waiting for the thread, so the
    connection is never used by two at once.
    """

    def __init__(self, conn: PgConnection, loop: asyncio.AbstractEventLoop) -> None:
        self._conn = conn
        self._loop = loop

    def execute(self, sql: str, parameters: Iterable[Any] = ()) -> _SyncCursor:
        future = asyncio.run_coroutine_threadsafe(self._conn.run(sql, tuple(parameters)), self._loop)
        return _SyncCursor(future.result())

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> None:
        asyncio.run_coroutine_threadsafe(self._conn.executemany(sql, parameters), self._loop).result()


_unit: contextvars.ContextVar[tuple[PostgresDatabase, PgConnection] | None] = contextvars.ContextVar(
    "_pg_unit_of_work", default=None
)


def _numeric(text: str) -> int | float | Decimal:
    """sum() and avg() answer `numeric` in PostgreSQL: give back int or float, as SQLite does."""
    value = Decimal(text)
    return int(value) if value == value.to_integral_value() else float(value)


def _bool_text(value: object) -> str:
    return "t" if value else "f"


def _text_bool(text: str) -> bool:
    return text == "t"


TEXT_CODECS = ("numeric", "text", "bool")


async def init_connection(raw: Any) -> None:
    """Codecs giving SQLite's leniency and answers (see each line); every pooled connection gets them."""
    await raw.set_type_codec("numeric", schema="pg_catalog", encoder=str, decoder=_numeric, format="text")
    # SQLite stores an int given for a TEXT column as text; asyncpg would refuse it.
    await raw.set_type_codec("text", schema="pg_catalog", encoder=str, decoder=str, format="text")
    # SQLite has no booleans: the repositories pass 0/1 where a condition is a parameter (CASE WHEN ?).
    await raw.set_type_codec("bool", schema="pg_catalog", encoder=_bool_text, decoder=_text_bool, format="text")


class PostgresDatabase(Database):
    """A pool of asyncpg connections; see the module's docstring."""

    dialect = POSTGRES

    def __init__(self, pool: Any, url: str, password: str | None = None) -> None:
        self._pool = pool
        self.url = url
        self._password = password
        self._guard: Any = None  # the connection holding this process's guard and job claims
        self._guard_lock = asyncio.Lock()
        self.location = display_url(url)
        self.reader = None
        self._lock = asyncio.Lock()
        self._id_tables: frozenset[str] = frozenset()

    @classmethod
    async def open_url(
        cls, url: str, *, migrate: bool = True, password: str | None = None, max_connections: int = 10
    ) -> PostgresDatabase:
        try:
            import asyncpg
        except ImportError:
            raise StoreError("database.url is PostgreSQL, but asyncpg is not installed (pip install asyncpg)") from None
        where = display_url(url)
        try:
            pool = await asyncpg.create_pool(
                dsn=url,
                password=password or None,
                min_size=1,
                max_size=max_connections,
                init=init_connection,
                timeout=15,
            )
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
            raise StoreError(f"cannot connect to PostgreSQL at {where}: {_one_line(exc)}") from None
        db = cls(pool, url, password)
        try:
            version = await db.schema_version()
            latest = latest_version()
            if version > latest:
                raise StoreError(
                    f"database {where} has schema version {version}, newer than this readersviews "
                    f"understands ({latest}); upgrade readersviews or use a backup"
                )
            if migrate:
                await db.migrate()
            await db._learn_id_tables()
        except BaseException:
            await pool.close()
            raise
        return db

    async def _learn_id_tables(self) -> None:
        rows = await self._pool.fetch(
            "SELECT table_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND column_name = 'id'"
        )
        self._id_tables = frozenset(row[0] for row in rows)

    async def server_version(self) -> str:
        """e.g. "PostgreSQL 15.18" (for `readersviews check`)."""
        async with self._pool.acquire() as raw:
            version = raw.get_server_version()
        return f"PostgreSQL {version.major}.{version.minor}"

    async def schema_version(self) -> int:
        async with self._pool.acquire() as raw:
            return await _schema_version(raw)

    async def migrate(self, up_to: int | None = None) -> list[str]:
        """Apply every migration newer than the database's version (up to `up_to`), each in its own transaction."""
        applied = []
        for version, name, sql in migration_files():
            if up_to is not None and version > up_to:
                break
            async with self._lock, self._pool.acquire() as raw, raw.transaction():
                await raw.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
                current = await _schema_version(raw)
                if version <= current:
                    continue
                for statement in _split_sql(sql):
                    translated = ddl_to_postgres(statement)
                    if translated:  # a PRAGMA (SQLite's own settings) means nothing here
                        await raw.execute(translated)
                await raw.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
                await raw.execute("DELETE FROM schema_version")
                await raw.execute("INSERT INTO schema_version (version) VALUES ($1)", version)
            log.info("applied migration %s", name)
            applied.append(name)
        if applied:
            await self._learn_id_tables()
        return applied

    async def _guard_connection(self, command: str) -> Any:
        """The connection holding this process's guard and job claims (opened once, closed by `close`)."""
        import asyncpg

        if self._guard is not None:
            return self._guard
        holder = f"readersviews {command} {os.getpid()}@{socket.gethostname()}"[:63]
        try:
            self._guard = await asyncpg.connect(
                self.url, password=self._password or None, server_settings={"application_name": holder}, timeout=15
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"cannot connect to PostgreSQL at {self.location}: {_one_line(exc)}") from None
        return self._guard

    async def hold_guard(
        self, command: str, shard_ids: Sequence[int] | None = None, shard_count: int | None = None
    ) -> None:
        """One bot per database, or per shard: take the guard for `command` or raise DatabaseInUse.

        Without shards (and for `migrate`) the guard is exclusive: no other process may run on the
        database. A process running shards `shard_ids` shares the database with processes running
        other shards, and takes each of its shards exclusively: two processes claiming one shard
        refuse to run. The guard is session advisory locks (one set per schema) on a connection of
        its own, held until `close()`. PostgreSQL drops them when that connection ends, so a killed
        process (SIGKILL, OOM) gives the database up as soon as the server sees its connection close:
        no expiry to wait for. The connection's application_name names the holder for the refusal.
        """
        from bot.store.lease import DatabaseInUse

        conn = await self._guard_connection(command)
        try:
            whole = await _lock_key(conn, "readersviews-run")
            if shard_ids is None:
                if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", whole):
                    holder = await _holder(conn, whole)
                    raise DatabaseInUse(
                        f"another readersviews is using {self.location} ({holder}); stop it first "
                        "(a process that was killed gives the database up at once)"
                    )
                return
            if not await conn.fetchval("SELECT pg_try_advisory_lock_shared($1)", whole):
                holder = await _holder(conn, whole)
                raise DatabaseInUse(
                    f"another readersviews is using all of {self.location} ({holder}); stop it first, or give "
                    "every process discord.shard_ids"
                )
            for shard_id in shard_ids:
                key = await _lock_key(conn, f"readersviews-shard:{shard_id}")
                if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
                    holder = await _holder(conn, key)
                    raise DatabaseInUse(
                        f"another readersviews runs shard {shard_id} of {shard_count} on {self.location} "
                        f"({holder}); each shard may run in one process only"
                    )
        except BaseException:
            guard, self._guard = self._guard, None
            await guard.close()
            raise

    async def listen_jobs(self, callback: Callable[[str], None]) -> None:
        """`callback(job)` whenever any process sharing this database calls `notify_job(job)`."""
        conn = await self._guard_connection("run")
        schema = await conn.fetchval("SELECT current_schema()")

        def received(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            where, _, job = payload.rpartition(":")
            if where == schema:
                callback(job)

        async with self._guard_lock:
            await conn.add_listener(JOB_CHANNEL, received)

    async def notify_job(self, job: str) -> None:
        """Tell the process running `job` (bot.claims) that it has work: e.g. an outbox item was queued."""
        async with self._pool.acquire() as raw:
            await raw.execute("SELECT pg_notify($1, current_schema() || ':' || $2)", JOB_CHANNEL, job)

    async def claim_jobs(self, jobs: Sequence[str]) -> list[str]:
        """The jobs (bot.claims) this process now holds of `jobs`: session advisory locks, kept until close."""
        conn = await self._guard_connection("run")
        taken = []
        async with self._guard_lock:
            for job in jobs:
                key = await _lock_key(conn, f"readersviews-job:{job}")
                if await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
                    taken.append(job)
        return taken

    async def close(self) -> None:
        async with self._lock:
            if self._guard is not None:
                guard, self._guard = self._guard, None
                await guard.close()
            await self._pool.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        async with self._lock, self._pool.acquire() as raw:
            conn = PgConnection(raw, self._id_tables)
            token = _unit.set((self, conn))
            try:
                tx = raw.transaction()
                await tx.start()
                try:
                    yield conn
                except BaseException:
                    await tx.rollback()
                    raise
                await tx.commit()
                metrics.DB_WRITES.inc()
            finally:
                _unit.reset(token)

    async def run_in_transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        async with self.transaction() as conn:
            bridge = _SyncBridge(conn, asyncio.get_running_loop())
            return await asyncio.to_thread(work, cast(sqlite3.Connection, bridge))

    async def write(self, sql: str, params: Sequence[Any] = ()) -> int:
        async with self._lock, self._pool.acquire() as raw:
            cursor = await PgConnection(raw, self._id_tables).run(sql, tuple(params))
            metrics.DB_WRITES.inc()
        if cursor.rowcount == 0:
            return 0
        if insert_table(sql) is not None and cursor.lastrowid is not None:
            return int(cursor.lastrowid)
        return cursor.rowcount

    async def write_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        async with self.transaction() as conn:
            await conn.executemany(sql, rows)

    async def _read(self, sql: str, params: Sequence[Any]) -> Iterable[Any]:
        unit = _unit.get()
        if unit is not None and unit[0] is self:
            return await unit[1].execute_fetchall(sql, params)
        async with self._pool.acquire() as raw:
            return list(await raw.fetch(to_postgres(sql), *tuple(params)))

    async def table_counts(self) -> dict[str, int]:
        names = [
            row[0]
            for row in await self.fetchall(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
                " AND table_type = 'BASE TABLE' AND table_name <> 'schema_version' ORDER BY table_name"
            )
        ]
        return {name: int(await self._scalar(f'SELECT count(*) FROM "{name}"')) for name in names}


async def _schema_version(raw: Any) -> int:
    exists = await raw.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return 0
    return int(await raw.fetchval("SELECT max(version) FROM schema_version") or 0)


async def _lock_key(conn: Any, name: str) -> int:
    """An advisory lock's key: the name within the current schema (tests share a database)."""
    return int(await conn.fetchval("SELECT hashtextextended(current_schema() || ':' || $1, 0)", name))


async def _holder(conn: Any, key: int) -> str:
    row = await conn.fetchrow(
        "SELECT a.application_name, a.backend_start FROM pg_locks l"
        " JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND a.pid <> pg_backend_pid()"
        " AND l.classid::bigint = ($1::bigint >> 32) & 4294967295"
        " AND l.objid::bigint = $1::bigint & 4294967295 ORDER BY a.backend_start LIMIT 1",
        key,
    )
    return _describe_holder(row)


def _describe_holder(row: Any) -> str:
    """ "run on host H, pid P, since T" from the holder's application_name and connection time."""
    if row is None:
        return "it is starting"
    parts = str(row["application_name"] or "").split()
    since = row["backend_start"].isoformat(timespec="seconds") if row["backend_start"] else "?"
    if len(parts) == 3 and parts[0] == "readersviews" and "@" in parts[2]:
        pid, _, host = parts[2].partition("@")
        return f"{parts[1]} on host {host}, pid {pid}, since {since}"
    return f"{row['application_name'] or 'a connection'}, since {since}"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


__all__ = ["PgConnection", "PostgresDatabase", "display_url", "is_postgres_url"]
