"""Articles in a real `readersviews run` process: SIGKILL and SIGTERM in the middle of a text post's thread step.

Each test runs once per store: the process's database is the SQLite file or the PostgreSQL schema of
`store_location`.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

from bot.clock import SystemClock
from bot.store import Store
from tests.fakediscord.server import HoldRule
from tests.helpers import World, output_of, reaped, spawn

THREAD_FROM_MESSAGE = r"/channels/\d+/messages/\d+/threads$"
WAIT = 60  # seconds a step may take on a loaded machine before the test gives up (not a timing check)


def database(store_location: str) -> dict[str, Any]:
    """The config's `database` section for the process: the test's SQLite file or PostgreSQL schema."""
    if store_location.startswith("postgresql://"):
        return {"database": {"url": store_location}}
    return {"database": {"path": store_location}}


async def one_pending_text_article(world: World, store_location: str) -> None:
    """The bot's database, prepared: a text-channel feed (not due for polling) with one article to post."""
    store = await Store.open(store_location, SystemClock())
    try:
        await store.settings.set_many(world.guild.id, {"alert_channel_id": world.alerts.id}, actor_id=None)
        feed_id = await store.feeds.add(
            guild_id=world.guild.id,
            url="https://paper.example/feed",
            channel_id=world.discussion.id,
            channel_kind="text",
            tag_map={},
            poll_interval=86400,
            created_by=None,
        )
        later = SystemClock().now().replace(year=SystemClock().now().year + 1)
        await store.feeds.record_poll(feed_id, status="ok", next_poll_at=later)
        item = {"guid": "story-1", "title": "Story number 1", "link": "https://paper.example/1"}
        await store.articles.insert_many(
            feed_id, [{**item, "summary": "A summary.", "published": None, "content_hash": "h", "status": "pending"}]
        )
    finally:
        await store.close()


async def recorded_thread(store_location: str) -> tuple[int | None, int | None, str | None]:
    store = await Store.open(store_location, SystemClock(), migrate=False)
    try:
        row = await store.db.fetchone("SELECT message_id, thread_id, thread_step FROM articles WHERE guid = 'story-1'")
        return row["message_id"], row["thread_id"], row["thread_step"]
    finally:
        await store.close()


async def until_held(held: HoldRule) -> None:
    await asyncio.wait_for(held.arrived.wait(), WAIT)


def embeds(world: World) -> list[dict[str, object]]:
    return [m for m in world.fake.messages_in(world.discussion) if m.get("embeds")]


async def test_sigkill_between_post_and_thread_is_recovered_at_start(
    world: World, tmp_path: Path, store_location: str
) -> None:
    """Killed after the message went out, before its thread: the next start makes the thread and records it."""
    await one_pending_text_article(world, store_location)
    held = world.fake.hold_next("POST", THREAD_FROM_MESSAGE)
    first = await spawn(world, tmp_path, "-m", "bot", "--config", "{config}", "run", **database(store_location))
    async with reaped(first):
        await until_held(held)
        first.kill()
        await first.wait()
        held.release(fail=503)  # the killed bot's request never reached Discord
        assert len(embeds(world)) == 1 and world.fake.threads_in(world.discussion) == []

    made = world.fake.hold_next("POST", THREAD_FROM_MESSAGE, after_effect=True)
    second = await spawn(world, tmp_path, "-m", "bot", "--config", "{config}", "run", **database(store_location))
    async with reaped(second):
        await until_held(made)  # the restarted bot made the thread; its answer is on its way
        second.send_signal(signal.SIGTERM)
        made.release()
        text = await output_of(second, WAIT)
    assert second.returncode == 0, text
    [thread] = world.fake.threads_in(world.discussion)
    [message] = embeds(world)
    assert await recorded_thread(store_location) == (int(message["id"]), thread.id, None)  # type: ignore[call-overload]


async def test_sigterm_during_the_thread_step_waits_for_it(world: World, tmp_path: Path, store_location: str) -> None:
    """SIGTERM while Discord is making the thread: the bot waits for the answer and records it, then exits 0."""
    await one_pending_text_article(world, store_location)
    held = world.fake.hold_next("POST", THREAD_FROM_MESSAGE)
    process = await spawn(world, tmp_path, "-m", "bot", "--config", "{config}", "run", **database(store_location))
    lines: list[str] = []
    async with reaped(process):
        await until_held(held)
        process.send_signal(signal.SIGTERM)
        assert process.stdout is not None
        async with asyncio.timeout(WAIT):
            while not any("waiting for 1 article post(s) under way" in line for line in lines):
                line = await process.stdout.readline()
                assert line, "".join(lines)
                lines.append(line.decode())
        held.release()
        text = "".join(lines) + await output_of(process, WAIT)
    assert process.returncode == 0, text
    [thread] = world.fake.threads_in(world.discussion)
    [message] = embeds(world)
    assert await recorded_thread(store_location) == (int(message["id"]), thread.id, None), text
