"""The editors' review queue on Discord: the cards, their persistent buttons, and posting them.

Queue buttons are `DynamicItem`s (`letters:approve:<id>:<version>`, `letters:edit:<id>` ...): every
click rebuilds its state from the database, so they keep working after a restart. Approve carries
the version its card showed, so a letter that changed since is never approved unseen. A click is
handled by whichever cog registered itself as `Letters.review` (`cogs.editorial`); this module
only renders.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, Protocol

import discord

from bot.concurrency import KeyedLock
from bot.errors import answers_errors
from bot.letter_states import LetterError, public_url, state_label, with_site_editors
from bot.render import escape_discord_text, inert_text, masked_link, neutralise_mentions, reveal_links, truncate_words
from bot.store.contributions import ArticleRef, Contribution

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


def jump_url(guild_id: int, channel_id: int, message_id: int) -> str:
    return f"https://discord.com/channels/{guild_id}/{channel_id}/{message_id}"


def no_review_channel_text() -> str:
    return "No review channel is set yet: an admin can choose one with `/readersviews setup review_channel:`."


class ReviewHandler(Protocol):
    """Who answers the queue's and the nomination's buttons (the editorial cog, while it is loaded)."""

    async def on_button(
        self, interaction: discord.Interaction, action: str, letter_id: int, version: int | None = None
    ) -> None: ...

    async def on_consent(self, interaction: discord.Interaction, letter_id: int, answer: str) -> None: ...


def review_handler(interaction: discord.Interaction) -> ReviewHandler:
    handler: ReviewHandler | None = interaction.client.letters.review  # type: ignore[attr-defined]
    if handler is None:
        raise LetterError("Letters are not available right now: the editorial module isn't loaded.")
    return handler


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
        await review_handler(interaction).on_button(interaction, self.action, self.letter_id, self.version)


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
        await review_handler(interaction).on_consent(interaction, self.letter_id, self.answer)


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
        self._posting = KeyedLock()  # one card per letter: two `/views queue` at once post it once

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
        """Put a letter in the queue (if its card isn't there yet); False if nothing was posted."""
        async with self._posting.hold(letter.id):
            current = await self.bot.store.contributions.get(letter.id)
            if current is None or current.review_message_id is not None:
                return False  # gone, or its card was posted meanwhile (by whoever held the lock)
            return await self._post(current)

    async def _post(self, letter: Contribution) -> bool:
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
