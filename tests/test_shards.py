"""Two `readersviews run` processes, one shard each, sharing one PostgreSQL database.

Each process gets only its own shard's servers from the (fake) gateway and answers their
interactions; the work that is not per server (here: the feeds) runs in one process at a time, and
when that process is killed mid-work (SIGKILL) the other takes it over: every article is posted once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from bot.clock import SystemClock
from bot.site.compose import Letter, compose_letter
from bot.store import Store
from bot.store.database import Database
from tests.fakediscord import FakeDiscord, Guild
from tests.feedserver import FeedServer
from tests.helpers import FakeClock, boot, make_config, rss, story
from tests.sitefake import WP_PASSWORD, WP_USER, FakeSite

ROOT = Path(__file__).resolve().parent.parent
ITEMS = 8  # per feed; Discord's 5 messages per 5 s per channel keeps the feed job busy for a while


async def spawn(
    fake: FakeDiscord,
    tmp_path: Path,
    location: str,
    shard_id: int,
    *,
    env: dict[str, str] | None = None,
    **sections: Any,
) -> asyncio.subprocess.Process:
    config = make_config(
        fake,
        tmp_path,
        database={"url": location},
        discord={"shard_count": 2, "shard_ids": [shard_id]},
        **sections,
    )
    path = tmp_path / f"shard-{shard_id}.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    env = {**os.environ, "DISCORD_TOKEN": fake.token, "PYTHONPATH": str(ROOT), **(env or {})}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "--config",
        str(path),
        "run",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def feeds_holder(location: str, job: str = "feeds") -> int | None:
    """The pid of the process holding a job (bot.claims), from its guard connection's name."""
    conn = await asyncpg.connect(location)
    try:
        name = await conn.fetchval(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
            " AND ((l.classid::bigint << 32) | l.objid::bigint)"
            " = hashtextextended(current_schema() || ':readersviews-job:' || $1, 0)",
            job,
        )
    finally:
        await conn.close()
    if not name:
        return None
    return int(name.split()[2].partition("@")[0])


async def posted(location: str) -> int:
    store = await Store.open(location, SystemClock(), migrate=False)
    try:
        return int(await store.db.scalar("SELECT count(*) FROM articles WHERE status = 'posted'") or 0)
    finally:
        await store.close()


async def polled_until(condition: Any, what: str, timeout: float = 60.0) -> None:  # noqa: ASYNC109
    """Poll `condition()` (a coroutine function) until it is true; fail naming `what` after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_two_processes_on_two_shards_post_every_article_once(
    fake: FakeDiscord, tmp_path: Path, pg_location: str
) -> None:
    guilds: list[Guild] = [fake.add_guild(f"Paper {n}", shard=(n, 2)) for n in (0, 1)]
    channels = [g.add_text_channel("news") for g in guilds]
    admins = [g.add_member(f"admin-{n}", roles=[g.add_admin_role()]) for n, g in enumerate(guilds)]
    site = FeedServer()
    await site.start()
    for n in (0, 1):
        site.set_feed(f"/feed-{n}.xml", rss([story(100 * n + i) for i in range(ITEMS)]))
    store = await Store.open(pg_location, SystemClock())
    try:
        for n, guild in enumerate(guilds):
            feed_id = await store.feeds.add(
                guild_id=guild.id,
                url=site.url(f"/feed-{n}.xml"),
                channel_id=channels[n].id,
                channel_kind="text",
                tag_map={},
                poll_interval=900,
                created_by=None,
            )
            # Baselined as /feed add leaves a feed (its first poll's stories are new), and due at once.
            await store.feeds.record_poll(feed_id, status="ok", next_poll_at=SystemClock().now())
    finally:
        await store.close()

    processes = {n: await spawn(fake, tmp_path, pg_location, n) for n in (0, 1)}
    try:
        await fake.wait_for_shards({0, 1}, timeout=60)
        assert fake.shards == {0: (0, 2), 1: (1, 2)}
        # Each server's interactions reach the process running its shard, which answers them.
        for n, (guild, admin) in enumerate(zip(guilds, admins, strict=True)):
            ix = await fake.slash(guild, admin, "readersviews status")
            response = await ix.wait_response(timeout=30)
            assert "schema v" in response["data"]["content"]
            # Answered by the process of the server's shard, which says what it runs.
            assert f"This process: shard {n} of 2 (this server's: {n}) · runs " in response["data"]["content"]

        # Kill the process doing the feeds once it has posted something, before it is done.
        await polled_until(lambda: _posted_some(pg_location), "the first article")
        holder = await feeds_holder(pg_location)
        assert holder in (processes[0].pid, processes[1].pid)
        killed = next(n for n, p in processes.items() if p.pid == holder)
        processes[killed].send_signal(signal.SIGKILL)
        await processes[killed].wait()
        assert await posted(pg_location) < 2 * ITEMS, "killed mid-work"

        # The other process takes the feeds over (its next try, bot.claims); then the killed one
        # comes back, and its shard is free at once.
        survivor = processes[1 - killed].pid

        async def taken_over() -> bool:
            return await feeds_holder(pg_location) == survivor

        await polled_until(taken_over, "the surviving process to take the feeds over")
        processes[killed] = await spawn(fake, tmp_path, pg_location, killed)
        await polled_until(lambda: _all_posted(pg_location), "every article posted", timeout=120)

        async def back() -> bool:
            return fake.identify_count == 3  # two at start, one for the restarted shard

        await polled_until(back, "the restarted process to identify its shard")
    finally:
        for process in processes.values():
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                await asyncio.wait_for(process.wait(), timeout=30)
            except TimeoutError:
                process.kill()
                await process.wait()
        await site.stop()

    for n, channel in enumerate(channels):
        titles = Counter(
            embed.get("title")
            for message in fake.messages_in(channel)
            for embed in message.get("embeds", [])
            if embed.get("title")
        )
        expected = {f"Story number {100 * n + i}" for i in range(ITEMS)}
        assert set(titles) == expected, f"channel {n}: {sorted(titles)}"
        assert max(titles.values()) == 1, f"posted twice: {[t for t, c in titles.items() if c > 1]}"


async def _posted_some(location: str) -> bool:
    return await posted(location) > 0


async def _all_posted(location: str) -> bool:
    return await posted(location) == 2 * ITEMS


LETTERS = 40


async def test_two_processes_deliver_every_outbox_item_once(
    fake: FakeDiscord, tmp_path: Path, pg_location: str
) -> None:
    """The outbox is delivered by one of the processes; SIGKILLed mid-drain, the other takes over
    (the item in flight when it died is looked up on the site before being created again)."""
    for n in (0, 1):
        fake.add_guild(f"Paper {n}", shard=(n, 2))
    site = FakeSite()
    await site.start()
    # After a few posts the site goes silent on one: the process delivering is stuck mid-request
    # (the outcome unknown to it) when it is killed.
    site.stall_after(5, path="/wp-json/wp/v2/posts")
    store = await Store.open(pg_location, SystemClock())
    try:
        async with store.db.transaction() as conn:
            for i in range(1, LETTERS + 1):
                item = compose_letter(Letter(id=i, text=f"Letter {i} about bridges.", byline=f"R {i}"), disclaimer=None)
                await store.outbox.enqueue_item(conn, "create", item, revision=1)
    finally:
        await store.close()
    sections = {"site": {"kind": "wordpress", "wordpress": {"url": site.wp_url, "username": WP_USER}}}
    env = {"READERSVIEWS_WP_APP_PASSWORD": WP_PASSWORD}
    processes = {n: await spawn(fake, tmp_path, pg_location, n, env=env, **sections) for n in (0, 1)}

    async def delivered() -> int:
        db = await Database.open(pg_location, migrate=False)
        try:
            return int(await db.scalar("SELECT count(*) FROM outbox WHERE state = 'done'") or 0)
        finally:
            await db.close()

    try:
        await fake.wait_for_shards({0, 1}, timeout=60)

        async def some() -> bool:
            return await delivered() > 0

        await polled_until(some, "the first delivery")
        await site.wait_for_stall()
        holder = await feeds_holder(pg_location, "outbox")
        killed = next(n for n, p in processes.items() if p.pid == holder)
        processes[killed].send_signal(signal.SIGKILL)
        await processes[killed].wait()
        assert await delivered() < LETTERS, "killed mid-drain"

        async def all_done() -> bool:
            return await delivered() == LETTERS

        await polled_until(all_done, "every item delivered", timeout=120)
        assert await feeds_holder(pg_location, "outbox") == processes[1 - killed].pid
    finally:
        for process in processes.values():
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                await asyncio.wait_for(process.wait(), timeout=30)
            except TimeoutError:
                process.kill()
                await process.wait()
        await site.stop()
    posts = site.live_posts()
    slugs = Counter(post["slug"] for post in posts)
    assert len(slugs) == LETTERS and max(slugs.values()) == 1, f"posted twice: {[s for s, c in slugs.items() if c > 1]}"
    assert all(site.copies(slug) == 1 for slug in slugs)


SIGNERS = 12  # per server


async def test_two_processes_record_every_signature_once(fake: FakeDiscord, tmp_path: Path, pg_location: str) -> None:
    """Each server's sign-ons (clicks and forms) reach the process of its shard only: every member's
    signature is recorded once, on the right statement, and every form is answered."""
    guilds = [fake.add_guild(f"Campaign {n}", shard=(n, 2)) for n in (0, 1)]
    roles = [g.add_role("Organizer") for g in guilds]
    organizers = [g.add_member(f"organizer-{n}", roles=[roles[n]]) for n, g in enumerate(guilds)]
    channels = [g.add_text_channel("petitions") for g in guilds]
    signers = [[g.add_member(f"signer-{n}-{i}") for i in range(SIGNERS)] for n, g in enumerate(guilds)]
    store = await Store.open(pg_location, SystemClock())
    try:
        for n, guild in enumerate(guilds):
            await store.settings.set_many(guild.id, {"organizer_role_id": roles[n].id}, actor_id=None)
    finally:
        await store.close()
    processes = {n: await spawn(fake, tmp_path, pg_location, n) for n in (0, 1)}
    try:
        await fake.wait_for_shards({0, 1}, timeout=60)
        statements = []
        for n, guild in enumerate(guilds):
            ix = await fake.slash(guild, organizers[n], "statement create", channel=channels[n])
            assert (await ix.wait_response(timeout=30))["type"] == 9
            form = {"title": f"Keep route {n} running", "body": "We, the undersigned, ask for the bus.", "slug": ""}
            submit = await fake.submit_modal(guild, organizers[n], None, form)
            if (await submit.wait_response(timeout=30))["type"] == 5:  # deferred: the answer follows
                assert "Published" in (await submit.wait_original(timeout=30))["content"]
            statements.append(fake.messages_in(channels[n])[-1])

        async def sign(n: int, member: Any) -> None:
            message = statements[n]
            custom_id = message["components"][0]["components"][0]["custom_id"]  # statements:sign:<id>
            click = await fake.click(guilds[n], member, message, custom_id)
            assert (await click.wait_response(timeout=30))["type"] == 9  # the form
            submit = await fake.submit_modal(guilds[n], member, None, {"name": f"Name of {member.user.username}"})
            response = await submit.wait_response(timeout=30)
            text = (await submit.wait_original(timeout=30))["content"] if response["type"] == 5 else ""
            text = text or response["data"]["content"]
            assert "Signed" in text, text

        # Both servers at once, every member of each.
        await asyncio.gather(*(sign(n, member) for n in (0, 1) for member in signers[n]))
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                await asyncio.wait_for(process.wait(), timeout=30)
            except TimeoutError:
                process.kill()
                await process.wait()

    store = await Store.open(pg_location, SystemClock(), migrate=False)
    try:
        rows = await store.db.fetchall(
            "SELECT s.guild_id, g.user_id, count(*) AS n FROM signatures g JOIN statements s ON s.id = g.statement_id"
            " WHERE g.withdrawn_at IS NULL GROUP BY s.guild_id, g.user_id"
        )
    finally:
        await store.close()
    recorded = {(row["guild_id"], row["user_id"]): row["n"] for row in rows}
    expected = {(guilds[n].id, member.id): 1 for n in (0, 1) for member in signers[n]}
    assert recorded == expected


@pytest.mark.parametrize("kind", ["text", "forum"])
async def test_an_interrupted_post_in_a_server_of_another_shard_is_found_not_repeated(
    fake: FakeDiscord, tmp_path: Path, pg_location: str, kind: str
) -> None:
    """The feeds job posts for every server, also those of shards its process does not run (no cache of
    them): an article whose post went out but was not recorded is found in Discord, not posted twice."""
    fake.add_guild("Paper 0", shard=(0, 2))
    theirs = fake.add_guild("Paper 1", shard=(1, 2))
    channel = (
        theirs.add_forum_channel("articles", tags=["News"]) if kind == "forum" else theirs.add_text_channel("news")
    )
    site = FeedServer()
    await site.start()
    site.set_feed("/feed.xml", rss([story(1)]))
    config = make_config(fake, tmp_path, database={"url": pg_location}, discord={"shard_count": 2, "shard_ids": [0]})
    booted = await boot(fake, config, clock=FakeClock())
    try:
        store, articles = booted.bot.store, booted.cog("Articles")
        articles.poller.cancel()  # the test runs the cycles: the background one would race it
        assert booted.bot.get_guild(theirs.id) is None, "the server is on the other shard"
        feed_id = await store.feeds.add(
            guild_id=theirs.id,
            url=site.url("/feed.xml"),
            channel_id=channel.id,
            channel_kind=kind,
            tag_map={},
            poll_interval=900,
            created_by=None,
        )
        await store.feeds.record_poll(feed_id, status="ok", next_poll_at=booted.bot.clock.now())  # as /feed add
        real_mark_posted = store.articles.mark_posted

        async def lost(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("killed after the post")

        store.articles.mark_posted = lost
        try:
            with pytest.raises(RuntimeError, match="killed after the post"):
                await articles.run_cycle()
        finally:
            store.articles.mark_posted = real_mark_posted
        await articles.run_cycle()  # the next cycle (or the process taking the job over) recovers it
        await fake.roundtrip()
        row = await store.db.fetchone("SELECT status, message_id FROM articles WHERE guid = 'story-1'")
    finally:
        await booted.stop()
        await site.stop()
    if kind == "forum":
        posts = [thread.id for thread in fake.threads_in(channel)]
    else:
        posts = [int(message["id"]) for message in fake.messages_in(channel) if message.get("embeds")]
    assert len(posts) == 1, f"posted {len(posts)} times"
    assert (row["status"], row["message_id"]) == ("posted", posts[0])


async def test_one_process_runs_every_shard(fake: FakeDiscord, booter: Any) -> None:
    """With shard_count alone, one process runs all the shards, on either store: every server's
    interactions are answered, and the bot counts as connected only with every shard up."""
    from bot.metrics import gateway_connected

    guilds = [fake.add_guild(f"Paper {n}", shard=(n, 2)) for n in range(2)]
    admins = [g.add_member(f"admin-{n}", roles=[g.add_admin_role()]) for n, g in enumerate(guilds)]
    for guild in guilds:
        guild.add_text_channel("general")
    booted = await booter(discord={"shard_count": 2})
    await fake.wait_for_shards({0, 1})
    assert fake.shards == {n: (n, 2) for n in range(2)}
    assert {g.id: g.shard_id for g in booted.bot.guilds} == {g.id: n for n, g in enumerate(guilds)}
    assert booted.bot.claims.held  # one process: it runs every job
    for n, (guild, admin) in enumerate(zip(guilds, admins, strict=True)):
        ix = await fake.slash(guild, admin, "readersviews status")
        text = (await ix.wait_response())["data"]["content"]
        assert f"This process: shards 0, 1 of 2 (this server's: {n})" in text, text
        if booted.bot.store.db.dialect == "postgres":
            assert "runs feeds, notices, outbox, retention, site-status, statements" in text
    assert gateway_connected(booted.bot)


pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="POSIX signals")
