"""The bot against the loopback fake Discord: boot, command sync, status, setup, refusals, shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import Booted, World, make_config
from tests.fakediscord import EPHEMERAL, FakeDiscord

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
    config = make_config(world.fake, tmp_path)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    env = {**os.environ, "DISCORD_TOKEN": world.fake.token, "PYTHONPATH": str(ROOT)}
    process = await asyncio.create_subprocess_exec(
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
    try:
        await world.fake.wait_for_ready(timeout=30)
        await world.fake.roundtrip()
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = output.decode()
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
    async with store.db.transaction() as conn:
        row_id = await store.outbox.enqueue(
            conn, kind="letter.create", entity="letter:1", payload={}, idempotency_key="letter:1:create:1"
        )
    await store.outbox.mark_dead(row_id, "WordPress refused the credentials (401)")
    ix = await world.fake.slash(world.guild, world.admin, "readersviews outbox")
    text = (await ix.wait_response())["data"]["content"]
    assert "dead 1" in text and f"#{row_id}" in text and "401" in text
    ix = await world.fake.slash(world.guild, world.admin, "readersviews outbox", retry=row_id)
    text = (await ix.wait_response())["data"]["content"]
    assert "will be delivered again" in text
