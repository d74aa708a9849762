"""Members' side of readers' views: replies in article threads are recorded; members submit letters.

Recording is the hot path (every message in every article thread): the thread -> article lookup is
cached and rows are written by a group-commit `Recorder`, never one transaction per message.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands, tasks

from bot import claims
from bot.errors import PolicyView, answer_error, send_ephemeral
from bot.forms import submitted_form, typed_text
from bot.letter_forms import (
    LETTER_FORM,
    WRITE_FORM,
    byline_form,
    consent_given,
    contribution_from_message,
    locate,
    write_form,
)
from bot.letter_states import LetterError, public_url, state_label
from bot.render import escape_discord_text, truncate_words
from bot.review import NO_MENTIONS, jump_url, no_review_channel_text
from bot.store.contributions import ArticleRef, Contribution, contribution_row

if TYPE_CHECKING:
    from bot.app import ReadersViewsBot

log = logging.getLogger(__name__)

NEGATIVE_TTL = 60.0  # seconds a "not an article thread" answer is trusted (never for threads of ours)
RECORDING_WAIT = 15.0  # seconds a reply in a thread of ours waits for the article posts under way
PURGE_EVERY_HOURS = 6.0


class ForgetView(PolicyView):
    """Ephemeral confirmation for `/letter forget` (only the member who asked can press it)."""

    def __init__(self, cog: ReadersViews, user_id: int) -> None:
        super().__init__(timeout=300)
        self.cog = cog
        self.user_id = user_id

    @discord.ui.button(
        label="Delete my unpublished records", style=discord.ButtonStyle.danger, custom_id="letters:forget"
    )
    async def confirm(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        if interaction.user.id != self.user_id or interaction.guild is None:
            await send_ephemeral(interaction, "This button is for the member who asked.")
            return
        deleted = await self.cog.service.forget(interaction.guild.id, interaction.user.id)
        await interaction.response.edit_message(
            content=f"Done: {len(deleted)} record(s) deleted. Published letters stay; withdraw them with "
            "`/letter withdraw`.",
            view=None,
        )
        for letter in deleted:
            if letter.review_message_id and letter.state in ("submitted", "nominated"):
                await self.cog.queue_note_deleted(letter.review_channel_id, letter.review_message_id, letter.id)
        self.stop()

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.secondary)
    async def cancel(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        await interaction.response.edit_message(content="Nothing was deleted.", view=None)
        self.stop()


def can_see(interaction: discord.Interaction, article: ArticleRef) -> bool:
    """Whether the member can see the channel an article was posted in: a staff-only feed's articles
    are not offered to readers, nor accepted from them (their titles would reach the card and the site)."""
    guild, member = interaction.guild, interaction.user
    channel = guild.get_channel(article.channel_id) if guild is not None and article.channel_id else None
    return channel is not None and isinstance(member, discord.Member) and channel.permissions_for(member).view_channel


def withdrawn_text(letter_id: int, *, live: bool, retracting: bool) -> str:
    """What the writer is told after withdrawing: the site part depends on what the withdrawal did."""
    text = f"Letter #{letter_id} is withdrawn."
    if retracting:
        return text + " Its copy on the site will be taken down."
    if live:
        return text + " It had not been sent to the site yet, so it will not be published there."
    return text


class ReadersViews(commands.Cog):
    letter = app_commands.Group(name="letter", description="Letters to the editor", guild_only=True)

    def __init__(self, bot: ReadersViewsBot) -> None:
        self.bot = bot
        self.service = bot.letters.service
        self.queue = bot.letters.queue
        self.recorder = bot.letters.recorder
        self.record_channels = frozenset(bot.config.letters.record_channel_ids)
        # thread id -> (article id or None, monotonic time of a negative answer)
        self._articles: dict[int, int] = {}
        self._not_articles: dict[int, float] = {}
        self.submit_menu = app_commands.ContextMenu(name="Submit as letter", callback=self.submit_message)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.submit_menu)
        self.purge.start()

    async def cog_unload(self) -> None:
        self.purge.cancel()
        self.bot.tree.remove_command(self.submit_menu.name, type=self.submit_menu.type)
        await self.recorder.stop()

    # -- recording ------------------------------------------------------------------------------------

    async def _article_for(self, channel: Any) -> int | None:
        """The article a thread discusses; None if not an article thread; cached (negative answers briefly).

        A thread the bot started may be an article post whose answer from Discord is still on its way:
        no negative answer is kept for those, and one waits for the posts under way to be recorded.
        """
        channel_id = channel.id
        found = self._articles.get(channel_id)
        if found is not None:
            return found
        me = self.bot.user
        ours = isinstance(channel, discord.Thread) and me is not None and channel.owner_id == me.id
        checked = self._not_articles.get(channel_id)
        if not ours and checked is not None and time.monotonic() - checked < NEGATIVE_TTL:
            return None
        article_id = await self.service.article_for_thread(channel_id)
        publisher = self.bot.publisher
        if article_id is None and ours and await publisher.settled(RECORDING_WAIT):
            article_id = await self.service.article_for_thread(channel_id)
        if article_id is None:
            if not ours:
                self._not_articles[channel_id] = time.monotonic()
        else:
            self._articles[channel_id] = article_id
            self._not_articles.pop(channel_id, None)
        return article_id

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.guild is None or message.author.bot or message.webhook_id is not None:
            return
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return
        channel = message.channel
        article_id = await self._article_for(channel)
        if article_id is None:
            parent_id = getattr(channel, "parent_id", None)
            if channel.id not in self.record_channels and (parent_id is None or parent_id not in self.record_channels):
                return
        reference = message.reference
        self.recorder.add_row(
            contribution_row(
                message.guild.id,
                message.id,
                channel.id,
                article_id,
                reference.message_id if reference is not None else None,
                message.author.id,
                message.author.display_name,
                message.content,
                message.created_at,
            )
        )

    @commands.Cog.listener()
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        content = payload.data.get("content")
        if payload.guild_id is None or content is None:
            return
        # An edit must not overtake the recording of its message. Always flush: `pending` is already
        # empty while a batch is being written, and flush waits for that write to finish.
        await self.recorder.flush()
        letter = await self.service.on_message_edit(payload.message_id, content)
        if letter is not None:
            await self.queue.refresh(letter)
            if letter.state in ("approved", "published"):
                await self.queue.note(
                    letter,
                    f"✏️ The writer edited the Discord message of letter #{letter.id} after it was approved. "
                    "The site keeps the approved text; use Edit on the card to change it.",
                )

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        if payload.guild_id is not None:
            await self._deleted([payload.message_id])

    @commands.Cog.listener()
    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        if payload.guild_id is not None:
            await self._deleted(list(payload.message_ids))

    async def _deleted(self, message_ids: list[int]) -> None:
        await self.recorder.flush()  # as for edits: the batch holding these messages must be written first
        for letter in await self.service.on_message_delete(message_ids):
            await self.queue.refresh(letter)
            if letter.state in ("approved", "published"):
                await self.queue.note(
                    letter,
                    f"🗑️ The writer deleted the Discord message of letter #{letter.id} after it was approved. "
                    "Consider whether to Retract it from the site.",
                )

    async def queue_note_deleted(self, channel_id: int | None, message_id: int, letter_id: int) -> None:
        channel = self.bot.get_channel(channel_id) if channel_id else None
        if not isinstance(channel, discord.abc.Messageable):
            return
        try:
            await channel.get_partial_message(message_id).edit(  # type: ignore[attr-defined]
                content=f"Letter #{letter_id} was withdrawn and deleted by its writer.", embed=None, view=None
            )
        except discord.HTTPException as exc:
            log.info("could not update the queue message of forgotten letter #%s: %s", letter_id, exc)

    @tasks.loop(hours=PURGE_EVERY_HOURS)
    async def purge(self) -> None:
        """Recorded replies nobody submitted expire after `letters.retention_days`."""
        if not self.bot.claims.holds(claims.RETENTION):  # another process purges (bot.claims)
            return
        removed = await self.service.purge_expired()
        if removed:
            log.info("purged %d expired recorded replies", removed)

    @purge.error
    async def _purge_error(self, error: BaseException) -> None:  # type: ignore[override]
        log.error("letters purge failed; it runs again at the next interval", exc_info=error)

    # -- submitting -------------------------------------------------------------------------------------

    @app_commands.guild_only()
    async def submit_message(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Send one of your own replies to the editors as a letter."""
        if message.author.id != interaction.user.id:
            raise LetterError(
                "You can only submit your own messages as letters. To suggest someone else's "
                "reply, ask an editor to nominate it."
            )
        recordable, article_id = await locate(self.bot, message.channel)
        if not recordable:
            raise LetterError(
                "Only replies in an article's discussion thread can be submitted. To write a letter about an "
                "article, use `/letter submit`."
            )
        if not message.content.strip():
            raise LetterError("That message has no text to publish.")
        letter = await self.service.ensure_recorded(contribution_from_message(message, article_id))
        self.service.check_can_submit(letter, interaction.user.id)
        assert interaction.guild is not None
        await self.service.check_rate(interaction.guild.id, interaction.user.id, interaction.user.created_at)
        await interaction.response.send_modal(byline_form(letter.id, interaction.user.display_name))

    @letter.command(name="submit", description="Write a letter to the editor about an article")
    @app_commands.describe(article="The article your letter is about (start typing its title)")
    async def submit(self, interaction: discord.Interaction, article: int | None = None) -> None:
        """Open the letter form (text, byline, consent)."""
        assert interaction.guild is not None
        if article is not None:
            found = await self.service.article_in(article, interaction.guild.id)
            recent = await self.service.recent_articles(interaction.guild.id, limit=500)
            if found is None or not can_see(interaction, found) or all(a.id != article for a in recent):
                raise LetterError("I don't know that article: pick one from the list as you type.")
        await self.service.check_rate(interaction.guild.id, interaction.user.id, interaction.user.created_at)
        await interaction.response.send_modal(write_form(article, interaction.user.display_name))

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """The `/letter submit` and byline forms, answered from their custom_id (see `bot.forms`)."""
        submitted = submitted_form(interaction, "letters:")
        if submitted is None:
            return
        custom_id, values = submitted
        written = WRITE_FORM.match(custom_id)
        byline = LETTER_FORM.match(custom_id)
        if written is None and (byline is None or byline["form"] != "byline"):
            return
        try:
            if written is not None:
                await self._submit_written(interaction, int(written[1]) or None, values)
            elif byline is not None:
                await self._submit_byline(interaction, int(byline["id"]), values)
        except Exception as error:
            await answer_error(interaction, error, typed=typed_text(values, "text") if written else None)

    async def _submit_byline(self, interaction: discord.Interaction, letter_id: int, values: Any) -> None:
        # Whether it follows a nomination (no daily limit then); `submit` checks writer and server.
        letter = await self.service.letter(letter_id)
        await self.finish_submission(
            interaction,
            letter_id,
            byline=str(values.get("byline") or ""),
            location=values.get("location"),
            consent=consent_given(str(values.get("consent") or "")),
            nominated=letter is not None and letter.state == "nominated",
        )

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

    async def _submit_written(self, interaction: discord.Interaction, article_id: int | None, values: Any) -> None:
        if interaction.guild_id is None or interaction.channel_id is None:
            raise LetterError("Letters can only be written inside a server.")
        article = None
        if article_id is not None:
            # The id comes from the form's custom_id: only an article of this server is accepted.
            article = await self.service.article_in(article_id, interaction.guild_id)
            if article is None or not can_see(interaction, article):
                raise LetterError(
                    "I don't know that article in this server. Nothing was sent; your letter: \n"
                    + str(values.get("text") or "")[:1700]
                )
        channel_id = article.thread_id if article is not None and article.thread_id else interaction.channel_id
        letter = await self.service.write_letter(
            guild_id=interaction.guild_id,
            channel_id=channel_id,
            author_id=interaction.user.id,
            author_name=interaction.user.display_name,
            article_id=article_id,
            text=str(values.get("text") or ""),
            byline=str(values.get("byline") or ""),
            location=values.get("location"),
            consent=consent_given(str(values.get("consent") or "")),
            author_created_at=interaction.user.created_at,
        )
        await self.confirm_submitted(interaction, letter)

    @submit.autocomplete("article")
    async def article_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[int]]:
        if interaction.guild is None:
            return []
        articles = await self.service.recent_articles(interaction.guild.id, current, limit=100)
        visible = [a for a in articles if can_see(interaction, a)][:25]
        return [app_commands.Choice(name=truncate_words(a.title, 100) or f"#{a.id}", value=a.id) for a in visible]

    @letter.command(name="withdraw", description="Withdraw one of your letters (also from the site)")
    @app_commands.describe(letter="Your letter (start typing)")
    async def withdraw(self, interaction: discord.Interaction, letter: int) -> None:
        """Withdraw a letter you submitted; a published copy is taken down."""
        was = await self.service.letter(letter)
        assert interaction.guild is not None
        current, retracting = await self.service.withdraw_letter(
            letter, interaction.user.id, by_editor=False, guild_id=interaction.guild.id
        )
        if retracting:
            self.bot.outbox.notify()
        live = was is not None and was.state in ("approved", "published")
        await send_ephemeral(interaction, withdrawn_text(current.id, live=live, retracting=retracting))
        await self.queue.refresh(current)

    @withdraw.autocomplete("letter")
    async def my_letters_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[int]]:
        if interaction.guild is None:
            return []
        mine = await self.service.letters_of(interaction.guild.id, interaction.user.id, limit=100)
        choices = []
        for letter in mine:
            if letter.state not in ("submitted", "nominated", "approved", "published"):
                continue
            name = f"#{letter.id} ({letter.state}) {truncate_words(' '.join(letter.content.split()), 60)}"
            if current.strip().lower() in name.lower():
                choices.append(app_commands.Choice(name=name[:100], value=letter.id))
        return choices[:25]

    # -- privacy -----------------------------------------------------------------------------------------

    @letter.command(name="mine", description="What I have recorded from you, and the state of your letters")
    async def mine(self, interaction: discord.Interaction) -> None:
        """List your recorded replies and letters with their states."""
        assert interaction.guild is not None
        letters, counts = await self.service.mine(interaction.guild.id, interaction.user.id)
        if not letters:
            await send_ephemeral(interaction, "I have no replies or letters from you in this server.")
            return
        total = sum(counts.values())
        # "published" counts letters the site holds, some perhaps still with its editors.
        summary = ", ".join(
            f"{n} {'sent to the site' if state == 'published' else state}" for state, n in sorted(counts.items())
        )
        lines = [f"**Your contributions here** ({total}: {summary})"]
        for letter in letters:
            where = (
                jump_url(letter.guild_id, letter.channel_id, letter.message_id)
                if letter.message_id
                else "/letter submit"
            )
            text = escape_discord_text(truncate_words(" ".join(letter.content.split()), 80))
            line = f"- #{letter.id} · {state_label(letter)} · {where}\n  {text}"
            url = public_url(letter)
            if url and letter.state == "published":
                line += f"\n  on the site: {url}"
            lines.append(line)
        lines.append(
            f"Recorded replies that are never submitted are deleted after {self.bot.config.letters.retention_days} "
            "days. `/letter forget` deletes your unpublished records now."
        )
        await send_ephemeral(interaction, truncate_words("\n".join(lines), 2000))

    @letter.command(name="forget", description="Delete everything unpublished I hold about you (asks first)")
    async def forget(self, interaction: discord.Interaction) -> None:
        """Delete your recorded replies and unpublished letters, after confirming."""
        assert interaction.guild is not None
        counts = await self.service.counts_of(interaction.guild.id, interaction.user.id)
        doomed = sum(n for state, n in counts.items() if state not in ("approved", "published"))
        if not doomed:
            await send_ephemeral(interaction, "I hold no unpublished records from you here.")
            return
        await interaction.response.send_message(
            f"Delete {doomed} unpublished record(s) (recorded replies and letters not yet published)? "
            "Letters in the editors' queue are withdrawn. This can't be undone.",
            view=ForgetView(self, interaction.user.id),
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )


async def setup(bot: ReadersViewsBot) -> None:
    await bot.add_cog(ReadersViews(bot))
