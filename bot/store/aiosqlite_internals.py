"""The one place that uses aiosqlite's private internals (tests/test_internals.py fails loudly if they change).

aiosqlite offers no public way to run a callable on its worker thread, which a hot transaction needs
(`Database.run_in_transaction`: many statements, one hop). It has one internal entry point for that,
`Connection._execute(fn)`, and keeps the sqlite3 connection in `Connection._conn`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TypeVar

import aiosqlite

T = TypeVar("T")


def raw_connection(conn: aiosqlite.Connection) -> sqlite3.Connection:
    """The sqlite3 connection behind `conn`; only to be used on aiosqlite's thread (`on_its_thread`)."""
    raw: sqlite3.Connection = conn._conn
    return raw


async def on_its_thread(conn: aiosqlite.Connection, work: Callable[[], T]) -> T:
    """Run `work()` on `conn`'s worker thread, in one hop; its result or exception comes back."""
    return await conn._execute(work)  # type: ignore[no-any-return]
