"""Posting articles exactly once: the post-once state machine, over a small protocol testable without Discord.

An article goes `pending -> posting -> posted` (or `failed`). 'posting' is written before Discord is
asked, so after a crash or an unknown outcome (5xx, timeout, lost answer) the channel is searched for
the post before it is made again. A text-channel post is a message plus a discussion thread: the
thread step is recorded as `thread_step = 'wanted'` with the message, and is recovered the same way
(find the thread Discord made, or make it) until it is recorded.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from bot.articles import PostPlan, plan_post_async
from bot.clock import Clock
from bot.render import truncate_words
from bot.site.base import redact_url
from bot.store import Store
from bot.store.feeds import ArticleRow, FeedRow

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_SERVER_ERRORS = 5  # cycles in a row Discord may fail (5xx, timeout) on one article before it is failed...
SERVER_ERROR_SPAN = timedelta(minutes=30)  # ...and for at least this long: an outage of Discord's fails nothing


class Outcome(enum.Enum):
    """What became of one article's post."""

    POSTED = "posted"  # the post is made and recorded (a text post's thread may still be wanted)
    FAILED = "failed"  # this article failed for good; the feed carries on
    HOLD = "hold"  # Discord is failing, or the outcome is unknown: stop this feed until the next cycle
    PAUSED = "paused"  # the channel refused us: the feed is paused and the admins alerted


@dataclass(frozen=True)
class Post:
    message_id: int
    thread_id: int | None  # a forum post is a thread; a text post's thread is made afterwards


class Unknown(Exception):
    """Discord failed (5xx, timeout, lost connection): whether the call took effect is unknown."""


class Refused(Exception):
    """The channel refused us (missing access or permissions, gone): the feed must be paused."""


class Rejected(Exception):
    """Discord rejected this one call for good (4xx): retrying the same request won't help."""


class ThreadExists(Exception):
    """The message already has a thread (Discord's 400, code 160004)."""


class Channel(Protocol):
    """A feed's target channel, as the publisher needs it: post, find a post, make a thread, edit."""

    @property
    def id(self) -> int: ...

    @property
    def is_forum(self) -> bool: ...

    async def post(self, plan: PostPlan, article: ArticleRow) -> Post:
        """Make the post. Raises Unknown, Refused or Rejected."""

    async def find_post(self, plan: PostPlan, after: int, is_recorded: Callable[[int], Awaitable[bool]]) -> Post | None:
        """Our post of this article newer than `after` and not `is_recorded`, or None. Raises Unknown."""

    async def find_thread(self, message_id: int) -> int | None:
        """The thread started from a text post, if Discord made one. Raises Unknown, Refused, Rejected."""

    async def make_thread(self, message_id: int, title: str) -> int:
        """Start a text post's thread. Raises ThreadExists, Unknown, Refused, Rejected."""

    async def edit(self, post: Post, plan: PostPlan, article: ArticleRow) -> None:
        """Bring a post up to date. Raises Unknown (retry later) or Rejected (give up)."""


Alert = Callable[[int, str], Awaitable[object]]
Planner = Callable[[FeedRow, ArticleRow], Awaitable[PostPlan]]


async def default_plan(feed: FeedRow, article: ArticleRow) -> PostPlan:
    """The default look (no per-feed formats); the bot passes bot.articles.plan_for with its settings."""
    return await plan_post_async(article)


class Publisher:
    """Posts a feed's pending articles once each, recovers interrupted posts and threads, applies edits."""

    def __init__(
        self, store: Store, clock: Clock, alert: Alert, *, per_poll_cap: int, plan: Planner = default_plan
    ) -> None:
        self.store = store
        self.clock = clock
        self.alert = alert
        self.plan = plan  # what a feed's article looks like on Discord (its formats and mentions)
        self.per_poll_cap = per_poll_cap
        # (step, article id) -> (Discord failures in a row, first at); in memory: a restart starts afresh.
        self._server_errors: dict[tuple[str, int], tuple[int, datetime]] = {}
        self._stopping = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    # -- lifecycle ---------------------------------------------------------------------------------

    async def stop(self, grace: float) -> bool:
        """Start no new post, and wait (at most `grace` s) for the posts under way. True if none is left."""
        self._stopping = True
        if self._in_flight:
            log.info("waiting for %d article post(s) under way before stopping", self._in_flight)
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except TimeoutError:
            log.warning("stopping with %d article post(s) still under way", self._in_flight)
            return False
        return True

    async def settled(self, grace: float) -> bool:
        """If posts are under way, wait (at most `grace` s) until they are recorded. True if it waited."""
        if self._idle.is_set():
            return False
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except TimeoutError:
            log.warning("article posts still under way after %.0f s", grace)
        return True

    @property
    def stopping(self) -> bool:
        return self._stopping

    # -- the feed -----------------------------------------------------------------------------------

    async def feeds_with_work(self, guilds: frozenset[int] | None = None) -> list[FeedRow]:
        """Enabled feeds with posts, threads or edits to make (with `guilds`, only those servers')."""
        return await self.store.feeds.with_work(guilds)

    async def pause(self, feed: FeedRow, reason: str) -> None:
        """A gone target stops retrying and alerts once."""
        await self.store.feeds.set_enabled(feed.id, False, reason=reason, actor_id=None)
        await self.alert(
            feed.guild_id,
            f"Feed {redact_url(feed.url)} is paused: {reason}. Fix the channel or permissions, then `/feed resume`.",
        )

    async def publish(self, feed: FeedRow, channel: Channel) -> int:
        """Recover wanted threads, post up to the per-poll cap of pending articles, apply edits. Returns posts made."""
        if self._stopping:
            return 0
        articles = self.store.articles
        for article in await articles.threads_wanted(feed.id, self.per_poll_cap):
            if self._stopping:
                return 0
            outcome = await self._guarded(self._thread_step(feed, channel, article, article.message_id or 0))
            if outcome is not Outcome.POSTED:
                return 0
        posted = 0
        for article in await articles.pending(feed.id, self.per_poll_cap):
            if self._stopping:
                return posted
            outcome = await self._guarded(self.post(feed, channel, article))
            if outcome in (Outcome.HOLD, Outcome.PAUSED):
                return posted
            posted += outcome is Outcome.POSTED
        for article in await articles.needing_edit(feed.id):
            if self._stopping:
                return posted
            await self._guarded(self.edit(feed, channel, article))
        return posted

    async def _guarded(self, work: Awaitable[T]) -> T:
        """Count `work` as a post under way, for `stop`."""
        self._in_flight += 1
        self._idle.clear()
        try:
            return await work
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    # -- one article --------------------------------------------------------------------------------

    async def post(self, feed: FeedRow, channel: Channel, article: ArticleRow) -> Outcome:
        """Post one article (or find its interrupted post), then its thread in a text channel."""
        try:
            outcome = await self._attempt(feed, channel, article)
        except Unknown as exc:
            return await self._discord_failed(feed, article, exc)
        self._server_errors.pop(("post", article.id), None)
        return outcome

    async def _attempt(self, feed: FeedRow, channel: Channel, article: ArticleRow) -> Outcome:
        articles = self.store.articles
        if article.status == "posting":
            found = await self._reconcile(feed, channel, article)
            if found is not None:
                if channel.is_forum or found.thread_id is not None:
                    return Outcome.POSTED
                return await self._thread_step(feed, channel, article, found.message_id)
        try:
            plan = await self.plan(feed, article)
        except ValueError as exc:  # one unrenderable article must not hold up the ones after it
            log.warning("feed %s: article %s cannot be rendered: %s", feed.id, article.id, exc)
            await articles.mark_failed(article.id, f"can't be rendered for Discord: {exc}")
            return Outcome.FAILED
        await articles.mark_posting(article.id)
        try:
            post = await channel.post(plan, article)
        except Refused as exc:
            await articles.mark_failed(article.id, f"Discord refused: {exc}")
            await self.pause(feed, f"I can no longer post in <#{channel.id}> ({exc})")
            return Outcome.PAUSED
        except Rejected as exc:
            log.warning("feed %s: article %s rejected by Discord: %s", feed.id, article.id, exc)
            await articles.mark_failed(article.id, f"Discord rejected the post: {exc}")
            return Outcome.FAILED
        await articles.mark_posted(
            article.id,
            channel_id=channel.id,
            thread_id=post.thread_id,
            message_id=post.message_id,
            thread_wanted=post.thread_id is None and not channel.is_forum,
            posted_hash=article.content_hash,
        )
        if channel.is_forum or post.thread_id is not None:
            return Outcome.POSTED
        return await self._thread_step(feed, channel, article, post.message_id)

    async def _reconcile(self, feed: FeedRow, channel: Channel, article: ArticleRow) -> Post | None:
        """After a crash or a failed call mid-post, look for the post before making it again.

        Only a post of ours newer than every post recorded before the attempt started, and not already
        another article's post, counts (see Channel.find_post). Raises Unknown if that can't be told.
        """
        articles = self.store.articles
        plan = await self.plan(feed, article)
        after = await articles.last_post_before(channel.id, article.posted_at) if article.posted_at else 0
        found = await channel.find_post(plan, after, articles.is_recorded_post)
        if found is None:
            return None
        await articles.mark_posted(
            article.id,
            channel_id=channel.id,
            thread_id=found.thread_id,
            message_id=found.message_id,
            thread_wanted=found.thread_id is None and not channel.is_forum,
            posted_hash=None,  # made from an older version, perhaps: an edit since then is still applied
        )
        return found

    async def _thread_step(self, feed: FeedRow, channel: Channel, article: ArticleRow, message_id: int) -> Outcome:
        """A text post's discussion thread: find the one Discord made, or make it, and record it.

        The post stays recorded whatever happens here; an unfinished step is retried next cycle.
        """
        key = ("thread", article.id)
        try:
            current = await self.store.articles.get(article.id)  # the title may have changed meanwhile
            plan = await self.plan(feed, current or article)
            try:
                thread_id = await channel.make_thread(message_id, plan.title)
            except ThreadExists:  # a lost answer, or an earlier run: Discord made it, so look it up
                thread_id = await channel.find_thread(message_id) or message_id
        except Unknown as exc:
            return await self._thread_failed(feed, article, exc)
        except Refused as exc:
            await self.pause(feed, f"I posted in <#{channel.id}> but can't open discussion threads there ({exc})")
            return Outcome.PAUSED
        except Rejected as exc:
            self._server_errors.pop(key, None)
            log.warning("feed %s: article %s is posted, but Discord refused its thread: %s", feed.id, article.id, exc)
            await self.store.articles.thread_given_up(article.id)
            await self.alert(
                feed.guild_id,
                f'Feed {redact_url(feed.url)}: "{truncate_words(article.title, 100)}" is posted in <#{channel.id}>, '
                f"but Discord refused its discussion thread ({exc}), so replies to it are not recorded. "
                "`/feed resume` tries again.",
            )
            return Outcome.POSTED
        self._server_errors.pop(key, None)
        await self.store.articles.mark_thread(article.id, thread_id)
        return Outcome.POSTED

    async def _thread_failed(self, feed: FeedRow, article: ArticleRow, exc: BaseException) -> Outcome:
        """Discord failed making or finding a thread: the step stays wanted and is retried each cycle; after
        MAX_SERVER_ERRORS cycles spanning SERVER_ERROR_SPAN it is given up with an alert (`/feed resume` retries)."""
        count = self._count_failure(("thread", article.id))
        if count is None:
            log.warning(
                "feed %s: article %s is posted, but its discussion thread failed (%r); will retry",
                feed.id,
                article.id,
                exc,
            )
            return Outcome.POSTED
        detail = str(exc) or type(exc).__name__
        log.error("feed %s: giving up on article %s's thread after %d Discord failures", feed.id, article.id, count)
        await self.store.articles.thread_given_up(article.id)
        await self.alert(
            feed.guild_id,
            f'Feed {redact_url(feed.url)}: "{truncate_words(article.title, 100)}" is posted, but Discord failed '
            f"{count} times in a row opening its discussion thread (last: {detail}), so replies to it are not "
            "recorded. `/feed resume` tries again.",
        )
        return Outcome.POSTED

    def _count_failure(self, key: tuple[str, int]) -> int | None:
        """One more Discord failure on `key`: None while it may still be an outage, else the count (reset)."""
        now = self.clock.now()
        count, first = self._server_errors.get(key, (0, now))
        count += 1
        if count < MAX_SERVER_ERRORS or now - first < SERVER_ERROR_SPAN:
            self._server_errors[key] = (count, first)
            return None
        self._server_errors.pop(key, None)
        return count

    async def _discord_failed(self, feed: FeedRow, article: ArticleRow, exc: BaseException) -> Outcome:
        """Discord failed (5xx, timeout) posting or checking an article; it stays 'posting' so the next
        cycle looks for the post first. After MAX_SERVER_ERRORS cycles in a row spanning at least
        SERVER_ERROR_SPAN it is failed and the admins alerted, so that one article Discord keeps refusing
        does not hold up its feed for ever, while a Discord outage of a few minutes fails nothing."""
        count = self._count_failure(("post", article.id))
        if count is None:
            count_so_far = self._server_errors[("post", article.id)][0]
            log.warning(
                "feed %s: Discord failed posting or checking article %s (%r, %d in a row); will check and retry",
                feed.id,
                article.id,
                exc,
                count_so_far,
            )
            return Outcome.HOLD
        detail = str(exc) or type(exc).__name__
        log.error("feed %s: giving up on article %s after %d Discord failures: %s", feed.id, article.id, count, detail)
        await self.store.articles.mark_failed(
            article.id, f"Discord failed {count} times in a row (last: {detail}); it may or may not have been posted"
        )
        await self.alert(
            feed.guild_id,
            f"Feed {redact_url(feed.url)}: Discord failed {count} times in a row posting "
            f'"{truncate_words(article.title, 100)}" '
            f"(last: {detail}), so I skipped it and carried on with the feed. `/feed resume` checks whether it "
            "was posted after all and retries it.",
        )
        return Outcome.FAILED

    async def edit(self, feed: FeedRow, channel: Channel, article: ArticleRow) -> None:
        """Apply a changed title or summary to the post; a refused edit is not retried."""
        if article.message_id is None:
            await self.store.articles.mark_edited(article.id)
            return
        plan = await self.plan(feed, article)
        try:
            await channel.edit(Post(article.message_id, article.thread_id), plan, article)
        except Unknown as exc:
            log.warning("article %s: edit failed, will retry: %s", article.id, exc)
            return
        except (Rejected, Refused) as exc:
            # Gone, locked or archived: Discord will refuse the same edit every time, so stop trying.
            log.info("article %s: Discord refused the edit (%s); not editing", article.id, exc)
        await self.store.articles.mark_edited(article.id)
