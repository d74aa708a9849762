"""The letters' forms and the Discord facts a letter is made of (who is mentioned, which thread, which server).

Forms are answered statelessly from their custom_id (see `bot.forms`): the byline and `/letter
submit` forms by `cogs.readers_views`, the edit and reject forms by `cogs.editorial`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import discord

from bot.forms import stateless
from bot.letter_states import LetterError
from bot.store.contributions import Contribution, NewContribution

if TYPE_CHECKING:
    from bot.app import ReadersViewsBot

_MENTION = re.compile(r"<@!?(\d+)>")


def mentioned_names(guild: discord.Guild | None, text: str) -> dict[int, str]:
    """Display names for the members a letter mentions, so the site shows names, not ids."""
    names: dict[int, str] = {}
    if guild is None:
        return names
    for match in _MENTION.finditer(text):
        member = guild.get_member(int(match.group(1)))
        if member is not None:
            names[member.id] = member.display_name
    return names


_ROLE_MENTION = re.compile(r"<@&(\d+)>")
_CHANNEL_MENTION = re.compile(r"<#(\d+)>")
MENTION_FETCH_MAX = 10


async def site_names(guild: discord.Guild | None, text: str) -> dict[str, dict[int, str]]:
    """Names for what a letter mentions (members, roles, channels), as keyword arguments for the service.

    Members missing from the cache (no members intent) are fetched, a few at most; roles and channels
    come with the server (channels only if every member can read them).
    """
    names = mentioned_names(guild, text)
    roles: dict[int, str] = {}
    channels: dict[int, str] = {}
    if guild is not None:
        missing = [int(m.group(1)) for m in _MENTION.finditer(text) if int(m.group(1)) not in names]
        for user_id in list(dict.fromkeys(missing))[:MENTION_FETCH_MAX]:
            try:
                member = await guild.fetch_member(user_id)
            except discord.HTTPException:
                continue
            names[user_id] = member.display_name
        for match in _ROLE_MENTION.finditer(text):
            role = guild.get_role(int(match.group(1)))
            if role is not None:
                roles[role.id] = role.name
        for match in _CHANNEL_MENTION.finditer(text):
            channel = guild.get_channel_or_thread(int(match.group(1)))
            if channel is not None and public_channel(guild, channel):
                channels[channel.id] = channel.name
    return {"display_names": names, "role_names": roles, "channel_names": channels}


def public_channel(guild: discord.Guild, channel: discord.abc.GuildChannel | discord.Thread) -> bool:
    """Whether every member can read `channel`: only such a channel's name may go on the public site
    (a staff-only channel's name is not the writer's to publish, and editors see only its id on the card)."""
    if isinstance(channel, discord.Thread) and channel.is_private():
        return False
    return channel.permissions_for(guild.default_role).view_channel


def guild_of(interaction: discord.Interaction) -> int:
    """The server an editor acts in: letters of any other server are out of reach."""
    if interaction.guild_id is None:
        raise LetterError("This only works inside a server.")
    return interaction.guild_id


async def locate(bot: ReadersViewsBot, channel: Any) -> tuple[bool, int | None]:
    """(is this a channel whose replies are recorded, the article it discusses)."""
    channel_id = getattr(channel, "id", 0)
    parent_id = getattr(channel, "parent_id", None)
    article_id = await bot.store.contributions.article_for_thread(channel_id)
    if article_id is not None:
        return True, article_id
    recorded = bot.config.letters.record_channel_ids
    return channel_id in recorded or (parent_id is not None and parent_id in recorded), None


def contribution_from_message(message: discord.Message, article_id: int | None) -> NewContribution:
    assert message.guild is not None
    reference = message.reference
    return NewContribution(
        guild_id=message.guild.id,
        message_id=message.id,
        channel_id=message.channel.id,
        author_id=message.author.id,
        author_name=message.author.display_name,
        content=message.content,
        created_at=message.created_at,
        article_id=article_id,
        reply_to_message_id=reference.message_id if reference is not None else None,
    )


# -- modals ------------------------------------------------------------------------------------


def consent_given(value: str) -> bool:
    return value.strip().casefold() in {"yes", "y", "i agree", "agree", "oui", "ja", "sí", "si"}


def byline_inputs(
    display_name: str,
) -> tuple[discord.ui.TextInput[Any], discord.ui.TextInput[Any], discord.ui.TextInput[Any]]:
    """The byline, location and consent fields every route to publication asks for."""
    byline: discord.ui.TextInput[Any] = discord.ui.TextInput(
        label="Name to print under your letter", custom_id="byline", default=display_name[:80], max_length=80
    )
    location: discord.ui.TextInput[Any] = discord.ui.TextInput(
        label="Location (optional), e.g. Leeds", custom_id="location", required=False, max_length=80
    )
    consent: discord.ui.TextInput[Any] = discord.ui.TextInput(
        label="Type yes to agree to publication",
        custom_id="consent",
        placeholder="yes: publish my letter with this name and the site's disclaimer",
        max_length=20,
    )
    return byline, location, consent


def byline_form(letter_id: int, display_name: str) -> discord.ui.Modal:
    """The writer's printed name, optional location, and explicit consent to publication.

    Answered statelessly (`Editorial.on_interaction`): whether it follows a nomination is read from
    the letter's state on submit.
    """
    modal = discord.ui.Modal(title="Publish as a reader's view", custom_id=f"letters:byline:{letter_id}", timeout=None)
    for item in byline_inputs(display_name):
        modal.add_item(item)
    return stateless(modal)


def edit_form(letter: Contribution) -> discord.ui.Modal:
    """An editor's edit; the custom_id carries the version the editor started from (a later change conflicts)."""
    modal = discord.ui.Modal(
        title=f"Edit letter #{letter.id}", custom_id=f"letters:editmodal:{letter.id}:{letter.version}", timeout=None
    )
    modal.add_item(
        discord.ui.TextInput(
            label="Letter text (the original is kept)",
            custom_id="text",
            style=discord.TextStyle.paragraph,
            default=letter.content[:4000],
            max_length=4000,
        )
    )
    return stateless(modal)


def reject_form(letter: Contribution) -> discord.ui.Modal:
    modal = discord.ui.Modal(
        title=f"Reject letter #{letter.id}",
        custom_id=f"letters:rejectmodal:{letter.id}:{letter.version}",
        timeout=None,
    )
    modal.add_item(
        discord.ui.TextInput(
            label="Reason for the writer (optional)",
            custom_id="reason",
            style=discord.TextStyle.paragraph,
            required=False,
            max_length=1000,
        )
    )
    return stateless(modal)


# The custom_ids of the forms above; forms opened before versions were added have none.
LETTER_FORM = re.compile(r"^letters:(?P<form>byline|editmodal|rejectmodal):(?P<id>\d+)(?::(?P<version>\d+))?$")


def write_form(article_id: int | None, display_name: str) -> discord.ui.Modal:
    """`/letter submit`: the letter, the byline and explicit consent in one form.

    Answered statelessly (`cogs.readers_views`), so two members writing at once never share
    a form, and a letter typed across a restart still arrives.
    """
    modal = discord.ui.Modal(
        title="Write a letter to the editor", custom_id=f"letters:write:{article_id or 0}", timeout=None
    )
    modal.add_item(
        discord.ui.TextInput(label="Your letter", custom_id="text", style=discord.TextStyle.paragraph, max_length=4000)
    )
    for item in byline_inputs(display_name):
        modal.add_item(item)
    return stateless(modal)


WRITE_FORM = re.compile(r"^letters:write:(\d+)$")
