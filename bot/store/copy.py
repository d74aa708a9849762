"""`readersviews migrate --copy-from FILE`: an existing SQLite database into an empty PostgreSQL one.

The target is brought to the SQLite file's schema version, every table is copied in one PostgreSQL
transaction (parents before children, ids kept, identity counters moved past them), the row count
of every table is compared before committing, and then the target is migrated to the latest
version like any other database. A target that holds any row is refused: the copy never merges.
The SQLite file is only read (opened read-only), under its lease, so no bot writes to it meanwhile.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bot.store.database import StoreError, latest_version
from bot.store.postgres import TEXT_CODECS, PostgresDatabase, init_connection

BATCH = 5000


class CopyRefused(StoreError):
    """The copy cannot start (or was undone); the message says why, in one line."""


def _read_source(path: Path) -> tuple[int, dict[str, list[str]], list[str]]:
    """(schema version, {table: columns}, tables with parents first) of the SQLite file."""
    if not path.is_file():
        raise CopyRefused(f"no SQLite database at {path}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        names = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        columns = {name: [row[1] for row in conn.execute(f'PRAGMA table_info("{name}")')] for name in names}
        parents = {
            name: {row[2] for row in conn.execute(f'PRAGMA foreign_key_list("{name}")')} - {name} for name in names
        }
    except sqlite3.DatabaseError as exc:
        raise CopyRefused(f"cannot read {path} as a readersviews SQLite database: {exc}") from None
    finally:
        conn.close()
    ordered: list[str] = []
    while len(ordered) < len(names):
        ready = [n for n in names if n not in ordered and parents[n] <= set(ordered)]
        if not ready:  # a cycle: cannot happen with the shipped schema
            ready = [n for n in names if n not in ordered]
        ordered.extend(ready)
    return version, columns, ordered


def _rows(path: Path, table: str, columns: Sequence[str], after: int, limit: int) -> list[tuple[Any, ...]]:
    """The next `limit` rows after rowid `after`, each ending with its rowid."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        listed = ", ".join(f'"{c}"' for c in columns)
        return conn.execute(
            f'SELECT {listed}, rowid FROM "{table}" WHERE rowid > ? ORDER BY rowid LIMIT ?', (after, limit)
        ).fetchall()
    finally:
        conn.close()


def _source_counts(path: Path, tables: Sequence[str]) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {t: int(conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]) for t in tables}
    finally:
        conn.close()


def _convert(value: Any, pg_type: str) -> Any:
    """SQLite is loosely typed: give each value the type of its PostgreSQL column."""
    if value is None:
        return None
    if pg_type in ("bigint", "integer", "smallint"):
        return int(value)
    if pg_type == "double precision":
        return float(value)
    if pg_type == "text":
        return value if isinstance(value, str) else str(value)
    return value


async def copy_from_sqlite(source: Path, target: PostgresDatabase) -> dict[str, int]:
    """Copy `source` into `target` (empty); return the rows copied per table. See the module's docstring."""
    version, columns, tables = await asyncio.to_thread(_read_source, source)
    latest = latest_version()
    if version > latest:
        raise CopyRefused(f"{source} has schema version {version}, newer than this readersviews understands ({latest})")
    target_version = await target.schema_version()
    await _refuse_if_occupied(target)
    if target_version > version:
        raise CopyRefused(
            f"{target.location} is at schema v{target_version}, past {source}'s v{version}: "
            "run `readersviews migrate` on the SQLite file first, or copy into a new PostgreSQL database"
        )
    await target.migrate(up_to=version)
    await _refuse_if_occupied(target)
    missing = [t for t in tables if t not in await target.table_counts()]
    if missing:
        raise CopyRefused(f"{source} has tables this readersviews does not know: {', '.join(missing)}")
    expected = await asyncio.to_thread(_source_counts, source, tables)
    async with target.transaction() as conn:
        raw = conn.raw
        # COPY sends binary rows; the store's text-format codecs (bot.store.postgres) have no binary form.
        for name in TEXT_CODECS:
            await raw.reset_type_codec(name, schema="pg_catalog")
        try:
            copied = await _copy_tables(raw, source, tables, columns)
        finally:
            await init_connection(raw)
        wrong = {t: (expected[t], copied[t]) for t in tables if expected[t] != copied[t]}
        if wrong:
            listed = ", ".join(f"{t}: {a} in SQLite, {b} copied" for t, (a, b) in sorted(wrong.items()))
            raise CopyRefused(f"row counts differ ({listed}); nothing was copied")
    await target.migrate()
    return copied


async def _refuse_if_occupied(target: PostgresDatabase) -> None:
    occupied = {name: n for name, n in (await target.table_counts()).items() if n}
    if occupied:
        listed = ", ".join(f"{name} ({n})" for name, n in sorted(occupied.items()))
        raise CopyRefused(f"{target.location} is not empty: {listed}; copy only into an empty database")


async def _copy_tables(raw: Any, source: Path, tables: Sequence[str], columns: dict[str, list[str]]) -> dict[str, int]:
    for table in tables:
        types = {
            row["column_name"]: row["data_type"]
            for row in await raw.fetch(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = $1",
                table,
            )
        }
        cols = [c for c in columns[table] if c in types]
        after = 0
        while True:
            batch = await asyncio.to_thread(_rows, source, table, cols, after, BATCH)
            if not batch:
                break
            after = batch[-1][-1]
            records = [tuple(_convert(v, types[c]) for v, c in zip(row[:-1], cols, strict=True)) for row in batch]
            await raw.copy_records_to_table(table, records=records, columns=cols)
        if "id" in types:
            await raw.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), coalesce(max(id), 0) + 1, false)"
                f' FROM "{table}"'
            )
    return {t: int(await raw.fetchval(f'SELECT count(*) FROM "{t}"')) for t in tables}


__all__ = ["CopyRefused", "copy_from_sqlite"]
