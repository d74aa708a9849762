"""Articles: poll feeds, decide what is new, and plan the Discord post. No Discord calls here."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx

from bot.clock import Clock
from bot.concurrency import map_bounded
from bot.config import FeedSettings
from bot.errors import UserFacingError
from bot.feed_rules import FilterInput, filter_out_async, formats_of, render_format, rules_of
from bot.feeds import Article, FeedFetchResult, FeedParseError, ParsedFeed, fetch_feed, parse_feed_async
from bot.render import (
    MESSAGE_LIMIT,
    THREAD_TITLE_LIMIT,
    article_post_body,
    article_title,
    drop_feed_boilerplate,
    escape_discord_text,
    excerpt,
    html_to_discord,
    neutralise_mentions,
    render_archive_reply,
    safe_url,
    truncate_words,
)
from bot.site.base import redact_text, redact_url
from bot.store import Store
from bot.store.articles import ArticleRow
from bot.store.feeds import FeedExists, FeedRow, TooManyFeeds

log = logging.getLogger(__name__)


MAX_BACKOFF = timedelta(hours=6)
MAX_LINK_LENGTH = MESSAGE_LIMIT
EMBED_TOTAL_LIMIT = 6000
MAX_ROLE_PINGS = 3
ARCHIVE_LINKS = 3  # earlier articles in a "From the archives" reply
ARCHIVE_CANDIDATES = 60  # posted articles sharing a category that are looked at, newest first
SUMMARY_STORE_LIMIT = 20_000


ALREADY_THERE = "That feed already posts into that channel (see `/feed list`)."


class FeedProblem(UserFacingError):
    """A feed URL can't be used (bad URL, unreachable, not a feed): the message is for the admin."""


MAX_FEED_URL = 2048  # characters; what browsers and servers reliably take (an OPML attribute has no limit)


def validate_feed_url(url: str) -> str:
    url = url.strip()
    if len(url) > MAX_FEED_URL:
        raise FeedProblem(f"That URL is {len(url)} characters long; a feed URL has at most {MAX_FEED_URL}.")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (reading it checks it: out of range raises ValueError)
    except ValueError as exc:  # a broken IPv6 host, a port out of range
        raise FeedProblem(f"`{redact_text(url[:100])}` is not a valid URL ({exc}).") from None
    if parts.scheme not in ("http", "https"):
        raise FeedProblem(f"Feed URLs must start with http:// or https:// (got `{redact_text(url[:100])}`).")
    if not parts.hostname:
        raise FeedProblem(f"`{redact_text(url[:100])}` has no host name.")
    return url


_TRACKING_PARAMETERS = ("utm_", "fbclid=", "gclid=", "mc_cid=", "mc_eid=")


def link_key(link: str) -> str:
    """An article link as one site means it, for spotting the same article in several feeds: scheme,
    `www.`, a trailing slash, the fragment and tracking parameters don't count; '' for no link."""
    link = link.strip()
    if not link:
        return ""
    try:
        parts = urlsplit(link)
        host = (parts.hostname or "").lower().removeprefix("www.")
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return link
    if not host:
        return link
    query = "&".join(sorted(p for p in parts.query.split("&") if p and not p.lower().startswith(_TRACKING_PARAMETERS)))
    return f"{host}{port}{parts.path.rstrip('/')}" + (f"?{query}" if query else "")


def parse_tag_map(text: str | None) -> dict[str, str]:
    """`Politics=News, Sport=Sports` -> {"politics": "News", "sport": "Sports"}; bare names map to themselves.

    `*=Tag` sets the default tag for articles whose categories match no tag.
    """
    mapping: dict[str, str] = {}
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        category, _, tag = part.partition("=")
        category, tag = category.strip(), (tag.strip() or category.strip())
        if not category:
            raise FeedProblem(f"Can't read the tag mapping `{part}`: write `Category=Tag`, separated by commas.")
        mapping[category.casefold()] = tag
    return mapping


DEFAULT_TAG_KEY = "*"  # `*=Tag` in a tag mapping: the tag for articles whose categories match none


def choose_tags(categories: list[str], tag_map: dict[str, str], available: dict[str, int]) -> list[int]:
    """Forum tag ids for an article: mapped categories first, then categories named like a tag (max 5).

    If none match, the mapping's default (`*=Tag`), if any.
    """
    by_name = {name.casefold(): tag_id for name, tag_id in available.items()}
    chosen: list[int] = []
    for category in categories:
        key = category.strip().casefold()
        if key == DEFAULT_TAG_KEY:
            continue
        target = tag_map.get(key, category if key in by_name else None)
        tag_id = by_name.get(target.casefold()) if target else None
        if tag_id is not None and tag_id not in chosen:
            chosen.append(tag_id)
    default = tag_map.get(DEFAULT_TAG_KEY)
    if not chosen and default and default.casefold() in by_name:
        chosen.append(by_name[default.casefold()])
    return chosen[:5]


@dataclass(frozen=True)
class PostOptions:
    """How a feed's posts are made (config defaults, then the feed's own settings)."""

    summary_chars: int = 500
    formats: Mapping[str, str] = field(default_factory=dict)  # checked templates by field (bot.feed_rules)
    feed_title: str = ""
    mention_role_id: int | None = None  # pinged on every post of the feed (opt-in by an admin)
    category_roles: Mapping[str, int] = field(default_factory=dict)  # case-folded category -> role pinged


IMAGE_URL_LIMIT = 2000
AUTHOR_NAME_LIMIT = 100


@dataclass(frozen=True)
class PostPlan:
    title: str
    content: str
    embed_description: str
    link: str
    ref: str  # "ref <hash of the guid>": marks a post whose article has no (usable) link
    author: str | None = None  # plain text, mentions broken (an embed's author line)
    image_url: str | None = None  # http(s), percent-encoded
    message: str = ""  # a text-channel post's message text (the feed's `content` format); forums use `content`
    embed_title: str = ""  # '' means `title`
    footer: str | None = None  # the feed's footer format, for articles with a link (link-less ones show the ref)
    mention_roles: tuple[int, ...] = ()  # roles pinged by the post (its first line); no one else may be

    @property
    def marker(self) -> str:
        """The last line of a forum post's content, unique to the article: its link, or its ref."""
        return self.link or f"-# {self.ref}"

    @property
    def embed_footer(self) -> str | None:
        return self.footer if self.link else self.ref

    def is_forum_post(self, content: str) -> bool:
        """Whether a forum starter message with this content was made for this article."""
        return content.rstrip().rsplit("\n", 1)[-1] == self.marker

    def is_text_post(self, embed_url: str | None, footer: str | None) -> bool:
        """Whether an embed with this URL and footer was made for this article."""
        return embed_url == self.link if self.link else footer == self.ref


def _image(url: str | None) -> str | None:
    safe = safe_url(url or "")
    if not safe or not safe.startswith(("https://", "http://")) or len(safe) > IMAGE_URL_LIMIT:
        return None
    return safe


def plan_post(article: ArticleRow, options: PostOptions | None = None) -> PostPlan:
    """Title ≤ 100 chars on a word; body under 2,000 chars with the link always intact; no pings.

    The summary loses WordPress's "The post … appeared first on …" line and is cut to
    `options.summary_chars` after a sentence (else a word). A forum post starts with the byline.
    A link too long for a Discord message is left out (the post goes up without it). The post
    always ends with a marker of its article (the link, or a short ref), so that after a crash the
    post can be told apart from other posts with the same title.
    """
    options = options or PostOptions()
    formats = options.formats
    summary_md = excerpt(drop_feed_boilerplate(html_to_discord(article.summary, max_len=4000)), options.summary_chars)
    link = safe_url(article.link) or ""  # percent-encoded: a link can't end the post's markdown early
    if len(link) > MAX_LINK_LENGTH:
        log.info("article %s: its %d-character link is too long for Discord; posting without it", article.id, len(link))
        link = ""
    author = truncate_words(article.author.strip(), AUTHOR_NAME_LIMIT) if article.author else ""
    image = _image(article.image_url)
    ref = "ref " + hashlib.sha256(article.guid.encode()).hexdigest()[:12]
    marker = link or f"-# {ref}"
    roles = _roles_to_ping(article, options)
    ping = " ".join(f"<@&{role}>" for role in roles)
    limit = MESSAGE_LIMIT - (len(ping) + 1 if ping else 0)
    plain = _placeholder_values(article, options, author, summary_md, link, image)
    markdown = {
        **plain,
        "title": escape_discord_text(plain["title"]),
        "author": escape_discord_text(author),
        "categories": escape_discord_text(plain["categories"]),
        "feed": escape_discord_text(plain["feed"]),
    }
    if "content" in formats:
        body = render_format(formats["content"], markdown, limit - len(marker) - 2)
        content = body if body.endswith(marker) else (f"{body}\n\n{marker}" if body else marker)
        message = render_format(formats["content"], markdown, limit)
    else:
        message = ""
        body_md = summary_md
        if author:
            byline = f"-# By {escape_discord_text(author)}"
            body_md = f"{byline}\n{summary_md}" if summary_md else byline
        if link:
            content = article_post_body(body_md, link, limit=limit)
        else:
            summary = article_post_body(body_md, "", limit=limit - len(marker) - 2)
            content = f"{summary}\n\n{marker}" if summary else marker
    if ping:
        content = f"{ping}\n{content}"
        message = f"{ping}\n{message}" if message else ping
    title = article_title(
        render_format(formats["forum_title"], plain, THREAD_TITLE_LIMIT) if "forum_title" in formats else article.title
    )
    embed_title = render_format(formats["embed_title"], plain, 256) if "embed_title" in formats else ""
    footer = render_format(formats["embed_footer"], plain, 2048) if "embed_footer" in formats else None
    # An embed holds 6,000 characters in all: the description gets what title, footer and author leave.
    room = min(4096, EMBED_TOTAL_LIMIT - len(embed_title or title) - len(footer or ref) - len(author))
    if "embed_description" in formats:
        description = render_format(formats["embed_description"], markdown, room)
    else:
        description = truncate_words(summary_md, room)
    return PostPlan(
        title=title,
        content=content,
        embed_description=description,
        link=link,
        ref=ref,
        author=neutralise_mentions(author) or None,
        image_url=image,
        message=message,
        embed_title=embed_title,
        footer=footer or None,
        mention_roles=roles,
    )


def _roles_to_ping(article: ArticleRow, options: PostOptions) -> tuple[int, ...]:
    roles = [options.mention_role_id] if options.mention_role_id else []
    for category in article.categories:
        role = options.category_roles.get(category.strip().casefold())
        if role and role not in roles:
            roles.append(role)
    return tuple(roles[:MAX_ROLE_PINGS])


def _placeholder_values(
    article: ArticleRow, options: PostOptions, author: str, summary_md: str, link: str, image: str | None
) -> dict[str, str]:
    """Template values as plain text (mentions broken); markdown fields escape them again."""
    published = article.published_at.strftime("%Y-%m-%d %H:%M UTC") if article.published_at else ""
    return {
        "title": neutralise_mentions(" ".join(article.title.split())),
        "link": link,
        "summary": summary_md,
        "author": neutralise_mentions(author),
        "categories": neutralise_mentions(", ".join(article.categories)),
        "published": published,
        "image": image or "",
        "feed": neutralise_mentions(options.feed_title),
    }


async def plan_post_async(article: ArticleRow, options: PostOptions | None = None) -> PostPlan:
    """`plan_post` in a worker thread: rendering a feed's HTML must not hold up the event loop."""
    return await asyncio.to_thread(plan_post, article, options)


def post_options(feed: FeedRow, settings: FeedSettings) -> PostOptions:
    """How a feed's posts look: the config's defaults, overridden by what the feed's admins chose."""
    mention = feed.settings.get("mention") or {}
    return PostOptions(
        summary_chars=settings.summary_chars,
        formats=formats_of(feed.settings),
        feed_title=feed.title or "",
        mention_role_id=mention.get("role_id"),
        category_roles=mention.get("categories") or {},
    )


async def plan_for(feed: FeedRow, article: ArticleRow, settings: FeedSettings) -> PostPlan:
    """What to post for an article of a feed (its formats, mentions, summary length), off the loop."""
    return await plan_post_async(article, post_options(feed, settings))


@dataclass
class PollReport:
    feed_id: int
    status: str  # ok | not_modified | error
    new: int = 0
    queued: int = 0
    too_old: int = 0
    changed: int = 0
    duplicates: int = 0  # new here, but another feed of the channel brought them already
    filtered: int = 0  # new, but the feed's filter rules drop them
    error: str | None = None
    problems: list[str] = field(default_factory=list)
    alert: str | None = None  # a sentence for the alert channel, at most once per streak
    recovered: str | None = None


class ArticleService:
    def __init__(self, store: Store, http_client: httpx.AsyncClient, clock: Clock, settings: FeedSettings) -> None:
        self.store = store
        self.http = http_client
        self.clock = clock
        self.settings = settings

    def post_options(self, feed: FeedRow) -> PostOptions:
        """The config's defaults, overridden by what the feed's admins chose."""
        return post_options(feed, self.settings)

    async def plan(self, feed: FeedRow, article: ArticleRow) -> PostPlan:
        """What to post for an article of a feed, rendered off the event loop."""
        return await plan_for(feed, article, self.settings)

    async def archive_reply(
        self, feed: FeedRow, article: ArticleRow, channel_ids: Collection[int] | None = None
    ) -> str | None:
        """The "From the archives" reply for a newly posted article, or None if nothing fits.

        Up to ARCHIVE_LINKS earlier articles of the same site (host of the link) that share a category
        with it and were posted in this server (with `channel_ids`, in those channels), newest first; never
        the article itself (by normalised link or guid, whichever feed brought it), each once.
        """
        own_key = article.link_key or link_key(article.link)
        site = _site_of(own_key)
        if not site or not article.categories:
            return None
        candidates = await self.store.articles.posted_in_guild_sharing(
            feed.guild_id, article.categories, article.id, ARCHIVE_CANDIDATES, channel_ids
        )
        chosen: list[ArticleRow] = []
        seen = {own_key}
        for other in candidates:
            key = other.link_key or link_key(other.link)
            if not key or key in seen or other.guid == article.guid or _site_of(key) != site:
                continue
            if article.published_at and other.published_at and other.published_at >= article.published_at:
                continue  # the archives are what came before
            seen.add(key)
            chosen.append(other)
            if len(chosen) == ARCHIVE_LINKS:
                break
        return render_archive_reply(chosen) if chosen else None

    async def fetch_parsed(self, url: str) -> ParsedFeed:
        """Fetch and parse now, for /feed add and /feed preview; raise FeedProblem with the reason."""
        return (await self._fetch_and_parse(url))[0]

    async def _fetch_and_parse(self, url: str) -> tuple[ParsedFeed, FeedFetchResult]:
        result = await fetch_feed(
            self.http,
            url,
            max_bytes=self.settings.max_bytes,
            timeout=self.settings.timeout_seconds,
            max_redirects=self.settings.max_redirects,
        )
        if not result.ok or result.body is None:
            raise FeedProblem(f"Couldn't fetch {redact_url(url)}: {redact_text(result.error or 'no body')}.")
        try:
            return await parse_feed_async(result.body, url=url, content_type=result.content_type), result
        except FeedParseError as exc:
            raise FeedProblem(f"{redact_url(url)} is not a usable feed: {redact_text(str(exc))}") from None

    async def backfill_link_keys(self) -> None:
        """Normalised links for articles stored before they were recorded (once, at start)."""
        filled = await self.store.articles.backfill_link_keys(link_key)
        if filled:
            log.info("recorded the normalised link of %d article(s) stored before it was kept", filled)

    async def add_feed(
        self,
        *,
        guild_id: int,
        url: str,
        channel_id: int,
        channel_kind: str,
        tag_map: dict[str, str],
        interval_minutes: int | None,
        backfill: int,
        actor_id: int | None,
    ) -> tuple[int, ParsedFeed, int]:
        """Save a feed; its current items are recorded as seen, except the newest `backfill`."""
        url = validate_feed_url(url)
        if await self.store.feeds.find(guild_id, url, channel_id):
            raise FeedProblem(ALREADY_THERE)
        limit = self.settings.max_per_server
        if limit and await self.store.feeds.count(guild_id) >= limit:  # before the fetch; checked again below
            raise _too_many_feeds(limit)
        parsed, fetched = await self._fetch_and_parse(url)
        interval = (interval_minutes or self.settings.default_interval_minutes) * 60
        try:
            feed_id = await self.store.feeds.add(
                guild_id=guild_id,
                url=url,
                channel_id=channel_id,
                channel_kind=channel_kind,
                tag_map=tag_map,
                poll_interval=interval,
                created_by=actor_id,
                limit=limit,
                # Not due before its articles are recorded as seen below: a poll in between would drop the backfill.
                first_poll_at=self.clock.now() + timedelta(seconds=interval),
            )
        except TooManyFeeds:
            raise _too_many_feeds(limit) from None
        except FeedExists:  # added by another run since the check above
            raise FeedProblem(ALREADY_THERE) from None
        newest_first = sorted(parsed.articles, key=_recency, reverse=True)
        to_post = {a.guid for a in newest_first[: max(0, backfill)]}
        items = [
            _item(a, "pending" if a.guid in to_post else "seen", None if a.guid in to_post else "baseline")
            for a in parsed.articles
        ]
        await self.store.articles.insert_many(feed_id, items, channel_id=channel_id)
        now = self.clock.now()
        await self.store.feeds.record_poll(
            feed_id,
            status="ok",
            next_poll_at=now + timedelta(seconds=interval),
            etag=fetched.etag,
            last_modified=fetched.last_modified,
            title=parsed.title or None,
            item_count=len(parsed.articles),
        )
        return feed_id, parsed, len(to_post)

    def backoff(self, feed: FeedRow, failures: int) -> timedelta:
        """Exponential back-off per failing feed, with jitter, capped at 6 hours."""
        base = timedelta(seconds=feed.poll_interval) * (2 ** min(failures - 1, 10))
        jitter = random.uniform(0.9, 1.1)
        return min(base * jitter, MAX_BACKOFF)

    async def poll_due(
        self,
        now: datetime,
        guilds: frozenset[int] | None = None,
        on_polled: Callable[[FeedRow, PollReport], Awaitable[None]] | None = None,
    ) -> list[tuple[FeedRow, PollReport]]:
        """Poll every due feed, a few at once (config feeds.poll_concurrency); with `guilds`, only the
        feeds of those servers (discord.allowed_guild_ids: another server's feed is never fetched).
        `on_polled` hears of each feed as soon as it is polled, so one slow feed holds up no other."""
        feeds = await self.store.feeds.due(now, guilds)

        async def poll_one(feed: FeedRow) -> PollReport:
            report = await self._poll_contained(feed)
            if on_polled is not None:
                await on_polled(feed, report)
            return report

        reports = await map_bounded(poll_one, feeds, self.settings.poll_concurrency)
        return list(zip(feeds, reports, strict=True))

    async def _poll_contained(self, feed: FeedRow) -> PollReport:
        """`poll`, but a bug tripped by one feed's content is that feed's failure, not every feed's."""
        try:
            return await self.poll(feed)
        except Exception as exc:
            log.exception("feed %s (%s): unexpected error while polling", feed.id, redact_url(feed.url))
            return await self._record_failure(feed, f"unexpected error: {type(exc).__name__}: {exc}", self.clock.now())

    async def poll(self, feed: FeedRow) -> PollReport:
        """One poll: conditional GET, parse in a thread, record new and changed articles."""
        now = self.clock.now()
        result = await fetch_feed(
            self.http,
            feed.url,
            etag=feed.etag,
            last_modified=feed.last_modified,
            max_bytes=self.settings.max_bytes,
            timeout=self.settings.timeout_seconds,
            max_redirects=self.settings.max_redirects,
        )
        next_ok = now + timedelta(seconds=feed.poll_interval)
        if result.status == "not_modified":
            report = PollReport(feed.id, "not_modified")
            await self._record_success(feed, report, next_ok, etag=result.etag, last_modified=result.last_modified)
            return report
        error = result.error
        parsed: ParsedFeed | None = None
        if result.ok and result.body is not None:
            try:
                parsed = await parse_feed_async(result.body, url=feed.url, content_type=result.content_type)
            except FeedParseError as exc:
                error = f"not a usable feed: {exc}"
        if parsed is None:
            return await self._record_failure(feed, error or "no body", now)
        report = PollReport(feed.id, "ok", problems=list(parsed.problems))
        await self._record_articles(feed, parsed.articles, report, now)
        if report.queued >= self.settings.per_poll_cap:
            # A burst: the site may publish more before the next poll, and a short feed may drop items
            # before they are seen. Poll again soon, until a poll finds fewer new items than the cap.
            next_ok = min(next_ok, now + timedelta(seconds=self.settings.burst_poll_seconds))
        await self._record_success(
            feed,
            report,
            next_ok,
            etag=result.etag,
            last_modified=result.last_modified,
            title=parsed.title or None,
            items=len(parsed.articles),
        )
        return report

    async def _record_articles(self, feed: FeedRow, articles: list[Article], report: PollReport, now: datetime) -> None:
        known = await self.store.articles.known(feed.id)
        oldest_allowed = now - timedelta(days=self.settings.max_age_days)
        new_items: list[dict[str, object]] = []
        to_post: list[Article] = []
        # Never polled OK: `add_feed` died before recording the current articles; they are not news.
        baseline = feed.last_ok_at is None
        for article in articles:
            seen = known.get(article.guid)
            if seen is None and baseline:
                new_items.append(_item(article, "seen", "baseline"))
                report.new += 1
            elif seen is None:
                published = article.published or article.updated
                if published is not None and published < oldest_allowed:
                    new_items.append(_item(article, "seen", f"older than {self.settings.max_age_days:g} days"))
                    report.too_old += 1
                else:
                    to_post.append(article)
                report.new += 1
            else:
                article_id, content_hash, _status, author, image_url = seen
                # Rows stored before bylines and images were recorded have neither: filling them in is
                # not an edit (every post of every feed would be edited once after the upgrade).
                recorded = author is not None or image_url is not None
                byline_changed = (author, image_url) != (article.author, article.image_url)
                if content_hash != article.content_hash or (recorded and byline_changed):
                    await self.store.articles.mark_changed(
                        article_id,
                        title=article.title,
                        summary=_summary(article),
                        content_hash=article.content_hash,
                        author=article.author,
                        image_url=article.image_url,
                    )
                    report.changed += 1
                elif byline_changed:
                    await self.store.articles.record_byline(
                        article_id, author=article.author, image_url=article.image_url
                    )
        rules = rules_of(feed.settings)
        verdicts = await filter_out_async(
            rules, [FilterInput(a.title, _summary(a), a.categories, a.author) for a in to_post] if rules else []
        )
        if not rules:
            verdicts = [None] * len(to_post)
        for article, verdict in zip(to_post, verdicts, strict=True):
            if verdict is None:
                new_items.append(_item(article, "pending", None))
                report.queued += 1
            else:
                new_items.append(_item(article, "seen", verdict))
                report.filtered += 1
        if new_items:
            duplicates = await self.store.articles.insert_many(feed.id, new_items, channel_id=feed.channel_id)
            report.queued -= duplicates
            report.duplicates += duplicates

    async def _record_success(
        self,
        feed: FeedRow,
        report: PollReport,
        next_poll_at: datetime,
        *,
        etag: str | None,
        last_modified: str | None,
        title: str | None = None,
        items: int | None = None,
    ) -> None:
        if feed.alerted:
            report.recovered = (
                f"Feed {redact_url(feed.url)} is working again after {feed.consecutive_errors} failed poll(s)."
            )
        await self.store.feeds.record_poll(
            feed.id,
            status=report.status,
            next_poll_at=next_poll_at,
            etag=etag,
            last_modified=last_modified,
            title=title,
            item_count=items,
            alerted=False if feed.alerted else None,
        )

    async def _record_failure(self, feed: FeedRow, error: str, now: datetime) -> PollReport:
        error = redact_text(error)  # stored, logged and shown: a redirect target may carry credentials
        failures = feed.consecutive_errors + 1
        report = PollReport(feed.id, "error", error=error)
        should_alert = failures >= self.settings.alert_after_failures and not feed.alerted
        if should_alert:
            report.alert = (
                f"Feed {redact_url(feed.url)} has failed {failures} times in a row: {error}. "
                "I'll keep retrying with back-off; `/feed diagnose` shows details."
            )
        await self.store.feeds.record_poll(
            feed.id,
            status="error",
            next_poll_at=now + self.backoff(feed, failures),
            error=error,
            alerted=True if should_alert else None,
        )
        log.info("feed %s (%s) failed (%d in a row): %s", feed.id, redact_url(feed.url), failures, error)
        return report


def _site_of(key: str) -> str:
    return key.split("/", 1)[0] if "." in key.split("/", 1)[0] else ""


def _too_many_feeds(limit: int) -> FeedProblem:
    return FeedProblem(
        f"This server has {limit} feeds, the most this bot takes per server (`feeds.max_per_server` in its "
        "config): remove one with `/feed remove` first, or ask the bot's operator."
    )


def _recency(article: Article) -> datetime:
    return article.published or article.updated or datetime.min.replace(tzinfo=UTC)


def _summary(article: Article) -> str:
    return (article.summary_html or article.content_html or "")[:SUMMARY_STORE_LIMIT]


def _item(article: Article, status: str, reason: str | None) -> dict[str, object]:
    return {
        "guid": article.guid,
        "title": article.title,
        "link": article.link,
        "summary": _summary(article),
        "published": article.published or article.updated,
        "content_hash": article.content_hash,
        "status": status,
        "reason": reason,
        "categories": article.categories,
        "author": article.author,
        "image_url": article.image_url,
        "link_key": link_key(article.link),
    }


__all__ = [
    "DEFAULT_TAG_KEY",
    "ArticleService",
    "FeedProblem",
    "PollReport",
    "PostOptions",
    "PostPlan",
    "choose_tags",
    "link_key",
    "parse_tag_map",
    "plan_post",
    "plan_post_async",
    "render_archive_reply",
    "validate_feed_url",
]
