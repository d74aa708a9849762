"""Which servers this bot serves (`discord.allowed_guild_ids`), enforced where Discord's events enter.

An operator runs the bot for named servers; anyone who finds its invite link can add it to others.
In a server that is not on the list, the bot says once that it isn't enabled there and does nothing
else: its interactions are answered with one short refusal before any command, button or form
handler sees them, and its messages are not read. The gate sits on discord.py's parsers (as
`bot.pacing` sits on its HTTP client) so that no handler, present or future, can forget the check.
With the list empty the bot serves every server, as before, and says so at start-up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import discord

from bot.discord_internals import connection_state, gateway_parsers

if TYPE_CHECKING:
    from bot.app import ReadersViewsBot

log = logging.getLogger(__name__)

NOT_ENABLED = (
    "readersviews isn't enabled in this server, so it does nothing here. "
    "The bot's operator decides which servers it serves (`discord.allowed_guild_ids`)."
)
NOTICE = (
    "👋 readersviews was added to this server, but its operator hasn't enabled it here, so it will do "
    "nothing: no feeds, letters or statements. If this server should use it, ask the bot's operator to "
    "add this server's id ({guild_id}) to `discord.allowed_guild_ids`; otherwise an admin can remove it."
)
NOTICE_KEY = "guild_notice:{guild_id}"
OPEN_WARNING = (
    "discord.allowed_guild_ids is empty: the bot serves every server it is added to. List your servers' ids "
    "there, and untick Public Bot in the developer portal (Bot page) so only you can add it"
)
# Events read from other servers' channels; dropped before discord.py parses them.
GATED_MESSAGE_EVENTS = ("MESSAGE_CREATE", "MESSAGE_UPDATE", "MESSAGE_DELETE", "MESSAGE_DELETE_BULK")
AUTOCOMPLETE = 4


class Tenants:
    """The allow-list, and the gate that keeps the bot out of every other server."""

    def __init__(self, allowed: Iterable[int]) -> None:
        self.allowed = frozenset(allowed)
        self.refused = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def open(self) -> bool:
        """True if no list is configured: every server is served."""
        return not self.allowed

    @property
    def only(self) -> frozenset[int] | None:
        """The served servers' ids for a query's filter, or None when every server is served."""
        return None if self.open else self.allowed

    def serves(self, guild_id: int | None) -> bool:
        """Whether the bot works for this server (None: a DM, which belongs to no server)."""
        return self.open or guild_id is None or guild_id in self.allowed

    def install(self, bot: ReadersViewsBot) -> None:
        """Put the gate on discord.py's parsers for interactions and messages."""
        if self.open:
            return
        state = connection_state(bot)
        parsers = gateway_parsers(bot)
        interactions = parsers["INTERACTION_CREATE"]

        def interaction_create(data: Any) -> None:
            if self.serves(_guild_id(data)):
                interactions(data)
            else:
                self.refused += 1
                self._spawn(self._refuse(discord.Interaction(data=data, state=state)))

        parsers["INTERACTION_CREATE"] = interaction_create
        for event in GATED_MESSAGE_EVENTS:
            parsers[event] = self._gated(parsers[event])

    def _gated(self, parse: Callable[[Any], None]) -> Callable[[Any], None]:
        def gated(data: Any) -> None:
            if self.serves(_guild_id(data)):
                parse(data)

        return gated

    def _spawn(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refuse(self, interaction: discord.Interaction) -> None:
        log.info("refused an interaction from user %s in server %s (not in discord.allowed_guild_ids)",
                 interaction.user.id, interaction.guild_id)  # fmt: skip
        try:
            if interaction.type.value == AUTOCOMPLETE:
                await interaction.response.autocomplete([])
            else:
                await interaction.response.send_message(
                    NOT_ENABLED, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
                )
        except discord.HTTPException as exc:
            log.info("could not refuse interaction %s: %s", interaction.id, exc)

    async def announce(self, bot: ReadersViewsBot, guild: discord.Guild) -> None:
        """Say once, in a server the bot doesn't serve, that it isn't enabled there (remembered in the DB)."""
        if self.serves(guild.id):
            return
        key = NOTICE_KEY.format(guild_id=guild.id)
        if await bot.store.meta.get(key) is not None:
            return
        log.warning("server %s (%s) is not in discord.allowed_guild_ids: doing nothing there", guild.id, guild.name)
        await bot.store.meta.set(key, "told")  # before sending: a failure must not make it repeat at every start
        channel = notice_channel(guild)
        if channel is None:
            log.info("server %s: nowhere to say that the bot isn't enabled there", guild.id)
            return
        try:
            await channel.send(NOTICE.format(guild_id=guild.id), allowed_mentions=discord.AllowedMentions.none())
        except discord.HTTPException as exc:
            log.info("server %s: could not say that the bot isn't enabled there: %s", guild.id, exc)


def notice_channel(guild: discord.Guild) -> discord.TextChannel | None:
    """The server's system channel, else its first text channel, where the bot may post."""
    me = guild.me
    candidates = [guild.system_channel] if guild.system_channel else []
    candidates += sorted(guild.text_channels, key=lambda c: c.position)
    for channel in candidates:
        if channel is not None and me is not None and channel.permissions_for(me).send_messages:
            return channel
    return None


def _guild_id(data: Any) -> int | None:
    value = data.get("guild_id") if isinstance(data, dict) else None
    return int(value) if value else None
