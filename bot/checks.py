"""Reusable permission checks for app commands and components.

Admin checks also set `default_permissions`, so Discord hides the command from members who could
never use it. Editor and organizer roles are per-server settings, so those are checked at run time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import discord
from discord import app_commands

from bot.errors import NotPermitted, SetupRequired
from bot.store.settings import setup_option

if TYPE_CHECKING:
    from bot.app import ReadersViewsBot

T = TypeVar("T")


def is_admin_member(member: discord.Member | discord.User) -> bool:
    return isinstance(member, discord.Member) and (
        member.guild_permissions.manage_guild or member.guild_permissions.administrator
    )


async def has_role_setting(interaction: discord.Interaction, key: str, what: str) -> bool:
    """True if the member has the role stored under `key` (admins always pass)."""
    member = interaction.user
    if interaction.guild is None or not isinstance(member, discord.Member):
        raise app_commands.NoPrivateMessage()
    if is_admin_member(member):
        return True
    bot: ReadersViewsBot = interaction.client  # type: ignore[assignment]
    role_id = await bot.store.settings.get(interaction.guild.id, key)
    if role_id == interaction.guild.id:
        # The @everyone role (seeded from the config, say) would let every member pass.
        role_id = None
    if role_id is None:
        raise SetupRequired(
            f"Only {what}s can do this, and no {what} role is set yet: an admin can set one with "
            f"`/readersviews setup {setup_option(key)}:`."
        )
    if any(role.id == role_id for role in member.roles):
        return True
    raise NotPermitted(f"Only members with the {what} role (<@&{role_id}>) can do this.")


def member_can_post(member: discord.Member | discord.User, channel: Any) -> bool:
    """Whether the member may post in `channel` themselves: what the bot posts for a member (a statement)
    must not reach a channel the member could not write in (a staff-only or announcements channel)."""
    if not isinstance(member, discord.Member) or not hasattr(channel, "permissions_for"):
        return False
    allowed = channel.permissions_for(member)
    send = allowed.send_messages_in_threads if isinstance(channel, discord.Thread) else allowed.send_messages
    return bool(allowed.view_channel and send)


def member_can_see_channel(interaction: discord.Interaction, channel_id: int | None) -> bool:
    """Whether the member can see a channel of the interaction's server (one the bot no longer knows: yes).

    An object reached by an id in a custom_id (forgeable) is checked against where it lives, not only
    against its server: a statement in a staff-only channel is not for every member of the server."""
    guild, member = interaction.guild, interaction.user
    channel = guild.get_channel_or_thread(channel_id) if guild is not None and channel_id else None
    if channel is None:
        return True
    return isinstance(member, discord.Member) and channel.permissions_for(member).view_channel


async def ensure_editor(interaction: discord.Interaction) -> bool:
    return await has_role_setting(interaction, "editor_role_id", "editor")


async def ensure_organizer(interaction: discord.Interaction) -> bool:
    return await has_role_setting(interaction, "organizer_role_id", "organizer")


async def ensure_admin(interaction: discord.Interaction) -> bool:
    if interaction.guild is None:
        raise app_commands.NoPrivateMessage()
    if is_admin_member(interaction.user):
        return True
    raise NotPermitted("Only server admins (Manage Server permission) can do this.")


async def may(check: Callable[[discord.Interaction], Awaitable[bool]], interaction: discord.Interaction) -> bool:
    """Whether `check` lets this member through, without raising: for autocomplete, which discord.py
    runs without the command's checks (a member who may not use a command gets no choices from it)."""
    try:
        return await check(interaction)
    except app_commands.CheckFailure:
        return False


def admin_only() -> Callable[[T], T]:
    """Command check: Manage Server; also hides the command from others by default."""

    def decorator(func: Any) -> Any:
        func = app_commands.default_permissions(manage_guild=True)(func)
        func = app_commands.guild_only()(func)
        return app_commands.check(ensure_admin)(func)

    return decorator


def editor_only() -> Callable[[T], T]:
    def decorator(func: Any) -> Any:
        return app_commands.check(ensure_editor)(app_commands.guild_only()(func))

    return decorator


def organizer_only() -> Callable[[T], T]:
    def decorator(func: Any) -> Any:
        return app_commands.check(ensure_organizer)(app_commands.guild_only()(func))

    return decorator
