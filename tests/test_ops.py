"""Running it as a service: metrics and health, JSON logs, boot retries, `readersviews status`, paths."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bot.boot import backoff
from bot.clock import SystemClock
from bot.config import ConfigError, load_config
from bot.logs import JsonFormatter, RedactingFilter, entity_ids, ids
from bot.store import Store
from tests.fakediscord import FakeDiscord
from tests.feedserver import FeedServer
from tests.helpers import (
    Booted,
    FakeClock,
    World,
    add_feed,
    dead_letter,
    free_port,
    make_config,
    output_of,
    poll,
    read_until,
    reaped,
    rss,
    stop,
    story,
)

ROOT = Path(__file__).resolve().parent.parent


async def scrape(port: int) -> dict[str, float]:
    """GET /metrics: every sample as 'name{label="value",...}' -> value."""
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


async def healthz(port: int) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/healthz") as response:
        return response.status, await response.json()


# -- metrics and health --------------------------------------------------------------------------


async def test_metrics_move_while_the_bot_works(world: World, booter: Any, feed_site: FeedServer) -> None:
    """A scrape while the bot posts an article, answers a command and raises an alert shows each counted."""
    port = free_port()
    clock = FakeClock()
    booted: Booted = await booter(clock=clock, metrics={"listen": f"127.0.0.1:{port}"})
    await booted.bot.store.settings.set_many(world.guild.id, {"alert_channel_id": world.alerts.id}, actor_id=None)
    before = await scrape(port)
    assert before["readersviews_gateway_connected"] == 1
    assert before["readersviews_guilds"] == 1
    assert before['readersviews_build_info{version="0.1.0"}'] == 1

    feed_site.set_feed("/feed", rss([story(1)]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    feed_site.set_feed("/feed", rss([story(2), story(1)]))
    await poll(booted, clock, world)
    assert [post.name for post in world.fake.threads_in(world.forum)] == ["Story number 2"]
    await booted.bot.alert(world.guild.id, "the site refuses credentials")
    await dead_letter(booted.bot.store, world.guild.id, "HTTP 401")

    after = await scrape(port)

    def moved(name: str) -> float:
        return after.get(name, 0) - before.get(name, 0)

    assert moved("readersviews_articles_posted_total") == 1
    assert moved('readersviews_feed_polls_total{outcome="ok"}') >= 1
    assert moved('readersviews_interactions_total{outcome="answered"}') == 1  # /feed add
    assert moved("readersviews_alerts_total") == 1
    assert moved('readersviews_discord_requests_total{method="POST",status="200"}') >= 2  # the post, the alert
    assert moved("readersviews_db_writes_total") >= 3
    assert after['readersviews_feeds{state="ok"}'] == 1
    assert after['readersviews_outbox_items{state="dead"}'] == 1
    assert after['readersviews_letters{state="recorded"}'] == 1
    assert after["readersviews_gateway_latency_seconds"] >= 0
    assert "readersviews_event_loop_lag_seconds" in after


async def test_healthz_says_what_is_wrong(world: World, booter: Any) -> None:
    """200 with a JSON body while all is well; 503 and the reason when the database refuses writes."""
    port = free_port()
    booted: Booted = await booter(metrics={"listen": f"127.0.0.1:{port}"})
    status, body = await healthz(port)
    assert status == 200, body
    assert body["status"] == "ok" and body["gateway"] == "connected" and body["database"] == "writable"
    assert body["guilds"] == 1

    db = booted.bot.store.db
    # Make the database refuse the health check's write: read-only (SQLite), a constraint (PostgreSQL).
    refuse, allow = (
        (
            "ALTER TABLE meta ADD CONSTRAINT refused CHECK (key <> 'healthz_at') NOT VALID",
            "ALTER TABLE meta DROP CONSTRAINT refused",
        )
        if db.dialect == "postgres"
        else ("PRAGMA query_only = 1", "PRAGMA query_only = 0")
    )
    await (db.write(refuse) if db.dialect == "postgres" else db.conn.execute(refuse))
    status, body = await healthz(port)
    assert status == 503
    assert body["database"] == "not writable" and "database does not take writes" in body["reason"]
    assert body["gateway"] == "connected"
    await (db.write(allow) if db.dialect == "postgres" else db.conn.execute(allow))

    await booted.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        await healthz(port)  # the server stops with the bot


async def test_metrics_port_in_use_is_one_clear_error(world: World, booter: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"metrics.listen: cannot listen on 127.0.0.1:{port}"):
            await booter(metrics={"listen": f"127.0.0.1:{port}"})


# -- logs ----------------------------------------------------------------------------------------


def test_json_formatter_one_object_per_line_with_ids() -> None:
    """A record with ids, a multi-line message and a traceback is still one line of JSON."""
    formatter = JsonFormatter()
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        record = logging.LogRecord("bot.outbox", logging.ERROR, __file__, 1, "line one\nline %s", ("two",), None)
        record.exc_info = sys.exc_info()
    for key, value in {**entity_ids("letter:12", outbox_id=7), **ids(guild_id=5, channel_id=None)}.items():
        setattr(record, key, value)
    line = formatter.format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and entry["logger"] == "bot.outbox"
    assert entry["message"] == "line one\nline two"
    assert (entry["letter_id"], entry["outbox_id"], entry["guild_id"]) == (12, 7, 5)
    assert "channel_id" not in entry
    assert "ValueError: bad" in entry["exception"]
    assert entry["time"].endswith("+00:00")


def test_json_lines_are_redacted() -> None:
    formatter, secret = JsonFormatter(), "s3cret-token-value"
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "token is %s", (secret,), None)
    RedactingFilter([secret]).filter(record)
    assert secret not in formatter.format(record)


async def spawn_run(config_path: Path, token: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "DISCORD_TOKEN": token, "PYTHONPATH": str(ROOT)}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "--config",
        str(config_path),
        "run",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


def write_config(fake: FakeDiscord, tmp_path: Path, **sections: Any) -> Path:
    config = make_config(fake, tmp_path, **sections)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    return path


async def test_json_logs_every_line_parses(world: World, tmp_path: Path) -> None:
    """`logging.format: json`: the whole run, start to clean stop, is JSON lines; login says as whom and where."""
    path = write_config(world.fake, tmp_path, logging={"format": "json"})
    process = await spawn_run(path, world.fake.token)
    seen: list[str] = []
    await read_until(process, "logged in as", seen)
    assert await stop(process, seen) == 0, "".join(seen)
    entries = [json.loads(line) for line in seen if line.strip()]  # every line parses
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in entries)
    login = next(entry for entry in entries if entry["message"].startswith("logged in as"))
    assert login["level"] == "INFO" and "readersviews" in login["message"] and "in 1 server" in login["message"]
    assert entries[-1]["message"] == "stopped cleanly"


# -- boot ----------------------------------------------------------------------------------------


def test_backoff_doubles_up_to_a_cap() -> None:
    assert [backoff(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


async def test_run_waits_for_discord_to_come_up(tmp_path: Path) -> None:
    """Started before Discord can be reached, `run` retries with back-off and comes up when it can."""
    fake = FakeDiscord(heartbeat_interval_ms=500)
    fake.port = free_port()
    guild = fake.add_guild("The Weekly")
    path = write_config(fake, tmp_path, discord={"connect_timeout_seconds": 120})
    process = await spawn_run(path, fake.token)
    seen: list[str] = []
    try:
        async with reaped(process):
            await read_until(process, "can't be reached yet", seen)
            await read_until(process, "can't be reached yet", seen)  # a second attempt: it keeps trying
            await fake.start()
            await fake.wait_for_ready(timeout=60)
            await read_until(process, "logged in as", seen)
            assert f"in {len(fake.guilds)} server(s)" in seen[-1] and guild.id in fake.guilds
            assert await stop(process, seen) == 0, "".join(seen)
    finally:
        await fake.stop()
    text = "".join(seen)
    assert "retrying in 1 s" in text and "retrying in 2 s" in text, text
    assert "Traceback" not in text


async def test_run_gives_up_after_the_connect_timeout(tmp_path: Path) -> None:
    """Nothing listening for longer than discord.connect_timeout_seconds: one error line, exit 1."""
    fake = FakeDiscord()
    fake.port = free_port()  # never started
    path = write_config(fake, tmp_path, discord={"connect_timeout_seconds": 2})
    process = await spawn_run(path, fake.token)
    async with reaped(process):
        text = await output_of(process, 60)
    assert process.returncode == 1, text
    errors = [line for line in text.splitlines() if line.startswith("readersviews: error:")]
    assert len(errors) == 1, text
    assert f"cannot reach http://127.0.0.1:{fake.port}/api/v10" in errors[0]
    assert "gave up after 2 s" in errors[0] and "discord.connect_timeout_seconds" in errors[0]
    assert "Traceback" not in text


async def test_sigterm_while_waiting_for_discord_stops_cleanly(tmp_path: Path) -> None:
    """systemd stopping the unit while the bot still waits for the network: a clean exit 0 with a
    log line, not death by the signal (exit 143) halfway through start-up."""
    fake = FakeDiscord()
    fake.port = free_port()  # never started
    path = write_config(fake, tmp_path, discord={"connect_timeout_seconds": 120})
    process = await spawn_run(path, fake.token)
    seen: list[str] = []
    async with reaped(process):
        await read_until(process, "can't be reached yet", seen)
        assert await stop(process, seen) == 0, "".join(seen)
    text = "".join(seen)
    assert "stopped before connecting to Discord" in text, text
    assert "Traceback" not in text


async def test_rejected_token_exits_at_once_and_defaults_are_named(fake: FakeDiscord, tmp_path: Path) -> None:
    """No config file: `run` names the defaults and the database it uses; a wrong token is final (no retries)."""
    script = (
        "import sys, yarl, bot.app as app\n"
        f"app.DISCORD_API_BASE = {fake.api_base!r}\n"
        f"app.DISCORD_GATEWAY = yarl.URL({fake.gateway_url!r})\n"
        "from bot.__main__ import main\n"
        "sys.exit(main(['run']))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "READERSVIEWS_CONFIG"}
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={**env, "DISCORD_TOKEN": "not-the-token", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert "no config file at" in result.stderr and "built-in defaults" in result.stderr
    assert str(tmp_path / "data" / "readersviews.sqlite3") in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("readersviews: error: Discord rejected DISCORD_TOKEN")
    assert "retrying" not in result.stderr
    assert len(fake.requests_to("/users/@me")) == 1


# -- config paths --------------------------------------------------------------------------------


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same file gives the same database wherever the bot is started from."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "elsewhere").mkdir()
    path = tmp_path / "etc" / "config.yaml"
    path.write_text("database: {path: data/rv.sqlite3}\n")
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert load_config(path, required=True).database.path == tmp_path / "etc" / "data" / "rv.sqlite3"
    monkeypatch.chdir(tmp_path / "etc")
    assert load_config(Path("config.yaml"), required=True).database.path == tmp_path / "etc" / "data" / "rv.sqlite3"
    path.write_text(f"database: {{path: {tmp_path / 'abs.sqlite3'}}}\n")
    assert load_config(path, required=True).database.path == tmp_path / "abs.sqlite3"


def test_a_database_left_where_the_old_rule_put_it_is_not_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative path that used to mean the working directory: stop with both paths, never start on an empty DB."""
    (tmp_path / "config").mkdir()
    (tmp_path / "data").mkdir()
    sqlite3.connect(tmp_path / "data" / "rv.sqlite3").close()
    path = tmp_path / "config" / "config.yaml"
    path.write_text("database: {path: data/rv.sqlite3}\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_config(path, required=True)
    assert str(tmp_path / "config" / "data" / "rv.sqlite3") in str(caught.value)
    assert str(tmp_path / "data" / "rv.sqlite3") in str(caught.value)


def test_migrate_from_another_folder_uses_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "config.yaml").write_text("database: {path: state/rv.sqlite3}\n")
    result = subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(tmp_path / "etc" / "config.yaml"), "migrate"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "etc" / "state" / "rv.sqlite3").exists()
    assert str(tmp_path / "etc" / "state" / "rv.sqlite3") in result.stdout


# -- readersviews status -------------------------------------------------------------------------


async def test_status_cli_shows_every_server_from_the_database(tmp_path: Path) -> None:
    """`readersviews status` (and --json) reports each server as /readersviews status does, without Discord."""
    database = tmp_path / "rv.sqlite3"
    store = await Store.open(database, SystemClock())
    try:
        feed_id = await store.feeds.add(
            guild_id=111,
            url="https://a.example/feed",
            channel_id=1,
            channel_kind="text",
            tag_map={},
            poll_interval=900,
            created_by=None,
        )
        await store.feeds.record_poll(
            feed_id, status="error", next_poll_at=SystemClock().now(), error="HTTP 503 from a.example"
        )
        await dead_letter(store, 222, "WordPress refused the credentials (401)")
    finally:
        await store.close()
    config = tmp_path / "c.yaml"
    config.write_text(f"database: {{path: '{database}'}}\n")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bot", "--config", str(config), "status", *args],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
        )

    text = cli()
    assert text.returncode == 0, text.stderr
    first, second = text.stdout.split("== server 222")
    assert "== server 111" in first and "feeds 1" in first and "HTTP 503 from a.example" in first
    assert "(401)" not in first, "one server's problems are not shown under another"
    assert "contributions 1" in second and "dead 1" in second and "(401)" in second
    assert f"Database: `{database}`" in first

    data = json.loads(cli("--json").stdout)
    servers = {server["guild_id"]: server for server in data["servers"]}
    assert set(servers) == {111, 222}
    assert servers[111]["counts"]["feeds"] == 1 and servers[222]["outbox"] == {"dead": 1}
    assert any("HTTP 503" in line for line in servers[111]["last_errors"])
    assert servers[111]["uptime_seconds"] is None

    one = json.loads(cli("--json", "--guild", "222").stdout)
    assert [server["guild_id"] for server in one["servers"]] == [222]


def test_status_cli_without_a_database(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"database: {{path: '{tmp_path / 'none.sqlite3'}'}}\n")
    result = subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(config), "status"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "no database at" in result.stderr
    assert not (tmp_path / "none.sqlite3").exists()
