"""The bot against the loopback fake Discord: boot, command sync, status, setup, refusals, shutdown."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.clock import SystemClock
from bot.status import collect_status, format_report
from bot.store import Store
from tests.fakediscord import EPHEMERAL, FakeDiscord
from tests.helpers import Booted, World, dead_letter, output_of, reaped, spawn

ROOT = Path(__file__).resolve().parent.parent


async def test_boots_and_registers_commands_once(world: World, booter: Any) -> None:
    """First start syncs the commands; a restart with the same commands does not sync again."""
    first: Booted = await booter()
    assert first.bot.synced
    assert len(world.fake.command_syncs) == 1
    names = {c["name"] for c in world.fake.commands_for(None)}
    assert {"readersviews", "feed"} <= names
    await first.stop()

    second: Booted = await booter()
    assert not second.bot.synced
    assert len(world.fake.command_syncs) == 1, "a restart with unchanged commands must not sync again"


async def test_no_two_commands_share_a_name(running: Booted, world: World) -> None:
    registered = world.fake.commands_for(None)
    counts = Counter((c.get("type", 1), c["name"]) for c in registered)
    assert all(n == 1 for n in counts.values()), counts
    for command in registered:
        subs = [o["name"] for o in command.get("options", []) if o["type"] in (1, 2)]
        assert len(subs) == len(set(subs)), command["name"]


async def test_status_answers_admin(running: Booted, world: World) -> None:
    ix = await world.fake.slash(world.guild, world.admin, "readersviews status")
    response = await ix.wait_response()
    assert response["type"] == 4
    assert response["data"]["flags"] & EPHEMERAL
    text = response["data"]["content"]
    assert "readersviews" in text and "schema v" in text and "Outbox:" in text
    if running.bot.store.db.dialect == "postgres":
        assert "Database: `postgresql://readersviews@" in text  # the URL (never with a password)
    else:
        assert "readersviews.sqlite3" in text


async def test_non_admin_is_refused_clearly(running: Booted, world: World) -> None:
    ix = await world.fake.slash(world.guild, world.reader, "readersviews status")
    response = await ix.wait_response()
    assert response["data"]["flags"] & EPHEMERAL
    assert "Only server admins" in response["data"]["content"]
    ix = await world.fake.slash(world.guild, world.reader, "readersviews setup", alert_channel=world.alerts)
    response = await ix.wait_response()
    assert "Only server admins" in response["data"]["content"]
    assert await running.bot.store.settings.get(world.guild.id, "alert_channel_id") == world.alerts.id


async def test_admin_commands_are_hidden_by_default(running: Booted, world: World) -> None:
    """Discord hides admin commands from members without Manage Server (default_member_permissions)."""
    by_name = {c["name"]: c for c in world.fake.commands_for(None)}
    for name in ("readersviews", "feed"):
        assert str(by_name[name]["default_member_permissions"]) == str(1 << 5)
        assert by_name[name].get("contexts") == [0] or by_name[name].get("dm_permission") is False


async def test_setup_from_discord(world: World, booter: Any) -> None:
    """A newcomer with only a token finishes set-up inside Discord."""
    booted: Booted = await booter()
    ix = await world.fake.slash(world.guild, world.admin, "readersviews settings")
    text = (await ix.wait_response())["data"]["content"]
    assert "Alert channel: not set" in text and "/readersviews setup alert_channel:" in text

    ix = await world.fake.slash(
        world.guild,
        world.admin,
        "readersviews setup",
        alert_channel=world.alerts,
        editor_role=world.editor_role,
    )
    response = await ix.wait_response()
    assert "Saved" in response["data"]["content"]
    settings = await booted.bot.store.settings.get_all(world.guild.id)
    assert settings == {"alert_channel_id": world.alerts.id, "editor_role_id": world.editor_role.id}

    ix = await world.fake.slash(world.guild, world.admin, "readersviews setup", alert_channel=world.locked)
    response = await ix.wait_response()
    assert "can't post in" in response["data"]["content"]

    ix = await world.fake.slash(world.guild, world.admin, "readersviews setup")
    assert "Nothing to change" in (await ix.wait_response())["data"]["content"]


async def test_settings_survive_restart(world: World, booter: Any) -> None:
    first: Booted = await booter()
    ix = await world.fake.slash(world.guild, world.admin, "readersviews setup", review_channel=world.review)
    await ix.wait_response()
    await first.stop()
    second: Booted = await booter()
    assert await second.bot.store.settings.get(world.guild.id, "review_channel_id") == world.review.id


async def test_messages_never_ping(running: Booted, world: World) -> None:
    """Alerts carry text from outside (feed titles, errors): mentions are disabled on everything sent."""
    await running.bot.alert(world.guild.id, "feed @everyone <@&1> broke")
    await world.fake.roundtrip()
    sent = world.fake.messages_in(world.alerts)[-1]
    meta = world.fake.message_meta[int(sent["id"])]
    assert meta["allowed_mentions"] == {"parse": []} or meta["allowed_mentions"].get("parse") == []


async def test_sigterm_shuts_down_cleanly(world: World, tmp_path: Path) -> None:
    """`readersviews run` in its own process: SIGTERM closes the bot, the HTTP client and the DB; exit 0."""
    process = await spawn(world, tmp_path, "-m", "bot", "--config", "{config}", "run")
    async with reaped(process):
        await world.fake.wait_for_ready(timeout=30)
        await world.fake.roundtrip()
        process.send_signal(signal.SIGTERM)
        text = await output_of(process)
    assert process.returncode == 0, text
    assert "stopped cleanly" in text
    assert "Traceback" not in text
    # The DB was closed properly: the WAL was checkpointed away.
    assert (
        not (tmp_path / "readersviews.sqlite3-wal").exists()
        or (tmp_path / "readersviews.sqlite3-wal").stat().st_size == 0
    )


async def test_fake_discord_is_not_discord(fake: FakeDiscord) -> None:
    """Guard: the tests must never talk to the real Discord."""
    assert fake.api_base.startswith("http://127.0.0.1:")


async def test_outbox_command_shows_dead_letters_and_retries(running: Booted, world: World) -> None:
    """Admins see the backlog and dead letters with their errors, and can retry one."""
    store = running.bot.store
    row_id = await dead_letter(store, world.guild.id, "WordPress refused the credentials (401)")
    ix = await world.fake.slash(world.guild, world.admin, "readersviews outbox")
    text = (await ix.wait_response())["data"]["content"]
    assert "dead 1" in text and f"#{row_id}" in text and "401" in text
    ix = await world.fake.slash(world.guild, world.admin, "readersviews outbox", retry=row_id)
    text = (await ix.wait_response())["data"]["content"]
    assert "will be delivered again" in text


async def test_status_shows_only_this_servers_data(tmp_path: Path) -> None:
    """One server's admins never see another server's feeds, alerts or site items in /readersviews status."""
    store = await Store.open(tmp_path / "db.sqlite3", SystemClock())
    try:
        for guild_id, host in ((111, "mine.example"), (222, "secret-other.example")):
            fid = await store.feeds.add(
                guild_id=guild_id,
                url=f"https://{host}/feed?key=abc",
                channel_id=5,
                channel_kind="text",
                tag_map={},
                poll_interval=900,
                created_by=1,
            )
            await store.db.write("UPDATE feeds SET last_error='HTTP 403', last_poll_at='2024-01-01' WHERE id=?", (fid,))
        mine = await dead_letter(store, 111, "my site error")
        theirs = await dead_letter(store, 222, "their site error")
        recent = [("t1", 222, "other server's alert"), ("t2", 111, "my alert"), ("t3", None, "operator note")]
        report = await collect_status(
            store, guild_id=111, started_at=None, now=datetime.now(UTC), latency=0.1, recent=recent
        )
        text = format_report(report)
        assert "mine.example" in text and "my alert" in text and f"outbox #{mine}" in text
        assert "secret-other" not in text and "other server's alert" not in text
        assert f"#{theirs}" not in text and "their site error" not in text
        assert "operator note" in text  # notes of no particular server (the poller crashed) show everywhere
        assert report.counts["feeds"] == 1 and report.counts["contributions"] == 1
        assert "dead 2" in text  # the site backlog is shared: counts only
    finally:
        await store.close()


async def test_outbox_command_hides_and_refuses_other_servers_items(running: Booted, world: World) -> None:
    """/readersviews outbox lists and retries only this server's items; others are counted, not shown."""
    store = running.bot.store
    theirs = await dead_letter(store, world.guild.id + 1, "their secret error")
    ix = await world.fake.slash(world.guild, world.admin, "readersviews outbox")
    text = (await ix.wait_response())["data"]["content"]
    assert "dead 1" in text and f"#{theirs}" not in text and "their secret error" not in text
    ix = await world.fake.slash(world.guild, world.admin, "readersviews outbox", retry=theirs)
    text = (await ix.wait_response())["data"]["content"]
    assert f"There is no waiting or dead item #{theirs}" in text
    assert (await store.outbox.get(theirs)).state == "dead"


SLOW_SHUTDOWN = r"""
import asyncio, sys
from bot.app import Runtime
from bot.config import Secrets, load_config
from pathlib import Path

async def main() -> None:
    secrets = Secrets.from_env()
    runtime = await Runtime.create(load_config(Path(sys.argv[1]), required=True), secrets)

    async def hang() -> None:
        print("shutdown hook hangs", flush=True)
        await asyncio.Event().wait()

    runtime.bot.on_shutdown(hang)
    await runtime.run_until_signalled(secrets.discord_token.get_secret_value())

asyncio.run(main())
"""


async def test_second_sigterm_exits_during_a_slow_shutdown(world: World, tmp_path: Path) -> None:
    """A second SIGTERM while shutdown hangs exits at once with status 1, saying so."""
    process = await spawn(world, tmp_path, "-c", SLOW_SHUTDOWN, "{config}")
    seen: list[bytes] = []
    async with reaped(process):
        await world.fake.wait_for_ready(timeout=30)
        await world.fake.roundtrip()
        process.send_signal(signal.SIGTERM)
        assert process.stdout is not None
        while b"shutdown hook hangs" not in (line := await asyncio.wait_for(process.stdout.readline(), 30)):
            assert line, b"".join(seen).decode()
            seen.append(line)
        process.send_signal(signal.SIGTERM)
        text = b"".join(seen).decode() + await output_of(process)
    assert process.returncode == 1, text
    assert "second signal: exiting now" in text


async def test_cog_that_fails_to_load_is_one_line(world: World, tmp_path: Path) -> None:
    """A cog module that cannot be loaded stops `run` with one line naming it, not a traceback."""
    # bot.config is a module with no setup()
    process = await spawn(
        world, tmp_path, "-m", "bot", "--config", "{config}", "run", cogs=["cogs.admin", "bot.config"]
    )
    async with reaped(process):
        text = await output_of(process)
    assert process.returncode == 1, text
    assert "Traceback" not in text
    assert text.strip().splitlines()[-1].startswith("readersviews: error: cannot load cog 'bot.config'"), text


async def test_outbox_command_redacts_url_secrets_in_errors(running: Booted, world: World) -> None:
    """A delivery error quoting a URL shows it without credentials or query string in Discord."""
    store = running.bot.store
    await dead_letter(store, world.guild.id, "cannot connect to WordPress at http://u:hunter2pass@wp.example/?k=s3cret")
    ix = await world.fake.slash(world.guild, world.admin, "readersviews outbox")
    text = (await ix.wait_response())["data"]["content"]
    assert "http://***@wp.example/" in text
    assert "hunter2pass" not in text and "s3cret" not in text


async def test_setup_refuses_everyone_and_bot_managed_roles(running: Booted, world: World) -> None:
    """@everyone or a bot's own role as editor/organizer role would let anyone pass: refused, nothing saved."""
    before = await running.bot.store.settings.get_all(world.guild.id)
    everyone = world.guild.everyone
    ix = await world.fake.slash(world.guild, world.admin, "readersviews setup", editor_role=everyone)
    text = (await ix.wait_response())["data"]["content"]
    assert "@everyone can't be the editor role" in text and "Nothing was saved" in text
    bot_role = world.guild.bot_role  # type: ignore[attr-defined]
    ix = await world.fake.slash(
        world.guild, world.admin, "readersviews setup", alert_channel=world.review, organizer_role=bot_role
    )
    text = (await ix.wait_response())["data"]["content"]
    assert "managed by a bot or integration" in text and "organizer role" in text
    assert await running.bot.store.settings.get_all(world.guild.id) == before


async def test_everyone_as_seeded_editor_role_lets_no_reader_pass(running: Booted, world: World) -> None:
    """An editor role equal to @everyone (seeded from the config) counts as unset, not as 'everyone is an editor'."""
    await running.bot.store.settings.set_many(world.guild.id, {"editor_role_id": world.guild.id}, actor_id=1)
    ix = await world.fake.slash(world.guild, world.reader, "views queue")
    text = (await ix.wait_response())["data"]["content"]
    assert "no editor role is set yet" in text


async def test_site_alert_goes_only_to_the_items_server(running: Booted, world: World) -> None:
    """A dead delivery's alert names the item, so only the server it belongs to hears of it."""
    from bot.outbox import alert_text

    bot = running.bot
    theirs = await bot.store.outbox.get(await dead_letter(bot.store, world.guild.id + 1, "their error"))
    mine = await bot.store.outbox.get(await dead_letter(bot.store, world.guild.id, "my error"))
    await bot._outbox_alert(theirs, alert_text(theirs))
    assert [gid for _, gid, text in bot.health.last_errors if "their error" in text] == [world.guild.id + 1]
    await bot._outbox_alert(mine, alert_text(mine))
    assert [gid for _, gid, text in bot.health.last_errors if "my error" in text] == [world.guild.id]


async def test_one_bot_per_database(world: World, tmp_path: Path, store_location: str) -> None:
    """A second `run` (or a `migrate`) on a running bot's database refuses in one line naming the running one;
    once that one is killed (SIGKILL: no clean-up), a new `run` takes over at once.

    SQLite: a lock on a file beside the database; PostgreSQL: an advisory lock held by a connection."""
    sections = {"database": {"url": store_location}} if store_location.startswith("postgresql://") else {}
    first = await spawn(world, tmp_path, "-m", "bot", "--config", "{config}", "run", **sections)
    async with reaped(first):
        await world.fake.wait_for_ready(timeout=30)
        await world.fake.roundtrip()
        for command in ("run", "migrate"):
            second = await spawn(world, tmp_path, "-m", "bot", "--config", "{config}", command, **sections)
            async with reaped(second):
                lines = (await output_of(second)).strip().splitlines()
            assert second.returncode == 1, lines
            assert len(lines) == 1, lines
            assert lines[0].startswith("readersviews: error: another readersviews is using "), lines
            assert f"run on host {socket.gethostname()}, pid {first.pid}, since 20" in lines[0], lines
        assert world.fake.identify_count == 1, "the second bot must not connect (it would post everything again)"
        first.kill()
        await first.wait()
    world.fake.gateway.ready.clear()
    third = await spawn(world, tmp_path, "-m", "bot", "--config", "{config}", "run", **sections)
    async with reaped(third):
        await world.fake.wait_for_ready(timeout=30)
        assert world.fake.identify_count == 2
        third.send_signal(signal.SIGTERM)
        text = await output_of(third)
    assert third.returncode == 0, text


STOP_BEFORE_READY = r"""
import asyncio, sys
from bot.app import Runtime
from bot.config import Secrets, load_config
from pathlib import Path

plain_aclose = Runtime.aclose

async def aclose_then_linger(self: Runtime) -> None:
    await plain_aclose(self)
    print("client closed", flush=True)
    await asyncio.sleep(4)  # discord.py's guild_ready_timeout (2 s) runs out in here

Runtime.aclose = aclose_then_linger

async def main() -> None:
    secrets = Secrets.from_env()
    runtime = await Runtime.create(load_config(Path(sys.argv[1]), required=True), secrets)

    async def on_ready() -> None:  # as `readersviews run` listens (bot.tuning.freeze_gc_once)
        print("ready", flush=True)

    runtime.bot.add_listener(on_ready, "on_ready")
    await runtime.run_until_signalled(secrets.discord_token.get_secret_value())

asyncio.run(main())
"""


async def test_sigterm_before_ready_leaves_no_ready_event_behind(world: World, tmp_path: Path) -> None:
    """SIGTERM while discord.py still waits out `guild_ready_timeout`: its pending ready is cancelled, not
    dispatched into the closed client (which printed a traceback at exit)."""
    process = await spawn(world, tmp_path, "-c", STOP_BEFORE_READY, "{config}", discord={"guild_ready_timeout": 2.0})
    async with reaped(process):
        await world.fake.wait_for_ready(timeout=30)
        process.send_signal(signal.SIGTERM)
        text = await output_of(process)
    assert process.returncode == 0, text
    assert "client closed" in text
    assert "Traceback" not in text and "Task exception was never retrieved" not in text, text
