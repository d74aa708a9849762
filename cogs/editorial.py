"""Editors' side of readers' views: review buttons and forms, nominations with the writer's consent, digests.

A Discord adapter over the letters feature (`bot.letters`, built once by the bot): the service
decides, `bot.review` renders the cards. The queue's buttons reach this cog through
`Letters.review`, which it sets while loaded.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.checks import editor_only, ensure_editor
from bot.errors import answer_error, send_ephemeral, with_typed
from bot.forms import submitted_form, typed_text
from bot.letter_forms import (
    LETTER_FORM,
    byline_form,
    contribution_from_message,
    edit_form,
    guild_of,
    locate,
    reject_form,
    site_names,
)
from bot.letter_states import STATE_LABELS, Conflict, LetterError, conflict_text
from bot.render import escape_discord_text, truncate_words
from bot.review import DYNAMIC_ITEMS, NO_MENTIONS, LetterButton, consent_view, dm, no_review_channel_text
from bot.site.base import RemoteRef
from bot.store.contributions import Contribution
from bot.store.outbox import OutboxRow, SiteIncident

if TYPE_CHECKING:
    from bot.app import ReadersViewsBot

log = logging.getLogger(__name__)


class Editorial(commands.Cog):
    views = app_commands.Group(name="views", description="Editors' tools for readers' views", guild_only=True)

    def __init__(self, bot: ReadersViewsBot) -> None:
        self.bot = bot
        letters = bot.letters
        self.service = letters.service
        self.queue = letters.queue
        self.notices = letters.notices
        self.status_checks = letters.status_checks
        self.nominate_menu = app_commands.ContextMenu(name="Nominate as reader's view", callback=self.nominate)

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(*DYNAMIC_ITEMS)
        self.bot.letters.review = self
        self.bot.tree.add_command(self.nominate_menu)
        self.bot.delivery_listeners.append(self.on_delivered)
        self.bot.incident_listeners.append(self.on_site_incident)
        # Both survive restarts: what is owed or pending is in the database.
        self.notices.start()
        self.status_checks.start()

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(*DYNAMIC_ITEMS)
        if self.bot.letters.review is self:
            self.bot.letters.review = None
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
        for letter in await self.service.in_state("approved"):
            await self.queue.refresh(letter)

    # -- forms ------------------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """The edit and reject forms, answered from their custom_id (see `bot.forms`)."""
        submitted = submitted_form(interaction, "letters:")
        match = LETTER_FORM.match(submitted[0]) if submitted else None
        if submitted is None or match is None or match["form"] == "byline":
            return  # the byline form is the writer's: cogs.readers_views answers it
        values = submitted[1]
        letter_id = int(match["id"])
        version = int(match["version"]) if match["version"] is not None else None
        try:
            if match["form"] == "editmodal":
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
            await answer_error(interaction, error, typed=typed_text(values, "text", "reason"))

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

    async def _conflict(
        self, interaction: discord.Interaction, current: Contribution, typed: str | None = None
    ) -> None:
        """Somebody else acted first: say who did what (giving back what this editor typed), update the card."""
        text, kwargs = with_typed(conflict_text(current), typed)
        await send_ephemeral(interaction, text, **kwargs)
        await self.queue.refresh(current)

    async def apply_edit(self, interaction: discord.Interaction, letter_id: int, version: int, text: str) -> None:
        await ensure_editor(interaction)
        before = await self.service.letter(letter_id)
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
            await self._conflict(interaction, exc.current, typed=text)
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
            await self._conflict(interaction, exc.current, typed=reason)
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
        if row.kind.startswith("digest."):
            channel = await self.queue.channel(row.guild_id) if row.guild_id is not None else None
            if channel is not None:
                where = f": {ref.url}" if ref.url else ""
                await channel.send(
                    f"📝 The readers' views digest draft is on the site{where}", allowed_mentions=NO_MENTIONS
                )
            return
        letter = await self.service.on_delivered(row, ref)
        if letter is None:
            return
        if row.action != "retract":
            # The writer's DM and the thread's announcement were queued with the new state; they
            # are sent by `self.notices` as steps of their own (a crash here loses neither).
            self.notices.wake()
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
        waiting = await self.service.unposted_queue(interaction.guild.id)
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
