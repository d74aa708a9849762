"""Articles: feeds polled from a loopback site and posted into the fake Discord, once."""

from __future__ import annotations

import asyncio
import gzip
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from bot.articles import choose_tags
from tests.fakediscord import EPHEMERAL, perms
from tests.fakediscord.rest import DROP
from tests.feedserver import FeedServer, LoopWatch, gzip_of_zeros, quadratic_html
from tests.helpers import Booted, FakeClock, World, add_feed, poll, rss, story


@pytest.fixture
def booter(booter: Any) -> Any:
    """Every bot of these tests has its feed cycles run by the test (`poll`, `run_cycle`): the
    background poller would run one of its own whenever a real second passes, between a test's
    cycle and what it checks after (`test_per_poll_cap_spreads_backlog` saw 4 posts for 2 so)."""

    async def boot(**options: Any) -> Booted:
        booted: Booted = await booter(**options)
        booted.cog("Articles").poller.cancel()
        return booted

    return boot


@pytest.fixture
async def bot(world: World, booter: Any, clock: FakeClock) -> Booted:
    """The bot, with feed cycles run by the test (`poll`; see `booter`)."""
    booted: Booted = await booter(clock=clock)
    await booted.bot.store.settings.set_many(world.guild.id, {"alert_channel_id": world.alerts.id}, actor_id=None)
    return booted


async def poll_losing_the_record(bot: Booted, clock: FakeClock, world: World, why: str = "killed mid-cycle") -> None:
    """One cycle in which Discord makes the post but recording it fails (a crash, or a lost answer)."""
    store = bot.bot.store
    real_mark_posted = store.articles.mark_posted

    async def lost(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError(why)

    store.articles.mark_posted = lost  # type: ignore[method-assign]
    try:
        with pytest.raises(RuntimeError, match=why):
            await poll(bot, clock, world)
    finally:
        store.articles.mark_posted = real_mark_posted  # type: ignore[method-assign]


def forum_posts(world: World) -> list[Any]:
    return world.fake.threads_in(world.forum)


def alerts(world: World) -> list[str]:
    return [m["content"] for m in world.fake.messages_in(world.alerts)]


async def test_first_run_records_baseline_and_posts_only_new(bot: Booted, world: World, feed_site: FeedServer, clock):
    """Adding a feed posts nothing old; a new item is posted once; polling again posts nothing."""
    feed_site.set_feed("/feed", rss([story(1), story(2)]))
    reply = await add_feed(world, feed_site.url("/feed"), world.forum)
    assert "2 current article(s) recorded" in reply["content"]
    await poll(bot, clock, world)
    assert forum_posts(world) == []

    feed_site.set_feed("/feed", rss([story(3), story(1), story(2)]))
    await poll(bot, clock, world)
    posts = forum_posts(world)
    assert [p.name for p in posts] == ["Story number 3"]
    await poll(bot, clock, world)
    assert len(forum_posts(world)) == 1


async def test_backfill_posts_newest(bot: Booted, world: World, feed_site: FeedServer, clock: FakeClock) -> None:
    now = datetime.now(UTC)
    items = [story(n, date=now - timedelta(hours=n)) for n in range(1, 6)]
    feed_site.set_feed("/feed", rss(items))
    await add_feed(world, feed_site.url("/feed"), world.forum, backfill=2)
    await bot.cog("Articles").run_cycle()
    await world.fake.roundtrip()
    assert sorted(p.name for p in forum_posts(world)) == ["Story number 1", "Story number 2"]


async def test_a_poll_while_a_feed_is_being_added_keeps_its_backfill(
    bot: Booted, world: World, feed_site: FeedServer, clock: FakeClock
) -> None:
    """The poller's cycle runs between /feed add saving the feed and recording its articles: the new
    feed isn't due yet, so the cycle leaves it alone and the backfill is still posted."""
    now = datetime.now(UTC)
    feed_site.set_feed("/feed", rss([story(n, date=now - timedelta(hours=n)) for n in range(1, 6)]))
    store, articles = bot.bot.store, bot.cog("Articles")
    real_insert_many = store.articles.insert_many

    async def cycle_first(*args: Any, **kwargs: Any) -> int:
        store.articles.insert_many = real_insert_many  # type: ignore[method-assign]
        await articles.run_cycle()
        return await real_insert_many(*args, **kwargs)

    store.articles.insert_many = cycle_first  # type: ignore[method-assign]
    try:
        await add_feed(world, feed_site.url("/feed"), world.forum, backfill=2)
    finally:
        store.articles.insert_many = real_insert_many  # type: ignore[method-assign]
    await articles.run_cycle()
    await world.fake.roundtrip()
    assert sorted(p.name for p in forum_posts(world)) == ["Story number 1", "Story number 2"]


async def test_restart_does_not_repost(world: World, booter: Any, feed_site: FeedServer, clock: FakeClock) -> None:
    """Dedupe lives in the database: a restarted bot posts nothing it posted before."""
    first: Booted = await booter(clock=clock)
    feed_site.set_feed("/feed", rss([story(1)]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    feed_site.set_feed("/feed", rss([story(2), story(1)]))
    await poll(first, clock, world)
    assert len(forum_posts(world)) == 1
    await first.stop()

    second: Booted = await booter(clock=clock)
    await poll(second, clock, world)
    await poll(second, clock, world)
    assert len(forum_posts(world)) == 1


async def test_articles_stored_before_link_keys_still_dedupe_across_feeds_after_restart(
    world: World, booter: Any, feed_site: FeedServer, clock: FakeClock
) -> None:
    """An article posted before normalised links were stored is still posted once when another feed of the
    channel brings it under another guid and a tracking-parameter link."""
    first: Booted = await booter(clock=clock)
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    feed_site.set_feed("/feed", rss([story(1)]))
    await poll(first, clock, world)
    assert len(forum_posts(world)) == 1
    await first.bot.store.db.write("UPDATE articles SET link_key = ''")  # as stored before 0010
    await first.stop()
    feed_site.set_feed("/politics", rss([]))

    second: Booted = await booter(clock=clock)
    await add_feed(world, feed_site.url("/politics"), world.forum)
    feed_site.set_feed(
        "/politics", rss([{**story(1), "guid": "pol-1", "link": "https://www.paper.example/1/?utm_source=x"}])
    )
    await poll(second, clock, world)
    assert len(forum_posts(world)) == 1
    [row] = await second.bot.store.db.fetchall("SELECT status, status_reason FROM articles WHERE feed_id = 2")
    assert (row["status"], row["status_reason"]) == ("seen", "already in this channel through feed #1")


async def test_interrupted_post_is_not_repeated(bot: Booted, world: World, feed_site: FeedServer, clock) -> None:
    """A crash after Discord created the post but before it was recorded: the next cycle finds it."""
    feed_site.set_feed("/feed", rss([story(1)]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    feed_site.set_feed("/feed", rss([story(2), story(1)]))
    store = bot.bot.store
    await poll_losing_the_record(bot, clock, world)
    assert len(forum_posts(world)) == 1
    await poll(bot, clock, world)
    assert len(forum_posts(world)) == 1
    row = await store.db.fetchone("SELECT status, thread_id FROM articles WHERE guid = 'story-2'")
    assert row["status"] == "posted" and row["thread_id"] == forum_posts(world)[0].id


async def test_interrupted_text_post_is_found_in_history(
    bot: Booted, world: World, feed_site: FeedServer, clock
) -> None:
    """Text channels: after a crash between sending the embed and recording it, history is checked first."""
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.discussion)
    feed_site.set_feed("/feed", rss([story(1)]))
    store = bot.bot.store
    await poll_losing_the_record(bot, clock, world)
    await poll(bot, clock, world)
    embeds = [m for m in world.fake.messages_in(world.discussion) if m.get("embeds")]
    assert len(embeds) == 1
    row = await store.db.fetchone("SELECT status, message_id, thread_id FROM articles WHERE guid = 'story-1'")
    assert row["status"] == "posted" and row["message_id"] == int(embeds[0]["id"])
    threads = world.fake.threads_in(world.discussion)
    assert [t.id for t in threads] == [row["thread_id"]], "the missing discussion thread is opened"


async def test_conditional_get_304(bot: Booted, world: World, feed_site: FeedServer, clock: FakeClock) -> None:
    feed_site.set_feed("/feed", rss([story(1)]), etag='"v1"')
    await add_feed(world, feed_site.url("/feed"), world.forum)
    await poll(bot, clock, world)
    last = feed_site.requests_for("/feed")[-1]
    assert last.header("If-None-Match") == '"v1"'
    feed = (await bot.bot.store.feeds.in_guild(world.guild.id))[0]
    assert feed.last_status == "not_modified"


async def test_old_items_are_not_posted(bot: Booted, world: World, feed_site: FeedServer, clock: FakeClock) -> None:
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    old = story(1, date=datetime.now(UTC) - timedelta(days=10))
    feed_site.set_feed("/feed", rss([old, story(2)]))
    await poll(bot, clock, world)
    assert [p.name for p in forum_posts(world)] == ["Story number 2"]
    ix = await world.fake.slash(
        world.guild, world.admin, "feed diagnose", feed=1, article_url="https://paper.example/1"
    )
    text = (await ix.wait_response())["data"]["content"]
    assert "older than 3 days" in text


async def test_per_poll_cap_spreads_backlog(world: World, booter: Any, feed_site: FeedServer, clock: FakeClock) -> None:
    booted: Booted = await booter(clock=clock, feeds={"per_poll_cap": 2})
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    feed_site.set_feed("/feed", rss([story(n) for n in range(1, 6)]))
    await poll(booted, clock, world)
    assert len(forum_posts(world)) == 2
    await poll(booted, clock, world, minutes=1)
    assert len(forum_posts(world)) == 4
    await poll(booted, clock, world, minutes=1)
    assert len(forum_posts(world)) == 5


async def test_forum_tags_from_categories(bot: Booted, world: World, feed_site: FeedServer, clock: FakeClock) -> None:
    feed_site.set_feed("/feed", rss([]))
    reply = await add_feed(world, feed_site.url("/feed"), world.forum, tags="Politics=News, Football=Sport")
    assert "added" in reply["content"]
    feed_site.set_feed("/feed", rss([story(1, categories=["Politics", "Football", "Opinion", "Unknown"])]))
    await poll(bot, clock, world)
    post = forum_posts(world)[0]
    names = {
        world.forum.available_tags[i]["name"]
        for i, t in enumerate(world.forum.available_tags)
        if int(t["id"]) in {int(x) for x in post.applied_tags}
    }
    assert names == {"News", "Sport", "Opinion"}


async def test_unknown_tag_in_mapping_is_refused(bot: Booted, world: World, feed_site: FeedServer) -> None:
    feed_site.set_feed("/feed", rss([]))
    ix = await world.fake.slash(
        world.guild, world.admin, "feed add", url=feed_site.url("/feed"), channel=world.forum, tags="Politics=Nope"
    )
    text = (await ix.wait_response())["data"]["content"]
    assert "no tag named Nope" in text
    assert await bot.bot.store.feeds.in_guild(world.guild.id) == []


async def test_text_channel_gets_embed_and_thread(bot: Booted, world: World, feed_site: FeedServer, clock) -> None:
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.discussion)
    feed_site.set_feed("/feed", rss([story(1, description="<p>Council <b>votes</b> today.</p>")]))
    await poll(bot, clock, world)
    messages = world.fake.messages_in(world.discussion)
    posted = [m for m in messages if m.get("embeds")]
    assert len(posted) == 1
    embed = posted[0]["embeds"][0]
    assert embed["title"] == "Story number 1" and embed["url"] == "https://paper.example/1"
    assert "**votes**" in embed["description"]
    threads = world.fake.threads_in(world.discussion)
    assert [t.name for t in threads] == ["Story number 1"]
    row = await bot.bot.store.articles.by_thread(threads[0].id)
    assert row is not None and row.message_id == int(posted[0]["id"])


async def test_changed_article_edits_the_post(bot: Booted, world: World, feed_site: FeedServer, clock) -> None:
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    feed_site.set_feed("/feed", rss([story(1, description="First version.")]))
    await poll(bot, clock, world)
    feed_site.set_feed("/feed", rss([story(1, title="Story number 1, corrected", description="Second version.")]))
    await poll(bot, clock, world)
    posts = forum_posts(world)
    assert len(posts) == 1
    assert posts[0].name == "Story number 1, corrected"
    starter = world.fake.find_message(posts[0].id)
    assert starter is not None and "Second version." in starter["content"]


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (lambda s: s.set_feed("/feed", b"<?xml version='1.0'?><rss version='2.0'><channel><title>x</ti"), "malformed"),
        (
            lambda s: s.set_feed("/feed", b"<!doctype html><html><body>Hi</body></html>", content_type="text/html"),
            "not a feed",
        ),
        (lambda s: s.set_status("/feed", 503), "HTTP 503"),
        (lambda s: s.set_redirect("/feed", "/feed"), "redirect"),
        (
            lambda s: s.set_feed("/feed", gzip.compress(gzip_of_zeros(64)), headers={"Content-Encoding": "gzip, gzip"}),
            "larger than 5 MB",
        ),
    ],
)
async def test_broken_feeds_alert_once_and_recover(
    bot: Booted, world: World, feed_site: FeedServer, clock: FakeClock, setup: Any, expected: str
) -> None:
    """N consecutive failures give one alert (no flood), and recovery gives one more."""
    feed_site.set_feed("/feed", rss([story(1)]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    setup(feed_site)
    for _ in range(6):
        await poll(bot, clock, world, minutes=60 * 7)
    feed = (await bot.bot.store.feeds.in_guild(world.guild.id))[0]
    assert feed.consecutive_errors == 6 and expected in (feed.last_error or "")
    failing = [a for a in alerts(world) if "failed" in a]
    assert len(failing) == 1 and expected in failing[0]
    feed_site.set_feed("/feed", rss([story(1)]))
    await poll(bot, clock, world, minutes=60 * 7)
    assert len([a for a in alerts(world) if "working again" in a]) == 1
    assert forum_posts(world) == []


async def test_bozo_feed_that_still_has_items_is_used(bot: Booted, world: World, feed_site: FeedServer, clock) -> None:
    """Real feeds are often not well-formed XML; items that can be read are still posted."""
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    broken = rss([story(1)]).replace(b"<title>Story number 1</title>", b"<title>Story number 1 & more</title>")
    feed_site.set_feed("/feed", broken)
    await poll(bot, clock, world)
    assert "Story number 1 & more" in [p.name for p in forum_posts(world)]


async def test_cut_off_feed_is_a_failed_poll_and_posts_no_stub(
    bot: Booted, world: World, feed_site: FeedServer, clock: FakeClock
) -> None:
    """A 200 whose XML ends mid-item fails the poll (alerting after N like any failure) and posts nothing."""
    feed_site.set_feed("/feed", rss([story(1)]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    whole = rss([story(3), story(2), story(1)])
    feed_site.set_feed("/feed", whole[: whole.index(b"<title>Story number 2") + len(b"<title>Story")])
    for _ in range(3):
        await poll(bot, clock, world, minutes=60 * 7)
    feed = (await bot.bot.store.feeds.in_guild(world.guild.id))[0]
    assert feed.consecutive_errors == 3 and "cut off" in (feed.last_error or "")
    assert forum_posts(world) == []
    assert len([a for a in alerts(world) if "failed 3 times" in a and "cut off" in a]) == 1
    feed_site.set_feed("/feed", whole)
    await poll(bot, clock, world, minutes=60 * 7)
    assert sorted(p.name for p in forum_posts(world)) == ["Story number 2", "Story number 3"]


async def test_adding_a_broken_feed_is_refused(bot: Booted, world: World, feed_site: FeedServer) -> None:
    feed_site.set_feed("/page", b"<!doctype html><html><body>Hi</body></html>", content_type="text/html")
    ix = await world.fake.slash(world.guild, world.admin, "feed add", url=feed_site.url("/page"), channel=world.forum)
    await ix.wait_response()
    text = (await ix.wait_followup())["content"]
    assert "not" in text and "feed" in text
    ix = await world.fake.slash(world.guild, world.admin, "feed add", url="ftp://x/feed", channel=world.forum)
    assert "http:// or https://" in (await ix.wait_response())["data"]["content"]
    assert await bot.bot.store.feeds.in_guild(world.guild.id) == []


async def test_huge_and_slow_responses_are_cut_off(world: World, booter: Any, feed_site: FeedServer, clock) -> None:
    booted: Booted = await booter(clock=clock, feeds={"timeout_seconds": 0.5})
    feed_site.set_feed("/feed", rss([story(1)]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    feed_site.set_stream("/feed", 50_000_000)
    await poll(booted, clock, world)
    feed = (await booted.bot.store.feeds.in_guild(world.guild.id))[0]
    assert "larger than 5 MB" in (feed.last_error or "")
    feed_site.set_slow("/feed", 5.0)
    await poll(booted, clock, world, minutes=60)
    feed = (await booted.bot.store.feeds.in_guild(world.guild.id))[0]
    assert "timed out" in (feed.last_error or "")


async def test_items_without_guid_dedupe_by_link(bot: Booted, world: World, feed_site: FeedServer, clock) -> None:
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    item = {"title": "No guid here", "link": "https://paper.example/no-guid"}
    feed_site.set_feed("/feed", rss([item]))
    await poll(bot, clock, world)
    await poll(bot, clock, world)
    assert [p.name for p in forum_posts(world)] == ["No guid here"]


async def test_hostile_titles_and_summaries(bot: Booted, world: World, feed_site: FeedServer, clock) -> None:
    """`@everyone`, `<script>` and 300-character titles: no ping, no script, title cut on a word."""
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    long_title = "@everyone " + " ".join(["word"] * 70)
    hostile = story(1, title=long_title, description="<script>alert(1)</script><p>Hi <@&123> @here</p>")
    feed_site.set_feed("/feed", rss([hostile]))
    await poll(bot, clock, world)
    post = forum_posts(world)[0]
    assert len(post.name) <= 100 and post.name.endswith("…")
    assert "@everyone" not in post.name
    starter = world.fake.find_message(post.id)
    assert starter is not None
    assert "<script>" not in starter["content"] and "alert(1)" not in starter["content"]
    assert "@here" not in starter["content"] and "<@&123>" not in starter["content"]
    assert "https://paper.example/1" in starter["content"]
    meta = world.fake.message_meta[int(starter["id"])]
    assert meta["allowed_mentions"].get("parse") == []


async def test_links_in_a_feed_cannot_hide_or_break_out(
    bot: Booted, world: World, feed_site: FeedServer, clock
) -> None:
    """A feed's own link can't end the post's markdown early, and a link in its text shows its real URL."""
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    hostile_link = "https://paper.example/1)[APPROVE THIS](https://evil.example/x"
    summary = '<p>Please <a href="https://evil.example/login">click to verify</a> now.</p>'
    feed_site.set_feed("/feed", rss([story(1, link=hostile_link, description=summary)]))
    await poll(bot, clock, world)
    starter = world.fake.find_message(forum_posts(world)[0].id)
    assert starter is not None
    content = starter["content"]
    assert "click to verify (<https://evil.example/login>)" in content
    assert content.endswith("\n\nhttps://paper.example/1%29%5BAPPROVE%20THIS%5D%28https://evil.example/x")
    assert "](" not in content


async def test_an_item_whose_link_python_cannot_split_is_posted_without_it(
    bot: Booted, world: World, feed_site: FeedServer, clock
) -> None:
    """A hostile item link (a broken IPv6 host) neither crashes the feed nor blocks the item: it posts, link-less."""
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    broken = {**story(1), "link": "http://[::1/evil", "description": 'See <a href="http://[zz]/x">this</a>.'}
    feed_site.set_feed("/feed", rss([broken, story(2)]))
    await poll(bot, clock, world)
    posts = {p.name: world.fake.find_message(p.id) for p in forum_posts(world)}
    assert set(posts) == {"Story number 1", "Story number 2"}
    assert "[::1" not in posts["Story number 1"]["content"] and "-# ref " in posts["Story number 1"]["content"]


async def test_non_public_addresses_are_refused_by_default(
    world: World, booter: Any, feed_site: FeedServer, clock: FakeClock
) -> None:
    """Without the operator's opt-in, /feed add, /feed preview and polls never reach a loopback site."""
    booted: Booted = await booter(clock=clock, feeds={"allowed_networks": []})
    await booted.bot.store.settings.set_many(world.guild.id, {"alert_channel_id": world.alerts.id}, actor_id=None)
    feed_site.set_feed("/feed", rss([story(1)]))
    port = feed_site.url().split(":")[2].split("/")[0]
    for host in ("127.0.0.1", "2130706433", "[::ffff:127.0.0.1]", "localhost"):
        reply = await add_feed(world, f"http://{host}:{port}/feed", world.forum)
        assert "that address is not allowed" in reply["content"], reply["content"]
    ix = await world.fake.slash(world.guild, world.admin, "feed preview", url=feed_site.url("/feed"))
    await ix.wait_response()
    assert "that address is not allowed" in (await ix.wait_followup())["content"]
    assert await booted.bot.store.feeds.in_guild(world.guild.id) == []
    # A feed already stored (say, added before the address became private) fails its polls.
    await booted.bot.store.feeds.add(
        guild_id=world.guild.id,
        url=feed_site.url("/feed"),
        channel_id=world.forum.id,
        channel_kind="forum",
        tag_map={},
        poll_interval=900,
        created_by=None,
    )
    for _ in range(3):
        await poll(booted, clock, world, minutes=60 * 7)
    feed = (await booted.bot.store.feeds.in_guild(world.guild.id))[0]
    assert feed.consecutive_errors == 3 and feed.last_error == "that address is not allowed"
    assert len([a for a in alerts(world) if "that address is not allowed" in a]) == 1
    assert feed_site.count() == 0 and forum_posts(world) == []


async def test_hostile_html_never_stalls_the_bot(bot: Booted, world: World, feed_site: FeedServer, clock) -> None:
    """Polling, posting, editing and previewing items of hostile HTML keep the event loop (and heartbeat) running."""
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    items = [story(n, description=quadratic_html(n)) for n in range(3)]
    feed_site.set_feed("/feed", rss(items))
    async with LoopWatch() as posting:
        await poll(bot, clock, world)
    assert len(forum_posts(world)) == 3
    feed_site.set_feed("/feed", rss([story(n, description=quadratic_html(n + 10)) for n in range(3)]))
    async with LoopWatch() as editing:
        await poll(bot, clock, world)
    async with LoopWatch() as previewing:
        ix = await world.fake.slash(world.guild, world.admin, "feed preview", url=feed_site.url("/feed"))
        await ix.wait_response()
        # Summaries are cut to a readable length (feeds.summary_chars), so all three fit in one message.
        embeds = (await ix.wait_followup())["embeds"]
        assert len(embeds) == 3 and sum(len(e["description"]) for e in embeds) < 6000
    starter = world.fake.find_message(forum_posts(world)[0].id)
    assert starter is not None and "paragraph 1" in starter["content"]
    for name, watch in (("posting", posting), ("editing", editing), ("previewing", previewing)):
        assert watch.longest < 0.5, f"{name} stalled the event loop for {watch.longest:.2f} s"


async def test_discord_429_is_honoured(bot: Booted, world: World, feed_site: FeedServer, clock: FakeClock) -> None:
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    world.fake.fail_next("POST", r"/channels/\d+/threads", 429, retry_after=0.2)
    feed_site.set_feed("/feed", rss([story(1)]))
    await poll(bot, clock, world)
    assert world.fake.count_429 == 1
    assert len(forum_posts(world)) == 1


async def test_forbidden_channel_alerts_once_and_pauses(
    bot: Booted, world: World, feed_site: FeedServer, clock
) -> None:
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    world.fake.fail_next("POST", r"/channels/\d+/threads", 403, code=50013, message="Missing Permissions", times=10)
    feed_site.set_feed("/feed", rss([story(1), story(2)]))
    await poll(bot, clock, world)
    await poll(bot, clock, world)
    assert len([a for a in alerts(world) if "paused" in a]) == 1
    feed = (await bot.bot.store.feeds.in_guild(world.guild.id))[0]
    assert not feed.enabled and "Missing Permissions" in (feed.disabled_reason or "")
    assert forum_posts(world) == []


async def test_channel_without_permissions_is_refused_at_add(bot: Booted, world: World, feed_site: FeedServer) -> None:
    feed_site.set_feed("/feed", rss([]))
    ix = await world.fake.slash(world.guild, world.admin, "feed add", url=feed_site.url("/feed"), channel=world.locked)
    response = await ix.wait_response()
    assert response["data"]["flags"] & EPHEMERAL
    assert "I need" in response["data"]["content"] and "Send Messages" in response["data"]["content"]


async def test_list_pause_resume_remove(bot: Booted, world: World, feed_site: FeedServer, clock: FakeClock) -> None:
    feed_site.set_feed("/feed", rss([story(1)]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    ix = await world.fake.slash(world.guild, world.admin, "feed list")
    text = (await ix.wait_response())["data"]["content"]
    assert "#1" in text and "ok" in text and "1 item(s) in feed" in text
    ix = await world.fake.slash(world.guild, world.admin, "feed pause", feed=1)
    assert "paused" in (await ix.wait_response())["data"]["content"]
    feed_site.set_feed("/feed", rss([story(2), story(1)]))
    await poll(bot, clock, world)
    assert forum_posts(world) == []
    ix = await world.fake.slash(world.guild, world.admin, "feed resume", feed=1)
    assert "resumed" in (await ix.wait_response())["data"]["content"]
    await poll(bot, clock, world)
    assert len(forum_posts(world)) == 1
    ix = await world.fake.slash(world.guild, world.admin, "feed remove", feed=1)
    assert "removed" in (await ix.wait_response())["data"]["content"]
    ix = await world.fake.slash(world.guild, world.admin, "feed pause", feed=1)
    assert "no feed #1" in (await ix.wait_response())["data"]["content"]


async def test_preview_shows_posts_privately(bot: Booted, world: World, feed_site: FeedServer) -> None:
    feed_site.set_feed("/feed", rss([story(1, description="<p>Hello <i>readers</i></p>")]))
    ix = await world.fake.slash(world.guild, world.admin, "feed preview", url=feed_site.url("/feed"))
    await ix.wait_response()
    followup = await ix.wait_followup()
    assert followup["flags"] & EPHEMERAL
    assert followup["embeds"][0]["title"] == "Story number 1"
    assert "*readers*" in followup["embeds"][0]["description"]
    assert forum_posts(world) == []


async def test_non_admin_cannot_add_feeds(bot: Booted, world: World, feed_site: FeedServer) -> None:
    ix = await world.fake.slash(world.guild, world.reader, "feed add", url=feed_site.url("/feed"), channel=world.forum)
    assert "Only server admins" in (await ix.wait_response())["data"]["content"]


# -- failures that must stay with one feed or one article -------------------------------------


def with_pub_date(document: bytes, text: str) -> bytes:
    """The same feed with every item's date replaced by `text` verbatim."""
    return re.sub(rb"<pubDate>[^<]*</pubDate>", f"<pubDate>{text}</pubDate>".encode(), document)


def embeds_in(world: World, channel: Any) -> list[dict[str, Any]]:
    return [m for m in world.fake.messages_in(channel) if m.get("embeds")]


async def article_row(bot: Booted, guid: str) -> Any:
    return await bot.bot.store.db.fetchone("SELECT * FROM articles WHERE guid = ?", (guid,))


async def test_impossible_date_does_not_stop_any_feed(bot: Booted, world: World, feed_site: FeedServer, clock) -> None:
    """An item dated 0000-00-00 is posted as undated; the other feeds are not held up."""
    feed_site.set_feed("/a", rss([]))
    feed_site.set_feed("/b", rss([]))
    await add_feed(world, feed_site.url("/a"), world.forum)
    await add_feed(world, feed_site.url("/b"), world.discussion)
    feed_site.set_feed("/a", with_pub_date(rss([story(1)]), "0000-00-00T00:00:00Z"))
    feed_site.set_feed("/b", rss([story(2)]))
    await poll(bot, clock, world)
    assert [p.name for p in forum_posts(world)] == ["Story number 1"]
    assert len(embeds_in(world, world.discussion)) == 1


async def test_unexpected_error_in_one_feed_is_that_feeds_failure(
    bot: Booted, world: World, feed_site: FeedServer, clock: FakeClock
) -> None:
    """A bug tripped by one feed is recorded and alerted for that feed; the others keep posting."""
    feed_site.set_feed("/a", rss([]))
    feed_site.set_feed("/b", rss([]))
    await add_feed(world, feed_site.url("/a"), world.forum)
    await add_feed(world, feed_site.url("/b"), world.discussion)
    store = bot.bot.store
    real_known = store.articles.known

    async def known(feed_id: int) -> dict[str, tuple[int, str, str]]:
        if feed_id == 1:
            raise ValueError("year 0 is out of range")
        return await real_known(feed_id)

    store.articles.known = known  # type: ignore[method-assign]
    for n in range(1, 4):
        feed_site.set_feed("/a", rss([story(10 + n)]))
        feed_site.set_feed("/b", rss([story(n)]))
        await poll(bot, clock, world, minutes=60 * 7)
    assert len(embeds_in(world, world.discussion)) == 3
    feed_a = await store.feeds.get(1)
    assert feed_a is not None and feed_a.consecutive_errors == 3
    assert "unexpected error: ValueError: year 0 is out of range" in (feed_a.last_error or "")
    failing = [a for a in alerts(world) if "failed 3 times" in a]
    assert len(failing) == 1 and feed_site.url("/a") in failing[0]


async def test_overlong_link_is_left_out_and_does_not_block(bot: Booted, world: World, feed_site: FeedServer, clock):
    """A 2,100-character link cannot be in a Discord message: the article is posted without it, then the next."""
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    now = datetime.now(UTC)
    long_link = "https://paper.example/?" + "x" * 2100
    feed_site.set_feed("/feed", rss([story(1, link=long_link, date=now - timedelta(hours=1)), story(2, date=now)]))
    await poll(bot, clock, world)
    posts = {p.name: p for p in forum_posts(world)}
    assert sorted(posts) == ["Story number 1", "Story number 2"]
    starter = world.fake.find_message(posts["Story number 1"].id)
    assert starter is not None and "x" * 100 not in starter["content"]


async def test_failed_thread_keeps_the_post_and_resume_does_not_repeat_it(
    bot: Booted, world: World, feed_site: FeedServer, clock: FakeClock
) -> None:
    """Text channel: the message went out, the thread was refused (403): paused; resuming makes the thread and
    never reposts."""
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.discussion)
    world.fake.fail_next("POST", r"/channels/\d+/messages/\d+/threads", 403, code=50013, message="Missing Permissions")
    feed_site.set_feed("/feed", rss([story(1)]))
    await poll(bot, clock, world)
    row = await article_row(bot, "story-1")
    assert row["status"] == "posted" and row["message_id"] == int(embeds_in(world, world.discussion)[0]["id"])
    assert row["thread_id"] is None
    assert len([a for a in alerts(world) if "discussion threads" in a]) == 1
    ix = await world.fake.slash(world.guild, world.admin, "feed resume", feed=1)
    await ix.wait_response()
    await poll(bot, clock, world)
    await poll(bot, clock, world)
    assert len(embeds_in(world, world.discussion)) == 1
    row = await article_row(bot, "story-1")
    [thread] = world.fake.threads_in(world.discussion)
    assert row["status"] == "posted" and row["thread_id"] == thread.id, "after resume the thread is made"


async def test_thread_server_error_keeps_the_post(bot: Booted, world: World, feed_site: FeedServer, clock) -> None:
    """A 5xx opening the thread leaves the article posted; the feed keeps going; the next cycle makes the thread."""
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.discussion)
    world.fake.fail_next("POST", r"/channels/\d+/messages/\d+/threads", 503)
    feed_site.set_feed("/feed", rss([story(1)]))
    await poll(bot, clock, world)
    row = await article_row(bot, "story-1")
    assert row["status"] == "posted" and row["message_id"] is not None and row["thread_id"] is None
    feed_site.set_feed("/feed", rss([story(2), story(1)]))
    await poll(bot, clock, world)
    assert len(embeds_in(world, world.discussion)) == 2
    feed = await bot.bot.store.feeds.get(1)
    assert feed is not None and feed.enabled
    threads = {t.id for t in world.fake.threads_in(world.discussion)}
    rows = await bot.bot.store.db.fetchall("SELECT message_id, thread_id FROM articles WHERE status = 'posted'")
    assert {r["thread_id"] for r in rows} == threads == {r["message_id"] for r in rows}


@pytest.mark.parametrize("lost_with", [503, DROP], ids=["5xx", "dropped connection"])
async def test_lost_thread_answer_is_recovered(
    bot: Booted, world: World, feed_site: FeedServer, clock, lost_with
) -> None:
    """Discord made the thread but its answer was lost (5xx, or the connection dropped): the next cycle gets
    160004, finds the thread on the message and records it; replies in it meanwhile are recorded; one thread."""
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.discussion)
    world.fake.fail_next("POST", r"/channels/\d+/messages/\d+/threads", lost_with, after_effect=True)
    feed_site.set_feed("/feed", rss([story(1)]))
    await poll(bot, clock, world)
    [thread] = world.fake.threads_in(world.discussion)
    row = await article_row(bot, "story-1")
    assert row["thread_id"] is None and row["thread_step"] == "wanted"
    reply = await world.fake.message_create(thread, world.reader, "Before the thread was recorded")
    await world.fake.settle()
    await bot.cog("ReadersViews").recorder.flush()
    recorded = await bot.bot.store.contributions.by_message(int(reply["id"]))
    assert recorded is not None and recorded.article_id == row["id"]

    await poll(bot, clock, world)
    row = await article_row(bot, "story-1")
    assert row["thread_id"] == thread.id == row["message_id"] and row["thread_step"] is None
    assert len(world.fake.threads_in(world.discussion)) == 1
    tries = world.fake.requests_to("/messages/{message_id}/threads", method="POST")
    assert [r.status for r in tries] == [lost_with, 400]
    assert tries[1].response["code"] == 160004


async def test_reply_before_a_forum_post_is_recorded_is_kept(bot: Booted, world: World, feed_site: FeedServer, clock):
    """A member replies in a new forum post before the bot has its answer: the reply is recorded anyway."""
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    held = world.fake.hold_next("POST", r"/channels/\d+/threads$", after_effect=True)
    feed_site.set_feed("/feed", rss([story(1)]))
    clock.advance(minutes=16)
    cycle = asyncio.create_task(bot.cog("Articles").run_cycle())
    await held.arrived.wait()
    [post] = forum_posts(world)
    first = await world.fake.message_create(post, world.reader, "First!")
    await world.fake.settle()
    held.release()
    await cycle
    await world.fake.roundtrip()
    second = await world.fake.message_create(post, world.reader, "Second")
    await world.fake.settle()
    await bot.cog("ReadersViews").recorder.flush()
    row = await article_row(bot, "story-1")
    for message in (first, second):
        recorded = await bot.bot.store.contributions.by_message(int(message["id"]))
        assert recorded is not None and recorded.article_id == row["id"], message["content"]


async def test_discord_server_error_is_retried_not_failed(
    bot: Booted, world: World, feed_site: FeedServer, clock
) -> None:
    """A 503 from Discord leaves the article waiting; the next cycle posts it (once)."""
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    world.fake.fail_next("POST", r"/channels/\d+/threads$", 503)
    feed_site.set_feed("/feed", rss([story(1)]))
    await poll(bot, clock, world)
    assert forum_posts(world) == []
    assert (await article_row(bot, "story-1"))["status"] == "posting"
    await poll(bot, clock, world)
    await poll(bot, clock, world)
    assert [p.name for p in forum_posts(world)] == ["Story number 1"]
    assert (await article_row(bot, "story-1"))["status"] == "posted"


async def test_resume_checks_for_a_post_before_retrying(
    bot: Booted, world: World, feed_site: FeedServer, clock
) -> None:
    """An article marked failed although Discord made its post is found on resume, not posted twice."""
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    store = bot.bot.store
    feed_site.set_feed("/feed", rss([story(1)]))
    await poll_losing_the_record(bot, clock, world, why="the answer never arrived")
    row = await article_row(bot, "story-1")
    await store.articles.mark_failed(row["id"], "Discord rejected the post: 500 Internal Server Error")
    ix = await world.fake.slash(world.guild, world.admin, "feed resume", feed=1)
    await ix.wait_response()
    await poll(bot, clock, world)
    posts = forum_posts(world)
    assert len(posts) == 1
    row = await article_row(bot, "story-1")
    assert row["status"] == "posted" and row["thread_id"] == posts[0].id


async def crash_before_discord_call(bot: Booted, clock: FakeClock, world: World) -> None:
    """One cycle that dies right after an article is marked 'posting', before Discord is asked."""
    store = bot.bot.store
    real = store.articles.mark_posting

    async def crash(article_id: int) -> None:
        await real(article_id)
        raise RuntimeError("killed before the Discord call")

    store.articles.mark_posting = crash  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        await poll(bot, clock, world)
    store.articles.mark_posting = real  # type: ignore[method-assign]


async def test_recurring_title_is_not_taken_for_the_interrupted_post(
    bot: Booted, world: World, feed_site: FeedServer, clock
):
    """Forum: yesterday's "Morning briefing" is not mistaken for today's interrupted one."""
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    feed_site.set_feed("/feed", rss([story(1, title="Morning briefing")]))
    await poll(bot, clock, world)
    feed_site.set_feed("/feed", rss([story(2, title="Morning briefing"), story(1, title="Morning briefing")]))
    await crash_before_discord_call(bot, clock, world)
    await poll(bot, clock, world)
    posts = forum_posts(world)
    assert len(posts) == 2
    rows = await bot.bot.store.db.fetchall("SELECT thread_id FROM articles WHERE status = 'posted'")
    assert sorted(r["thread_id"] for r in rows) == sorted(p.id for p in posts)


async def test_linkless_recurring_title_in_text_channel(
    bot: Booted, world: World, feed_site: FeedServer, clock
) -> None:
    """Text channel, items without links: an older embed of ours is not taken for the interrupted post."""
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.discussion)
    first = {"guid": "brief-1", "title": "Morning briefing"}
    second = {"guid": "brief-2", "title": "Morning briefing"}
    feed_site.set_feed("/feed", rss([first]))
    await poll(bot, clock, world)
    feed_site.set_feed("/feed", rss([second, first]))
    await crash_before_discord_call(bot, clock, world)
    await poll(bot, clock, world)
    embeds = embeds_in(world, world.discussion)
    assert len(embeds) == 2
    rows = await bot.bot.store.db.fetchall("SELECT message_id FROM articles WHERE status = 'posted'")
    assert sorted(r["message_id"] for r in rows) == sorted(int(m["id"]) for m in embeds)


async def test_interrupted_linkless_forum_post_is_found(
    bot: Booted, world: World, feed_site: FeedServer, clock
) -> None:
    """A post without a link carries a ref of its article, so an interrupted one is still recognised."""
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    feed_site.set_feed("/feed", rss([{"guid": "brief-1", "title": "Morning briefing"}]))
    await poll_losing_the_record(bot, clock, world)
    await poll(bot, clock, world)
    posts = forum_posts(world)
    assert len(posts) == 1
    assert (await article_row(bot, "brief-1"))["thread_id"] == posts[0].id


async def test_forum_requiring_a_tag_needs_a_default(bot: Booted, world: World, feed_site: FeedServer, clock) -> None:
    """A require-tag forum is refused without `*=Tag`; with it, an article of no known category gets that tag."""
    forum = world.guild.add_forum_channel("strict", tags=["News", "Sport"], require_tag=True)
    await world.fake.roundtrip()
    feed_site.set_feed("/feed", rss([]))
    ix = await world.fake.slash(world.guild, world.admin, "feed add", url=feed_site.url("/feed"), channel=forum)
    text = (await ix.wait_response())["data"]["content"]
    assert "requires a tag" in text and "`*=News`" in text
    assert await bot.bot.store.feeds.in_guild(world.guild.id) == []

    reply = await add_feed(world, feed_site.url("/feed"), forum, tags="*=News")
    assert "added" in reply["content"]
    feed_site.set_feed("/feed", rss([story(1, categories=["Weather"])]))
    await poll(bot, clock, world)
    [post] = world.fake.threads_in(forum)
    assert [int(t) for t in post.applied_tags] == [forum.tag_id("News")]
    assert (await article_row(bot, "story-1"))["status"] == "posted"


def test_default_tag_only_when_no_category_matches() -> None:
    available = {"News": 1, "Sport": 2}
    assert choose_tags(["Weather"], {"*": "News"}, available) == [1]
    assert choose_tags(["Sport"], {"*": "News"}, available) == [2]
    assert choose_tags(["Weather"], {}, available) == []


async def test_edit_refused_by_discord_is_not_retried(bot: Booted, world: World, feed_site: FeedServer, clock) -> None:
    """An archived thread refuses edits (400): the bot gives up on that edit instead of retrying every poll."""
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    feed_site.set_feed("/feed", rss([story(1, description="First version.")]))
    await poll(bot, clock, world)
    world.fake.fail_next("PATCH", r"/channels/\d+/messages/\d+", 400, code=50083, message="Thread is archived")
    feed_site.set_feed("/feed", rss([story(1, description="Second version.")]))
    await poll(bot, clock, world)
    edits = len(world.fake.requests_to("/messages/{message_id}", method="PATCH"))
    await poll(bot, clock, world)
    await poll(bot, clock, world)
    assert len(world.fake.requests_to("/messages/{message_id}", method="PATCH")) == edits == 1
    assert (await article_row(bot, "story-1"))["needs_edit"] == 0


async def test_article_discord_keeps_failing_is_failed_with_an_alert(
    bot: Booted, world: World, feed_site: FeedServer, clock: FakeClock
) -> None:
    """An article Discord answers with a 5xx cycle after cycle is failed (with an alert) after a few
    cycles, so the feed's queue moves on; `/feed resume` then checks for it and retries it once."""
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    world.fake.fail_next("POST", r"/channels/\d+/threads$", 503, times=5)
    feed_site.set_feed("/feed", rss([story(1)]))
    for _ in range(4):
        await poll(bot, clock, world)
        assert (await article_row(bot, "story-1"))["status"] == "posting"
    assert alerts(world) == []
    feed_site.set_feed("/feed", rss([story(2), story(1)]))
    await poll(bot, clock, world)
    row = await article_row(bot, "story-1")
    assert row["status"] == "failed" and "Discord failed 5 times in a row" in row["status_reason"]
    [alert] = [text for text in alerts(world) if "Story number 1" in text]
    assert "503" in alert and "/feed resume" in alert
    await poll(bot, clock, world)
    assert [p.name for p in forum_posts(world)] == ["Story number 2"]

    ix = await world.fake.slash(world.guild, world.admin, "feed resume", feed=1)
    await ix.wait_response()
    await poll(bot, clock, world)
    assert sorted(p.name for p in forum_posts(world)) == ["Story number 1", "Story number 2"]
    assert (await article_row(bot, "story-1"))["status"] == "posted"


async def test_short_discord_outage_fails_no_article(
    bot: Booted, world: World, feed_site: FeedServer, clock: FakeClock
) -> None:
    """Five failed cycles a minute apart are an outage, not the article's fault: it waits, then posts."""
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    world.fake.fail_next("POST", r"/channels/\d+/threads$", 503, times=6)
    feed_site.set_feed("/feed", rss([story(1)]))
    for minutes in (16, 1, 1, 1, 1, 1):  # the feed is polled once, then its post retried each cycle
        await poll(bot, clock, world, minutes=minutes)
        assert (await article_row(bot, "story-1"))["status"] == "posting"
    assert alerts(world) == []
    await poll(bot, clock, world, minutes=1)
    assert [p.name for p in forum_posts(world)] == ["Story number 1"]


async def interrupted_forum_post_uncached(bot: Booted, world: World, feed_site: FeedServer, clock: FakeClock) -> None:
    """Discord made story 1's forum post, the bot never recorded it, and its starter message is not cached."""
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    feed_site.set_feed("/feed", rss([story(1)]))
    await poll_losing_the_record(bot, clock, world)
    assert len(forum_posts(world)) == 1
    bot.bot._connection._messages.clear()  # the starter must be fetched


async def test_reconcile_server_error_does_not_repost(bot: Booted, world: World, feed_site: FeedServer, clock) -> None:
    """A 5xx while reading a forum post's starter message leaves the article 'posting'; no second post."""
    await interrupted_forum_post_uncached(bot, world, feed_site, clock)
    world.fake.fail_next("GET", r"/channels/\d+/messages/\d+$", 503)
    await poll(bot, clock, world)
    assert len(forum_posts(world)) == 1
    assert (await article_row(bot, "story-1"))["status"] == "posting"
    await poll(bot, clock, world)
    posts = forum_posts(world)
    assert len(posts) == 1
    row = await article_row(bot, "story-1")
    assert row["status"] == "posted" and row["thread_id"] == posts[0].id


async def test_reconcile_without_read_history_matches_the_title(
    bot: Booted, world: World, feed_site: FeedServer, clock
):
    """A 403 reading the starter message: the bot's own newer thread with the article's title is taken for it."""
    await interrupted_forum_post_uncached(bot, world, feed_site, clock)
    world.fake.fail_next("GET", r"/channels/\d+/messages/\d+$", 403, code=50001, message="Missing Access", times=5)
    await poll(bot, clock, world)
    posts = forum_posts(world)
    assert len(posts) == 1
    row = await article_row(bot, "story-1")
    assert row["status"] == "posted" and row["thread_id"] == posts[0].id


async def test_edit_made_while_a_post_was_interrupted_is_applied(
    bot: Booted, world: World, feed_site: FeedServer, clock
):
    """The article is corrected on the site while its post's outcome is unknown: once found, the post is edited."""
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    feed_site.set_feed("/feed", rss([story(1, description="First version.")]))
    await poll_losing_the_record(bot, clock, world)
    feed_site.set_feed("/feed", rss([story(1, title="Story number 1, corrected", description="Second version.")]))
    await poll(bot, clock, world)
    [post] = forum_posts(world)
    assert post.name == "Story number 1, corrected"
    starter = world.fake.find_message(post.id)
    assert starter is not None and "Second version." in starter["content"]
    row = await article_row(bot, "story-1")
    assert row["status"] == "posted" and row["thread_id"] == post.id and row["needs_edit"] == 0


async def forty_feeds(bot: Booted, world: World) -> None:
    for n in range(1, 41):
        await bot.bot.store.feeds.add(
            guild_id=world.guild.id,
            url=f"https://paper-{n}.example/sections/{'news' * 5}/feed.xml",
            channel_id=world.forum.id,
            channel_kind="forum",
            tag_map={},
            poll_interval=900,
            created_by=None,
        )


def feed_ids(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"\*\*#(\d+)\*\*", text)]


def buttons(message: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["label"]: c for row in message["components"] for c in row["components"]}


async def test_feed_list_pages_through_forty_feeds(bot: Booted, world: World) -> None:
    """/feed list shows every feed across pages: Next walks them all once, `page` jumps to one, Prev goes back."""
    await forty_feeds(bot, world)
    ix = await world.fake.slash(world.guild, world.admin, "feed list")
    await ix.wait_response()
    message = ix.original
    assert message is not None and "page 1 of" in message["content"] and len(message["content"]) <= 2000
    pages = int(re.search(r"page 1 of (\d+)", message["content"])[1])  # type: ignore[index]
    assert pages > 1 and buttons(message)["◀ Prev"].get("disabled")
    seen = feed_ids(message["content"])
    for page in range(2, pages + 1):
        click = await world.fake.click(world.guild, world.admin, message, buttons(message)["Next ▶"]["custom_id"])
        response = await click.wait_response()
        assert response["type"] == 7
        message = {**message, **response["data"]}
        assert f"page {page} of {pages}" in message["content"] and len(message["content"]) <= 2000
        seen += feed_ids(message["content"])
    assert seen == list(range(1, 41))
    assert buttons(message)["Next ▶"].get("disabled")

    ix = await world.fake.slash(world.guild, world.admin, "feed list", page=2)
    await ix.wait_response()
    second = ix.original
    assert second is not None and f"page 2 of {pages}" in second["content"]
    click = await world.fake.click(world.guild, world.admin, second, buttons(second)["◀ Prev"]["custom_id"])
    response = await click.wait_response()
    assert "page 1 of" in response["data"]["content"] and feed_ids(response["data"]["content"])[0] == 1


async def test_feed_list_buttons_check_server_and_permission(bot: Booted, world: World) -> None:
    """A member without Manage Server, or a click carrying another server's id, gets no feeds."""
    await forty_feeds(bot, world)
    ix = await world.fake.slash(world.guild, world.admin, "feed list")
    await ix.wait_response()
    message = ix.original
    assert message is not None
    next_id = buttons(message)["Next ▶"]["custom_id"]
    click = await world.fake.click(world.guild, world.reader, message, next_id)
    response = await click.wait_response()
    assert response["type"] == 4 and "Manage Server" in response["data"]["content"]
    assert not feed_ids(response["data"]["content"])

    other = world.fake.add_guild("Another paper")
    foreign = next_id.replace(f"feeds:list:{world.guild.id}:", f"feeds:list:{other.id}:")
    button = {**buttons(message)["Next ▶"], "custom_id": foreign}
    forged = {**message, "components": [{"type": 1, "components": [button]}]}
    world.fake.all_messages[int(message["id"])] = forged
    click = await world.fake.click(world.guild, world.admin, forged, foreign)
    response = await click.wait_response()
    assert response["type"] == 4 and "another server" in response["data"]["content"]


async def test_another_servers_admin_can_neither_see_nor_change_a_feed(
    bot: Booted, world: World, feed_site: FeedServer
) -> None:
    """Every /feed subcommand and the feed autocomplete, used by an admin of another server, treat feed #1 as absent."""
    from tests.fakediscord import perms

    feed_site.set_feed("/feed", rss([story(1)]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    before = await bot.bot.store.feeds.get(1)
    rival = world.fake.add_guild("Rival paper")
    mallory = rival.add_member("mallory", roles=[rival.add_role("Admins", permissions=perms.MANAGE_GUILD)])
    rival_role = rival.add_role("Rivals", mentionable=True)
    rival.add_text_channel("general")
    attempts: list[tuple[str, dict[str, Any]]] = [
        ("feed filter add", {"action": "exclude", "field": "keyword", "value": "x"}),
        ("feed filter list", {}),
        ("feed filter remove", {"number": 1}),
        ("feed filter clear", {}),
        ("feed format set", {"field": "content", "template": "{title} @everyone"}),
        ("feed format show", {}),
        ("feed format reset", {}),
        ("feed mention set", {"role": rival_role}),
        ("feed mention clear", {}),
        ("feed options set", {"archive_links": True, "webhook": True}),
        ("feed preview", {}),
        ("feed diagnose", {}),
        ("feed pause", {}),
        ("feed resume", {}),
        ("feed remove", {}),
    ]
    for name, options in attempts:
        ix = await world.fake.slash(rival, mallory, name, feed=1, **options)
        response = await ix.wait_response()
        text = response["data"]["content"] if response["type"] == 4 else (await ix.wait_followup())["content"]
        assert "There is no feed #1 in this server" in text, (name, text)
        ac = await world.fake.autocomplete(rival, mallory, name, "feed", "", **options)
        await ac.wait_response()
        assert not ac.choices, name
    ix = await world.fake.slash(rival, mallory, "feed export")
    assert "No feeds to export yet" in (await ix.wait_response())["data"]["content"]
    ix = await world.fake.slash(rival, mallory, "feed list")
    assert feed_site.url("/feed") not in str(await ix.wait_response())
    after = await bot.bot.store.feeds.get(1)
    assert after is not None and (after.settings, after.enabled) == (before.settings, before.enabled)


async def test_hanging_feed_does_not_delay_the_others(world: World, booter: Any, feed_site: FeedServer, clock) -> None:
    """Feed A's server hangs (until its 5-minute timeout); feed B's new article is posted meanwhile, not after A."""
    bot: Booted = await booter(clock=clock, feeds={"timeout_seconds": 300})
    feed_site.set_feed("/a", rss([]))
    feed_site.set_feed("/b", rss([]))
    await add_feed(world, feed_site.url("/a"), world.discussion)
    await add_feed(world, feed_site.url("/b"), world.forum)
    a_asked, a_answers = asyncio.Event(), asyncio.Event()

    async def hanging(request: Any) -> Any:
        a_asked.set()
        await a_answers.wait()  # stands for the feed timeout running out
        return web.Response(status=504)

    feed_site.set_handler("/a", hanging)
    feed_site.set_feed("/b", rss([story(1)]))
    posted = world.fake.hold_next("POST", r"/channels/\d+/threads$", after_effect=True)
    clock.advance(minutes=16)
    cycle = asyncio.create_task(bot.cog("Articles").run_cycle())
    try:
        await asyncio.wait_for(a_asked.wait(), 30)
        await asyncio.wait_for(posted.arrived.wait(), 30)  # B's post reaches Discord while A still hangs
    finally:
        posted.release()
        a_answers.set()
        await cycle
    assert [p.name for p in forum_posts(world)] == ["Story number 1"]
    assert (await article_row(bot, "story-1"))["status"] == "posted"
    feed_a = await bot.bot.store.feeds.get(1)
    assert feed_a is not None and feed_a.consecutive_errors == 1


async def test_diagnose_tells_of_a_missing_discussion_thread(bot: Booted, world: World, feed_site: FeedServer, clock):
    """/feed diagnose says when a text post's thread is still to be made."""
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.discussion)
    world.fake.fail_next("POST", r"/channels/\d+/messages/\d+/threads", 503)
    feed_site.set_feed("/feed", rss([story(1)]))
    await poll(bot, clock, world)
    ix = await world.fake.slash(
        world.guild, world.admin, "feed diagnose", feed=1, article_url="https://paper.example/1"
    )
    text = (await ix.wait_response())["data"]["content"]
    assert "discussion thread is still to be made" in text


def wordpress_item(n: int, paragraphs: int = 12) -> dict[str, Any]:
    """An item as WordPress writes it: long excerpt, closing boilerplate, byline and an image in the content."""
    body = "".join(
        f"<p>Sentence {i} of the report on the harbour, which goes on for a while. Another one here.</p>"
        for i in range(paragraphs)
    )
    boilerplate = (
        f'<p>The post <a href="https://paper.example/{n}">Story number {n}</a> appeared first on '
        '<a href="https://paper.example">The Weekly</a>.</p>'
    )
    return story(
        n,
        description=f'<p><img src="https://paper.example/img/{n}.jpg" alt=""></p>{body}{boilerplate}',
        creator="Jo Writer",
    )


async def test_text_post_reads_well_by_default(bot: Booted, world: World, feed_site: FeedServer, clock) -> None:
    """No WordPress boilerplate, a byline, the item's image, and a summary cut after a sentence near 500 chars."""
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.discussion)
    feed_site.set_feed("/feed", rss([wordpress_item(1)]))
    await poll(bot, clock, world)
    embed = next(m for m in world.fake.messages_in(world.discussion) if m.get("embeds"))["embeds"][0]
    assert embed["author"]["name"] == "Jo Writer"
    assert embed["image"]["url"] == "https://paper.example/img/1.jpg"
    description = embed["description"]
    assert "appeared first on" not in description
    assert 250 <= len(description) <= 500 and description.endswith("Another one here.")


async def test_forum_post_reads_well_by_default(bot: Booted, world: World, feed_site: FeedServer, clock) -> None:
    """A forum post starts with the byline, shows the image, ends with the link; a description-only item is posted."""
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    untitled = "<item><description>Ferry timetable changes from Monday: the early boat is back.</description></item>"
    feed_site.set_feed("/feed", rss([wordpress_item(1)]).replace(b"</channel>", untitled.encode() + b"</channel>"))
    await poll(bot, clock, world)
    posts = {p.name: world.fake.find_message(p.id) for p in forum_posts(world)}
    assert set(posts) == {"Story number 1", "Ferry timetable changes from Monday: the early boat is back."}
    starter = posts["Story number 1"]
    assert starter is not None
    assert starter["content"].startswith("-# By Jo Writer\nSentence 0")
    assert starter["content"].endswith("\n\nhttps://paper.example/1")
    assert "appeared first on" not in starter["content"] and len(starter["content"]) < 600
    assert [e["image"]["url"] for e in starter["embeds"]] == ["https://paper.example/img/1.jpg"]


async def test_same_article_through_two_feeds_is_posted_once_per_channel(
    bot: Booted, world: World, feed_site: FeedServer, clock
) -> None:
    """A site's main feed and its category feed in one channel: the shared article is posted once there."""
    feed_site.set_feed("/feed", rss([]))
    feed_site.set_feed("/politics", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    await add_feed(world, feed_site.url("/politics"), world.forum)
    await add_feed(world, feed_site.url("/politics"), world.discussion)
    shared = story(1)
    # The category feed writes the link with tracking parameters and its own guid.
    feed_site.set_feed("/feed", rss([shared, story(2)]))
    feed_site.set_feed(
        "/politics",
        rss([{**shared, "guid": "pol-1", "link": "http://www.paper.example/1/?utm_source=rss#top"}, story(3)]),
    )
    await poll(bot, clock, world)
    assert sorted(p.name for p in forum_posts(world)) == ["Story number 1", "Story number 2", "Story number 3"]
    # Another channel is another audience: it gets the article too.
    assert len([m for m in world.fake.messages_in(world.discussion) if m.get("embeds")]) == 2
    # Both forum feeds are polled at once: whichever brought it first posted it, the other one says so.
    answers = {}
    for feed, url in ((1, shared["link"]), (2, "http://www.paper.example/1/?utm_source=rss#top")):
        ix = await world.fake.slash(world.guild, world.admin, "feed diagnose", feed=feed, article_url=url)
        answers[feed] = (await ix.wait_response())["data"]["content"]
    told = [feed for feed in (1, 2) if f"already in this channel through feed #{3 - feed}" in answers[feed]]
    assert len(told) == 1, answers
    assert "“Story number 1”: posted in" in answers[3 - told[0]], answers


async def test_burst_of_twenty_is_caught_up_within_five_minutes(
    world: World, booter: Any, feed_site: FeedServer, clock: FakeClock
) -> None:
    """Twenty articles in two bursts (the feed lists only the newest ten) all appear within 5 minutes, no 429."""
    booted: Booted = await booter(clock=clock)
    world.fake.rate_limits.enable()
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    cog = booted.cog("Articles")
    clock.advance(minutes=16)
    feed_site.set_feed("/feed", rss([story(n) for n in range(10, 0, -1)]))
    elapsed = 0.0
    while elapsed <= 300 and len(forum_posts(world)) < 20:
        if elapsed >= 30:  # half a minute later ten more are published; the first ten drop off the feed
            feed_site.set_feed("/feed", rss([story(n) for n in range(20, 10, -1)]))
        await cog.run_cycle()
        await world.fake.roundtrip()
        step = await cog.next_poll_delay()
        clock.advance(seconds=step)
        elapsed += step
    assert len(forum_posts(world)) == 20, f"{len(forum_posts(world))} of 20 posted after {elapsed:.0f} s"
    assert world.fake.count_429 == 0


async def slash_text(world: World, name: str, **options: Any) -> str:
    ix = await world.fake.slash(world.guild, world.admin, name, **options)
    return str((await ix.wait_response())["data"]["content"])


async def test_filters_drop_articles_and_diagnose_names_the_rule(
    bot: Booted, world: World, feed_site: FeedServer, clock
) -> None:
    """Exclude by category and pattern, include by keyword; `/feed diagnose` says which rule dropped an item."""
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    assert "every new article is posted" in await slash_text(world, "feed filter list", feed=1)
    ac = await world.fake.autocomplete(world.guild, world.admin, "feed filter list", "feed", "")
    await ac.wait_response()
    assert [c["value"] for c in ac.choices or []] == [1]
    reply = await slash_text(world, "feed filter add", feed=1, action="exclude", field="category", value="sport")
    assert "1. exclude category “sport”" in reply
    await slash_text(world, "feed filter add", feed=1, action="exclude", field="regex", value=r"^sponsored\b")
    refused = await slash_text(world, "feed filter add", feed=1, action="include", field="regex", value="(open")
    assert "not a valid regular expression" in refused
    feed_site.set_feed(
        "/feed",
        rss(
            [
                story(1, categories=["Sport"]),
                {**story(2), "title": "Sponsored: a new sofa"},
                story(3, categories=["Politics"]),
            ]
        ),
    )
    await poll(bot, clock, world)
    assert [p.name for p in forum_posts(world)] == ["Story number 3"]
    why = await slash_text(world, "feed diagnose", feed=1, article_url="https://paper.example/1")
    assert "filtered out by rule 1 (exclude category “sport”)" in why
    why = await slash_text(world, "feed diagnose", feed=1, article_url="https://paper.example/2")
    assert "filtered out by rule 2 (exclude pattern “^sponsored\\b”)" in why

    await slash_text(world, "feed filter remove", feed=1, number=2)
    await slash_text(world, "feed filter add", feed=1, action="include", field="keyword", value="harbour")
    feed_site.set_feed(
        "/feed", rss([story(4, description="The harbour reopens."), story(5, description="Schools close.")])
    )
    await poll(bot, clock, world)
    assert sorted(p.name for p in forum_posts(world)) == ["Story number 3", "Story number 4"]
    why = await slash_text(world, "feed diagnose", feed=1, article_url="https://paper.example/5")
    assert "filtered out by rule 2 (include keyword “harbour”): it does not match" in why
    await slash_text(world, "feed filter clear", feed=1)
    assert (await bot.bot.store.feeds.get(1)).settings["filters"] == []


async def test_formats_per_feed_are_checked_previewed_posted_and_reset(
    bot: Booted, world: World, feed_site: FeedServer, clock
) -> None:
    """`/feed format set` templates a text channel's message, embed and thread; a bad one names its field."""
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.discussion)
    refused = await slash_text(world, "feed format set", feed=1, field="embed_title", template="{headline}")
    assert "embed_title template has an unknown placeholder {headline}" in refused
    for field, template in (
        ("content", "New from {feed}: **{title}**"),
        ("embed_title", "{title} ({categories})"),
        ("embed_footer", "{author} · {feed}"),
        ("forum_title", "Discuss: {title}"),
    ):
        reply = await slash_text(world, "feed format set", feed=1, field=field, template=template)
        assert f"{field} format saved" in reply
    item = story(1, categories=["Politics"], creator="Jo Writer", description="Council votes.")
    feed_site.set_feed("/feed", rss([item]))

    ix = await world.fake.slash(world.guild, world.admin, "feed preview", feed=1)
    await ix.wait_response()
    preview = await ix.wait_followup()
    assert preview["embeds"][0]["title"] == "Story number 1 (Politics)"
    assert "message text: New from The Weekly: **Story number 1**" in preview["content"]

    await poll(bot, clock, world)
    posted = next(m for m in world.fake.messages_in(world.discussion) if m.get("embeds"))
    assert posted["content"] == "New from The Weekly: **Story number 1**"
    embed = posted["embeds"][0]
    assert embed["title"] == preview["embeds"][0]["title"]
    assert embed["footer"]["text"] == "Jo Writer · The Weekly" and embed["url"] == "https://paper.example/1"
    assert embed["description"] == "Council votes."
    assert [t.name for t in world.fake.threads_in(world.discussion)] == ["Discuss: Story number 1"]

    assert "every format reset" in await slash_text(world, "feed format reset", feed=1)
    feed_site.set_feed("/feed", rss([story(2), item]))
    await poll(bot, clock, world)
    latest = [m for m in world.fake.messages_in(world.discussion) if m.get("embeds")][-1]
    assert latest["embeds"][0]["title"] == "Story number 2" and not latest.get("content")


async def test_forum_format_keeps_the_link_as_the_last_line(bot: Booted, world: World, feed_site: FeedServer, clock):
    """A forum post's content template may leave out the link: it is added, so the post stays recognisable."""
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    await slash_text(world, "feed format set", feed=1, field="content", template="{summary}\\n-# {categories}")
    await slash_text(world, "feed format set", feed=1, field="forum_title", template="[{categories}] {title}")
    feed_site.set_feed("/feed", rss([story(1, categories=["Sport"], description="A long match report. " * 200)]))
    await poll(bot, clock, world)
    [post] = forum_posts(world)
    assert post.name == "[Sport] Story number 1"
    content = world.fake.find_message(post.id)["content"]
    assert content.endswith("\n-# Sport\n\nhttps://paper.example/1") and len(content) <= 2000


async def test_category_mentions_per_feed_are_capped(bot: Booted, world: World, feed_site: FeedServer) -> None:
    """A feed pings roles for at most 25 categories; the 26th is refused with the way out, a known one can change."""
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    readers = world.guild.add_role("Readers", mentionable=True)
    for n in range(25):
        await slash_text(world, "feed mention set", feed=1, role=readers, category=f"Topic {n}")
    refused = await slash_text(world, "feed mention set", feed=1, role=readers, category="Topic 25")
    assert "pings roles for 25 categories already" in refused
    others = world.guild.add_role("Others", mentionable=True)
    assert "ping" in await slash_text(world, "feed mention set", feed=1, role=others, category="topic 3")
    categories = (await bot.bot.store.feeds.get(1)).settings["mention"]["categories"]
    assert len(categories) == 25 and categories["topic 3"] == others.id


async def test_role_mention_per_feed_and_category_pings_only_that_role(
    bot: Booted, world: World, feed_site: FeedServer, clock
) -> None:
    """An admin opts a feed in to ping a role (and a category's role); posts allow exactly those roles."""
    readers = world.guild.add_role("Readers", mentionable=True)
    sport_fans = world.guild.add_role("Sport fans", mentionable=True)
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    await add_feed(world, feed_site.url("/feed"), world.discussion)
    refused = await slash_text(world, "feed mention set", feed=1, role=world.guild.everyone)
    assert "can't ping @everyone" in refused
    assert "every post pings" in await slash_text(world, "feed mention set", feed=1, role=readers)
    reply = await slash_text(world, "feed mention set", feed=1, role=sport_fans, category="Sport")
    assert "category “sport” ping" in reply
    await slash_text(world, "feed mention set", feed=2, role=readers)
    hostile = {**story(2), "title": f"Alert <@&{world.editor_role.id}> @everyone"}
    feed_site.set_feed("/feed", rss([story(1, categories=["Sport"]), hostile]))
    await poll(bot, clock, world)

    def starter(name: str) -> dict[str, Any]:
        post = next(p for p in forum_posts(world) if p.name.startswith(name))
        message = world.fake.find_message(post.id)
        assert message is not None
        return message

    sport = starter("Story number 1")
    assert sport["content"].startswith(f"<@&{readers.id}> <@&{sport_fans.id}>\n")
    assert sport["mention_roles"] == [str(readers.id), str(sport_fans.id)]
    other = starter("Alert")
    assert other["mention_roles"] == [str(readers.id)] and not other["mention_everyone"]
    allowed = world.fake.message_meta[int(other["id"])]["allowed_mentions"]
    assert allowed["parse"] == [] and [int(r) for r in allowed["roles"]] == [readers.id]
    text_post = next(m for m in world.fake.messages_in(world.discussion) if m.get("embeds"))
    assert text_post["content"] == f"<@&{readers.id}>" and text_post["mention_roles"] == [str(readers.id)]

    await slash_text(world, "feed mention clear", feed=1)
    feed_site.set_feed("/feed", rss([story(3, categories=["Sport"]), story(1, categories=["Sport"]), hostile]))
    await poll(bot, clock, world)
    assert starter("Story number 3")["mention_roles"] == []


async def test_a_role_the_admin_may_not_ping_is_not_pinged_through_the_bot(
    bot: Booted, world: World, feed_site: FeedServer
) -> None:
    """An admin without Mention All Roles in a feed's channel can't make its posts ping a role that isn't
    mentionable, even though the bot could ping it there (its permissions are not the admin's)."""
    fake = world.fake
    news = world.guild.add_text_channel(
        "news",
        overwrites=[
            perms.overwrite(world.guild.id, deny=perms.MENTION_EVERYONE),
            perms.overwrite(fake.bot.id, allow=perms.MENTION_EVERYONE, member=True),
        ],
    )
    moderators = world.guild.add_role("Moderators")  # not mentionable: only some may ping it
    await fake.settle()
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), news)
    refused = await slash_text(world, "feed mention set", feed=1, role=moderators)
    assert "can't ping" in refused
    assert not (await bot.bot.store.feeds.get(1)).settings.get("mention")


async def test_opml_import_and_export(bot: Booted, world: World, feed_site: FeedServer, clock) -> None:
    """`/feed import` adds an OPML file's feeds (nested, once each, baseline only); `/feed export` gives them back."""
    feed_site.set_feed("/feed", rss([story(1)], title="Main"))
    feed_site.set_feed("/politics", rss([story(2)], title="Politics"))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    opml = f"""<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0"><head><title>My reader</title></head><body>
  <outline text="News">
    <outline type="rss" text="Main" xmlUrl="{feed_site.url("/feed")}"/>
    <outline type="rss" text="Politics &amp; more" xmlUrl="{feed_site.url("/politics")}"/>
    <outline type="rss" text="Gone" xmlUrl="{feed_site.url("/missing")}"/>
  </outline>
  <outline type="rss" text="Politics again" xmlUrl="{feed_site.url("/politics")}"/>
</body></opml>""".encode()
    ix = await world.fake.slash(
        world.guild, world.admin, "feed import", file=("reader.opml", opml), channel=world.forum
    )
    await ix.wait_response()
    reply = (await ix.wait_followup())["content"]
    assert "1 added, 1 already there, 1 failed" in reply
    assert "Politics & more" in reply and "failed: Gone" in reply
    assert [f.url for f in await bot.bot.store.feeds.in_guild(world.guild.id)] == [
        feed_site.url("/feed"),
        feed_site.url("/politics"),
    ]
    await poll(bot, clock, world)
    assert forum_posts(world) == []  # what the imported feeds held is the baseline, as with /feed add

    ix = await world.fake.slash(world.guild, world.admin, "feed export")
    await ix.wait_original()
    [attachment] = ix.messages[0]["attachments"]
    assert attachment["filename"] == "feeds.opml"
    from bot.opml import parse_opml

    back = parse_opml(world.fake.attachment_bytes(attachment))
    assert [(f.url, f.title) for f in back] == [
        (feed_site.url("/feed"), "Main"),
        (feed_site.url("/politics"), "Politics"),
    ]

    evil = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><opml><body/></opml>'
    ix = await world.fake.slash(world.guild, world.admin, "feed import", file=("x.opml", evil), channel=world.forum)
    await ix.wait_response()
    assert "declares a DOCTYPE" in (await ix.wait_followup())["content"]


async def test_opml_import_fetches_a_few_feeds_at_once(
    world: World, booter: Any, feed_site: FeedServer, clock: FakeClock
) -> None:
    """Slow feeds of an import are fetched a few at a time, not one after another (50 hanging feeds in a row
    would outlast the 15 minutes in which the admin can be answered)."""
    booted: Booted = await booter(clock=clock, feeds={"timeout_seconds": 2})
    waiting = 0
    peak = 0
    together = asyncio.Event()

    async def slow(request: Any) -> Any:
        nonlocal waiting, peak
        waiting += 1
        peak = max(peak, waiting)
        if waiting >= 4:
            together.set()
        try:
            await together.wait()  # sequential fetches never get here together: each times out alone
        finally:
            waiting -= 1
        return web.Response(body=rss([story(1)]), content_type="application/rss+xml")

    for n in range(8):
        feed_site.set_handler(f"/slow/{n}", slow)
    outlines = "".join(f'<outline type="rss" text="s{n}" xmlUrl="{feed_site.url(f"/slow/{n}")}"/>' for n in range(8))
    opml = f'<?xml version="1.0"?><opml version="2.0"><body>{outlines}</body></opml>'.encode()
    ix = await world.fake.slash(world.guild, world.admin, "feed import", file=("x.opml", opml), channel=world.forum)
    await ix.wait_response()
    reply = (await ix.wait_followup())["content"]
    assert peak >= 4
    assert "8 added, 0 already there, 0 failed" in reply, reply
    imported = {f.url for f in await booted.bot.store.feeds.in_guild(world.guild.id)}
    assert imported == {feed_site.url(f"/slow/{n}") for n in range(8)}


async def test_a_server_has_at_most_max_per_server_feeds(
    world: World, booter: Any, feed_site: FeedServer, clock: FakeClock
) -> None:
    """One server's admins can't fill the poller every server shares: past `feeds.max_per_server`,
    /feed add and /feed import refuse with a clear reason, also when an import adds several at once."""
    booted: Booted = await booter(clock=clock, feeds={"max_per_server": 3})
    for n in range(6):
        feed_site.set_feed(f"/f/{n}", rss([story(n)], title=f"F{n}"))
    assert "added" in (await add_feed(world, feed_site.url("/f/0"), world.forum))["content"]
    outlines = "".join(f'<outline type="rss" text="F{n}" xmlUrl="{feed_site.url(f"/f/{n}")}"/>' for n in range(1, 6))
    opml = f'<?xml version="1.0"?><opml version="2.0"><body>{outlines}</body></opml>'.encode()
    ix = await world.fake.slash(world.guild, world.admin, "feed import", file=("x.opml", opml), channel=world.forum)
    await ix.wait_response()
    reply = (await ix.wait_followup())["content"]
    assert "2 added, 0 already there, 3 failed" in reply, reply  # four fetched at once, two fit
    assert "feeds.max_per_server" in reply
    assert len(await booted.bot.store.feeds.in_guild(world.guild.id)) == 3
    refused = (await add_feed(world, feed_site.url("/f/5"), world.forum))["content"]
    assert "This server has 3 feeds" in refused and "/feed remove" in refused
    assert len(await booted.bot.store.feeds.in_guild(world.guild.id)) == 3


async def test_opml_import_refuses_an_overlong_url_without_fetching_it(
    bot: Booted, world: World, feed_site: FeedServer
) -> None:
    """An outline whose URL is hundreds of kilobytes is refused by length (and the reply stays short)."""
    feed_site.set_feed("/feed", rss([story(1)]))
    huge = feed_site.url("/feed") + "?q=" + "x" * 300_000
    opml = f'<?xml version="1.0"?><opml version="2.0"><body><outline text="big" xmlUrl="{huge}"/></body></opml>'
    ix = await world.fake.slash(
        world.guild, world.admin, "feed import", file=("x.opml", opml.encode()), channel=world.forum
    )
    await ix.wait_response()
    reply = (await ix.wait_followup())["content"]
    assert "0 added, 0 already there, 1 failed" in reply and "at most 2048" in reply, reply[:300]
    assert feed_site.count("/feed") == 0
    assert await bot.bot.store.feeds.in_guild(world.guild.id) == []


async def test_opml_import_reports_malformed_urls_and_adds_the_rest(
    bot: Booted, world: World, feed_site: FeedServer
) -> None:
    """Outlines with URLs Python can't even split (a broken IPv6 host, a bad port) fail one by one, clearly."""
    feed_site.set_feed("/feed", rss([story(1)]))
    bad = ("http://[::1/feed", "http://[zz]/feed", "http://paper.example:99999/feed")
    outlines = "".join(f'<outline text="bad{n}" xmlUrl="{url}"/>' for n, url in enumerate(bad))
    outlines += f'<outline text="good" xmlUrl="{feed_site.url("/feed")}"/>'
    opml = f'<?xml version="1.0"?><opml version="2.0"><body>{outlines}</body></opml>'.encode()
    ix = await world.fake.slash(world.guild, world.admin, "feed import", file=("x.opml", opml), channel=world.forum)
    await ix.wait_response()
    reply = (await ix.wait_followup())["content"]
    assert "1 added, 0 already there, 3 failed" in reply, reply
    assert reply.count("is not a valid URL") == 3
    assert [f.url for f in await bot.bot.store.feeds.in_guild(world.guild.id)] == [feed_site.url("/feed")]
    ix = await world.fake.slash(world.guild, world.admin, "feed add", url="http://[::1/feed", channel=world.forum)
    assert "is not a valid URL" in (await ix.wait_response())["data"]["content"]


async def test_opml_import_refuses_a_doctype_hidden_after_padding_or_in_utf16(
    bot: Booted, world: World, feed_site: FeedServer
) -> None:
    """A DOCTYPE behind a long comment, or in UTF-16, is refused like any other: no entity is expanded."""
    feed_site.set_feed("/feed", rss([story(1)], title="Main"))
    doctype = f'<!DOCTYPE opml [<!ENTITY u "{feed_site.url("/feed")}">]>'
    body = '<opml version="2.0"><body><outline type="rss" text="x" xmlUrl="&u;"/></body></opml>'
    padded = f'<?xml version="1.0"?><!--{" " * 5000}-->{doctype}{body}'.encode()
    utf16 = f'<?xml version="1.0" encoding="UTF-16"?>{doctype}{body}'.encode("utf-16")
    for name, data in (("padded.opml", padded), ("utf16.opml", utf16)):
        ix = await world.fake.slash(world.guild, world.admin, "feed import", file=(name, data), channel=world.forum)
        await ix.wait_response()
        assert "declares a DOCTYPE" in (await ix.wait_followup())["content"], name
    assert await bot.bot.store.feeds.in_guild(world.guild.id) == []


async def test_opml_import_goes_through_the_same_address_policy_as_feed_add(
    world: World, booter: Any, feed_site: FeedServer, clock: FakeClock
) -> None:
    """Outlines pointing at loopback or private addresses are refused on import, as `/feed add` refuses them."""
    booted: Booted = await booter(clock=clock, feeds={"allowed_networks": []})
    feed_site.set_feed("/feed", rss([story(1)]))
    port = feed_site.url().split(":")[2].split("/")[0]
    outlines = "".join(
        f'<outline type="rss" text="h{n}" xmlUrl="http://{host}:{port}/feed"/>'
        for n, host in enumerate(("127.0.0.1", "[::1]", "localhost", "169.254.169.254", "2130706433"))
    )
    opml = f'<?xml version="1.0"?><opml version="2.0"><body>{outlines}</body></opml>'.encode()
    ix = await world.fake.slash(world.guild, world.admin, "feed import", file=("x.opml", opml), channel=world.forum)
    await ix.wait_response()
    reply = (await ix.wait_followup())["content"]
    assert "0 added, 0 already there, 5 failed" in reply, reply
    assert reply.count("that address is not allowed") == 5
    assert await booted.bot.store.feeds.in_guild(world.guild.id) == []


async def test_archive_links_reply_with_earlier_related_articles(
    bot: Booted, world: World, feed_site: FeedServer, clock
) -> None:
    """A new post's thread gets "From the archives": up to 3 earlier posted articles sharing a category."""
    base = datetime.now(UTC) - timedelta(hours=12)

    def dated(n: int, *categories: str) -> dict[str, Any]:
        return story(n, date=base + timedelta(hours=n), categories=list(categories))

    baseline = dated(0, "Politics")  # in the feed when it was added: never posted, so never in the archives
    feed_site.set_feed("/feed", rss([baseline]))
    await add_feed(world, feed_site.url("/feed"), world.forum, archive_links=True)
    await add_feed(world, feed_site.url("/feed"), world.discussion)  # the same articles, another channel
    earlier = [dated(1, "Politics"), dated(2, "Sport"), dated(3, "Politics", "Council"), dated(4, "council")]
    feed_site.set_feed("/feed", rss([*earlier, baseline]))
    await poll(bot, clock, world)
    feed_site.set_feed("/feed", rss([dated(5, "Politics"), *earlier, baseline]))
    await poll(bot, clock, world)
    feed_site.set_feed("/feed", rss([dated(6, "Council", "Politics"), dated(5, "Politics"), *earlier, baseline]))
    await poll(bot, clock, world)

    def archive_reply(name: str) -> str | None:
        thread = next(t for t in forum_posts(world) if t.name == name)
        replies = [m["content"] for m in world.fake.messages_in(thread) if m["content"].startswith("**From")]
        assert len(replies) <= 1
        return replies[0] if replies else None

    reply = archive_reply("Story number 6")
    assert reply is not None
    links = re.findall(r"\]\((https://paper\.example/\d+)\)", reply)
    assert links == ["https://paper.example/5", "https://paper.example/4", "https://paper.example/3"]
    assert archive_reply("Story number 2") is None  # nothing earlier shares "Sport"
    first = archive_reply("Story number 3")
    assert first is not None and re.findall(r"paper\.example/(\d+)\)", first) == ["1"]
    # The text channel's feed did not ask for them.
    for thread in world.fake.threads_in(world.discussion):
        assert not any(m["content"].startswith("**From") for m in world.fake.messages_in(thread))
    await poll(bot, clock, world)
    assert archive_reply("Story number 6") == reply  # once


async def test_archive_links_never_reveal_an_article_of_a_private_channel(
    bot: Booted, world: World, feed_site: FeedServer, clock
) -> None:
    """A staff-only channel's article of the same site is never linked "From the archives" in a public thread."""
    from tests.fakediscord import perms

    staff = world.guild.add_forum_channel(
        "staff-wire",
        tags=["News"],
        overwrites=[
            {"id": str(world.guild.id), "type": 0, "allow": "0", "deny": str(perms.VIEW_CHANNEL)},
            *(
                {"id": str(u.id), "type": 1, "allow": str(perms.VIEW_CHANNEL), "deny": "0"}
                for u in (world.fake.bot, world.admin)
            ),
        ],
    )
    base = datetime.now(UTC) - timedelta(hours=12)
    internal = {**story(1, date=base, categories=["Politics"]), "title": "Embargoed: council deal"}
    public_old = story(2, date=base + timedelta(hours=1), categories=["Politics"])
    public_new = story(3, date=base + timedelta(hours=2), categories=["Politics"])
    feed_site.set_feed("/internal", rss([]))
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/internal"), staff)
    await add_feed(world, feed_site.url("/feed"), world.forum, archive_links=True)
    feed_site.set_feed("/internal", rss([internal]))
    feed_site.set_feed("/feed", rss([public_old]))
    await poll(bot, clock, world)
    feed_site.set_feed("/feed", rss([public_new, public_old]))
    await poll(bot, clock, world)

    thread = next(t for t in forum_posts(world) if t.name == "Story number 3")
    [reply] = [m["content"] for m in world.fake.messages_in(thread) if m["content"].startswith("**From")]
    assert "https://paper.example/2" in reply
    assert "Embargoed" not in reply and "https://paper.example/1" not in reply


async def test_archive_reply_that_discord_failed_is_retried_next_cycle_on_its_own(
    bot: Booted, world: World, feed_site: FeedServer, clock
) -> None:
    """A "From the archives" reply that got a Discord 5xx is sent on the next cycle, though the feed has nothing new."""
    base = datetime.now(UTC) - timedelta(hours=12)
    first, second = (story(n, date=base + timedelta(hours=n), categories=["Politics"]) for n in (1, 2))
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.forum, archive_links=True)
    feed_site.set_feed("/feed", rss([first]))
    await poll(bot, clock, world)
    feed_site.set_feed("/feed", rss([second, first]))
    world.fake.fail_next("POST", r"/channels/\d+/messages$", 503)
    await poll(bot, clock, world)
    thread = next(t for t in forum_posts(world) if t.name == "Story number 2")
    assert not [m for m in world.fake.messages_in(thread) if m["content"].startswith("**From")]

    await bot.cog("Articles").run_cycle()  # no feed is due: only the reply is left to do
    await world.fake.roundtrip()
    [reply] = [m["content"] for m in world.fake.messages_in(thread) if m["content"].startswith("**From")]
    assert "https://paper.example/1" in reply
    await bot.cog("Articles").run_cycle()
    await world.fake.roundtrip()
    assert len([m for m in world.fake.messages_in(thread) if m["content"].startswith("**From")]) == 1


async def test_an_edit_of_the_byline_or_image_alone_updates_the_post(
    bot: Booted, world: World, feed_site: FeedServer, clock
) -> None:
    """A site that corrects only an article's author or image gets its forum post and text post edited."""
    date = datetime.now(UTC) - timedelta(hours=1)
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    await add_feed(world, feed_site.url("/feed"), world.discussion)
    feed_site.set_feed("/feed", rss([story(1, date=date, creator="Ana Lopez", image="https://paper.example/a.jpg")]))
    await poll(bot, clock, world)
    [post] = forum_posts(world)
    text_post = next(m for m in world.fake.messages_in(world.discussion) if m.get("embeds"))
    assert "Ana Lopez" in world.fake.find_message(post.id)["content"]

    feed_site.set_feed("/feed", rss([story(1, date=date, creator="Ana López", image="https://paper.example/b.jpg")]))
    await poll(bot, clock, world)
    starter = world.fake.find_message(post.id)
    assert "By Ana López" in starter["content"]
    assert [e["image"]["url"] for e in starter["embeds"]] == ["https://paper.example/b.jpg"]
    embed = world.fake.find_message(int(text_post["id"]))["embeds"][0]
    assert embed["author"]["name"] == "Ana López" and embed["image"]["url"] == "https://paper.example/b.jpg"

    feed_site.set_feed("/feed", rss([story(1, date=date, creator="Ana López")]))  # the image taken down
    await poll(bot, clock, world)
    assert world.fake.find_message(post.id)["embeds"] == []
    assert "image" not in world.fake.find_message(int(text_post["id"]))["embeds"][0]


async def test_an_edit_updates_a_text_posts_custom_message_too(
    bot: Booted, world: World, feed_site: FeedServer, clock
) -> None:
    """With a `content` format, a corrected byline reaches the text post's message, not only its embed."""
    date = datetime.now(UTC) - timedelta(hours=1)
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.discussion)
    await slash_text(world, "feed format set", feed=1, field="content", template="New from {author}: {title}")
    feed_site.set_feed("/feed", rss([story(1, date=date, creator="Ana Lopez")]))
    await poll(bot, clock, world)
    post = next(m for m in world.fake.messages_in(world.discussion) if m.get("embeds"))
    assert post["content"].startswith("New from Ana Lopez: Story number 1")

    feed_site.set_feed("/feed", rss([story(1, date=date, creator="Ana López")]))
    await poll(bot, clock, world)
    edited = world.fake.find_message(int(post["id"]))
    assert edited["content"].startswith("New from Ana López: Story number 1")
    assert edited["embeds"][0]["author"]["name"] == "Ana López"


async def test_bylines_of_articles_stored_before_they_were_recorded_are_filled_in_without_an_edit(
    bot: Booted, world: World, feed_site: FeedServer, clock
) -> None:
    """After the upgrade, a posted article gaining its (always present) byline is not edited: only recorded."""
    date = datetime.now(UTC) - timedelta(hours=1)
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    feed_site.set_feed("/feed", rss([story(1, date=date, creator="Ana")]))
    await poll(bot, clock, world)
    [post] = forum_posts(world)
    await bot.bot.store.db.write("UPDATE articles SET author = NULL, image_url = NULL")  # as stored before 0010
    before = world.fake.find_message(post.id)

    feed_site.set_feed("/feed", rss([story(1, date=date, creator="Ana", image="https://paper.example/a.jpg")]))
    await poll(bot, clock, world)
    assert world.fake.find_message(post.id) == before
    row = await bot.bot.store.articles.by_thread(post.id)
    assert row is not None and (row.author, row.image_url, row.needs_edit) == (
        "Ana",
        "https://paper.example/a.jpg",
        False,
    )


async def test_webhook_delivery_posts_under_the_feeds_name(
    world: World, booter: Any, feed_site: FeedServer, clock: FakeClock
) -> None:
    """With Manage Webhooks, a feed posts through a channel webhook (forum and text) under its own name and avatar."""
    from tests.fakediscord import perms

    world.guild.bot_role.permissions |= perms.MANAGE_WEBHOOKS  # type: ignore[attr-defined]
    booted: Booted = await booter(clock=clock)
    feed_site.set_feed("/feed", rss([], title="The Weekly Discord edition"))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    await add_feed(world, feed_site.url("/feed"), world.discussion)
    reply = await slash_text(world, "feed options set", feed=1, webhook=True)
    assert "webhook delivery on: posts come from “The Weekly edition”" in reply
    await slash_text(
        world,
        "feed options set",
        feed=2,
        webhook=True,
        webhook_name="Weekly desk",
        webhook_avatar="https://paper.example/logo.png",
    )
    feed_site.set_feed("/feed", rss([story(1)], title="The Weekly Discord edition"))
    await poll(booted, clock, world)

    [post] = forum_posts(world)
    starter = world.fake.find_message(post.id)
    assert starter is not None and starter["webhook_id"] and starter["author"]["username"] == "The Weekly edition"
    assert post.owner_id == int(starter["webhook_id"])
    text_post = next(m for m in world.fake.messages_in(world.discussion) if m.get("embeds"))
    assert text_post["author"]["username"] == "Weekly desk" and text_post["webhook_id"]
    assert len(world.fake.channel_webhooks) == 2  # one per channel, made once
    [thread] = world.fake.threads_in(world.discussion)
    row = await booted.bot.store.articles.by_thread(thread.id)
    assert row is not None and row.message_id == int(text_post["id"])

    # An edited article is edited through the webhook (the bot may not edit a webhook's message).
    feed_site.set_feed("/feed", rss([story(1, description="Corrected summary.")], title="The Weekly Discord edition"))
    await poll(booted, clock, world)
    assert "Corrected summary." in world.fake.find_message(post.id)["content"]
    assert world.fake.find_message(int(text_post["id"]))["embeds"][0]["description"] == "Corrected summary."
    assert len(world.fake.channel_webhooks) == 2


async def test_webhook_name_hiding_a_banned_word_is_still_accepted_by_discord(
    world: World, booter: Any, feed_site: FeedServer, clock: FakeClock
) -> None:
    """A feed titled so that removing "clyde" leaves "discord" still posts through its webhook."""
    from tests.fakediscord import perms

    world.guild.bot_role.permissions |= perms.MANAGE_WEBHOOKS  # type: ignore[attr-defined]
    booted: Booted = await booter(clock=clock)
    feed_site.set_feed("/feed", rss([], title="The DisClydeCord Gazette"))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    await slash_text(world, "feed options set", feed=1, webhook=True)
    feed_site.set_feed("/feed", rss([story(1)], title="The DisClydeCord Gazette"))
    await poll(booted, clock, world)

    [post] = forum_posts(world)
    starter = world.fake.find_message(post.id)
    assert starter is not None and starter["webhook_id"]
    assert starter["author"]["username"] == "The Gazette"


async def test_webhook_avatar_at_a_private_address_is_refused(bot: Booted, world: World, feed_site: FeedServer) -> None:
    """An avatar address written as a private or local address, in any spelling, is refused like a feed URL."""
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    for avatar in (
        "https://169.254.169.254/latest/meta-data",
        "https://10.1/a.png",
        "https://[::ffff:192.168.0.1]/a.png",
        "https://0.0.0.0/a.png",
    ):  # (loopback is allowed in the tests' config: tests/feedserver.py lives there)
        reply = await slash_text(world, "feed options set", feed=1, webhook_avatar=avatar)
        assert "private or local address" in reply, (avatar, reply)
    for avatar in ("javascript:alert(1)", "https://[::1/a.png", "https://[zz]/a.png"):
        assert "must be a plain https://" in await slash_text(world, "feed options set", feed=1, webhook_avatar=avatar)
    assert "webhook" not in (await bot.bot.store.feeds.get(1)).settings
    reply = await slash_text(world, "feed options set", feed=1, webhook_avatar="https://paper.example/logo.png")
    assert "webhook name and avatar saved" in reply


async def test_webhook_without_manage_webhooks_says_so_and_posts_as_the_bot(
    bot: Booted, world: World, feed_site: FeedServer, clock
) -> None:
    """Refused when asked for without the permission; if the permission goes later, one alert, then posts as itself."""
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    reply = await slash_text(world, "feed options set", feed=1, webhook=True)
    assert "webhook delivery not turned on: I can't manage webhooks in" in reply
    assert not (await bot.bot.store.feeds.get(1)).settings.get("webhook", {}).get("enabled")
    # As if it had been turned on while the bot still had the permission.
    await bot.bot.store.feeds.update_settings(1, lambda s: {**s, "webhook": {"enabled": True}}, actor_id=None, what="t")
    feed_site.set_feed("/feed", rss([story(1)]))
    await poll(bot, clock, world)
    feed_site.set_feed("/feed", rss([story(2), story(1)]))
    await poll(bot, clock, world)
    posts = forum_posts(world)
    assert len(posts) == 2
    assert all(not world.fake.find_message(p.id).get("webhook_id") for p in posts)
    assert len([a for a in alerts(world) if "can't manage webhooks" in a]) == 1


async def test_interrupted_webhook_posts_are_found_not_repeated(
    world: World, booter: Any, feed_site: FeedServer, clock: FakeClock
) -> None:
    """A webhook made the post but its record was lost (crash): the next cycles find it (forum and text channel)."""
    from tests.fakediscord import perms

    world.guild.bot_role.permissions |= perms.MANAGE_WEBHOOKS  # type: ignore[attr-defined]
    first: Booted = await booter(clock=clock)
    feed_site.set_feed("/feed", rss([]))
    await add_feed(world, feed_site.url("/feed"), world.forum)
    await add_feed(world, feed_site.url("/feed"), world.discussion)
    await slash_text(world, "feed options set", feed=1, webhook=True)
    await slash_text(world, "feed options set", feed=2, webhook=True)
    feed_site.set_feed("/feed", rss([story(1)]))
    await poll_losing_the_record(first, clock, world)
    await first.stop()

    second: Booted = await booter(clock=clock)  # a restart: the webhooks are looked up again
    await poll(second, clock, world)
    await poll(second, clock, world)
    assert len(forum_posts(world)) == 1
    assert len([m for m in world.fake.messages_in(world.discussion) if m.get("embeds")]) == 1
    for feed_id in (1, 2):
        counts = await second.bot.store.articles.counts(feed_id)
        assert counts == {"posted": 1}


async def test_a_feed_added_but_not_baselined_posts_nothing_old(
    bot: Booted, world: World, feed_site: FeedServer, clock: FakeClock
) -> None:
    """/feed add saved the feed but died before recording its current articles as seen (a crash, or the
    poller's cycle running in between): its first poll records them as seen, it doesn't post the archive."""
    feed_site.set_feed("/feed", rss([story(n) for n in range(1, 6)]))
    store = bot.bot.store
    real_insert_many = store.articles.insert_many

    async def killed(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("killed after the feed's row")

    store.articles.insert_many = killed  # type: ignore[method-assign]
    try:
        await add_feed(world, feed_site.url("/feed"), world.forum)
    finally:
        store.articles.insert_many = real_insert_many  # type: ignore[method-assign]
    assert await store.db.scalar("SELECT count(*) FROM feeds") == 1
    await poll(bot, clock, world)
    assert forum_posts(world) == []
    assert await store.db.scalar("SELECT count(*) FROM articles WHERE status = 'seen'") == 5

    feed_site.set_feed("/feed", rss([story(n) for n in range(1, 7)]))
    await poll(bot, clock, world)
    assert [p.name for p in forum_posts(world)] == ["Story number 6"]


async def test_the_same_feed_added_twice_at_once(bot: Booted, world: World, feed_site: FeedServer) -> None:
    """/feed add of one URL into one channel run twice at the same moment: one feed, and the other run is
    told it is already there (not the generic error)."""
    feed_site.set_feed("/feed", rss([story(1), story(2)]))
    replies = await asyncio.gather(
        add_feed(world, feed_site.url("/feed"), world.forum), add_feed(world, feed_site.url("/feed"), world.forum)
    )
    texts = sorted((r["content"] for r in replies), key=lambda t: "already" in t)
    assert "2 current article(s) recorded" in texts[0], texts
    assert "already posts into that channel" in texts[1], texts
    assert await bot.bot.store.db.scalar("SELECT count(*) FROM feeds") == 1
