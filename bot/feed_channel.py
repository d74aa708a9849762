"""A feed's Discord channel as the publisher sees it: posts made, found and edited, as the bot or its webhook."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import aiohttp
import discord

from bot.articles import PostPlan, choose_tags
from bot.feed_webhooks import Webhooks
from bot.publisher import Post, Refused, Rejected, ThreadExists, Unknown
from bot.store.articles import ArticleRow
from bot.store.feeds import FeedRow

if TYPE_CHECKING:
    from bot.app import ReadersViewsBot

log = logging.getLogger(__name__)

THREAD_ALREADY_CREATED = 160004  # Discord's code for a second thread on one message


def article_embed(plan: PostPlan, article: ArticleRow) -> discord.Embed:
    """A text-channel post: the article's title, link and summary (the footer marks link-less ones)."""
    embed = discord.Embed(
        title=plan.embed_title or plan.title, url=plan.link or None, description=plan.embed_description
    )
    if plan.author:
        embed.set_author(name=plan.author)
    if plan.image_url:
        embed.set_image(url=plan.image_url)
    if plan.embed_footer:
        embed.set_footer(text=plan.embed_footer)
    if article.published_at:
        embed.timestamp = article.published_at
    return embed


def post_mentions(plan: PostPlan) -> discord.AllowedMentions:
    """Pings allowed in a post: none, or exactly the roles an admin opted in for this feed."""
    if not plan.mention_roles:
        return discord.AllowedMentions.none()
    return discord.AllowedMentions(
        everyone=False, users=False, roles=[discord.Object(role) for role in plan.mention_roles], replied_user=False
    )


def image_embeds(plan: PostPlan) -> list[discord.Embed]:
    """A forum post shows the article's image in an embed of its own (its text stays in the content)."""
    return [discord.Embed().set_image(url=plan.image_url)] if plan.image_url else []


@contextlib.contextmanager
def discord_outcomes(
    refused: tuple[type[discord.HTTPException], ...] = (discord.Forbidden, discord.NotFound),
) -> Iterator[None]:
    """Discord's answers in the publisher's terms (bot.publisher): unknown, refused, rejected, thread exists."""
    try:
        yield
    except discord.DiscordServerError as exc:  # Discord may or may not have done it
        raise Unknown(str(exc)) from exc
    except refused as exc:
        raise Refused(exc.text or str(exc.status)) from exc
    except discord.HTTPException as exc:
        if exc.code == THREAD_ALREADY_CREATED:
            raise ThreadExists(exc.text) from exc
        raise Rejected(exc.text or str(exc)) from exc
    except (TimeoutError, aiohttp.ClientError) as exc:  # timed out or lost the connection: as a 5xx
        raise Unknown(str(exc) or type(exc).__name__) from exc


class DiscordChannel:
    """A feed's forum or text channel, as the publisher's `Channel` protocol."""

    def __init__(
        self,
        bot: ReadersViewsBot,
        feed: FeedRow,
        channel: discord.TextChannel | discord.ForumChannel,
        webhooks: Webhooks,
    ) -> None:
        self.bot = bot
        self.feed = feed
        self.channel = channel
        self.webhooks = webhooks  # a feed may post through a channel webhook under its own name

    @property
    def id(self) -> int:
        return self.channel.id

    @property
    def is_forum(self) -> bool:
        return isinstance(self.channel, discord.ForumChannel)

    async def post(self, plan: PostPlan, article: ArticleRow) -> Post:
        hook = await self.webhooks.poster_for(self.feed, self.channel)  # None: post as the bot
        pings = post_mentions(plan)  # nobody, or only the roles the feed's admins chose
        with discord_outcomes():
            if isinstance(self.channel, discord.ForumChannel):
                created = await (hook or self.channel).create_thread(
                    name=plan.title,
                    content=plan.content,
                    embeds=image_embeds(plan),
                    applied_tags=self._forum_tags(article),
                    allowed_mentions=pings,
                )
                return Post(message_id=created.message.id, thread_id=created.thread.id)
            message = await (hook or self.channel).send(
                content=plan.message or None, embed=article_embed(plan, article), allowed_mentions=pings
            )
            return Post(message_id=message.id, thread_id=None)

    async def make_thread(self, message_id: int, title: str) -> int:
        assert isinstance(self.channel, discord.TextChannel)
        with discord_outcomes(refused=(discord.Forbidden,)):  # a deleted post (404) is that article's problem
            thread = await self.channel.get_partial_message(message_id).create_thread(name=title)
        return thread.id

    async def find_thread(self, message_id: int) -> int | None:
        assert isinstance(self.channel, discord.TextChannel)
        with discord_outcomes(refused=(discord.Forbidden,)):
            message = await self.channel.fetch_message(message_id)
        return message.thread.id if message.thread is not None else None

    def _forum_tags(self, article: ArticleRow) -> list[discord.ForumTag]:
        channel, feed = self.channel, self.feed
        assert isinstance(channel, discord.ForumChannel)
        available = {tag.name: tag.id for tag in channel.available_tags}
        tag_ids = set(choose_tags(article.categories, feed.tag_map, available))
        if not tag_ids and channel.flags.require_tag and channel.available_tags:
            # The forum started requiring a tag after the feed was added without a default: without a
            # tag Discord refuses every post, so take the first one rather than fail them all.
            log.warning("feed %s: %s requires a tag and no category matched; using its first tag", feed.id, channel.id)
            tag_ids = {channel.available_tags[0].id}
        return [tag for tag in channel.available_tags if tag.id in tag_ids]

    async def find_post(self, plan: PostPlan, after: int, is_recorded: Callable[[int], Awaitable[bool]]) -> Post | None:
        """Our post of this article newer than `after`, not already another article's.

        In a forum where the starter message can't be read (no Read Message History), a thread of ours
        with the article's title counts instead: the duplicate is the worse risk.
        """
        channel = self.channel
        # The feeds job may run in a process that does not run this server's shard (bot.claims): its cache
        # then holds neither the server (no `guild.me`) nor its threads, so ask by id and through REST.
        assert self.bot.user is not None  # logged in: the publisher runs after READY
        ours = {self.bot.user.id, *self.webhooks.ids(self.feed)}  # the bot, or its webhook for this feed
        with discord_outcomes():
            try:
                if isinstance(channel, discord.ForumChannel):
                    for thread in await self._active_threads():
                        if thread.owner_id not in ours or thread.id <= after or await is_recorded(thread.id):
                            continue
                        try:
                            starter = thread.starter_message or await thread.fetch_message(thread.id)
                        except discord.NotFound:
                            continue
                        except discord.Forbidden as exc:
                            if thread.name != plan.title:
                                continue
                            log.warning(
                                "feed %s: can't read the starter of thread %s (%s); taking it by its title",
                                self.feed.id,
                                thread.id,
                                exc.text or exc.status,
                            )
                            return Post(message_id=thread.id, thread_id=thread.id)
                        if plan.is_forum_post(starter.content):
                            return Post(message_id=thread.id, thread_id=thread.id)
                    return None
                async for message in channel.history(limit=50):
                    if message.id <= after:
                        break
                    if message.author.id not in ours or not message.embeds:
                        continue
                    embed = message.embeds[0]
                    if plan.is_text_post(embed.url, embed.footer.text) and not await is_recorded(message.id):
                        return Post(message_id=message.id, thread_id=message.thread.id if message.thread else None)
            except discord.DiscordServerError:
                raise
            except discord.HTTPException as exc:
                log.warning("could not check channel %s for an interrupted post: %s", channel.id, exc)
        return None

    async def _active_threads(self) -> list[discord.Thread]:
        """The forum's active threads: from the cache if this process runs the server's shard, else from Discord."""
        channel = self.channel
        if self.bot.get_guild(channel.guild.id) is not None:
            return list(channel.threads)
        return [thread for thread in await channel.guild.active_threads() if thread.parent_id == channel.id]

    async def edit(self, post: Post, plan: PostPlan, article: ArticleRow) -> None:
        channel = self.channel
        hook = await self.webhooks.poster_for(self.feed, channel)  # a webhook's posts are edited through it
        none = discord.AllowedMentions.none()
        with discord_outcomes():
            if isinstance(channel, discord.ForumChannel) and post.thread_id:
                thread = channel.get_thread(post.thread_id) or await self.bot.fetch_channel(post.thread_id)
                if isinstance(thread, discord.Thread):
                    if thread.name != plan.title:
                        await thread.edit(name=plan.title)
                    if hook is not None:
                        await hook.edit_message(
                            post.message_id or thread.id,
                            thread_id=thread.id,
                            content=plan.content,
                            embeds=image_embeds(plan),
                            allowed_mentions=none,
                        )
                    else:
                        await thread.get_partial_message(post.message_id or thread.id).edit(
                            content=plan.content, embeds=image_embeds(plan), allowed_mentions=none
                        )
            elif isinstance(channel, discord.TextChannel):
                # The message text too: a `content` format may show the title, byline or image.
                fields: dict[str, Any] = {"content": plan.message or None, "embed": article_embed(plan, article)}
                if hook is not None:
                    await hook.edit_message(post.message_id, allowed_mentions=none, **fields)
                else:
                    await channel.get_partial_message(post.message_id).edit(allowed_mentions=none, **fields)
                text_thread = channel.guild.get_thread(post.thread_id) if post.thread_id else None
                if text_thread is not None and text_thread.name != plan.title:
                    await text_thread.edit(name=plan.title)
