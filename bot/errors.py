"""One error policy for every interaction: a short ephemeral sentence to the user, the traceback to the log.

Domain errors (`LetterError`, `StatementError`, `FeedProblem`) derive from `UserFacingError`: their
message is written for the member and shown as is. Everything else is unexpected: the member reads
one generic sentence and the log gets the traceback, once. `answer_error` is the single place that
decides; the command tree (`on_app_command_error`), persistent buttons (`DynamicItem` callbacks via
`answers_errors`), forms answered in `on_interaction`, and views (`PolicyView.on_error`) all call it.
"""

from __future__ import annotations

import functools
import io
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

import discord
from discord import app_commands

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Coroutine[Any, Any, None]])

UNEXPECTED = "Something went wrong on our side; it has been logged for the operator."
KEPT = "\nWhat you typed is attached, to paste when you try again."


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


def describe_error(error: BaseException) -> tuple[str, bool]:
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
    return UNEXPECTED, True


def _what(interaction: discord.Interaction) -> str:
    """What the member used, for the log: a command's name or a component's / form's custom_id."""
    if interaction.command is not None:
        return f"command {interaction.command.qualified_name}"
    data: Any = interaction.data or {}
    custom_id = data.get("custom_id") if isinstance(data, dict) else None
    return f"component {custom_id}" if custom_id else f"interaction type {interaction.type}"


def with_typed(text: str, typed: str | None) -> tuple[str, dict[str, Any]]:
    """A refusal's sentence and, if the member typed something into the refused form, that text back as a
    file: a form keeps nothing once it closes, and a letter or statement can be longer than one message."""
    if not isinstance(typed, str) or not typed.strip():
        return text, {}
    data = typed.encode("utf-8", "replace")  # a modified client may send lone surrogates
    return text[: 2000 - len(KEPT)] + KEPT, {"file": discord.File(io.BytesIO(data), filename="your-text.txt")}


async def answer_error(interaction: discord.Interaction, error: BaseException, *, typed: str | None = None) -> None:
    """The error policy: tell the member in one ephemeral sentence; log the unexpected (once, here).

    `typed`: what the member wrote in the form that failed, given back to them (see `with_typed`).
    """
    text, loggable = describe_error(error)
    if loggable:
        log.error("%s failed for user %s", _what(interaction), interaction.user.id, exc_info=error)
    text, kwargs = with_typed(text, typed)
    try:
        await send_ephemeral(interaction, text, **kwargs)
    except discord.HTTPException:
        log.warning("could not tell user %s about an error (interaction expired?)", interaction.user.id)


async def on_app_command_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
    """`CommandTree.on_error`: slash commands and context menus."""
    await answer_error(interaction, error)


def answers_errors(func: F) -> F:
    """For callbacks discord.py would only log (DynamicItem callbacks, `on_interaction` form handlers).

    The wrapped coroutine takes the interaction as its first argument after `self`.
    """

    @functools.wraps(func)
    async def wrapper(self: Any, interaction: discord.Interaction, *args: Any, **kwargs: Any) -> None:
        try:
            await func(self, interaction, *args, **kwargs)
        except Exception as error:
            await answer_error(interaction, error)

    return cast(F, wrapper)


class PolicyView(discord.ui.View):
    """A view whose items' failures go to the error policy instead of discord.py's log line."""

    async def on_error(  # type: ignore[override]
        self, interaction: discord.Interaction, error: Exception, item: discord.ui.Item[Any], /
    ) -> None:
        await answer_error(interaction, error)
