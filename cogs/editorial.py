"""Editors' side of readers' views: the review queue, nominations with the writer's consent, digests.

Queue buttons are `DynamicItem`s (`letters:approve:<id>:<version>`, `letters:edit:<id>` ...): every
click rebuilds its state from the database, so they keep working after a restart. Approve carries
the version its card showed, so a letter that changed since is never approved unseen. The shared
pieces members see (the byline modal, the consent buttons) live here too, so `cogs.readers_views`
can import them.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.checks import editor_only, ensure_editor
from bot.errors import answer_error, answers_errors, send_ephemeral
from bot.forms import stateless, submitted_form
from bot.letters import (
    STATE_LABELS,
    Conflict,
    LetterError,
    LetterService,
    conflict_text,
    public_url,
    state_label,
    with_site_editors,
)
from bot.render import escape_discord_text, inert_text, masked_link, neutralise_mentions, reveal_links, truncate_words
from bot.site.base import RemoteRef
from bot.store.contributions import ArticleRef, Contribution, NewContribution
from bot.store.outbox import OutboxRow, SiteIncident
from cogs.letter_notices import NoticeSender, SiteStatusChecker

if TYPE_CHECKING:
    from bot.app import ReadersViewsBot

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()
STATE_COLOURS = {
    "submitted": discord.Colour.blurple(),
    "approved": discord.Colour.green(),
    "published": discord.Colour.dark_green(),
    "rejected": discord.Colour.red(),
    "retracted": discord.Colour.dark_red(),
    "withdrawn": discord.Colour.light_grey(),
}
_MENTION = re.compile(r"<@!?(\d+)>")


def jump_url(guild_id: int, channel_id: int, message_id: int) -> str:
    return f"https://discord.com/channels/{guild_id}/{channel_id}/{message_id}"


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
    come with the server.
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
            if channel is not None:
                channels[channel.id] = channel.name
    return {"display_names": names, "role_names": roles, "channel_names": channels}


def guild_of(interaction: discord.Interaction) -> int:
    """The server an editor acts in: letters of any other server are out of reach."""
    if interaction.guild_id is None:
        raise LetterError("This only works inside a server.")
    return interaction.guild_id


def no_review_channel_text() -> str:
    return "No review channel is set yet: an admin can choose one with `/readersviews setup review_channel:`."


def editorial(interaction: discord.Interaction) -> Editorial:
    """The loaded Editorial cog (by name: `load_extension` may have imported this module afresh)."""
    cog = interaction.client.get_cog("Editorial")  # type: ignore[attr-defined]
    if cog is None:
        raise LetterError("Letters are not available right now: the editorial module isn't loaded.")
    return cog  # type: ignore[no-any-return]


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


# -- persistent buttons ----------------------------------------------------------------------------


BUTTONS = {
    "approve": ("Approve", discord.ButtonStyle.success),
    "edit": ("Edit", discord.ButtonStyle.secondary),
    "reject": ("Reject", discord.ButtonStyle.danger),
    "retract": ("Retract", discord.ButtonStyle.danger),
    "retractok": ("Yes, take it down", discord.ButtonStyle.danger),
}


class LetterButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"letters:(?P<action>approve|edit|reject|retract|retractok):(?P<id>\d+)(?::(?P<version>\d+))?",
):
    """A review-queue button; the letter is read from the database on every click.

    `version` (Approve only) is the letter's version the card showed; cards posted before it was
    added have none, and such a click refreshes the card instead of approving.
    """

    def __init__(self, action: str, letter_id: int, version: int | None = None) -> None:
        label, style = BUTTONS[action]
        custom_id = f"letters:{action}:{letter_id}" + (f":{version}" if version is not None else "")
        super().__init__(discord.ui.Button(label=label, style=style, custom_id=custom_id))
        self.action = action
        self.letter_id = letter_id
        self.version = version

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> LetterButton:
        version = match["version"]
        return cls(match["action"], int(match["id"]), int(version) if version is not None else None)

    @answers_errors
    async def callback(self, interaction: discord.Interaction) -> None:
        await editorial(interaction).on_button(interaction, self.action, self.letter_id, self.version)


class ConsentButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"letters:consent:(?P<id>\d+):(?P<answer>agree|decline)"
):
    """Agree / Decline under a nomination: only the reply's writer may answer."""

    def __init__(self, letter_id: int, answer: str) -> None:
        agree = answer == "agree"
        super().__init__(
            discord.ui.Button(
                label="Agree" if agree else "Decline",
                style=discord.ButtonStyle.success if agree else discord.ButtonStyle.secondary,
                custom_id=f"letters:consent:{letter_id}:{answer}",
            )
        )
        self.letter_id = letter_id
        self.answer = answer

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ConsentButton:
        return cls(int(match["id"]), match["answer"])

    @answers_errors
    async def callback(self, interaction: discord.Interaction) -> None:
        await editorial(interaction).on_consent(interaction, self.letter_id, self.answer)


DYNAMIC_ITEMS = (LetterButton, ConsentButton)


def queue_view(letter: Contribution) -> discord.ui.View | None:
    view = discord.ui.View(timeout=None)
    if letter.state == "submitted":
        view.add_item(LetterButton("approve", letter.id, letter.version))
        for action in ("edit", "reject"):
            view.add_item(LetterButton(action, letter.id))
    elif letter.state in ("approved", "published"):
        view.add_item(LetterButton("edit", letter.id))
        view.add_item(LetterButton("retract", letter.id))
    return view if view.children else None


def consent_view(letter_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(ConsentButton(letter_id, "agree"))
    view.add_item(ConsentButton(letter_id, "decline"))
    return view


# Discord's embed limits: the whole embed (title, description, field names and values, footer,
# author) at most 6000 characters, the description 4096, a field value 1024.
EMBED_TOTAL_MAX = 6000
DESCRIPTION_MAX = 4000
SHORTENED = "\n*(shortened to fit the card: Edit shows the whole letter)*"


def _field(text: str, limit: int = 1000) -> str:
    return truncate_words(text, limit) or "—"


def fit_embed(embed: discord.Embed, limit: int = EMBED_TOTAL_MAX) -> discord.Embed:
    """Shorten the letter text, then the longest fields, until the whole card is within Discord's limit."""
    excess = len(embed) - limit
    description = embed.description or ""
    if excess > 0 and description:
        keep = max(len(description) - excess - len(SHORTENED), 200)
        embed.description = truncate_words(description, keep) + SHORTENED
    while (excess := len(embed) - limit) > 0 and embed.fields:
        index, longest = max(enumerate(embed.fields), key=lambda pair: len(pair[1].value or ""))
        value = longest.value or ""
        if len(value) <= 1:
            break
        embed.set_field_at(
            index, name=longest.name or "—", value=_field(value, max(len(value) - excess, 1)), inline=longest.inline
        )
    return embed


def queue_embed(
    letter: Contribution, article: ArticleRef | None, parent: Contribution | None, *, site_waiting: str | None = None
) -> discord.Embed:
    """The review card: always the letter's current state, who decided, and where it lives.

    `site_waiting`: the site is refusing deliveries (an outbox incident), said on approved letters.
    """
    label = state_label(letter)
    if site_waiting and letter.state == "approved":
        label = "approved, waiting for the site"
    embed = discord.Embed(
        title=f"Letter #{letter.id} · {label}",
        description=truncate_words(neutralise_mentions(reveal_links(letter.content)), DESCRIPTION_MAX) or "(empty)",
        colour=STATE_COLOURS.get(letter.state, discord.Colour.default()),
    )
    embed.add_field(name="Writer", value=_field(f"<@{letter.author_id}> ({escape_discord_text(letter.author_name)})"))
    byline = escape_discord_text(letter.byline or letter.author_name)
    if letter.location:
        byline += f", {escape_discord_text(letter.location)}"
    embed.add_field(name="Byline", value=_field(byline))
    if article is not None:
        title = inert_text(truncate_words(article.title, 200))
        embed.add_field(name="Article", value=_field(masked_link(title, article.link)), inline=False)
    if letter.message_id:
        embed.add_field(
            name="Original", value=jump_url(letter.guild_id, letter.channel_id, letter.message_id), inline=False
        )
    if letter.reply_to_message_id:
        where = parent.channel_id if parent is not None else letter.channel_id
        label = f"letter #{parent.id}" if parent is not None and parent.state != "recorded" else "a message"
        url = jump_url(letter.guild_id, where, letter.reply_to_message_id)
        embed.add_field(name="Replies to", value=_field(f"{label}: {url}"), inline=False)
    flags = "\n".join(f"• {escape_discord_text(flag)}" for flag in letter.flags) or "none"
    embed.add_field(name="Screening", value=_field(flags), inline=False)
    if letter.reviewer_id and letter.state not in ("submitted", "nominated"):
        when = f" {discord.utils.format_dt(letter.decided_at, 'R')}" if letter.decided_at else ""
        verb = {"published": "approved by", "withdrawn": "reviewed by"}.get(letter.state, f"{letter.state} by")
        embed.add_field(name="Decision", value=_field(f"{verb} <@{letter.reviewer_id}>{when}"), inline=False)
    if letter.review_note:
        embed.add_field(name="Reason given", value=_field(escape_discord_text(letter.review_note)), inline=False)
    if letter.original_content is not None:
        embed.add_field(name="Edited", value="lightly edited by an editor (the writer's original is kept)")
    site_url = public_url(letter)
    if site_url:
        embed.add_field(name="On the site", value=_field(site_url), inline=False)
    elif with_site_editors(letter):
        embed.add_field(
            name="On the site", value="sent to the site's editors; not public until they publish it", inline=False
        )
    if site_waiting and letter.state == "approved":
        embed.add_field(name="Waiting for the site", value=_field(escape_discord_text(site_waiting)), inline=False)
    if letter.deleted_at is not None:
        embed.add_field(name="Deleted on Discord", value=discord.utils.format_dt(letter.deleted_at, "R"))
    return fit_embed(embed)


class ReviewQueue:
    """Posts and refreshes the queue messages in a server's review channel."""

    def __init__(self, bot: ReadersViewsBot) -> None:
        self.bot = bot

    async def channel(self, guild_id: int) -> discord.abc.Messageable | None:
        channel_id = await self.bot.store.settings.get(guild_id, "review_channel_id")
        channel = self.bot.get_channel(channel_id) if channel_id else None
        return channel if isinstance(channel, discord.abc.Messageable) else None

    async def render(self, letter: Contribution) -> tuple[discord.Embed, discord.ui.View | None]:
        repo = self.bot.store.contributions
        article = await repo.article(letter.article_id) if letter.article_id else None
        parent = await repo.by_message(letter.reply_to_message_id) if letter.reply_to_message_id else None
        waiting = None
        if letter.state == "approved":
            incident = await self.bot.outbox.incidents.get()
            if incident is not None and incident.open:
                waiting = f"deliveries are paused until the site accepts them again ({incident.reason})"
        return queue_embed(letter, article, parent, site_waiting=waiting), queue_view(letter)

    async def post(self, letter: Contribution) -> bool:
        """Put a submitted letter in the queue; False if there is no review channel."""
        channel = await self.channel(letter.guild_id)
        if channel is None:
            return False
        embed, view = await self.render(letter)
        kwargs: dict[str, Any] = {"embed": embed, "allowed_mentions": NO_MENTIONS}
        if view is not None:
            kwargs["view"] = view
        try:
            message = await channel.send(**kwargs)
        except discord.HTTPException as exc:
            log.warning("could not post letter #%s to the review channel: %s", letter.id, exc)
            await self.bot.alert(letter.guild_id, f"I couldn't post letter #{letter.id} to the review channel: {exc}")
            return False
        await self.bot.store.contributions.set_review_message(letter.id, message.channel.id, message.id)
        return True

    async def refresh(self, letter: Contribution) -> None:
        """Show the letter's current state on its queue message (posting one if it has none)."""
        if letter.review_message_id is None or letter.review_channel_id is None:
            if letter.state in ("submitted", "approved", "published"):
                await self.post(letter)
            return
        embed, view = await self.render(letter)
        channel = self.bot.get_channel(letter.review_channel_id)
        if not isinstance(channel, discord.abc.Messageable):
            return
        try:
            await channel.get_partial_message(letter.review_message_id).edit(  # type: ignore[attr-defined]
                embed=embed, view=view, allowed_mentions=NO_MENTIONS
            )
        except discord.HTTPException as exc:
            log.warning("could not update the queue message of letter #%s: %s", letter.id, exc)

    async def note(self, letter: Contribution, text: str) -> None:
        """A note for editors under a letter's queue message (e.g. deleted after approval)."""
        channel = await self.channel(letter.guild_id)
        if channel is None:
            await self.bot.alert(letter.guild_id, text)
            return
        reference = None
        if (
            letter.review_message_id
            and letter.review_channel_id
            and letter.review_channel_id == getattr(channel, "id", None)
        ):
            reference = discord.MessageReference(
                message_id=letter.review_message_id, channel_id=letter.review_channel_id, fail_if_not_exists=False
            )
        try:
            await channel.send(text[:2000], reference=reference, allowed_mentions=NO_MENTIONS)  # type: ignore[arg-type]
        except discord.HTTPException as exc:
            log.warning("could not post a note about letter #%s: %s", letter.id, exc)


async def dm(bot: ReadersViewsBot, user_id: int, text: str, **kwargs: Any) -> bool:
    """Send a DM; False if the member's DMs are closed (that is their choice, not an error)."""
    try:
        user = bot.get_user(user_id) or await bot.fetch_user(user_id)
        await user.send(text[:2000], allowed_mentions=NO_MENTIONS, **kwargs)
    except discord.HTTPException as exc:
        log.info("could not DM user %s: %s", user_id, exc)
        return False
    return True


class Editorial(commands.Cog):
    views = app_commands.Group(name="views", description="Editors' tools for readers' views", guild_only=True)

    def __init__(self, bot: ReadersViewsBot) -> None:
        self.bot = bot
        self.service = LetterService(bot.store, bot.clock, bot.config.letters, disclaimer=bot.config.site.disclaimer)
        self.queue = ReviewQueue(bot)
        self.nominate_menu = app_commands.ContextMenu(name="Nominate as reader's view", callback=self.nominate)
        self.notices = NoticeSender(bot, self.queue)
        self.status_checks = SiteStatusChecker(bot, self.service, self.queue, self.notices)

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(*DYNAMIC_ITEMS)
        self.bot.tree.add_command(self.nominate_menu)
        self.bot.delivery_listeners.append(self.on_delivered)
        self.bot.incident_listeners.append(self.on_site_incident)
        # Both survive restarts: what is owed or pending is in the database.
        self.notices.start()
        self.status_checks.start()

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(*DYNAMIC_ITEMS)
        self.bot.tree.remove_command(self.nominate_menu.name, type=self.nominate_menu.type)
        if self.on_delivered in self.bot.delivery_listeners:
            self.bot.delivery_listeners.remove(self.on_delivered)
        if self.on_site_incident in self.bot.incident_listeners:
            self.bot.incident_listeners.remove(self.on_site_incident)
        await self.status_checks.stop()
        await self.notices.stop()

    async def on_site_incident(self, incident: SiteIncident | None) -> None:
        """The site stopped (or resumed) taking deliveries: approved letters' cards say so."""
        if incident is None:
            return  # each card is refreshed as its letter is delivered
        for letter in await self.bot.store.contributions.in_state("approved"):
            await self.queue.refresh(letter)

    # -- submission (shared with cogs.readers_views) ------------------------------------------------

    async def finish_submission(
        self,
        interaction: discord.Interaction,
        letter_id: int,
        *,
        byline: str,
        location: str | None,
        consent: bool,
        nominated: bool,
    ) -> None:
        """The byline modal was sent: queue the letter and tell the writer what happens next."""
        letter = await self.service.submit(
            letter_id,
            guild_id=interaction.guild_id,
            user_id=interaction.user.id,
            byline=byline,
            location=location,
            consent=consent,
            author_created_at=interaction.user.created_at,
            rate_limited=not nominated,
        )
        await self.confirm_submitted(interaction, letter)
        if nominated and interaction.message is not None:
            try:
                await interaction.message.edit(
                    content=f"✅ {escape_discord_text(letter.byline or '')} agreed to publication; "
                    "the letter is with the editors.",
                    view=None,
                    allowed_mentions=NO_MENTIONS,
                )
            except discord.HTTPException as exc:
                log.info("could not update the consent request for letter #%s: %s", letter.id, exc)

    async def confirm_submitted(self, interaction: discord.Interaction, letter: Contribution) -> None:
        queued = await self.queue.channel(letter.guild_id) is not None
        text = (
            f"Thank you: letter #{letter.id} is with the editors, to be published as "
            f"“{escape_discord_text(letter.byline or '')}”"
            + (f", {escape_discord_text(letter.location)}" if letter.location else "")
            + ". Editors may lightly edit it; you'll hear from me (by DM) when it's published or if it isn't "
            "chosen. You can withdraw it any time with `/letter withdraw`."
        )
        if not queued:
            text += f"\nHeads-up: the editors' queue isn't set up yet. {no_review_channel_text()}"
        await send_ephemeral(interaction, text)
        if queued:
            await self.queue.post(letter)
        else:
            await self.bot.alert(letter.guild_id, f"Letter #{letter.id} was submitted. {no_review_channel_text()}")

    # -- forms ------------------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """The byline, edit and reject forms, answered from their custom_id (see `bot.forms`)."""
        submitted = submitted_form(interaction, "letters:")
        match = LETTER_FORM.match(submitted[0]) if submitted else None
        if submitted is None or match is None:
            return
        values = submitted[1]
        letter_id = int(match["id"])
        version = int(match["version"]) if match["version"] is not None else None
        try:
            if match["form"] == "byline":
                # Whether it follows a nomination (no daily limit then); `submit` checks writer and server.
                letter = await self.bot.store.contributions.get(letter_id)
                await self.finish_submission(
                    interaction,
                    letter_id,
                    byline=str(values.get("byline") or ""),
                    location=values.get("location"),
                    consent=consent_given(str(values.get("consent") or "")),
                    nominated=letter is not None and letter.state == "nominated",
                )
            elif match["form"] == "editmodal":
                text = str(values.get("text") or "")
                if version is None:
                    raise LetterError(
                        "This form was opened before the bot was updated, so I can't tell which version you edited. "
                        "Nothing was changed: press Edit again. Your text, to paste:\n" + text[:1700]
                    )
                await self.apply_edit(interaction, letter_id, version, text)
            else:
                await self.apply_reject(interaction, letter_id, version, values.get("reason"))
        except Exception as error:
            await answer_error(interaction, error)

    # -- queue buttons ------------------------------------------------------------------------------

    async def on_button(
        self, interaction: discord.Interaction, action: str, letter_id: int, version: int | None = None
    ) -> None:
        await ensure_editor(interaction)
        letter = await self.service.letter_in(letter_id, guild_of(interaction))
        if action == "approve":
            await self._approve(interaction, letter, version)
            return
        if action == "edit":
            if letter.state not in ("submitted", "approved", "published"):
                await self._conflict(interaction, letter)
                return
            await interaction.response.send_modal(edit_form(letter))
        elif action == "reject":
            if letter.state != "submitted":
                await self._conflict(interaction, letter)
                return
            await interaction.response.send_modal(reject_form(letter))
        elif action == "retract":
            await self.ask_to_retract(interaction, letter)
        elif action == "retractok":
            await self.confirm_retract(interaction, letter_id)

    async def ask_to_retract(self, interaction: discord.Interaction, letter: Contribution) -> None:
        """Retracting takes a letter off the site: ask first, with a button only this answer shows."""
        if letter.state not in ("approved", "published"):
            await self._conflict(interaction, letter)
            return
        view = discord.ui.View(timeout=None)
        view.add_item(LetterButton("retractok", letter.id))
        where = "take it down from the site" if letter.state == "published" else "stop its publication"
        await send_ephemeral(
            interaction,
            f"Retract letter #{letter.id} by {escape_discord_text(letter.byline or letter.author_name)}? "
            f"This will {where} and tell the writer. Dismiss this message to keep it.",
            view=view,
        )

    async def confirm_retract(self, interaction: discord.Interaction, letter_id: int) -> None:
        try:
            letter = await self.service.withdraw(
                letter_id, interaction.user.id, by_editor=True, guild_id=guild_of(interaction)
            )
        except Conflict as exc:
            await self._conflict(interaction, exc.current)
            return
        self.bot.outbox.notify()
        await interaction.response.edit_message(
            content=f"Letter #{letter.id} is retracted; the site copy will be taken down.",
            view=None,
            allowed_mentions=NO_MENTIONS,
        )
        await self.queue.refresh(letter)
        await dm(
            self.bot,
            letter.author_id,
            f"Your letter #{letter.id} was taken down from the letters page by the editors.",
        )

    async def _approve(self, interaction: discord.Interaction, current: Contribution, version: int | None) -> None:
        if version is None:
            # A card posted before Approve carried its version: it may show older text than the letter has.
            if current.state != "submitted":
                await self._conflict(interaction, current)
                return
            await send_ephemeral(
                interaction,
                f"This card of letter #{current.id} was out of date, so I refreshed it instead of approving. "
                "Please read the letter again, then press Approve.",
            )
            await self.queue.refresh(current)
            return
        names = await site_names(interaction.guild, current.content)
        try:
            letter = await self.service.approve(
                current.id, interaction.user.id, version, guild_id=guild_of(interaction), **names
            )
        except Conflict as exc:
            await self._conflict(interaction, exc.current)
            return
        await self._show(interaction, letter)
        self.bot.outbox.notify()

    async def _show(self, interaction: discord.Interaction, letter: Contribution) -> None:
        """Answer the click by updating the queue message in place (one round trip)."""
        embed, view = await self.queue.render(letter)
        if interaction.message is not None and interaction.message.id == letter.review_message_id:
            await interaction.response.edit_message(embed=embed, view=view, allowed_mentions=NO_MENTIONS)
        else:
            await send_ephemeral(interaction, f"Letter #{letter.id} is now {STATE_LABELS[letter.state]}.")
            await self.queue.refresh(letter)

    async def _conflict(self, interaction: discord.Interaction, current: Contribution) -> None:
        """Somebody else acted first: say who did what, and bring the card up to date."""
        await send_ephemeral(interaction, conflict_text(current))
        await self.queue.refresh(current)

    async def apply_edit(self, interaction: discord.Interaction, letter_id: int, version: int, text: str) -> None:
        await ensure_editor(interaction)
        before = await self.bot.store.contributions.get(letter_id)
        try:
            letter = await self.service.edit(
                letter_id,
                interaction.user.id,
                version,
                text,
                guild_id=guild_of(interaction),
                **await site_names(interaction.guild, text),
            )
        except Conflict as exc:
            await self._conflict(interaction, exc.current)
            return
        await self._show(interaction, letter)
        if before is not None and before.state in ("approved", "published"):
            self.bot.outbox.notify()

    async def apply_reject(
        self, interaction: discord.Interaction, letter_id: int, version: int | None, reason: str | None
    ) -> None:
        await ensure_editor(interaction)
        try:
            letter = await self.service.reject(
                letter_id, interaction.user.id, version, reason, guild_id=guild_of(interaction)
            )
        except Conflict as exc:
            await self._conflict(interaction, exc.current)
            return
        shown = True
        try:
            await self._show(interaction, letter)
        except discord.HTTPException:
            # The rejection is saved; the writer must still hear of it.
            log.exception("letter #%s rejected, but its card could not be updated", letter.id)
            shown = False
        text = f"Thank you for your letter #{letter.id}. The editors decided not to publish it this time."
        if letter.review_note:
            text += f"\nTheir note: {escape_discord_text(letter.review_note)}"
        told = await dm(self.bot, letter.author_id, text)
        if not shown:
            await send_ephemeral(
                interaction,
                f"Letter #{letter.id} is rejected, but I couldn't update its card. "
                + (
                    "The writer was told by DM." if told else "I couldn't tell the writer by DM (their DMs are closed)."
                ),
            )
        elif not told:
            await send_ephemeral(
                interaction, "Rejected. I couldn't tell the writer by DM (their DMs are closed); that's fine."
            )

    # -- nomination and consent ---------------------------------------------------------------------

    @editor_only()
    async def nominate(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Ask a reply's writer whether it may be published as a reader's view."""
        if message.author.bot or message.webhook_id is not None:
            raise LetterError("Only members' replies can be nominated, not messages from bots or webhooks.")
        recordable, article_id = await locate(self.bot, message.channel)
        if not recordable:
            raise LetterError("Only replies in an article's discussion thread can be nominated.")
        await interaction.response.defer(ephemeral=True, thinking=True)
        letter = await self.service.ensure_recorded(contribution_from_message(message, article_id))
        letter = await self.service.nominate(letter, interaction.user.id)
        asked = (
            f"<@{letter.author_id}>, an editor would like to publish your reply above as a reader's view on the "
            "letters page, under a name you choose and with the publication's disclaimer. "
            "Nothing is published unless you agree."
        )
        only_author = discord.AllowedMentions(
            everyone=False, roles=False, users=[discord.Object(letter.author_id)], replied_user=False
        )
        where = "in the thread"
        try:
            await message.reply(asked, view=consent_view(letter.id), allowed_mentions=only_author)
        except discord.HTTPException as exc:
            log.info("could not ask in channel %s (%s); asking by DM", message.channel.id, exc)
            where = "by DM"
            if not await dm(
                self.bot,
                letter.author_id,
                f"An editor would like to publish your reply ({message.jump_url}) as a reader's view. "
                "Nothing is published unless you agree.",
                view=consent_view(letter.id),
            ):
                await self.service.unnominate(letter, interaction.user.id)
                await interaction.followup.send(
                    f"I couldn't ask {escape_discord_text(letter.author_name)}: I can't post in that thread and "
                    "their DMs are closed. Nothing was asked and the reply is not nominated; you can try again later.",
                    ephemeral=True,
                    allowed_mentions=NO_MENTIONS,
                )
                return
        await interaction.followup.send(
            f"I asked {escape_discord_text(letter.author_name)} for consent {where}. "
            "If they agree, the letter will appear in the review queue.",
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )

    async def on_consent(self, interaction: discord.Interaction, letter_id: int, answer: str) -> None:
        # Asked in the thread or, failing that, by DM (no server then: the writer check is what counts).
        letter = await self.service.consent_target(letter_id, interaction.user.id, guild_id=interaction.guild_id)
        if answer == "agree":
            name = getattr(interaction.user, "display_name", letter.author_name)
            await interaction.response.send_modal(byline_form(letter.id, name))
            return
        await self.service.decline(letter.id, interaction.user.id, guild_id=interaction.guild_id)
        self.notices.wake()  # the nominating editor is told
        await interaction.response.edit_message(
            content=f"{escape_discord_text(letter.author_name)} would rather not have this reply published. "
            "Understood; we won't ask again.",
            view=None,
            allowed_mentions=NO_MENTIONS,
        )

    # -- after publication ----------------------------------------------------------------------------

    async def on_delivered(self, row: OutboxRow, ref: RemoteRef) -> None:
        """The site has (or no longer has) a letter: tell the thread, the writer and the queue."""
        kind, _, ident = row.entity.partition(":")
        if kind == "digest":
            guild_id = int(ident.split("-", 1)[0]) if ident.split("-", 1)[0].isdigit() else None
            if guild_id is not None:
                channel = await self.queue.channel(guild_id)
                if channel is not None:
                    where = f": {ref.url}" if ref.url else ""
                    await channel.send(
                        f"📝 The readers' views digest draft is on the site{where}", allowed_mentions=NO_MENTIONS
                    )
            return
        if kind != "letter" or not ident.isdigit():
            return
        letter_id = int(ident)
        try:
            if row.action in ("create", "update"):
                # The writer's DM and the thread's announcement are queued with the new state and
                # sent by `self.notices` as steps of their own (a crash here loses neither).
                letter, _first = await self.service.mark_published(letter_id, ref.remote_id, ref.url, ref.status)
                self.notices.wake()
            else:
                found = await self.bot.store.contributions.get(letter_id)
                if found is None:
                    return
                letter = found
        except LetterError:
            return  # the writer has since deleted their records
        await self.queue.refresh(letter)

    # -- commands ------------------------------------------------------------------------------------

    @views.command(name="digest", description="Draft one Readers' Views post from the letters approved since a date")
    @app_commands.describe(since="First day to include, as YYYY-MM-DD", until="Day after the last one (default: now)")
    @editor_only()
    async def digest(self, interaction: discord.Interaction, since: str, until: str | None = None) -> None:
        """Gather the period's approved letters into a draft digest on the site."""
        assert interaction.guild is not None
        start = parse_day(since, "since")
        end = parse_day(until, "until") if until else self.bot.clock.now()
        if end <= start:
            raise LetterError("`until` must be after `since`.")
        draft = await self.service.digest(interaction.guild.id, start, end, interaction.user.id)
        self.bot.outbox.notify()
        lines = [
            f"Drafted “{draft.title}” with {len(draft.letters)} letter(s); it goes to the site as a draft for "
            "you to finish:"
        ]
        for letter in draft.letters[:20]:
            lines.append(f"- #{letter.id} by {escape_discord_text(letter.byline or letter.author_name)}")
        if len(draft.letters) > 20:
            lines.append(f"… and {len(draft.letters) - 20} more")
        await send_ephemeral(interaction, truncate_words("\n".join(lines), 2000))

    @views.command(name="queue", description="Post submitted letters that are missing from the review channel")
    @editor_only()
    async def requeue(self, interaction: discord.Interaction) -> None:
        """Put letters submitted before a review channel existed into the queue."""
        assert interaction.guild is not None
        if await self.queue.channel(interaction.guild.id) is None:
            raise LetterError(no_review_channel_text())
        await interaction.response.defer(ephemeral=True, thinking=True)
        waiting = await self.bot.store.contributions.unposted_queue(interaction.guild.id)
        posted = 0
        for letter in waiting:
            posted += int(await self.queue.post(letter))
        await interaction.followup.send(f"Posted {posted} letter(s) to the review channel.", ephemeral=True)

    @views.command(name="retract", description="Take a published letter down from the site")
    @editor_only()
    async def retract(self, interaction: discord.Interaction, letter: int) -> None:
        """Retract an approved or published letter, after confirming (the site copy goes through the outbox)."""
        current = await self.service.letter_in(letter, guild_of(interaction))
        if current.state not in ("approved", "published"):
            raise LetterError(conflict_text(current))
        await self.ask_to_retract(interaction, current)


def parse_day(text: str, name: str) -> datetime:
    try:
        day = datetime.strptime(text.strip(), "%Y-%m-%d")
    except ValueError:
        raise LetterError(f"`{name}` must be a date like 2025-03-01.") from None
    return day.replace(tzinfo=UTC)


async def setup(bot: ReadersViewsBot) -> None:
    await bot.add_cog(Editorial(bot))
