"""One error policy for app commands: a short ephemeral sentence to the user, the traceback to the log."""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands

log = logging.getLogger(__name__)


class UserFacingError(Exception):
    """An expected failure whose message is written for the member who caused it."""


class SetupRequired(app_commands.CheckFailure):
    """A command needs a per-server setting that nobody has made yet."""


class NotPermitted(app_commands.CheckFailure):
    """The member lacks the role or permission a command needs."""


async def send_ephemeral(interaction: discord.Interaction, text: str, **kwargs: Any) -> None:
    """Answer ephemerally whether or not the interaction was already responded to."""
    kwargs.setdefault("allowed_mentions", discord.AllowedMentions.none())
    if interaction.response.is_done():
        await interaction.followup.send(text, ephemeral=True, **kwargs)
    else:
        await interaction.response.send_message(text, ephemeral=True, **kwargs)


def describe_error(error: Exception) -> tuple[str, bool]:
    """(what the user sees, whether the traceback belongs in the log)."""
    original = getattr(error, "original", None) or error
    if isinstance(original, UserFacingError):
        return str(original), False
    if isinstance(error, (SetupRequired, NotPermitted)):
        return str(error), False
    if isinstance(error, app_commands.NoPrivateMessage):
        return "This command only works inside a server.", False
    if isinstance(error, app_commands.MissingPermissions):
        missing = ", ".join(p.replace("_", " ") for p in error.missing_permissions)
        return f"You need the {missing} permission to use this.", False
    if isinstance(error, app_commands.BotMissingPermissions):
        missing = ", ".join(p.replace("_", " ") for p in error.missing_permissions)
        return f"I'm missing the {missing} permission here; ask an admin to grant it.", False
    if isinstance(error, app_commands.CommandOnCooldown):
        return f"Slow down: try again in {error.retry_after:.0f} s.", False
    if isinstance(error, app_commands.CheckFailure):
        return "You can't use this command here.", False
    if isinstance(original, discord.Forbidden):
        return "Discord refused: I'm missing a permission for that. An admin can check my role.", True
    return "Something went wrong on our side; it has been logged for the operator.", True


async def on_app_command_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
    text, loggable = describe_error(error)
    if loggable:
        command = interaction.command.qualified_name if interaction.command else "?"
        log.error("command %s failed for user %s", command, interaction.user.id, exc_info=error)
    try:
        await send_ephemeral(interaction, text)
    except discord.HTTPException:
        log.warning("could not tell user %s about an error (interaction expired?)", interaction.user.id)
