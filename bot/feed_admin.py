"""What the /feed commands and the poller ask of the store, as one service (cogs never call repositories)."""

from __future__ import annotations

from datetime import datetime

from bot.store import Store
from bot.store.feeds import ArticleRow, FeedRow


def paginate(blocks: list[str], limit: int) -> list[str]:
    """Blocks of text joined into pages of at most `limit` characters, none split (an over-long one is cut)."""
    pages: list[str] = []
    current = ""
    for block in blocks:
        block = block if len(block) <= limit else block[: limit - 1] + "…"
        if current and len(current) + 1 + len(block) > limit:
            pages.append(current)
            current = ""
        current = f"{current}\n{block}" if current else block
    if current or not pages:
        pages.append(current)
    return pages


class FeedAdmin:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def next_due_at(self, guilds: frozenset[int] | None = None) -> datetime | None:
        """When the next poll is due (with `guilds`, counting only those servers' feeds)."""
        return await self.store.feeds.next_due_at(guilds)

    async def in_guild(self, guild_id: int) -> list[FeedRow]:
        return await self.store.feeds.in_guild(guild_id)

    async def get_in_guild(self, guild_id: int, feed_id: int) -> FeedRow | None:
        """The feed if it belongs to this server (another server's feed is not there)."""
        feed = await self.store.feeds.get(feed_id)
        return feed if feed is not None and feed.guild_id == guild_id else None

    async def remove(self, feed_id: int, *, actor_id: int) -> None:
        await self.store.feeds.remove(feed_id, actor_id=actor_id)

    async def pause(self, feed_id: int, *, actor_id: int) -> None:
        await self.store.feeds.set_enabled(feed_id, False, reason="paused by an admin", actor_id=actor_id)

    async def resume(self, feed_id: int, *, actor_id: int) -> int:
        """Poll the feed again; its failed articles (and given-up threads) are retried. Returns articles retried."""
        await self.store.feeds.set_enabled(feed_id, True, reason=None, actor_id=actor_id)
        return await self.store.articles.reset_failed(feed_id)

    async def counts(self, feed_id: int) -> dict[str, int]:
        return await self.store.articles.counts(feed_id)

    async def find_article(self, feed_id: int, key: str) -> ArticleRow | None:
        return await self.store.articles.find(feed_id, key)
