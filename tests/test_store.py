"""The store: migrations, WAL, transactions, and clear errors for unusable files."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from bot.clock import SystemClock
from bot.store import Store, StoreError, latest_version
from bot.store.contributions import NewContribution
from bot.store.database import Database, migration_files
from bot.store.statements import StatementsRepo

EXPECTED_TABLES = {
    "feeds",
    "articles",
    "contributions",
    "statements",
    "signatures",
    "outbox",
    "audit_log",
    "guild_settings",
    "meta",
}


async def test_migrates_from_empty(store_location: str) -> None:
    store = await Store.open(store_location, SystemClock())
    try:
        assert await store.db.schema_version() == latest_version()
        assert set(await store.db.table_counts()) >= EXPECTED_TABLES
        if store.db.dialect == "sqlite":
            assert (await store.db.scalar("PRAGMA journal_mode")).lower() == "wal"
            assert await store.db.scalar("PRAGMA foreign_keys") == 1
    finally:
        await store.close()


async def test_discord_ids_and_new_row_ids_round_trip(store_location: str) -> None:
    """Discord ids are 64-bit (PostgreSQL's INTEGER is not); an insert's id comes back as SQLite's lastrowid."""
    store = await Store.open(store_location, SystemClock())
    try:
        big = 1_234_567_890_123_456_789
        item = NewContribution(big, big + 1, big + 2, big + 3, "Ada", "hello", datetime.now(UTC))
        first = await store.contributions.record(item)
        second = await store.contributions.record(
            NewContribution(big, big + 9, big + 2, big + 3, "Ada", "again", item.created_at)
        )
        assert second == first + 1
        row = await store.contributions.get_by_message(big + 1)
        assert row is not None and row["guild_id"] == big and row["author_id"] == big + 3
    finally:
        await store.close()


async def test_migrates_from_every_earlier_version(tmp_path: Path) -> None:
    """A database left at any earlier schema version upgrades to the latest."""
    migrations = migration_files()
    for stop in range(len(migrations)):
        path = tmp_path / f"v{stop}.sqlite3"
        conn = sqlite3.connect(path)
        for version, _name, sql in migrations[:stop]:
            conn.executescript(sql)
            conn.execute(f"PRAGMA user_version = {version}")
        conn.commit()
        conn.close()
        db = await Database.open(path)
        assert await db.schema_version() == latest_version()
        await db.close()


async def test_statement_message_changes_survive_the_column_rename(store_location: str) -> None:
    """Upgrading keeps the count of changes not yet shown on a statement's message (its column was
    `message_dirty`): the message is still refreshed after the upgrade."""
    before = next(v for v, name, _ in migration_files() if name.endswith("_statement_message_changes.sql")) - 1
    db = await Database.open(store_location, migrate=False)
    try:
        await db.migrate(up_to=before)
        stamp = "2025-01-01T00:00:00+00:00"
        await db.write(
            "INSERT INTO statements (id, guild_id, slug, title, body, organizer_id, created_at, updated_at,"
            " status, channel_id, message_id, message_dirty) VALUES (7, 222, 's', 'S', 'b', 1, ?, ?, 'open', 5, 6, 3)",
            (stamp, stamp),
        )
        await db.migrate()
        statements = StatementsRepo(db, SystemClock())
        assert [(s.id, s.message_changes) for s in await statements.with_message_changes()] == [(7, 3)]
    finally:
        await db.close()


async def test_outbox_rows_from_before_the_guild_column_know_their_server(store_location: str) -> None:
    """Upgrading fills outbox.guild_id for letters, statements and digests queued before it existed."""
    before = next(v for v, name, _ in migration_files() if name.endswith("_outbox_guild.sql")) - 1
    db = await Database.open(store_location, migrate=False)
    try:
        await db.migrate(up_to=before)  # the migrations before it, whatever its number
        stamp = "2025-01-01T00:00:00+00:00"
        await db.write(
            "INSERT INTO contributions (id, guild_id, channel_id, author_id, author_name, content, created_at)"
            " VALUES (42, 111, 1, 1, 'w', 'text', ?)",
            (stamp,),
        )
        await db.write(
            "INSERT INTO statements (id, guild_id, slug, title, body, organizer_id, created_at, updated_at)"
            " VALUES (7, 222, 's', 'S', 'b', 1, ?, ?)",
            (stamp, stamp),
        )
        for entity in ("letter:42", "statement:7", "digest:333-20250101-20250201", "letter:999"):
            await db.write(
                "INSERT INTO outbox (kind, entity, payload, idempotency_key, next_attempt_at, created_at, updated_at)"
                " VALUES ('x.create', ?, '{}', ?, ?, ?, ?)",
                (entity, entity, stamp, stamp, stamp),
            )
        await db.migrate()
        rows = await db.fetchall("SELECT entity, guild_id FROM outbox ORDER BY id")
        assert [(r["entity"], r["guild_id"]) for r in rows] == [
            ("letter:42", 111),
            ("statement:7", 222),
            ("digest:333-20250101-20250201", 333),
            ("letter:999", None),  # its letter is gone: no server
        ]
    finally:
        await db.close()


async def test_reopening_applies_nothing(store_location: str) -> None:
    await (await Database.open(store_location)).close()
    db = await Database.open(store_location)
    assert await db.migrate() == []
    assert await db.schema_version() == latest_version()
    await db.close()


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {latest_version() + 5}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this readersviews understands"):
        await Database.open(path)


async def test_newer_postgres_schema_is_refused(store_location: str) -> None:
    """PostgreSQL records the schema version in a table; a newer one is refused in one line too."""
    if not store_location.startswith("postgresql://"):
        pytest.skip("the SQLite case is test_newer_schema_is_refused")
    db = await Database.open(store_location)
    await db.write("UPDATE schema_version SET version = ?", (latest_version() + 5,))
    await db.close()
    with pytest.raises(StoreError, match="newer than this readersviews understands") as refused:
        await Database.open(store_location)
    assert "\n" not in str(refused.value) and "password" not in str(refused.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
async def test_read_only_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ro.sqlite3"
    (await Database.open(path)).conn  # noqa: B018
    path.chmod(0o444)
    with pytest.raises(StoreError, match="read-only"):
        await Database.open(path)


async def test_database_opened_read_only_is_refused(tmp_path: Path) -> None:
    """A file that cannot be written (here: opened read-only) fails at start, not at the first write."""
    path = tmp_path / "ro.sqlite3"
    await (await Database.open(path)).close()
    with pytest.raises(StoreError, match="read-only"):
        await Database.open(f"file:{path}?mode=ro")


async def test_garbage_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="not a readersviews SQLite database"):
        await Database.open(path)


async def test_transaction_rolls_back_as_a_unit(store_location: str) -> None:
    store = await Store.open(store_location, SystemClock())
    try:
        with pytest.raises(RuntimeError):
            async with store.db.transaction() as conn:
                await conn.execute("INSERT INTO meta (key, value) VALUES ('a', '1')")
                raise RuntimeError("boom")
        assert await store.meta.get("a") is None
    finally:
        await store.close()


async def test_concurrent_write_does_not_join_open_transaction(store_location: str) -> None:
    """A write from another coroutine waits for the open unit of work instead of sharing its fate."""
    store = await Store.open(store_location, SystemClock())
    try:
        entered = asyncio.Event()

        async def failing_unit() -> None:
            async with store.db.transaction() as conn:
                await conn.execute("INSERT INTO meta (key, value) VALUES ('doomed', '1')")
                entered.set()
                await asyncio.sleep(0)
                raise RuntimeError("boom")

        task = asyncio.create_task(failing_unit())
        await entered.wait()
        await store.meta.set("survivor", "1")
        with pytest.raises(RuntimeError):
            await task
        assert await store.meta.get("survivor") == "1"
        assert await store.meta.get("doomed") is None
    finally:
        await store.close()


async def test_run_in_transaction_commits_returns_and_rolls_back(store_location: str) -> None:
    """The one-hop unit of work: plain sqlite3 code on the database thread, all or nothing."""
    store = await Store.open(store_location, SystemClock())
    try:

        def insert_two(conn: sqlite3.Connection) -> int:
            conn.execute("INSERT INTO meta (key, value) VALUES ('x', '1')")
            conn.execute("INSERT INTO meta (key, value) VALUES ('y', '2')")
            return int(conn.execute("SELECT count(*) FROM meta WHERE key IN ('x', 'y')").fetchone()[0])

        assert await store.db.run_in_transaction(insert_two) == 2
        assert await store.meta.get("y") == "2"

        def half_then_fail(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO meta (key, value) VALUES ('z', '3')")
            conn.execute("INSERT INTO meta (key, value) VALUES ('x', 'duplicate key')")

        with pytest.raises((sqlite3.IntegrityError, asyncpg.UniqueViolationError)):
            await store.db.run_in_transaction(half_then_fail)
        assert await store.meta.get("z") is None
        # The connection is usable afterwards, and the lock keeps other writers out of the unit.
        results = await asyncio.gather(
            store.db.run_in_transaction(lambda conn: conn.execute("SELECT count(*) FROM meta").fetchone()[0]),
            store.meta.set("after", "1"),
        )
        assert results[0] >= 2
        assert await store.meta.get("after") == "1"
    finally:
        await store.close()


async def test_contribution_record_is_idempotent(store_location: str) -> None:
    store = await Store.open(store_location, SystemClock())
    try:
        item = NewContribution(1, 99, 2, 3, "Ada", "hello", datetime.now(UTC))
        first = await store.contributions.record(item)
        assert first > 0
        assert await store.contributions.record(item) == 0
        assert (await store.db.table_counts())["contributions"] == 1
    finally:
        await store.close()


async def test_settings_seed_and_override(store_location: str) -> None:
    store = await Store.open(store_location, SystemClock(), seeds={5: {"alert_channel_id": 10}})
    try:
        assert await store.settings.get(5, "alert_channel_id") == 10
        await store.settings.set_many(5, {"alert_channel_id": 11, "editor_role_id": 7}, actor_id=1)
        assert await store.settings.get_all(5) == {"alert_channel_id": 11, "editor_role_id": 7}
        assert len(await store.audit.for_entity("guild:5")) == 1
        with pytest.raises(KeyError):
            await store.settings.set_many(5, {"nonsense": 1}, actor_id=1)
    finally:
        await store.close()


async def test_reads_never_see_another_tasks_uncommitted_rows(store_location: str) -> None:
    """A read while another task's transaction is open sees only what was committed, never a row
    that is then rolled back; the transaction's own task does see its rows."""
    db = await Database.open(store_location)
    inserted, release = asyncio.Event(), asyncio.Event()
    seen_inside: list[object] = []

    async def writer() -> None:
        with pytest.raises(RuntimeError):
            async with db.transaction() as conn:
                await conn.execute("INSERT INTO meta (key, value) VALUES ('ghost', 'uncommitted')")
                seen_inside.append(await db.scalar("SELECT value FROM meta WHERE key = 'ghost'"))
                inserted.set()
                await release.wait()
                raise RuntimeError("the unit of work fails: rolled back")

    try:
        task = asyncio.create_task(writer())
        await inserted.wait()
        during = [
            await db.fetchone("SELECT value FROM meta WHERE key = 'ghost'"),
            await db.fetchall("SELECT key FROM meta WHERE key = 'ghost'"),
        ]
        release.set()
        await task
        assert during == [None, []], "a read returned a row that was then rolled back"
        assert seen_inside == ["uncommitted"], "the writing task reads its own rows"
        assert await db.scalar("SELECT count(*) FROM meta WHERE key = 'ghost'") == 0
    finally:
        release.set()
        await db.close()


async def test_reads_in_memory_wait_for_the_open_transaction(tmp_path: Path) -> None:
    """Without a second connection (an in-memory database) a read waits for the writer to finish."""
    db = await Database.open(":memory:")
    inserted, release = asyncio.Event(), asyncio.Event()

    async def writer() -> None:
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO meta (key, value) VALUES ('k', 'v1')")
            inserted.set()
            await release.wait()
            await conn.execute("UPDATE meta SET value = 'v2' WHERE key = 'k'")

    try:
        task = asyncio.create_task(writer())
        await inserted.wait()
        read = asyncio.create_task(db.scalar("SELECT value FROM meta WHERE key = 'k'"))
        release.set()
        value = await read
        await task
        assert value == "v2", "the read saw the transaction half-way"
    finally:
        release.set()
        await db.close()


async def test_database_folder_and_files_are_private(tmp_path: Path) -> None:
    """A new database folder is 0700, the database and its -wal/-shm 0600, whatever the umask."""
    old = os.umask(0o022)
    try:
        db = await Database.open(tmp_path / "new" / "deeper" / "db.sqlite3")
        await db.write("INSERT INTO meta (key, value) VALUES ('k', 'v')")
        files = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "new" / "deeper").iterdir()}
        await db.close()
    finally:
        os.umask(old)
    assert (tmp_path / "new" / "deeper").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700
    assert files == {"db.sqlite3": 0o600, "db.sqlite3-wal": 0o600, "db.sqlite3-shm": 0o600}


async def test_existing_folder_is_kept_and_readable_files_are_tightened(tmp_path: Path) -> None:
    """A folder that exists is the operator's (left as it is); database files readable by others are made 0600."""
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o755)
    path = folder / "db.sqlite3"
    sqlite3.connect(path).close()
    path.chmod(0o644)
    db = await Database.open(path)
    await db.close()
    assert folder.stat().st_mode & 0o777 == 0o755
    assert path.stat().st_mode & 0o777 == 0o600


async def test_posted_articles_sharing_a_category_in_a_server(store_location: str) -> None:
    """The archive candidates: posted articles of the server sharing a category (any case), newest first, once each."""
    store = await Store.open(store_location, SystemClock())
    try:
        feeds = [
            await store.feeds.add(
                guild_id=guild,
                url=f"https://paper.example/feed{guild}",
                channel_id=guild + 1,
                channel_kind="forum",
                tag_map={},
                poll_interval=600,
                created_by=None,
            )
            for guild in (10, 20)
        ]

        def item(n: int, categories: list[str]) -> dict[str, object]:
            return {
                "guid": f"g{n}",
                "title": f"Story {n}",
                "link": f"https://paper.example/{n}",
                "summary": "",
                "published": datetime(2025, 1, n, tzinfo=UTC),
                "content_hash": f"h{n}",
                "status": "pending",
                "categories": categories,
            }

        await store.articles.insert_many(
            feeds[0],
            [item(1, ["Council", "Transport"]), item(2, ["sport"]), item(3, ["transport"]), item(4, ["Transport"])],
        )
        await store.articles.insert_many(feeds[1], [item(5, ["Transport"])])
        ids = {
            row["guid"]: int(row["id"]) for row in await store.db.fetchall("SELECT id, guid FROM articles ORDER BY id")
        }
        for guid in ("g1", "g2", "g3", "g5"):  # g4 is still pending
            await store.articles.mark_posted(ids[guid], channel_id=11, thread_id=None, message_id=ids[guid])

        found = await store.articles.posted_in_guild_sharing(10, ["TRANSPORT", "council"], ids["g3"], 10)
        assert [a.guid for a in found] == ["g1"]  # not itself, not pending, not sport, not the other server
        found = await store.articles.posted_in_guild_sharing(10, ["Transport", "Council"], 0, 10)
        assert [a.guid for a in found] == ["g3", "g1"]
    finally:
        await store.close()
