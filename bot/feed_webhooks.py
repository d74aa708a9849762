"""Delivery of a feed's posts through a channel webhook, under the feed's own name and avatar.

Opt-in per feed (`/feed options set webhook:true`). The Articles cog asks `poster_for` what to
post with: the channel itself, or a `WebhookPoster` offering the same calls (`create_thread` for a
forum post, `send` for a text-channel message, `edit_message`). Without Manage Webhooks the feed
says so once and posts as the bot. The webhook's token is never stored: the bot's own webhook in
the channel is looked up (and made once) after each start.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord

from bot.site.base import redact_url
from bot.store.feeds import FeedRow

if TYPE_CHECKING:
    from bot.app import ReadersViewsBot

log = logging.getLogger(__name__)

WEBHOOK_NAME = "readersviews"
_BANNED_IN_NAMES = re.compile(r"clyde|discord", re.I)  # Discord refuses webhook names containing these


def display_name(name: str | None) -> str:
    """A name Discord accepts for a webhook message: 1-80 characters without "clyde" or "discord"."""
    cleaned = " ".join(_BANNED_IN_NAMES.sub("", name or "").split())[:80].strip()
    return cleaned or WEBHOOK_NAME


@dataclass(frozen=True)
class PostedThread:
    """What a forum post made through a webhook gives back (as `ForumChannel.create_thread` does)."""

    thread: discord.Object
    message: discord.Message


class WebhookPoster:
    """Posts a feed's articles through a channel webhook with the feed's name and avatar."""

    def __init__(self, webhook: discord.Webhook, name: str, avatar_url: str | None) -> None:
        self.webhook = webhook
        self.name = name
        self.avatar_url = avatar_url

    async def create_thread(
        self,
        *,
        name: str,
        content: str,
        embeds: list[discord.Embed],
        applied_tags: list[discord.ForumTag],
        allowed_mentions: discord.AllowedMentions,
    ) -> PostedThread:
        message = await self.webhook.send(
            content=content,
            embeds=embeds,
            thread_name=name,
            applied_tags=applied_tags,
            allowed_mentions=allowed_mentions,
            username=self.name,
            avatar_url=self.avatar_url or discord.utils.MISSING,
            wait=True,
        )
        return PostedThread(thread=discord.Object(message.channel.id), message=message)

    async def send(
        self, *, content: str | None, embed: discord.Embed, allowed_mentions: discord.AllowedMentions
    ) -> discord.Message:
        return await self.webhook.send(
            content=content or discord.utils.MISSING,
            embed=embed,
            allowed_mentions=allowed_mentions,
            username=self.name,
            avatar_url=self.avatar_url or discord.utils.MISSING,
            wait=True,
        )

    async def edit_message(self, message_id: int, *, thread_id: int | None = None, **fields: Any) -> None:
        thread = discord.Object(thread_id) if thread_id else discord.utils.MISSING
        await self.webhook.edit_message(message_id, thread=thread, **fields)


class Webhooks:
    """The bot's webhook per channel, found or made on first use (kept for the process's life)."""

    def __init__(self, bot: ReadersViewsBot) -> None:
        self.bot = bot
        self._by_channel: dict[int, discord.Webhook] = {}

    def ids(self, feed: FeedRow) -> set[int]:
        """Ids a post of this feed may be authored by besides the bot (for finding an interrupted post)."""
        ids = {w.id for w in self._by_channel.values() if w.channel_id == feed.channel_id}
        stored = (feed.settings.get("webhook") or {}).get("id")
        if stored:
            ids.add(int(stored))
        return ids

    async def poster_for(
        self, feed: FeedRow, channel: discord.TextChannel | discord.ForumChannel
    ) -> WebhookPoster | None:
        """A webhook poster if the feed chose webhook delivery and it is possible; None: post as the bot."""
        options = feed.settings.get("webhook") or {}
        if not options.get("enabled"):
            return None
        webhook = self._by_channel.get(channel.id)
        if webhook is None:
            try:
                webhook = await self._find_or_make(channel)
            except discord.Forbidden:
                await self._give_up(feed, channel)
                return None
            except discord.HTTPException as exc:  # Discord failing: post as the bot this time
                log.warning("feed %s: can't get a webhook in %s (%s); posting as the bot", feed.id, channel.id, exc)
                return None
            self._by_channel[channel.id] = webhook
            if options.get("id") != webhook.id:
                await self.bot.store.feeds.update_settings(
                    feed.id,
                    lambda s: {**s, "webhook": {**(s.get("webhook") or {}), "id": webhook.id}},
                    actor_id=None,
                    what="webhook found",
                )
        name = display_name(options.get("name") or feed.title)
        return WebhookPoster(webhook, name, options.get("avatar_url"))

    async def _find_or_make(self, channel: discord.TextChannel | discord.ForumChannel) -> discord.Webhook:
        me = self.bot.user
        for webhook in await channel.webhooks():
            if webhook.token and webhook.user is not None and me is not None and webhook.user.id == me.id:
                return webhook
        return await channel.create_webhook(name=WEBHOOK_NAME, reason="readersviews: feed posts with the feed's name")

    async def _give_up(self, feed: FeedRow, channel: discord.abc.GuildChannel) -> None:
        """Without Manage Webhooks: say so once, and post as the bot from now on."""
        await self.bot.store.feeds.update_settings(
            feed.id,
            lambda s: {**s, "webhook": {**(s.get("webhook") or {}), "enabled": False}},
            actor_id=None,
            what="webhook off: Manage Webhooks missing",
        )
        await self.bot.alert(
            feed.guild_id,
            f"Feed {redact_url(feed.url)}: I can't manage webhooks in <#{channel.id}>, so I post its articles "
            "as myself. Give me Manage Webhooks there, then `/feed options set webhook:true` again.",
        )


def can_manage_webhooks(channel: discord.abc.GuildChannel, me: discord.Member) -> bool:
    return channel.permissions_for(me).manage_webhooks
