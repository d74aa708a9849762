"""/feed subcommand groups for a feed's own choices, attached to the Articles cog's /feed group:
`/feed filter`, `/feed format`, `/feed mention`, `/feed options`; plus the work of `/feed import`,
`/feed export` (OPML) and of the "From the archives" replies.

They live here so that cogs/articles.py keeps the poller and the posting path: it only adds
`FilterCommands(parent=feed)` and the like to its class, and calls the functions at the end.
The rules themselves are in bot.feed_rules (filters, formats) and bot.opml.
"""

from __future__ import annotations

import asyncio
import io
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
import discord
from discord import app_commands

from bot.articles import DEFAULT_TAG_KEY, FeedProblem, parse_tag_map, validate_feed_url
from bot.checks import admin_only
from bot.errors import UserFacingError
from bot.feed_rules import FORMAT_FIELDS, MAX_RULES, RuleProblem, check_format, formats_of, make_rule, rules_of
from bot.feed_webhooks import avatar_url_problem, can_manage_webhooks, display_name
from bot.netguard import AddressPolicy
from bot.opml import MAX_IMPORT, MAX_OPML_BYTES, OpmlFeed, OpmlProblem, build_opml, parse_opml_async
from bot.render import escape_discord_text, truncate_words
from bot.site.base import redact_url
from bot.store.feeds import FeedRow

if TYPE_CHECKING:
    from bot.app import ReadersViewsBot
    from bot.articles import ArticleService

log = logging.getLogger(__name__)

ARCHIVE_BATCH = 10  # "From the archives" replies sent per feed per cycle


def describe_rules(settings: dict[str, Any]) -> str:
    rules = rules_of(settings)
    if not rules:
        return "No filter rules: every new article is posted."
    lines = [f"{number}. {escape_discord_text(rule.describe())}" for number, rule in enumerate(rules, start=1)]
    lines.append("-# Exclude rules drop what they match; with include rules, only what matches one is posted.")
    return "\n".join(lines)


def bot_of(interaction: discord.Interaction) -> ReadersViewsBot:
    return interaction.client  # type: ignore[return-value]


async def feed_choices(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[int]]:
    """The Articles cog's feed autocomplete (only admins see the server's feeds)."""
    articles: Any = bot_of(interaction).get_cog("Articles")
    return [] if articles is None else list(await articles.feed_autocomplete(interaction, current))


async def feed_in_guild(interaction: discord.Interaction, feed_id: int) -> FeedRow:
    feed = await bot_of(interaction).store.feeds.get(feed_id)
    if feed is None or interaction.guild is None or feed.guild_id != interaction.guild.id:
        raise UserFacingError(f"There is no feed #{feed_id} in this server: `/feed list` shows them.")
    return feed


async def change_settings(interaction: discord.Interaction, feed: FeedRow, what: str, change: Any) -> dict[str, Any]:
    """Change a feed's settings in one transaction, audited with `what`."""
    try:
        return await bot_of(interaction).store.feeds.update_settings(
            feed.id, change, actor_id=interaction.user.id, what=what
        )
    except LookupError:
        raise UserFacingError(f"Feed #{feed.id} was just removed.") from None


class FilterCommands(app_commands.Group):
    """`/feed filter add|list|remove|clear`: which of a feed's new articles are posted."""

    def __init__(self, parent: app_commands.Group) -> None:
        super().__init__(name="filter", description="Choose which of a feed's articles are posted", parent=parent)

    # -- filters --------------------------------------------------------------------------------

    @app_commands.command(name="add", description="Add a rule: include or exclude articles by category, author, text")
    @app_commands.describe(
        feed="The feed",
        action="include: post only what matches an include rule; exclude: never post what matches",
        field="What the rule looks at (keyword and regex: the title and summary)",
        value="The category, author, keyword (case-insensitive) or regular expression",
    )
    @app_commands.autocomplete(feed=feed_choices)
    @admin_only()
    async def add(
        self,
        interaction: discord.Interaction,
        feed: int,
        action: Literal["include", "exclude"],
        field: Literal["category", "author", "keyword", "regex"],
        value: str,
    ) -> None:
        """Check the rule (a pattern must compile) and add it to the feed's rules."""
        row = await feed_in_guild(interaction, feed)
        try:
            rule = make_rule(action, field, value)
        except RuleProblem as exc:
            raise UserFacingError(str(exc)) from None

        def add(settings: dict[str, Any]) -> dict[str, Any]:
            filters = list(settings.get("filters") or [])
            if len(filters) >= MAX_RULES:
                raise UserFacingError(f"Feed #{row.id} has {MAX_RULES} rules already; remove one first.")
            return {**settings, "filters": [*filters, rule.to_json()]}

        settings = await change_settings(interaction, row, f"filter add {rule.describe()}", add)
        await interaction.response.send_message(
            truncate_words(f"Feed #{row.id}: rule added. Filters now:\n{describe_rules(settings)}", 2000),
            ephemeral=True,
        )

    @app_commands.command(name="list", description="A feed's filter rules")
    @app_commands.autocomplete(feed=feed_choices)
    @admin_only()
    async def list_(self, interaction: discord.Interaction, feed: int) -> None:
        row = await feed_in_guild(interaction, feed)
        await interaction.response.send_message(
            truncate_words(f"Feed #{row.id}:\n{describe_rules(row.settings)}", 2000), ephemeral=True
        )

    @app_commands.command(name="remove", description="Remove one filter rule (by its number in /feed filter list)")
    @app_commands.autocomplete(feed=feed_choices)
    @admin_only()
    async def remove(
        self, interaction: discord.Interaction, feed: int, number: app_commands.Range[int, 1, MAX_RULES]
    ) -> None:
        row = await feed_in_guild(interaction, feed)

        def remove(settings: dict[str, Any]) -> dict[str, Any]:
            filters = list(settings.get("filters") or [])
            if number > len(filters):
                raise UserFacingError(f"Feed #{row.id} has no rule {number}: `/feed filter list` shows them.")
            del filters[number - 1]
            return {**settings, "filters": filters}

        settings = await change_settings(interaction, row, f"filter remove {number}", remove)
        await interaction.response.send_message(
            truncate_words(f"Feed #{row.id}: rule {number} removed.\n{describe_rules(settings)}", 2000), ephemeral=True
        )

    @app_commands.command(name="clear", description="Remove all of a feed's filter rules")
    @app_commands.autocomplete(feed=feed_choices)
    @admin_only()
    async def clear(self, interaction: discord.Interaction, feed: int) -> None:
        row = await feed_in_guild(interaction, feed)
        await change_settings(interaction, row, "filter clear", lambda s: {**s, "filters": []})
        await interaction.response.send_message(
            f"Feed #{row.id}: no filter rules; every new article is posted.", ephemeral=True
        )


def describe_formats(settings: dict[str, Any]) -> str:
    formats = formats_of(settings)
    if not formats:
        return "The default look (no custom formats)."
    lines = [f"- {field}: `{truncate_words(formats[field], 300)}`" for field in FORMAT_FIELDS if field in formats]
    return "\n".join(lines)


class FormatCommands(app_commands.Group):
    """`/feed format set|show|reset`: a feed's own templates for its posts."""

    def __init__(self, parent: app_commands.Group) -> None:
        super().__init__(
            name="format", description="How a feed's posts look: templates with placeholders", parent=parent
        )

    @app_commands.command(name="set", description="Set one template: {title} {link} {summary} {author} {categories} …")
    @app_commands.describe(
        feed="The feed",
        field="content: message text (forum: the post); embed_*: text channels; forum_title: post/thread title",
        template="{title} {link} {summary} {author} {categories} {published} {image} {feed}; \\n: new line",
    )
    @app_commands.autocomplete(feed=feed_choices)
    @admin_only()
    async def set_(
        self,
        interaction: discord.Interaction,
        feed: int,
        field: Literal["content", "embed_title", "embed_description", "embed_footer", "forum_title"],
        template: str,
    ) -> None:
        """Check the template against Discord's limit for the field, then save it."""
        row = await feed_in_guild(interaction, feed)
        try:
            checked = check_format(field, template)
        except RuleProblem as exc:
            raise UserFacingError(str(exc)) from None

        def set_one(settings: dict[str, Any]) -> dict[str, Any]:
            return {**settings, "formats": {**formats_of(settings), field: checked}}

        settings = await change_settings(interaction, row, f"format set {field}", set_one)
        await interaction.response.send_message(
            truncate_words(
                f"Feed #{row.id}: {field} format saved (`/feed preview feed:{row.id}` shows the result).\n"
                + describe_formats(settings),
                2000,
            ),
            ephemeral=True,
        )

    @app_commands.command(name="show", description="A feed's templates")
    @app_commands.autocomplete(feed=feed_choices)
    @admin_only()
    async def show(self, interaction: discord.Interaction, feed: int) -> None:
        row = await feed_in_guild(interaction, feed)
        await interaction.response.send_message(
            truncate_words(f"Feed #{row.id}:\n{describe_formats(row.settings)}", 2000), ephemeral=True
        )

    @app_commands.command(name="reset", description="Back to the default look (one field, or all)")
    @app_commands.autocomplete(feed=feed_choices)
    @admin_only()
    async def reset(
        self,
        interaction: discord.Interaction,
        feed: int,
        field: Literal["content", "embed_title", "embed_description", "embed_footer", "forum_title"] | None = None,
    ) -> None:
        row = await feed_in_guild(interaction, feed)

        def reset_some(settings: dict[str, Any]) -> dict[str, Any]:
            formats = {k: v for k, v in formats_of(settings).items() if field is not None and k != field}
            return {**settings, "formats": formats}

        settings = await change_settings(interaction, row, f"format reset {field or 'all'}", reset_some)
        await interaction.response.send_message(
            f"Feed #{row.id}: {field or 'every'} format reset.\n{describe_formats(settings)}", ephemeral=True
        )


MAX_CATEGORY_MENTIONS = 25  # categories of one feed with a role of their own


def describe_mentions(settings: dict[str, Any]) -> str:
    mention = settings.get("mention") or {}
    lines = []
    if mention.get("role_id"):
        lines.append(f"- every post pings <@&{mention['role_id']}>")
    for category, role in sorted((mention.get("categories") or {}).items()):
        lines.append(f"- posts in category “{escape_discord_text(category)}” ping <@&{role}>")
    return "\n".join(lines) or "Posts ping nobody."


class MentionCommands(app_commands.Group):
    """`/feed mention set|clear|show`: a role pinged by a feed's posts (all, or one category's)."""

    def __init__(self, parent: app_commands.Group) -> None:
        super().__init__(name="mention", description="Ping a role when a feed posts (opt-in)", parent=parent)

    @app_commands.command(name="set", description="Ping a role with every post of a feed, or with one category's")
    @app_commands.describe(feed="The feed", role="The role to ping", category="Only posts in this category")
    @app_commands.autocomplete(feed=feed_choices)
    @admin_only()
    async def set_(
        self, interaction: discord.Interaction, feed: int, role: discord.Role, category: str | None = None
    ) -> None:
        """Only a role the bot can actually ping is accepted; posts then allow that role's mention alone."""
        row = await feed_in_guild(interaction, feed)
        assert interaction.guild is not None
        if role.is_default():
            raise UserFacingError("Posts can't ping @everyone; make a role for readers who want the news.")
        channel = interaction.guild.get_channel(row.channel_id)
        me = interaction.guild.me
        perms = channel.permissions_for(me) if channel is not None else me.guild_permissions
        if not role.mentionable and not perms.mention_everyone:
            raise UserFacingError(
                f"I can't ping {role.mention}: make it mentionable (Server Settings → Roles), "
                "or give me Mention @everyone, @here and All Roles in that channel."
            )
        # The bot pings for the admin: a role they may not ping themselves there stays unpinged.
        member = interaction.user
        assert isinstance(member, discord.Member)  # admin_only: a server's member
        theirs = channel.permissions_for(member) if channel is not None else member.guild_permissions
        if not role.mentionable and not theirs.mention_everyone:
            raise UserFacingError(
                f"You can't ping {role.mention} in <#{row.channel_id}> yourself (it isn't mentionable and you "
                "lack Mention @everyone, @here and All Roles there), so the feed's posts won't either."
            )
        key = " ".join(category.split()).casefold()[:100] if category else None

        def set_one(settings: dict[str, Any]) -> dict[str, Any]:
            mention = dict(settings.get("mention") or {})
            if key:
                categories = mention.get("categories") or {}
                if key not in categories and len(categories) >= MAX_CATEGORY_MENTIONS:
                    raise UserFacingError(
                        f"Feed #{row.id} pings roles for {MAX_CATEGORY_MENTIONS} categories already; "
                        "clear one first (`/feed mention clear`)."
                    )
                mention["categories"] = {**categories, key: role.id}
            else:
                mention["role_id"] = role.id
            return {**settings, "mention": mention}

        settings = await change_settings(interaction, row, f"mention set {role.id} {key or '*'}", set_one)
        await interaction.response.send_message(
            truncate_words(f"Feed #{row.id}:\n{describe_mentions(settings)}", 2000),
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    @app_commands.command(name="clear", description="Stop pinging (for the feed, or one category)")
    @app_commands.autocomplete(feed=feed_choices)
    @admin_only()
    async def clear(self, interaction: discord.Interaction, feed: int, category: str | None = None) -> None:
        row = await feed_in_guild(interaction, feed)
        key = " ".join(category.split()).casefold() if category else None

        def clear_some(settings: dict[str, Any]) -> dict[str, Any]:
            mention = dict(settings.get("mention") or {})
            if key:
                mention["categories"] = {k: v for k, v in (mention.get("categories") or {}).items() if k != key}
            else:
                mention = {}
            return {**settings, "mention": mention}

        settings = await change_settings(interaction, row, f"mention clear {key or '*'}", clear_some)
        await interaction.response.send_message(
            truncate_words(f"Feed #{row.id}:\n{describe_mentions(settings)}", 2000),
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )


# -- OPML (the /feed import and /feed export commands in cogs/articles.py call these) ------------

IMPORT_CONCURRENCY = 4  # feeds of one import fetched at once


async def import_feeds(
    service: ArticleService,
    interaction: discord.Interaction,
    file: discord.Attachment,
    channel: discord.ForumChannel | discord.TextChannel,
    tags: str | None,
) -> None:
    """Add every feed of an OPML file to one channel (each recorded as it stands: nothing old is posted)."""
    assert interaction.guild is not None
    if file.size > MAX_OPML_BYTES:
        raise UserFacingError(f"That file is over {MAX_OPML_BYTES // 1000} kB; an OPML list of feeds is far smaller.")
    tag_map = parse_tag_map(tags)
    if isinstance(channel, discord.ForumChannel) and channel.flags.require_tag and DEFAULT_TAG_KEY not in tag_map:
        raise UserFacingError(
            f"{channel.mention} requires a tag on every post: give `tags` a default such as `*=News`."
        )
    await interaction.response.defer(ephemeral=True, thinking=True)
    try:
        feeds = await parse_opml_async(await file.read())
    except OpmlProblem as exc:
        raise UserFacingError(str(exc)) from None
    except discord.HTTPException as exc:
        raise UserFacingError(f"Couldn't download the file from Discord ({exc.status}); try again.") from None
    if not feeds:
        raise UserFacingError("The file lists no feeds (no outline with an `xmlUrl`).")
    guild_id = interaction.guild.id
    slots = asyncio.Semaphore(IMPORT_CONCURRENCY)

    async def import_one(entry: OpmlFeed) -> tuple[str, str]:
        name = escape_discord_text(entry.title or redact_url(entry.url))
        try:
            url = validate_feed_url(entry.url)
            async with slots:
                if await bot_of(interaction).store.feeds.find(guild_id, url, channel.id):
                    return "skipped", name
                feed_id, _, _ = await service.add_feed(
                    guild_id=guild_id,
                    url=url,
                    channel_id=channel.id,
                    channel_kind="forum" if isinstance(channel, discord.ForumChannel) else "text",
                    tag_map=tag_map,
                    interval_minutes=None,
                    backfill=0,
                    actor_id=interaction.user.id,
                )
            return "added", f"#{feed_id} {name}"
        except FeedProblem as exc:
            return "failed", f"{name}: {exc}"

    # A few at a time: 50 feeds that each hang until the fetch timeout, one after another, would outlast
    # the interaction's 15 minutes and the admin would never hear back.
    outcomes = await asyncio.gather(*(import_one(entry) for entry in feeds[:MAX_IMPORT]))
    added = [text for kind, text in outcomes if kind == "added"]
    skipped = [text for kind, text in outcomes if kind == "skipped"]
    failed = [text for kind, text in outcomes if kind == "failed"]
    lines = [
        f"Imported into {channel.mention}: {len(added)} added, {len(skipped)} already there, {len(failed)} failed."
    ]
    if len(feeds) > MAX_IMPORT:
        lines.append(f"Only the first {MAX_IMPORT} of {len(feeds)} feeds were read; import the rest separately.")
    if added:
        lines.append("Added (new articles from now on): " + ", ".join(added))
    lines.extend(f"- failed: {line}" for line in failed[:10])
    await interaction.followup.send(truncate_words("\n".join(lines), 2000), ephemeral=True)


async def export_feeds(interaction: discord.Interaction) -> None:
    """The server's feeds as an OPML file, one outline per channel."""
    assert interaction.guild is not None
    bot = bot_of(interaction)
    feeds = await bot.store.feeds.in_guild(interaction.guild.id)
    if not feeds:
        raise UserFacingError("No feeds to export yet: add one with `/feed add` or `/feed import`.")
    groups: dict[int, list[OpmlFeed]] = {}
    for feed in feeds:
        groups.setdefault(feed.channel_id, []).append(OpmlFeed(url=feed.url, title=feed.title or ""))
    named = []
    for channel_id, items in groups.items():
        channel = interaction.guild.get_channel(channel_id)
        named.append((f"#{channel.name}" if channel else f"channel {channel_id}", items))
    data = build_opml(f"{interaction.guild.name} feeds (readersviews)", named, bot.clock.now())
    await interaction.response.send_message(
        f"{len(feeds)} feed(s) in OPML, for feed readers or another bot.",
        file=discord.File(io.BytesIO(data), filename="feeds.opml"),
        ephemeral=True,
    )


# -- options and "From the archives" ---------------------------------------------------------------


def archive_links_on(enabled: bool, now: datetime) -> Any:
    """A settings change turning "From the archives" replies on (for articles posted from now) or off."""

    def change(settings: dict[str, Any]) -> dict[str, Any]:
        if not enabled:
            return {**settings, "archive_links": False}
        if settings.get("archive_links"):
            return settings
        return {**settings, "archive_links": True, "archive_links_since": now.isoformat()}

    return change


class OptionsCommands(app_commands.Group):
    """`/feed options set`: a feed's switches."""

    def __init__(self, parent: app_commands.Group) -> None:
        super().__init__(name="options", description="A feed's switches", parent=parent)

    @app_commands.command(name="set", description="Turn a feed's options on or off")
    @app_commands.describe(
        feed="The feed",
        archive_links="Reply under each new post with up to 3 earlier related articles (“From the archives”)",
        webhook="Post through a channel webhook, under the feed's name and avatar (needs Manage Webhooks)",
        webhook_name="The name posts show with webhook delivery (default: the feed's title)",
        webhook_avatar="An https:// image address for the posts' avatar with webhook delivery",
    )
    @app_commands.autocomplete(feed=feed_choices)
    @admin_only()
    async def set_(
        self,
        interaction: discord.Interaction,
        feed: int,
        archive_links: bool | None = None,
        webhook: bool | None = None,
        webhook_name: app_commands.Range[str, 1, 80] | None = None,
        webhook_avatar: str | None = None,
    ) -> None:
        """Each option given is changed; a webhook without Manage Webhooks is refused with the reason."""
        assert interaction.guild is not None
        row = await feed_in_guild(interaction, feed)
        lines: list[str] = []
        if archive_links is not None:
            change = archive_links_on(archive_links, bot_of(interaction).clock.now())
            await change_settings(interaction, row, f"options archive_links={archive_links}", change)
            lines.append(f"archive links {'on' if archive_links else 'off'}")
        if webhook_avatar is not None:
            policy = AddressPolicy(bot_of(interaction).config.feeds.allowed_networks)
            problem = avatar_url_problem(webhook_avatar, policy)
            if problem:
                raise UserFacingError(problem)
        if webhook or webhook_name is not None or webhook_avatar is not None:
            channel = interaction.guild.get_channel(row.channel_id)
            if webhook and (channel is None or not can_manage_webhooks(channel, interaction.guild.me)):
                lines.append(
                    f"webhook delivery not turned on: I can't manage webhooks in <#{row.channel_id}>, so I keep "
                    "posting as myself. Give me Manage Webhooks there and run this again"
                )
                webhook = None
            updates: dict[str, Any] = {}
            if webhook:
                updates["enabled"] = True
            if webhook_name is not None:
                updates["name"] = display_name(webhook_name)
            if webhook_avatar is not None:
                updates["avatar_url"] = webhook_avatar
            if updates:
                await change_settings(
                    interaction,
                    row,
                    f"options webhook {sorted(updates)}",
                    lambda s: {**s, "webhook": {**(s.get("webhook") or {}), **updates}},
                )
                if webhook:
                    name = updates.get("name") or display_name(row.settings.get("webhook", {}).get("name") or row.title)
                    lines.append(f"webhook delivery on: posts come from “{escape_discord_text(name)}”")
                elif "name" in updates or "avatar_url" in updates:
                    lines.append("webhook name and avatar saved")
        if webhook is False:
            await change_settings(
                interaction,
                row,
                "options webhook off",
                lambda s: {**s, "webhook": {**(s.get("webhook") or {}), "enabled": False}},
            )
            lines.append("webhook delivery off: I post as myself")
        if not lines:
            raise UserFacingError("Name an option to change (archive_links, webhook, webhook_name, webhook_avatar).")
        await interaction.response.send_message(
            truncate_words(f"Feed #{row.id}: " + "; ".join(lines) + ".", 2000), ephemeral=True
        )


async def feeds_with_archive_work(bot: ReadersViewsBot) -> list[FeedRow]:
    """Feeds with a "From the archives" reply still to send (one that failed is retried on the next
    cycle, whether or not the feed has anything else to do)."""
    waiting = []
    for feed in await bot.store.feeds.with_archive_links(bot.tenants.only):
        since_text = feed.settings.get("archive_links_since")
        if since_text and await bot.store.articles.needing_archive(feed.id, datetime.fromisoformat(since_text), 1):
            waiting.append(feed)
    return waiting


async def post_archive_links(bot: ReadersViewsBot, service: ArticleService, feed: FeedRow) -> None:
    """Reply "From the archives" in the threads of a feed's newly posted articles, if the feed chose it.

    Each article is handled once (its state is recorded after the reply); a Discord failure whose
    outcome is unknown leaves it for the next cycle, a refusal gives up on it.
    """
    since_text = feed.settings.get("archive_links_since")
    if not feed.settings.get("archive_links") or not since_text:
        return
    since = datetime.fromisoformat(since_text)
    articles = await bot.store.articles.needing_archive(feed.id, since, ARCHIVE_BATCH)
    if not articles:
        return
    # A reply must not show readers of this channel what a private channel got (a staff-only feed of the
    # same site): only articles posted in this channel or in channels everyone in the server can see.
    readable = {feed.channel_id}
    guild = bot.get_guild(feed.guild_id)
    if guild is not None:
        readable.update(
            channel.id
            for channel in guild.channels
            if isinstance(channel, (discord.TextChannel, discord.ForumChannel))
            and channel.permissions_for(guild.default_role).view_channel
        )
    for article in articles:
        text = await service.archive_reply(feed, article, readable)
        if text is None or article.thread_id is None:
            await bot.store.articles.mark_archive(article.id, "none")
            continue
        thread = bot.get_partial_messageable(
            article.thread_id, guild_id=feed.guild_id, type=discord.ChannelType.public_thread
        )
        try:
            await thread.send(text, allowed_mentions=discord.AllowedMentions.none())
        except (discord.DiscordServerError, TimeoutError, aiohttp.ClientError) as exc:
            log.warning("article %s: archive links not sent yet (%s); will retry", article.id, exc)
            return
        except discord.HTTPException as exc:
            log.info("article %s: Discord refused the archive links (%s); not retrying", article.id, exc)
            await bot.store.articles.mark_archive(article.id, "none")
            continue
        await bot.store.articles.mark_archive(article.id, "done")
