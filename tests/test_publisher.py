"""The publisher's post-once state machine, against an in-memory channel (no Discord) and a real SQLite store."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.articles import PostPlan
from bot.publisher import Outcome, Post, Publisher, Refused, Rejected, ThreadExists, Unknown
from bot.store import Store
from bot.store.articles import ArticleRow
from bot.store.database import migration_files
from bot.store.feeds import FeedRow
from tests.helpers import FakeClock

GUILD = 1


@dataclass
class Made:
    """A post the channel holds: its id, the article it was made for, its content."""

    id: int
    plan: PostPlan
    thread_id: int | None = None


@dataclass
class MemoryChannel:
    """A channel held in memory. `failures[call]` lists what the next calls do: an exception to raise
    before acting, or ("lost", exception) to act and then raise it (the answer was lost)."""

    is_forum: bool
    id: int = 500
    posts: list[Made] = field(default_factory=list)
    failures: dict[str, list[Any]] = field(default_factory=dict)
    edits: list[tuple[int, str]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    gate: asyncio.Event | None = None  # when set up, `post` says it has begun, then waits for it
    began: asyncio.Event = field(default_factory=asyncio.Event)
    _next_id: int = 1000

    def _fail_before(self, call: str) -> BaseException | None:
        self.calls.append(call)
        queue = self.failures.get(call) or []
        if queue and not isinstance(queue[0], tuple):
            raise queue.pop(0)
        if queue:
            return queue.pop(0)[1]
        return None

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    async def post(self, plan: PostPlan, article: ArticleRow) -> Post:
        if self.gate is not None:
            self.began.set()
            await self.gate.wait()
        lost = self._fail_before("post")
        made = Made(self._new_id(), plan)
        if self.is_forum:
            made.thread_id = made.id
        self.posts.append(made)
        if lost:
            raise lost
        return Post(made.id, made.thread_id)

    async def find_post(self, plan: PostPlan, after: int, is_recorded: Callable[[int], Awaitable[bool]]) -> Post | None:
        self._fail_before("find_post")
        for made in reversed(self.posts):
            if made.id > after and made.plan.marker == plan.marker and not await is_recorded(made.id):
                return Post(made.id, made.thread_id)
        return None

    def _made(self, message_id: int) -> Made:
        [made] = [m for m in self.posts if m.id == message_id]
        return made

    async def find_thread(self, message_id: int) -> int | None:
        self._fail_before("find_thread")
        return self._made(message_id).thread_id

    async def make_thread(self, message_id: int, title: str) -> int:
        lost = self._fail_before("make_thread")
        made = self._made(message_id)
        if made.thread_id is not None:
            raise ThreadExists("A thread has already been created for this message")
        made.thread_id = message_id  # as on Discord: the thread's id is its starter message's
        if lost:
            raise lost
        return message_id

    async def edit(self, post: Post, plan: PostPlan, article: ArticleRow) -> None:
        self._fail_before("edit")
        self._made(post.message_id).plan = plan
        self.edits.append((post.message_id, plan.title))


@pytest.fixture
async def store(store_location: str, clock: FakeClock) -> AsyncIterator[Store]:
    opened = await Store.open(store_location, clock)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def alerts() -> list[str]:
    return []


@pytest.fixture
def publisher(store: Store, clock: FakeClock, alerts: list[str]) -> Publisher:
    async def alert(guild_id: int, text: str) -> bool:
        alerts.append(text)
        return True

    return Publisher(store, clock, alert, per_poll_cap=5)


async def new_feed(store: Store, kind: str, *guids: str) -> FeedRow:
    feed_id = await store.feeds.add(
        guild_id=GUILD,
        url="https://paper.example/feed",
        channel_id=500,
        channel_kind=kind,
        tag_map={},
        poll_interval=900,
        created_by=None,
    )
    await store.articles.insert_many(feed_id, [item(guid) for guid in guids])
    feed = await store.feeds.get(feed_id)
    assert feed is not None
    return feed


def item(guid: str, title: str | None = None) -> dict[str, Any]:
    return {
        "guid": guid,
        "title": title or f"Story {guid}",
        "link": f"https://paper.example/{guid}",
        "summary": "A summary.",
        "published": None,
        "content_hash": title or "v1",
        "status": "pending",
    }


async def row(store: Store, guid: str) -> ArticleRow:
    found = await store.articles.find(1, guid)
    assert found is not None
    return found


async def test_forum_article_is_posted_once(store: Store, publisher: Publisher) -> None:
    """A forum post is one call; publishing again makes nothing more."""
    feed = await new_feed(store, "forum", "a")
    channel = MemoryChannel(is_forum=True)
    assert await publisher.publish(feed, channel) == 1
    assert await publisher.publish(feed, channel) == 0
    [made] = channel.posts
    article = await row(store, "a")
    assert (article.status, article.thread_id, article.thread_step) == ("posted", made.id, None)


async def test_lost_answer_is_found_not_posted_again(store: Store, publisher: Publisher) -> None:
    """Discord made the post but the answer was lost: the feed holds, then the post is found, not repeated."""
    feed = await new_feed(store, "forum", "a", "b")
    channel = MemoryChannel(is_forum=True, failures={"post": [("lost", Unknown("503"))]})
    assert await publisher.publish(feed, channel) == 0
    assert (await row(store, "a")).status == "posting"
    assert (await row(store, "b")).status == "pending", "the feed holds while an outcome is unknown"
    await publisher.publish(feed, channel)
    assert [m.plan.title for m in channel.posts] == ["Story a", "Story b"]
    assert (await row(store, "a")).thread_id == channel.posts[0].id


async def test_text_post_gets_its_thread(store: Store, publisher: Publisher) -> None:
    feed = await new_feed(store, "text", "a")
    channel = MemoryChannel(is_forum=False)
    await publisher.publish(feed, channel)
    [made] = channel.posts
    article = await row(store, "a")
    assert (article.message_id, article.thread_id, article.thread_step) == (made.id, made.id, None)


@pytest.mark.parametrize("failure", [Unknown("503 Service Unavailable"), ("lost", Unknown("connection lost"))])
async def test_interrupted_thread_step_is_recovered(store: Store, publisher: Publisher, failure: Any) -> None:
    """A 5xx before, or a lost answer after, Discord made the thread: the next cycle records the one thread."""
    feed = await new_feed(store, "text", "a")
    channel = MemoryChannel(is_forum=False, failures={"make_thread": [failure]})
    assert await publisher.publish(feed, channel) == 1
    article = await row(store, "a")
    assert (article.status, article.thread_id, article.thread_step) == ("posted", None, "wanted")
    await publisher.publish(feed, channel)
    [made] = channel.posts
    article = await row(store, "a")
    assert (article.thread_id, article.thread_step) == (made.id, None)
    assert made.thread_id == made.id


async def test_interrupted_text_post_is_found_and_gets_its_thread(store: Store, publisher: Publisher) -> None:
    """The message went out but the answer was lost: it is found, and its thread is made."""
    feed = await new_feed(store, "text", "a")
    channel = MemoryChannel(is_forum=False, failures={"post": [("lost", Unknown("timeout"))]})
    await publisher.publish(feed, channel)
    await publisher.publish(feed, channel)
    [made] = channel.posts
    article = await row(store, "a")
    assert (article.status, article.message_id, article.thread_id) == ("posted", made.id, made.id)


async def test_thread_refused_pauses_and_resume_makes_it(store: Store, publisher: Publisher, alerts: list[str]):
    """Missing permission for threads pauses the feed with an alert; after resume the thread is made."""
    feed = await new_feed(store, "text", "a")
    channel = MemoryChannel(is_forum=False, failures={"make_thread": [Refused("Missing Permissions")]})
    await publisher.publish(feed, channel)
    paused = await store.feeds.get(feed.id)
    assert paused is not None and not paused.enabled
    assert len(alerts) == 1 and "discussion threads" in alerts[0]
    await store.feeds.set_enabled(feed.id, True, reason=None, actor_id=None)
    await publisher.publish(feed, channel)
    assert (await row(store, "a")).thread_id == channel.posts[0].id


async def test_thread_rejected_alerts_and_resume_retries(store: Store, publisher: Publisher, alerts: list[str]):
    """A 4xx on the thread: the admins are told, the step is given up until `/feed resume`."""
    feed = await new_feed(store, "text", "a")
    channel = MemoryChannel(is_forum=False, failures={"make_thread": [Rejected("Unknown Message")]})
    await publisher.publish(feed, channel)
    assert (await row(store, "a")).thread_step == "given_up"
    assert len(alerts) == 1 and "replies to it are not recorded" in alerts[0]
    await publisher.publish(feed, channel)
    assert channel.calls.count("make_thread") == 1
    await store.articles.reset_failed(feed.id)
    await publisher.publish(feed, channel)
    assert (await row(store, "a")).thread_id == channel.posts[0].id


async def test_article_discord_keeps_failing_is_failed(
    store: Store, publisher: Publisher, clock: FakeClock, alerts: list[str]
) -> None:
    """Five failed cycles spanning half an hour fail the article with one alert; fewer hold the feed."""
    feed = await new_feed(store, "forum", "a")
    channel = MemoryChannel(is_forum=True, failures={"post": [Unknown("503")] * 5})
    for _ in range(4):
        await publisher.publish(feed, channel)
        clock.advance(minutes=10)
        assert (await row(store, "a")).status == "posting"
    await publisher.publish(feed, channel)
    assert (await row(store, "a")).status == "failed"
    assert len(alerts) == 1 and "5 times in a row" in alerts[0]


async def test_edit_made_while_the_post_was_interrupted_is_applied(store: Store, publisher: Publisher) -> None:
    """The article changed while its post's outcome was unknown: once the post is found, it is edited."""
    feed = await new_feed(store, "forum", "a")
    channel = MemoryChannel(is_forum=True, failures={"post": [("lost", Unknown("503"))]})
    await publisher.publish(feed, channel)
    article = await row(store, "a")
    await store.articles.mark_changed(article.id, title="Story a, corrected", summary="New.", content_hash="v2")
    await publisher.publish(feed, channel)
    [made] = channel.posts
    assert channel.edits == [(made.id, "Story a, corrected")]
    assert not (await row(store, "a")).needs_edit


async def test_fresh_post_of_a_changed_article_needs_no_edit(store: Store, publisher: Publisher) -> None:
    """The article changed while 'posting' but no post was found: the new post is already up to date."""
    feed = await new_feed(store, "forum", "a")
    channel = MemoryChannel(is_forum=True, failures={"post": [Unknown("503")]})
    await publisher.publish(feed, channel)
    article = await row(store, "a")
    await store.articles.mark_changed(article.id, title="Story a, corrected", summary="New.", content_hash="v2")
    await publisher.publish(feed, channel)
    [made] = channel.posts
    assert made.plan.title == "Story a, corrected" and channel.edits == []


async def test_stop_waits_for_the_post_under_way_and_starts_no_other(store: Store, publisher: Publisher) -> None:
    """A stop lets the post in progress finish (and be recorded); the next article is left for later."""
    feed = await new_feed(store, "text", "a", "b")
    gate = asyncio.Event()
    channel = MemoryChannel(is_forum=False, gate=gate)
    publishing = asyncio.create_task(publisher.publish(feed, channel))
    await channel.began.wait()
    stopping = asyncio.create_task(publisher.stop(30))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not stopping.done(), "the stop waits for the post under way"
    gate.set()
    assert await stopping
    assert await publishing == 1
    a, b = await row(store, "a"), await row(store, "b")
    assert (a.status, a.thread_id) == ("posted", channel.posts[0].id)
    assert b.status == "pending"


async def test_outcomes_tell_the_feed_what_to_do(store: Store, publisher: Publisher) -> None:
    """POSTED carries on, HOLD stops the feed for this cycle, FAILED skips the article, PAUSED stops the feed."""
    feed = await new_feed(store, "forum", "a", "b", "c", "d")
    channel = MemoryChannel(
        is_forum=True,
        failures={"post": [Unknown("503"), Rejected("Invalid Form Body"), Refused("Missing Access")]},
    )
    assert await publisher.post(feed, channel, await row(store, "a")) is Outcome.HOLD
    assert await publisher.post(feed, channel, await row(store, "b")) is Outcome.FAILED
    assert await publisher.post(feed, channel, await row(store, "c")) is Outcome.PAUSED
    assert await publisher.post(feed, channel, await row(store, "d")) is Outcome.POSTED
    assert [(await row(store, g)).status for g in "abcd"] == ["posting", "failed", "failed", "posted"]


async def test_thread_discord_keeps_failing_is_given_up_with_one_alert(
    store: Store, publisher: Publisher, clock: FakeClock, alerts: list[str]
) -> None:
    """The thread call failing cycle after cycle for half an hour: one alert, no more tries until resume."""
    feed = await new_feed(store, "text", "a")
    channel = MemoryChannel(is_forum=False, failures={"make_thread": [Unknown("503")] * 5})
    for _ in range(4):
        await publisher.publish(feed, channel)
        clock.advance(minutes=10)
        assert (await row(store, "a")).thread_step == "wanted"
    assert alerts == []
    await publisher.publish(feed, channel)
    assert (await row(store, "a")).thread_step == "given_up"
    assert len(alerts) == 1 and "5 times in a row" in alerts[0] and "/feed resume" in alerts[0]
    await publisher.publish(feed, channel)
    assert channel.calls.count("make_thread") == 5
    await store.articles.reset_failed(feed.id)
    await publisher.publish(feed, channel)
    assert (await row(store, "a")).thread_id == channel.posts[0].id


async def test_upgrade_recovers_threads_lost_before_it(tmp_path: Path) -> None:
    """Migration 0008: text posts an earlier version recorded without a thread want one; forum posts don't."""
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    for version, _name, sql in migration_files():
        if version >= 8:
            break
        conn.executescript(sql)
        conn.execute(f"PRAGMA user_version = {version}")
    for feed_id, kind in ((1, "text"), (2, "forum")):
        conn.execute(
            "INSERT INTO feeds (id, guild_id, url, channel_id, channel_kind, created_at) VALUES (?, 1, ?, 5, ?, '')",
            (feed_id, f"https://paper.example/{kind}", kind),
        )
    rows = [(1, "lost", 11, None), (1, "whole", 12, 12), (2, "forum", 13, 13)]
    for feed_id, guid, message_id, thread_id in rows:
        conn.execute(
            "INSERT INTO articles (feed_id, guid, title, link, content_hash, status, message_id, thread_id,"
            " first_seen_at) VALUES (?, ?, 't', 'l', 'h', 'posted', ?, ?, '')",
            (feed_id, guid, message_id, thread_id),
        )
    conn.commit()
    conn.close()
    store = await Store.open(path, FakeClock())
    try:
        steps = await store.db.fetchall("SELECT guid, thread_step FROM articles ORDER BY id")
        assert [(r["guid"], r["thread_step"]) for r in steps] == [("lost", "wanted"), ("whole", None), ("forum", None)]
    finally:
        await store.close()
