"""Shared fixtures: a loopback fake Discord with a newspaper's server, and the real bot booted against it."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.app import apply_endpoints
from bot.config import Config
from tests.fakediscord import FakeDiscord, perms
from tests.feedserver import FeedServer
from tests.helpers import Booted, FakeClock, World, boot, make_config
from tests.sitefake import FakeSite

PG_URL_ENV = "READERSVIEWS_TEST_PG_URL"
STORES = ("sqlite", "postgres")


async def fresh_postgres_location(base_url: str) -> tuple[str, Callable[[], Any]]:
    """A URL to an empty schema of its own in the test PostgreSQL, and a coroutine function dropping it.

    One schema per test (not one database): creating a schema is cheap, and the URL's
    `search_path` setting points every connection of the store at it.
    """
    import asyncpg

    schema = f"t_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(base_url)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await conn.close()

    async def drop() -> None:
        conn = await asyncpg.connect(base_url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    separator = "&" if "?" in base_url else "?"
    return f"{base_url}{separator}search_path={schema}", drop


def postgres_base_url() -> str:
    """The test PostgreSQL's URL (scripts/postgres-local.sh up); skip, or fail in CI, without one."""
    url = os.environ.get(PG_URL_ENV, "")
    if url:
        return url
    if os.environ.get("READERSVIEWS_REQUIRE_POSTGRES"):
        pytest.fail(f"{PG_URL_ENV} is not set, and CI requires the PostgreSQL store's tests")
    pytest.skip(f"no PostgreSQL: `bash scripts/postgres-local.sh up`, then set {PG_URL_ENV} (see README)")


@pytest.fixture(params=STORES)
async def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Where a test's store lives: a new SQLite file, or a new schema in the test PostgreSQL.

    Tests taking this fixture run once per store.
    """
    if request.param == "sqlite":
        yield str(tmp_path / "store.sqlite3")
        return
    location, drop = await fresh_postgres_location(postgres_base_url())
    try:
        yield location
    finally:
        await drop()


@pytest.fixture
async def pg_location() -> AsyncIterator[str]:
    """A new, empty schema in the test PostgreSQL (for PostgreSQL-only tests)."""
    location, drop = await fresh_postgres_location(postgres_base_url())
    try:
        yield location
    finally:
        await drop()


@pytest.fixture
async def site() -> AsyncIterator[FakeSite]:
    """A loopback site (WordPress REST and the signed webhook) that records what it is sent."""
    fake_site = FakeSite()
    await fake_site.start()
    yield fake_site
    await fake_site.stop()


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock starting now; tests move it with `advance` (a module may start it elsewhere)."""
    return FakeClock()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for adapters under test (closed at the end)."""
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
async def feed_site() -> AsyncIterator[FeedServer]:
    """A loopback news site serving feeds (and pages, images) that records every request."""
    async with FeedServer() as server:
        yield server


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    server = FakeDiscord(heartbeat_interval_ms=500)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
        apply_endpoints(Config())  # point discord.py back at Discord for the next test
    assert not server.errors, f"the fake Discord crashed handling requests: {server.errors}"
    assert not server.unhandled, f"the bot called routes the fake does not know: {server.unhandled}"


@pytest.fixture
def world(fake: FakeDiscord) -> World:
    guild = fake.add_guild("The Weekly")
    editor_role = guild.add_role("Editor")
    organizer_role = guild.add_role("Organizer")
    admin_role = guild.add_role("Admins", permissions=perms.MANAGE_GUILD)
    bot_only = [
        {"id": str(guild.id), "type": 0, "allow": "0", "deny": str(perms.SEND_MESSAGES)},
    ]
    return World(
        fake=fake,
        guild=guild,
        admin=guild.add_member("ada-admin", roles=[admin_role]),
        editor=guild.add_member("ed-editor", roles=[editor_role]),
        organizer=guild.add_member("olu-organizer", roles=[organizer_role]),
        reader=guild.add_member("rita-reader"),
        editor_role=editor_role,
        organizer_role=organizer_role,
        alerts=guild.add_text_channel("alerts"),
        review=guild.add_text_channel("letters-review"),
        forum=guild.add_forum_channel("articles", tags=["News", "Opinion", "Sport"]),
        discussion=guild.add_text_channel("discussion"),
        locked=guild.add_text_channel(
            "announcements",
            overwrites=[*bot_only, {"id": str(fake.bot.id), "type": 1, "allow": "0", "deny": str(perms.SEND_MESSAGES)}],
        ),
    )


@pytest.fixture
async def booter(fake: FakeDiscord, tmp_path: Path, store_location: str) -> AsyncIterator[Callable[..., Any]]:
    """`await booter(**config_sections)` boots a bot; every bot is stopped at the end of the test.

    The bots of one test share one store: the SQLite file, or (the `postgres` run) a PostgreSQL schema.
    """
    started: list[Booted] = []

    async def start(clock: Any = None, **sections: Any) -> Booted:
        if store_location.startswith("postgresql://") and "database" not in sections:
            sections["database"] = {"url": store_location}
        booted = await boot(fake, make_config(fake, tmp_path, **sections), clock=clock)
        started.append(booted)
        return booted

    yield start
    for booted in started:
        if not booted.task.done():
            await booted.stop()


@pytest.fixture
async def running(world: World, booter: Callable[..., Any]) -> Booted:
    """The bot, running against the paper's server, with its alert and review channels set up."""
    booted: Booted = await booter()
    await booted.bot.store.settings.set_many(
        world.guild.id,
        {
            "alert_channel_id": world.alerts.id,
            "review_channel_id": world.review.id,
            "editor_role_id": world.editor_role.id,
            "organizer_role_id": world.organizer_role.id,
        },
        actor_id=None,
    )
    return booted


def wordpress_settings() -> dict[str, str] | None:
    """Settings of a real WordPress started by scripts/wordpress-local.sh, if one is running."""
    env = {k: os.environ.get(f"READERSVIEWS_TEST_WP_{k.upper()}", "") for k in ("url", "user", "password")}
    if all(env.values()):
        return env
    env_file = Path(os.environ.get("WP_LOCAL_DIR", "/tmp/readersviews-wp")) / "env"
    if env_file.exists():
        values: dict[str, str] = {}
        for line in env_file.read_text().splitlines():
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip("'").replace("'\\''", "'")
        if values.get("WP_URL") and values.get("WP_APP_PASSWORD"):
            return {
                "url": values["WP_URL"],
                "user": values.get("WP_USER", "admin"),
                "password": values["WP_APP_PASSWORD"],
            }
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip `wordpress` tests without a real WordPress, unless CI demands one (then they fail)."""
    if os.environ.get("READERSVIEWS_REQUIRE_WORDPRESS"):
        return
    skip = pytest.mark.skip(
        reason="real WordPress not running: start it with `bash scripts/wordpress-local.sh up` (see README)"
    )
    settings = None
    for item in items:
        if "wordpress" in item.keywords:
            settings = settings if settings is not None else (wordpress_settings() or {})
            if not settings:
                item.add_marker(skip)


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A world-readable folder (the read-only test runs as another user)."""
    path = Path(tempfile.mkdtemp(prefix="rv-cli-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)
