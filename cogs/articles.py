"""/feed commands and the poller that posts new articles into forum or text channels."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands, tasks

from bot import claims
from bot.articles import (
    DEFAULT_TAG_KEY,
    ArticleService,
    FeedProblem,
    PostPlan,
    choose_tags,
    map_bounded,
    parse_tag_map,
    plan_post_async,
    validate_feed_url,
)
from bot.checks import admin_only, ensure_admin, may
from bot.errors import UserFacingError
from bot.render import truncate_words
from bot.site.base import redact_text, redact_url
from bot.store.feeds import ArticleRow, FeedRow

if TYPE_CHECKING:
    from bot.app import ReadersViewsBot

log = logging.getLogger(__name__)

FORUM_NEEDS = ("view_channel", "send_messages", "send_messages_in_threads", "manage_threads")
TEXT_NEEDS = ("view_channel", "send_messages", "embed_links", "create_public_threads", "send_messages_in_threads")
MAX_POLL_SLEEP = 60.0
PUBLISH_CONCURRENCY = 50  # feeds publishing at once; the global pacer bounds the request rate
MAX_SERVER_ERRORS = 5  # cycles in a row Discord may fail (5xx, timeout) on one article before it is failed...
SERVER_ERROR_SPAN = timedelta(
    minutes=30
)  # ...and for at least this long: an outage of Discord's is not the article's fault
DISCORD_TROUBLE = (discord.DiscordServerError, TimeoutError, aiohttp.ClientError)


def missing_permissions(channel: discord.abc.GuildChannel, me: discord.Member) -> list[str]:
    perms = channel.permissions_for(me)
    needed = FORUM_NEEDS if isinstance(channel, discord.ForumChannel) else TEXT_NEEDS
    return [name.replace("_", " ").title() for name in needed if not getattr(perms, name)]


def article_embed(plan: PostPlan, article: ArticleRow) -> discord.Embed:
    """A text-channel post: the article's title, link and summary (the footer marks link-less ones)."""
    embed = discord.Embed(title=plan.title, url=plan.link or None, description=plan.embed_description)
    if plan.embed_footer:
        embed.set_footer(text=plan.embed_footer)
    if article.published_at:
        embed.timestamp = article.published_at
    return embed


def describe_article_status(article: ArticleRow) -> str:
    if article.status == "posted":
        where = f"<#{article.thread_id}>" if article.thread_id else f"<#{article.channel_id}>"
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


class Articles(commands.Cog):
    feed = app_commands.Group(
        name="feed",
        description="Post the site's articles into discussion channels",
        guild_only=True,
        default_permissions=discord.Permissions(manage_guild=True),
    )

    def __init__(self, bot: ReadersViewsBot) -> None:
        self.bot = bot
        self.service = ArticleService(bot.store, bot.feed_client, bot.clock, bot.config.feeds)
        self._wake = asyncio.Event()
        self._cycle_lock = asyncio.Lock()
        # Article id -> cycles in a row in which Discord failed (5xx, timeout) posting or checking it.
        self._server_errors: dict[int, tuple[int, datetime]] = {}  # article id -> (failures in a row, first at)

    async def cog_load(self) -> None:
        self.bot.claims.on_wake(claims.FEEDS, self._wake.set)  # a feed added or resumed in another process
        self.poller.start()

    async def cog_unload(self) -> None:
        self.poller.cancel()

    # -- the poller ---------------------------------------------------------------------------

    @tasks.loop(count=None)
    async def poller(self) -> None:
        if not self.bot.claims.holds(claims.FEEDS):  # another process polls the feeds (bot.claims)
            await asyncio.sleep(self.bot.claims.retry_seconds)
            return
        await self.run_cycle()
        next_due = await self.bot.store.feeds.next_due_at()
        delay = MAX_POLL_SLEEP
        if next_due is not None:
            delay = min(MAX_POLL_SLEEP, max(1.0, (next_due - self.bot.clock.now()).total_seconds()))
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=delay)
        except TimeoutError:
            pass

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
        """Poll every due feed, then post what is pending (capped per feed). Returns posts made."""
        async with self._cycle_lock:
            for feed, report in await self.service.poll_due(self.bot.clock.now(), self.bot.tenants.serves):
                if report.alert:
                    await self.bot.alert(feed.guild_id, report.alert)
                if report.recovered:
                    await self.bot.alert(feed.guild_id, report.recovered)
            # Feeds publish concurrently: discord.py sleeps inside a request once a channel's bucket
            # is exhausted (5 messages per 5 s), which would stall every other channel behind it.
            # The global pacer (bot.pacing) keeps the sum under Discord's 50 requests/s.
            feeds = [feed for feed in await self.bot.store.feeds.with_work() if self.bot.tenants.serves(feed.guild_id)]
            results = await map_bounded(self.publish, feeds, PUBLISH_CONCURRENCY, return_exceptions=True)
            failures: list[tuple[FeedRow, BaseException]] = [
                (feed, r) for feed, r in zip(feeds, results, strict=True) if isinstance(r, BaseException)
            ]
            for feed, failure in failures[1:]:
                log.error("feed %s: publishing failed", feed.id, exc_info=failure)
            if failures:  # the other feeds finished; the poller's error handler sees the first failure
                raise failures[0][1]
            return sum(r for r in results if isinstance(r, int))

    async def publish(self, feed: FeedRow) -> int:
        """Post up to the per-poll cap of a feed's pending articles, and apply pending edits."""
        channel = await self._resolve_channel(feed)
        if channel is None:
            return 0
        posted = 0
        for article in await self.bot.store.articles.pending(feed.id, self.bot.config.feeds.per_poll_cap):
            ok = await self._post_one(feed, channel, article)
            if ok is None:  # the feed was paused, or Discord is failing: try this feed again next cycle
                return posted
            posted += int(ok)
        for article in await self.bot.store.articles.needing_edit(feed.id):
            await self._edit_one(feed, channel, article)
        return posted

    async def _resolve_channel(self, feed: FeedRow) -> discord.TextChannel | discord.ForumChannel | None:
        channel = self.bot.get_channel(feed.channel_id)
        if channel is None:
            try:
                channel = await self.bot.fetch_channel(feed.channel_id)
            except (discord.NotFound, discord.Forbidden) as exc:
                await self._disable(feed, f"its channel is gone or hidden from me ({exc.text or exc.status})")
                return None
            except discord.HTTPException as exc:
                log.warning("feed %s: cannot fetch channel %s: %s", feed.id, feed.channel_id, exc)
                return None
        if not isinstance(channel, (discord.TextChannel, discord.ForumChannel)):
            await self._disable(feed, "its channel is no longer a text or forum channel")
            return None
        return channel

    async def _disable(self, feed: FeedRow, reason: str) -> None:
        """A gone target stops retrying and alerts once."""
        await self.bot.store.feeds.set_enabled(feed.id, False, reason=reason, actor_id=None)
        await self.bot.alert(
            feed.guild_id,
            f"Feed {redact_url(feed.url)} is paused: {reason}. Fix the channel or permissions, then `/feed resume`.",
        )

    async def _post_one(
        self, feed: FeedRow, channel: discord.TextChannel | discord.ForumChannel, article: ArticleRow
    ) -> bool | None:
        """True if posted, False if this article failed, None to stop this feed for now (paused, Discord failing)."""
        outcome = await self._attempt(feed, channel, article)
        if isinstance(outcome, BaseException):
            return await self._discord_failed(feed, article, outcome)
        self._server_errors.pop(article.id, None)
        return outcome

    async def _discord_failed(self, feed: FeedRow, article: ArticleRow, exc: BaseException) -> bool | None:
        """Discord failed (5xx, timeout) posting or checking an article; it stays 'posting' so the next
        cycle looks for the post first. After MAX_SERVER_ERRORS cycles in a row spanning at least
        SERVER_ERROR_SPAN it is failed and the admins alerted, so that one article Discord keeps refusing
        does not hold up its feed for ever, while a Discord outage of a few minutes fails nothing."""
        now = self.bot.clock.now()
        count, first = self._server_errors.get(article.id, (0, now))
        count += 1
        if count < MAX_SERVER_ERRORS or now - first < SERVER_ERROR_SPAN:
            self._server_errors[article.id] = (count, first)
            log.warning(
                "feed %s: Discord failed posting or checking article %s (%r, %d in a row); will check and retry",
                feed.id,
                article.id,
                exc,
                count,
            )
            return None
        self._server_errors.pop(article.id, None)
        detail = str(exc) or type(exc).__name__
        log.error("feed %s: giving up on article %s after %d Discord failures: %s", feed.id, article.id, count, detail)
        await self.bot.store.articles.mark_failed(
            article.id, f"Discord failed {count} times in a row (last: {detail}); it may or may not have been posted"
        )
        await self.bot.alert(
            feed.guild_id,
            f"Feed {redact_url(feed.url)}: Discord failed {count} times in a row posting "
            f'"{truncate_words(article.title, 100)}" '
            f"(last: {detail}), so I skipped it and carried on with the feed. `/feed resume` checks whether it "
            "was posted after all and retries it.",
        )
        return False

    async def _attempt(
        self, feed: FeedRow, channel: discord.TextChannel | discord.ForumChannel, article: ArticleRow
    ) -> bool | BaseException | None:
        """`_post_one`'s work; a Discord failure whose outcome is unknown (5xx, timeout) is returned, not raised."""
        if article.status == "posting":
            try:
                found = await self._reconcile(feed, channel, article)
            except DISCORD_TROUBLE as exc:  # can't tell whether it was posted: don't post it again yet
                return exc
            if found is not False:
                return found
        try:
            plan = await plan_post_async(article)
        except ValueError as exc:  # one unrenderable article must not hold up the ones after it
            log.warning("feed %s: article %s cannot be rendered: %s", feed.id, article.id, exc)
            await self.bot.store.articles.mark_failed(article.id, f"can't be rendered for Discord: {exc}")
            return False
        await self.bot.store.articles.mark_posting(article.id)
        none = discord.AllowedMentions.none()
        try:
            if isinstance(channel, discord.ForumChannel):
                created = await channel.create_thread(
                    name=plan.title,
                    content=plan.content,
                    applied_tags=self._forum_tags(feed, channel, article),
                    allowed_mentions=none,
                )
                await self.bot.store.articles.mark_posted(
                    article.id, channel_id=channel.id, thread_id=created.thread.id, message_id=created.message.id
                )
                return True
            message = await channel.send(embed=article_embed(plan, article), allowed_mentions=none)
        except discord.DiscordServerError as exc:
            # Discord may or may not have made the post: stay 'posting', so the next cycle looks first.
            return exc
        except (discord.Forbidden, discord.NotFound) as exc:
            await self.bot.store.articles.mark_failed(article.id, f"Discord refused: {exc.text or exc.status}")
            await self._disable(feed, f"I can no longer post in <#{channel.id}> ({exc.text or exc.status})")
            return None
        except discord.HTTPException as exc:
            log.warning("feed %s: article %s rejected by Discord: %s", feed.id, article.id, exc)
            await self.bot.store.articles.mark_failed(article.id, f"Discord rejected the post: {exc.text or exc}")
            return False
        except (TimeoutError, aiohttp.ClientError) as exc:  # timed out or lost the connection: as a 5xx
            return exc
        await self.bot.store.articles.mark_posted(
            article.id, channel_id=channel.id, thread_id=None, message_id=message.id
        )
        return await self._open_thread(feed, message, plan, article)

    async def _open_thread(
        self, feed: FeedRow, message: discord.Message, plan: PostPlan, article: ArticleRow
    ) -> bool | None:
        """The discussion thread under a text-channel post. The post stays recorded whatever happens here."""
        try:
            thread = await message.create_thread(name=plan.title)
        except discord.Forbidden as exc:
            await self._disable(
                feed,
                f"I posted in <#{message.channel.id}> but can't open discussion threads there "
                f"({exc.text or exc.status})",
            )
            return None
        except discord.HTTPException as exc:
            log.warning("feed %s: article %s is posted, but its discussion thread failed: %s", feed.id, article.id, exc)
            return True
        await self.bot.store.articles.mark_posted(
            article.id, channel_id=message.channel.id, thread_id=thread.id, message_id=message.id
        )
        return True

    def _forum_tags(self, feed: FeedRow, channel: discord.ForumChannel, article: ArticleRow) -> list[discord.ForumTag]:
        available = {tag.name: tag.id for tag in channel.available_tags}
        tag_ids = set(choose_tags(article.categories, feed.tag_map, available))
        if not tag_ids and channel.flags.require_tag and channel.available_tags:
            # The forum started requiring a tag after the feed was added without a default: without a
            # tag Discord refuses every post, so take the first one rather than fail them all.
            log.warning("feed %s: %s requires a tag and no category matched; using its first tag", feed.id, channel.id)
            tag_ids = {channel.available_tags[0].id}
        return [tag for tag in channel.available_tags if tag.id in tag_ids]

    async def _reconcile(
        self, feed: FeedRow, channel: discord.TextChannel | discord.ForumChannel, article: ArticleRow
    ) -> bool | None:
        """After a crash or a failed call mid-post, look for the post before making it again.

        True if found (False if not; None if found, but its feed has just been paused). A Discord
        5xx or timeout is raised: whether the post exists is then unknown, so it must not be made again.

        Only a post of ours that ends with this article's marker, is newer than every post recorded
        before the attempt started, and is not already another article's post, counts. In a forum
        where the starter message can't be read (no Read Message History), a thread of ours with the
        article's title (newer, not another article's) counts instead: the duplicate is the worse risk.
        """
        store = self.bot.store.articles
        me = channel.guild.me
        plan = await plan_post_async(article)
        after = await store.last_post_before(channel.id, article.posted_at) if article.posted_at else 0
        try:
            if isinstance(channel, discord.ForumChannel):
                for thread in channel.threads:
                    if thread.owner_id != me.id or thread.id <= after or await store.is_recorded_post(thread.id):
                        continue
                    try:
                        starter = thread.starter_message or await thread.fetch_message(thread.id)
                    except discord.NotFound:
                        continue
                    except discord.Forbidden as exc:
                        if thread.name != plan.title:
                            continue
                        log.warning(
                            "feed %s: can't read the starter of thread %s (%s); taking it for article %s by its title",
                            feed.id,
                            thread.id,
                            exc.text or exc.status,
                            article.id,
                        )
                        await store.mark_posted(
                            article.id, channel_id=channel.id, thread_id=thread.id, message_id=thread.id
                        )
                        return True
                    if plan.is_forum_post(starter.content):
                        await store.mark_posted(
                            article.id, channel_id=channel.id, thread_id=thread.id, message_id=thread.id
                        )
                        return True
                return False
            async for message in channel.history(limit=50):
                if message.id <= after:
                    break
                if message.author.id != me.id or not message.embeds:
                    continue
                embed = message.embeds[0]
                if plan.is_text_post(embed.url, embed.footer.text) and not await store.is_recorded_post(message.id):
                    await store.mark_posted(
                        article.id,
                        channel_id=channel.id,
                        thread_id=message.thread.id if message.thread else None,
                        message_id=message.id,
                    )
                    if message.thread is None:  # the interruption came before the discussion thread
                        return await self._open_thread(feed, message, plan, article)
                    return True
        except discord.DiscordServerError:
            raise
        except discord.HTTPException as exc:
            log.warning("could not check channel %s for an interrupted post: %s", channel.id, exc)
        return False

    async def _edit_one(
        self, feed: FeedRow, channel: discord.TextChannel | discord.ForumChannel, article: ArticleRow
    ) -> None:
        plan = await plan_post_async(article)
        try:
            if isinstance(channel, discord.ForumChannel) and article.thread_id:
                thread = channel.get_thread(article.thread_id) or await self.bot.fetch_channel(article.thread_id)
                if isinstance(thread, discord.Thread):
                    if thread.name != plan.title:
                        await thread.edit(name=plan.title)
                    await thread.get_partial_message(article.message_id or thread.id).edit(
                        content=plan.content, allowed_mentions=discord.AllowedMentions.none()
                    )
            elif isinstance(channel, discord.TextChannel) and article.message_id:
                await channel.get_partial_message(article.message_id).edit(embed=article_embed(plan, article))
                text_thread = channel.guild.get_thread(article.thread_id) if article.thread_id else None
                if text_thread is not None and text_thread.name != plan.title:
                    await text_thread.edit(name=plan.title)
        except discord.DiscordServerError as exc:
            log.warning("article %s: edit failed, will retry: %s", article.id, exc)
            return
        except discord.HTTPException as exc:
            # Gone, locked or archived: Discord will refuse the same edit every time, so stop trying.
            log.info("article %s: Discord refused the edit (%s); not editing", article.id, exc)
        await self.bot.store.articles.mark_edited(article.id)

    # -- commands -----------------------------------------------------------------------------

    async def feed_autocomplete(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[int]]:
        if interaction.guild is None or not await may(ensure_admin, interaction):
            return []
        choices = []
        for feed in await self.bot.store.feeds.in_guild(interaction.guild.id):
            shown = redact_url(feed.url)  # matching the full URL would let its query string be probed
            label = f"#{feed.id} {feed.title or shown}"
            if current.lower() in label.lower() or current.lower() in shown.lower():
                choices.append(app_commands.Choice(name=truncate_words(label, 100), value=feed.id))
        return choices[:25]

    async def _feed_in_guild(self, interaction: discord.Interaction, feed_id: int) -> FeedRow:
        feed = await self.bot.store.feeds.get(feed_id)
        if feed is None or interaction.guild is None or feed.guild_id != interaction.guild.id:
            raise UserFacingError(f"There is no feed #{feed_id} in this server: `/feed list` shows them.")
        return feed

    @feed.command(name="add", description="Post a feed's new articles into a forum or text channel")
    @app_commands.describe(
        url="The feed's address (RSS or Atom), http:// or https://",
        channel="A forum channel (one post per article) or a text channel (message + thread)",
        tags="Forum tags: Category=Tag, comma-separated (categories named like a tag match it); *=Tag: default",
        interval="Minutes between polls (default from the config)",
        backfill="Also post this many of the newest existing articles now (default 0: only new ones)",
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
    ) -> None:
        """Validate the URL and the channel's permissions, then save the feed."""
        assert interaction.guild is not None
        try:
            url = validate_feed_url(url)
            tag_map = parse_tag_map(tags)
        except FeedProblem as exc:
            raise UserFacingError(str(exc)) from None
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
        try:
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
        except FeedProblem as exc:
            raise UserFacingError(str(exc)) from None
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

    @feed.command(name="remove", description="Stop posting a feed (posts already made stay)")
    @app_commands.autocomplete(feed=feed_autocomplete)
    @admin_only()
    async def remove(self, interaction: discord.Interaction, feed: int) -> None:
        row = await self._feed_in_guild(interaction, feed)
        await self.bot.store.feeds.remove(row.id, actor_id=interaction.user.id)
        await interaction.response.send_message(f"Feed #{row.id} ({redact_url(row.url)}) removed.", ephemeral=True)

    @feed.command(name="list", description="Every feed with its health: last poll, status, items, errors")
    @admin_only()
    async def list_(self, interaction: discord.Interaction) -> None:
        assert interaction.guild is not None
        feeds = await self.bot.store.feeds.in_guild(interaction.guild.id)
        if not feeds:
            await interaction.response.send_message("No feeds yet: add one with `/feed add`.", ephemeral=True)
            return
        lines = []
        for feed in feeds:
            counts = await self.bot.store.articles.counts(feed.id)
            state = "paused" if not feed.enabled else ("failing" if feed.consecutive_errors else "ok")
            polled = discord.utils.format_dt(feed.last_poll_at, "R") if feed.last_poll_at else "never"
            line = (
                f"**#{feed.id}** {state} · <#{feed.channel_id}> · {redact_url(feed.url)}\n"
                f"  last poll {polled}, {feed.item_count} item(s) in feed, posted {counts.get('posted', 0)}, "
                f"waiting {counts.get('pending', 0) + counts.get('posting', 0)}, failed {counts.get('failed', 0)}"
            )
            if feed.last_error:
                line += f"\n  last error ({feed.consecutive_errors} in a row): {redact_text(feed.last_error)}"
            if feed.disabled_reason:
                line += f"\n  paused: {feed.disabled_reason}"
            lines.append(line)
        text = "\n".join(lines)
        await interaction.response.send_message(truncate_words(text, 2000), ephemeral=True)

    @feed.command(name="pause", description="Stop polling a feed until resumed")
    @app_commands.autocomplete(feed=feed_autocomplete)
    @admin_only()
    async def pause(self, interaction: discord.Interaction, feed: int) -> None:
        row = await self._feed_in_guild(interaction, feed)
        await self.bot.store.feeds.set_enabled(row.id, False, reason="paused by an admin", actor_id=interaction.user.id)
        await interaction.response.send_message(f"Feed #{row.id} paused.", ephemeral=True)

    @feed.command(name="resume", description="Poll a paused feed again (and retry articles that failed)")
    @app_commands.autocomplete(feed=feed_autocomplete)
    @admin_only()
    async def resume(self, interaction: discord.Interaction, feed: int) -> None:
        row = await self._feed_in_guild(interaction, feed)
        await self.bot.store.feeds.set_enabled(row.id, True, reason=None, actor_id=interaction.user.id)
        retried = await self.bot.store.articles.reset_failed(row.id)
        extra = f"; {retried} failed article(s) will be checked for and retried" if retried else ""
        await interaction.response.send_message(f"Feed #{row.id} resumed{extra}.", ephemeral=True)
        self.wake()

    @feed.command(name="preview", description="Show the next posts exactly as they would look (only to you)")
    @admin_only()
    async def preview(self, interaction: discord.Interaction, url: str) -> None:
        try:
            url = validate_feed_url(url)
        except FeedProblem as exc:
            raise UserFacingError(str(exc)) from None
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            parsed = await self.service.fetch_parsed(url)
        except FeedProblem as exc:
            raise UserFacingError(str(exc)) from None
        if not parsed.articles:
            await interaction.followup.send(
                f"{redact_url(url)} is a feed, but it has no items right now.", ephemeral=True
            )
            return
        embeds = []
        for article in parsed.articles[:3]:
            row = ArticleRow(
                id=0,
                feed_id=0,
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
            )
            plan = await plan_post_async(row)
            embed = discord.Embed(title=plan.title, description=plan.content)
            if article.categories:
                embed.set_footer(text=truncate_words("Categories: " + ", ".join(article.categories), 200))
            embeds.append(embed)
        while len(embeds) > 1 and sum(len(embed) for embed in embeds) > 6000:  # Discord's limit per message
            embeds.pop()
        shown = discord.utils.escape_markdown(parsed.title or redact_url(url))
        heading = f"The next posts from **{shown}** would look like this:"
        await interaction.followup.send(heading, embeds=embeds, ephemeral=True)

    @feed.command(name="diagnose", description="Why wasn't it posted? A feed's last fetch, and one article's fate")
    @app_commands.describe(feed="The feed", article_url="The article's link (or guid) to explain")
    @app_commands.autocomplete(feed=feed_autocomplete)
    @admin_only()
    async def diagnose(self, interaction: discord.Interaction, feed: int, article_url: str | None = None) -> None:
        row = await self._feed_in_guild(interaction, feed)
        counts = await self.bot.store.articles.counts(row.id)
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
            article = await self.bot.store.articles.find(row.id, article_url.strip())
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
