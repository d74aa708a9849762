"""/feed commands and the poller that posts new articles into forum or text channels."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands, tasks

from bot import claims
from bot.articles import (
    DEFAULT_TAG_KEY,
    ArticleService,
    PollReport,
    parse_tag_map,
    plan_post_async,
    validate_feed_url,
)
from bot.checks import admin_only, ensure_admin, may
from bot.errors import UserFacingError, answers_errors
from bot.feed_admin import FeedAdmin, paginate
from bot.feed_channel import DiscordChannel, article_embed
from bot.feed_commands import (
    FilterCommands,
    FormatCommands,
    MentionCommands,
    OptionsCommands,
    archive_links_on,
    export_feeds,
    feed_in_guild,
    feeds_with_archive_work,
    import_feeds,
    post_archive_links,
)
from bot.feed_rules import FilterInput, filter_out_async, rules_of
from bot.feed_webhooks import Webhooks
from bot.render import truncate_words
from bot.site.base import redact_text, redact_url
from bot.store.articles import ArticleRow
from bot.store.feeds import FeedRow

if TYPE_CHECKING:
    from bot.app import ReadersViewsBot

log = logging.getLogger(__name__)

FORUM_NEEDS = ("view_channel", "send_messages", "send_messages_in_threads", "manage_threads")
TEXT_NEEDS = ("view_channel", "send_messages", "embed_links", "create_public_threads", "send_messages_in_threads")
MAX_POLL_SLEEP = 60.0
PUBLISH_CONCURRENCY = 50  # feeds publishing at once; the global pacer bounds the request rate
LIST_PAGE_CHARS = 1900  # one /feed list page, under Discord's 2,000 with its heading
SHUTDOWN_GRACE = 10.0  # seconds a stop waits for the posts under way (a post and its thread)


def missing_permissions(channel: discord.abc.GuildChannel, me: discord.Member) -> list[str]:
    perms = channel.permissions_for(me)
    needed = FORUM_NEEDS if isinstance(channel, discord.ForumChannel) else TEXT_NEEDS
    return [name.replace("_", " ").title() for name in needed if not getattr(perms, name)]


def describe_article_status(article: ArticleRow) -> str:
    if article.status == "posted":
        where = f"<#{article.thread_id}>" if article.thread_id else f"<#{article.channel_id}>"
        if article.thread_step == "wanted":
            return f"posted in {where}; its discussion thread is still to be made (tried again every poll)"
        if article.thread_step == "given_up":
            return f"posted in {where}, but Discord refused its discussion thread (`/feed resume` tries again)"
        return f"posted in {where}"
    if article.status == "seen":
        reason = article.status_reason or "not posted"
        if reason == "baseline":
            return "not posted: it was already in the feed when the feed was added (use `backfill` to post those)"
        return f"not posted: {reason}"
    if article.status == "pending":
        return "waiting to be posted (the per-poll cap spreads a backlog over later polls)"
    if article.status == "posting":
        return "a post was attempted and is being checked"
    return f"failed: {article.status_reason or 'unknown error'}"


class FeedListButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"feeds:list:(?P<guild>\d+):(?P<page>\d+):(?P<way>prev|next)",
):
    """Prev / Next under `/feed list`: the page is rebuilt from the database on every click, for admins of
    the server the list belongs to only."""

    def __init__(self, guild_id: int, page: int, way: str, *, disabled: bool = False) -> None:
        label = "◀ Prev" if way == "prev" else "Next ▶"
        super().__init__(
            discord.ui.Button(
                label=label,
                style=discord.ButtonStyle.secondary,
                custom_id=f"feeds:list:{guild_id}:{page}:{way}",
                disabled=disabled,
            )
        )
        self.guild_id = guild_id
        self.page = page

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> FeedListButton:
        return cls(int(match["guild"]), int(match["page"]), match["way"])

    @answers_errors
    async def callback(self, interaction: discord.Interaction) -> None:
        if interaction.guild_id != self.guild_id:
            raise UserFacingError("That list belongs to another server.")
        await ensure_admin(interaction)
        cog = interaction.client.get_cog("Articles")  # type: ignore[attr-defined]
        if not isinstance(cog, Articles):
            raise UserFacingError("Feeds are not available right now.")
        text, view = await cog.feed_list_page(self.guild_id, self.page)
        await interaction.response.edit_message(content=text, view=view)


class Articles(commands.Cog):
    feed = app_commands.Group(
        name="feed",
        description="Post the site's articles into discussion channels",
        guild_only=True,
        default_permissions=discord.Permissions(manage_guild=True),
    )
    filters = FilterCommands(parent=feed)  # /feed filter ... (bot.feed_commands)
    formats = FormatCommands(parent=feed)  # /feed format ...
    mentions = MentionCommands(parent=feed)  # /feed mention ...
    options = OptionsCommands(parent=feed)  # /feed options ...

    def __init__(self, bot: ReadersViewsBot) -> None:
        self.bot = bot
        self.service = ArticleService(bot.store, bot.feed_client, bot.clock, bot.config.feeds)
        self.webhooks = Webhooks(bot)
        self._wake = asyncio.Event()
        self._cycle_lock = asyncio.Lock()
        self.feeds = FeedAdmin(bot.store)
        self.publisher = bot.publisher

    async def cog_load(self) -> None:
        self.bot.claims.on_wake(claims.FEEDS, self._wake.set)  # a feed added or resumed in another process
        self.bot.add_dynamic_items(FeedListButton)
        await self.service.backfill_link_keys()  # before the first poll: its dedupe needs them
        self.poller.start()

    async def cog_unload(self) -> None:
        # A stop lets the posts under way finish (bounded), so that none is cut between its message and
        # its thread; polls and new posts are simply not started (what is left is recovered at start).
        await self.publisher.stop(SHUTDOWN_GRACE)
        self.poller.cancel()
        self.bot.remove_dynamic_items(FeedListButton)

    # -- the poller ---------------------------------------------------------------------------

    @tasks.loop(count=None)
    async def poller(self) -> None:
        if not self.bot.claims.holds(claims.FEEDS):  # another process polls the feeds (bot.claims)
            await asyncio.sleep(self.bot.claims.retry_seconds)
            return
        await self.run_cycle()
        delay = await self.next_poll_delay()
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=delay)
        except TimeoutError:
            pass

    async def next_poll_delay(self) -> float:
        """Seconds until the next served feed is due (at least 1, at most MAX_POLL_SLEEP)."""
        next_due = await self.feeds.next_due_at(self.bot.tenants.only)
        if next_due is None:
            return MAX_POLL_SLEEP
        return min(MAX_POLL_SLEEP, max(1.0, (next_due - self.bot.clock.now()).total_seconds()))

    @poller.before_loop
    async def _before_poller(self) -> None:
        await self.bot.wait_until_ready()

    @poller.error
    async def _poller_error(self, error: BaseException) -> None:  # type: ignore[override]
        log.error("feed poller crashed; restarting it", exc_info=error)
        self.bot.health.note(self.bot.clock.now().isoformat(timespec="seconds"), f"feed poller crashed: {error}")
        await asyncio.sleep(5)
        self.poller.restart()

    def wake(self) -> None:
        self._wake.set()
        self.bot.claims.wake(claims.FEEDS)  # the process running the job, if it is another

    async def run_cycle(self) -> int:
        """Poll every due feed and post what is pending (capped per feed). Returns posts made.

        Each feed posts as soon as its own poll is done (one hanging feed delays no other), and feeds
        with work left from before post at once. Feeds publish concurrently: discord.py sleeps inside
        a request once a channel's bucket is exhausted (5 messages per 5 s), which would stall every
        other channel behind it; the global pacer (bot.pacing) keeps the sum under 50 requests/s.
        """
        async with self._cycle_lock:
            slots = asyncio.Semaphore(PUBLISH_CONCURRENCY)
            feed_locks: dict[int, asyncio.Lock] = {}  # one feed never publishes twice at once
            runs: list[tuple[FeedRow, asyncio.Task[int]]] = []

            async def publish_one(feed: FeedRow) -> int:
                async with feed_locks.setdefault(feed.id, asyncio.Lock()), slots:
                    return await self.publish(feed)

            def start(feed: FeedRow) -> None:
                runs.append((feed, asyncio.create_task(publish_one(feed))))

            async def polled(feed: FeedRow, report: PollReport) -> None:
                if report.alert:
                    await self.bot.alert(feed.guild_id, report.alert)
                if report.recovered:
                    await self.bot.alert(feed.guild_id, report.recovered)
                if report.queued or report.changed:
                    start(feed)

            try:
                for feed in await self.publisher.feeds_with_work(self.bot.tenants.only):
                    start(feed)
                started = {feed.id for feed, _ in runs}
                for feed in await feeds_with_archive_work(self.bot):  # e.g. a reply Discord failed last time
                    if feed.id not in started:
                        start(feed)
                await self.service.poll_due(self.bot.clock.now(), self.bot.tenants.only, on_polled=polled)
                results = await asyncio.gather(*(task for _, task in runs), return_exceptions=True)
            except BaseException:
                for _, task in runs:
                    task.cancel()
                raise
            failures: list[tuple[FeedRow, BaseException]] = [
                (feed, r) for (feed, _), r in zip(runs, results, strict=True) if isinstance(r, BaseException)
            ]
            for feed, failure in failures[1:]:
                log.error("feed %s: publishing failed", feed.id, exc_info=failure)
            if failures:  # the other feeds finished; the poller's error handler sees the first failure
                raise failures[0][1]
            return sum(r for r in results if isinstance(r, int))

    async def publish(self, feed: FeedRow) -> int:
        """Post up to the per-poll cap of a feed's pending articles, recover threads, apply pending edits."""
        channel = await self._resolve_channel(feed)
        if channel is None:
            return 0
        posted = await self.publisher.publish(feed, DiscordChannel(self.bot, feed, channel, self.webhooks))
        await post_archive_links(self.bot, self.service, feed)  # bot.feed_commands
        return posted

    async def _resolve_channel(self, feed: FeedRow) -> discord.TextChannel | discord.ForumChannel | None:
        channel = self.bot.get_channel(feed.channel_id)
        if channel is None:
            try:
                channel = await self.bot.fetch_channel(feed.channel_id)
            except (discord.NotFound, discord.Forbidden) as exc:
                await self.publisher.pause(feed, f"its channel is gone or hidden from me ({exc.text or exc.status})")
                return None
            except discord.HTTPException as exc:
                log.warning("feed %s: cannot fetch channel %s: %s", feed.id, feed.channel_id, exc)
                return None
        if not isinstance(channel, (discord.TextChannel, discord.ForumChannel)):
            await self.publisher.pause(feed, "its channel is no longer a text or forum channel")
            return None
        return channel

    # -- commands -----------------------------------------------------------------------------

    async def feed_autocomplete(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[int]]:
        if interaction.guild is None or not await may(ensure_admin, interaction):
            return []
        choices = []
        for feed in await self.feeds.in_guild(interaction.guild.id):
            shown = redact_url(feed.url)  # matching the full URL would let its query string be probed
            label = f"#{feed.id} {feed.title or shown}"
            if current.lower() in label.lower() or current.lower() in shown.lower():
                choices.append(app_commands.Choice(name=truncate_words(label, 100), value=feed.id))
        return choices[:25]

    @feed.command(name="add", description="Post a feed's new articles into a forum or text channel")
    @app_commands.describe(
        url="The feed's address (RSS or Atom), http:// or https://",
        channel="A forum channel (one post per article) or a text channel (message + thread)",
        tags="Forum tags: Category=Tag, comma-separated (categories named like a tag match it); *=Tag: default",
        interval="Minutes between polls (default from the config)",
        backfill="Also post this many of the newest existing articles now (default 0: only new ones)",
        archive_links="Reply under each post with up to 3 earlier related articles (“From the archives”)",
    )
    @admin_only()
    async def add(
        self,
        interaction: discord.Interaction,
        url: str,
        channel: discord.ForumChannel | discord.TextChannel,
        tags: str | None = None,
        interval: app_commands.Range[int, 1, 1440] | None = None,
        backfill: app_commands.Range[int, 0, 50] = 0,
        archive_links: bool = False,
    ) -> None:
        """Validate the URL and the channel's permissions, then save the feed."""
        assert interaction.guild is not None
        url = validate_feed_url(url)
        tag_map = parse_tag_map(tags)
        me = interaction.guild.me
        missing = missing_permissions(channel, me)
        if missing:
            raise UserFacingError(f"I can't post in {channel.mention}: I need {', '.join(missing)} there first.")
        if isinstance(channel, discord.ForumChannel) and channel.flags.require_tag and DEFAULT_TAG_KEY not in tag_map:
            tag_names = [t.name for t in channel.available_tags]
            example = f"`*={tag_names[0]}`" if tag_names else "`*=TagName`"
            raise UserFacingError(
                f"{channel.mention} requires a tag on every post, so I need a default tag for articles whose "
                f"categories match none: add {example} to `tags` (its tags are: {', '.join(tag_names) or 'none'})."
            )
        if isinstance(channel, discord.ForumChannel) and tag_map:
            names = {t.name.casefold() for t in channel.available_tags}
            unknown = sorted({tag for tag in tag_map.values() if tag.casefold() not in names})
            if unknown:
                raise UserFacingError(
                    f"{channel.mention} has no tag named {', '.join(unknown)}; its tags are: "
                    f"{', '.join(t.name for t in channel.available_tags) or 'none'}."
                )
        await interaction.response.defer(ephemeral=True, thinking=True)
        feed_id, parsed, queued = await self.service.add_feed(
            guild_id=interaction.guild.id,
            url=url,
            channel_id=channel.id,
            channel_kind="forum" if isinstance(channel, discord.ForumChannel) else "text",
            tag_map=tag_map,
            interval_minutes=interval,
            backfill=backfill,
            actor_id=interaction.user.id,
        )
        if archive_links:
            change = archive_links_on(True, self.bot.clock.now())
            await self.bot.store.feeds.update_settings(feed_id, change, actor_id=interaction.user.id, what="options")
        name = discord.utils.escape_markdown(parsed.title or redact_url(url))
        text = (
            f"Feed #{feed_id} **{name}** added: {len(parsed.articles)} current article(s) recorded"
            f"{f', the newest {queued} will be posted now' if queued else ' (none posted; new ones will be)'}"
            f" in {channel.mention}."
        )
        if parsed.problems:
            text += f"\nNote: {len(parsed.problems)} problem(s) in the feed, e.g. {parsed.problems[0]}"
        await interaction.followup.send(text, ephemeral=True)
        if queued:
            self.wake()

    @feed.command(name="import", description="Add every feed of an OPML file (from a feed reader) to a channel")
    @app_commands.describe(
        file="An .opml file", channel="Where their articles go", tags="Forum tags, as in /feed add (*=Tag: default)"
    )
    @admin_only()
    async def import_(
        self,
        interaction: discord.Interaction,
        file: discord.Attachment,
        channel: discord.ForumChannel | discord.TextChannel,
        tags: str | None = None,
    ) -> None:
        assert interaction.guild is not None
        missing = missing_permissions(channel, interaction.guild.me)
        if missing:
            raise UserFacingError(f"I can't post in {channel.mention}: I need {', '.join(missing)} there first.")
        await import_feeds(self.service, interaction, file, channel, tags)  # bot.feed_commands

    @feed.command(name="export", description="This server's feeds as an OPML file (for feed readers)")
    @admin_only()
    async def export(self, interaction: discord.Interaction) -> None:
        await export_feeds(interaction)  # bot.feed_commands

    @feed.command(name="remove", description="Stop posting a feed (posts already made stay)")
    @app_commands.autocomplete(feed=feed_autocomplete)
    @admin_only()
    async def remove(self, interaction: discord.Interaction, feed: int) -> None:
        row = await feed_in_guild(interaction, feed)
        await self.feeds.remove(row.id, actor_id=interaction.user.id)
        await interaction.response.send_message(f"Feed #{row.id} ({redact_url(row.url)}) removed.", ephemeral=True)

    @feed.command(name="list", description="Every feed with its health: last poll, status, items, errors")
    @app_commands.describe(page="Which page of the list (Prev / Next buttons move through it)")
    @admin_only()
    async def list_(self, interaction: discord.Interaction, page: app_commands.Range[int, 1, 1000] = 1) -> None:
        assert interaction.guild is not None
        text, view = await self.feed_list_page(interaction.guild.id, page)
        if view is None:
            await interaction.response.send_message(text, ephemeral=True)
        else:
            await interaction.response.send_message(text, view=view, ephemeral=True)

    async def feed_list_page(self, guild_id: int, page: int) -> tuple[str, discord.ui.View | None]:
        """One page of `/feed list` (clamped to the pages there are), with Prev / Next if there are several."""
        feeds = await self.feeds.in_guild(guild_id)
        if not feeds:
            return "No feeds yet: add one with `/feed add`.", None
        blocks = []
        for feed in feeds:
            counts = await self.feeds.counts(feed.id)
            state = "paused" if not feed.enabled else ("failing" if feed.consecutive_errors else "ok")
            polled = discord.utils.format_dt(feed.last_poll_at, "R") if feed.last_poll_at else "never"
            block = (
                f"**#{feed.id}** {state} · <#{feed.channel_id}> · {redact_url(feed.url)}\n"
                f"  last poll {polled}, {feed.item_count} item(s) in feed, posted {counts.get('posted', 0)}, "
                f"waiting {counts.get('pending', 0) + counts.get('posting', 0)}, failed {counts.get('failed', 0)}"
            )
            if feed.last_error:
                block += f"\n  last error ({feed.consecutive_errors} in a row): {redact_text(feed.last_error)}"
            if feed.disabled_reason:
                block += f"\n  paused: {feed.disabled_reason}"
            blocks.append(block)
        pages = paginate(blocks, LIST_PAGE_CHARS)
        page = min(max(page, 1), len(pages))
        if len(pages) == 1:
            return pages[0], None
        view = discord.ui.View(timeout=None)
        view.add_item(FeedListButton(guild_id, page - 1, "prev", disabled=page == 1))
        view.add_item(FeedListButton(guild_id, page + 1, "next", disabled=page == len(pages)))
        return f"Feeds, page {page} of {len(pages)} ({len(feeds)} feeds):\n{pages[page - 1]}", view

    @feed.command(name="pause", description="Stop polling a feed until resumed")
    @app_commands.autocomplete(feed=feed_autocomplete)
    @admin_only()
    async def pause(self, interaction: discord.Interaction, feed: int) -> None:
        row = await feed_in_guild(interaction, feed)
        await self.feeds.pause(row.id, actor_id=interaction.user.id)
        await interaction.response.send_message(f"Feed #{row.id} paused.", ephemeral=True)

    @feed.command(name="resume", description="Poll a paused feed again (and retry articles that failed)")
    @app_commands.autocomplete(feed=feed_autocomplete)
    @admin_only()
    async def resume(self, interaction: discord.Interaction, feed: int) -> None:
        row = await feed_in_guild(interaction, feed)
        retried = await self.feeds.resume(row.id, actor_id=interaction.user.id)
        extra = f"; {retried} failed article(s) will be checked for and retried" if retried else ""
        await interaction.response.send_message(f"Feed #{row.id} resumed{extra}.", ephemeral=True)
        self.wake()

    @feed.command(name="preview", description="Show the next posts exactly as they would look (only to you)")
    @app_commands.describe(
        feed="A feed of this server: its current items with its formats and filters",
        url="Or any feed's address, with the default look",
    )
    @app_commands.autocomplete(feed=feed_autocomplete)
    @admin_only()
    async def preview(self, interaction: discord.Interaction, feed: int | None = None, url: str | None = None) -> None:
        row = await feed_in_guild(interaction, feed) if feed is not None else None
        if row is not None:
            url = row.url
        if not url:
            raise UserFacingError("Name a `feed` (its formats and filters apply) or a feed `url`.")
        url = validate_feed_url(url)
        await interaction.response.defer(ephemeral=True, thinking=True)
        parsed = await self.service.fetch_parsed(url)
        if not parsed.articles:
            await interaction.followup.send(
                f"{redact_url(url)} is a feed, but it has no items right now.", ephemeral=True
            )
            return
        items = parsed.articles[:3]
        verdicts = await filter_out_async(
            rules_of(row.settings) if row else [],
            [FilterInput(a.title, a.summary_html or a.content_html or "", a.categories, a.author) for a in items],
        )
        embeds: list[discord.Embed] = []
        texts: list[str] = []
        for number, (article, verdict) in enumerate(zip(items, verdicts, strict=True), start=1):
            article_row = ArticleRow(
                id=0,
                feed_id=row.id if row else 0,
                guid=article.guid,
                title=article.title,
                link=article.link,
                summary=article.summary_html or article.content_html or "",
                published_at=article.published,
                content_hash="",
                status="pending",
                status_reason=None,
                thread_id=None,
                message_id=None,
                channel_id=None,
                categories=article.categories,
                needs_edit=False,
                author=article.author,
                image_url=article.image_url,
            )
            plan = await (self.service.plan(row, article_row) if row else plan_post_async(article_row))
            if row is not None and row.channel_kind == "text":
                embed = article_embed(plan, article_row)
                if plan.message:
                    texts.append(f"{number}. message text: {plan.message}")
            else:
                embed = discord.Embed(title=plan.title, description=plan.content)
                if plan.image_url:
                    embed.set_image(url=plan.image_url)
                if article.categories:
                    embed.set_footer(text=truncate_words("Categories: " + ", ".join(article.categories), 200))
            if verdict:
                texts.append(f"{number}. not posted: {verdict}")
            embeds.append(embed)
        while len(embeds) > 1 and sum(len(embed) for embed in embeds) > 6000:  # Discord's limit per message
            embeds.pop()
        shown = discord.utils.escape_markdown(parsed.title or redact_url(url))
        heading = f"The next posts from **{shown}** would look like this:"
        if texts:
            heading = truncate_words(heading + "\n" + "\n".join(texts), 2000)
        await interaction.followup.send(heading, embeds=embeds, ephemeral=True)

    @feed.command(name="diagnose", description="Why wasn't it posted? A feed's last fetch, and one article's fate")
    @app_commands.describe(feed="The feed", article_url="The article's link (or guid) to explain")
    @app_commands.autocomplete(feed=feed_autocomplete)
    @admin_only()
    async def diagnose(self, interaction: discord.Interaction, feed: int, article_url: str | None = None) -> None:
        row = await feed_in_guild(interaction, feed)
        counts = await self.feeds.counts(row.id)
        lines = [f"**Feed #{row.id}** {redact_url(row.url)} → <#{row.channel_id}> ({row.channel_kind})"]
        lines.append(f"- enabled: {'yes' if row.enabled else 'no — ' + (row.disabled_reason or 'paused')}")
        if row.last_poll_at:
            lines.append(f"- last poll: {discord.utils.format_dt(row.last_poll_at, 'R')}, result {row.last_status}")
        if row.last_ok_at:
            lines.append(f"- last success: {discord.utils.format_dt(row.last_ok_at, 'R')}")
        if row.last_error:
            lines.append(f"- last error ({row.consecutive_errors} in a row): {redact_text(row.last_error)}")
        if row.next_poll_at and row.enabled:
            lines.append(f"- next poll: {discord.utils.format_dt(row.next_poll_at, 'R')}")
        lines.append(
            "- articles: "
            + (", ".join(f"{status} {n}" for status, n in sorted(counts.items())) or "none seen yet")
            + f"; conditional GET: {'ETag' if row.etag else ''}{' Last-Modified' if row.last_modified else ''}"
            + ("" if row.etag or row.last_modified else "not offered by the site")
        )
        if article_url:
            article = await self.feeds.find_article(row.id, article_url.strip())
            if article is None:
                lines.append(
                    f"- `{article_url[:200]}` was never seen in this feed: the last successful fetch listed "
                    f"{row.item_count} item(s). Check that the feed (not just the site) contains it."
                )
            else:
                lines.append(f"- “{truncate_words(article.title, 120)}”: {describe_article_status(article)}")
        await interaction.response.send_message(truncate_words("\n".join(lines), 2000), ephemeral=True)


async def setup(bot: ReadersViewsBot) -> None:
    await bot.add_cog(Articles(bot))
