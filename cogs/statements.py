"""/statement commands, the statement message's buttons and forms, the deadline timer.

A thin adapter over `bot.statements.StatementService`: buttons are `DynamicItem`s whose custom_id
carries the statement id, and every click reads the statement from the DB. Forms (modals) are
answered from `on_interaction` by their custom_id, not from a stored `Modal` object, so a form
opened before a restart can still be submitted after it, and concurrent forms never share state.
Clicks on Sign and sign forms, nearly all of a sign-on burst, take a hot path straight from the
gateway payload (`bot.sign_ons`, which says why and what it keeps).
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands, tasks

from bot import claims
from bot.checks import ensure_organizer, may, member_can_see_channel, organizer_only
from bot.concurrency import Debouncer, KeyedLock
from bot.errors import answer_error, answers_errors, send_ephemeral
from bot.forms import modal_values, typed_text
from bot.sign_ons import RESTARTING, SignOns
from bot.signing import SIGN_FORM, InteractionReply, server_of
from bot.statement_rules import (
    SeveralSignatures,
    Snapshot,
    StatementError,
    parse_deadline,
)
from bot.statement_views import (
    LATEST_SHOWN,
    NONE,
    SignatureChoiceButton,
    StatementButton,
    channel_in_guild,
    choice_view,
    discord_timestamp,
    ensure_member_can_post,
    existing_message,
    inert,
    organizations_question,
    organizers_list,
    recover_drafts,
    sign_form,
    signature_label,
    statement_embed,
    statement_form,
    statement_view,
    who_signed,
    withdrawn_answer,
)
from bot.statements import StatementService
from bot.store.statement_rows import ORGANIZATIONS_PER_MEMBER, Counts, SignatureRow, StatementRow

if TYPE_CHECKING:
    from bot.app import ReadersViewsBot

log = logging.getLogger(__name__)

MAX_TIMER_SLEEP = 30.0
EDIT_INTERVAL = 5.0
CREATED_KEPT = 1000  # create forms remembered (per process) against a second submit
CREATE_FORM = re.compile(r"^statements:createform:(\d+):(\d+):([01]):([01])(?::(\d+))?$")  # 5: the opening's id
EDIT_FORM = re.compile(r"^statements:editform:(\d+)$")


class Statements(commands.Cog):
    statement = app_commands.Group(name="statement", description="Statements members sign onto", guild_only=True)

    def __init__(self, bot: ReadersViewsBot) -> None:
        self.bot = bot
        self.service = StatementService(
            bot.store,
            bot.clock,
            site_update_minutes=bot.config.site.statement_update_minutes,
            on_enqueued=bot.outbox.notify,
            on_changed=self._changed,
            on_schedule=self.wake_timer,
            served_guilds=bot.tenants.only,
        )
        self.refresher = Debouncer(self._refresh_message, EDIT_INTERVAL)
        self._reposting = KeyedLock()
        self._creating = KeyedLock()
        self._created: dict[tuple[int, str | int], str] = {}  # (organizer, form opening): message link
        self._unreachable: set[int] = set()  # statements whose message answered 403/404 (already reported)
        self._unreadable_drafts: set[int] = set()  # drafts whose channel answered 403 (already logged)
        self._closing = False  # set at unload: new sign-ons are asked to retry
        self.sign_ons = SignOns(bot, self.service, closing=lambda: self._closing)
        self.timer_cap = MAX_TIMER_SLEEP
        self._wake = asyncio.Event()

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(StatementButton, SignatureChoiceButton)
        self.sign_ons.install()
        self.bot.claims.on_wake(claims.STATEMENTS, self._wake.set)  # woken by another process
        self.timer.start()

    async def cog_unload(self) -> None:
        # discord.py unloads cogs before it closes the gateway: sign-ons arriving from here on are
        # told to retry instead of racing the writer's drain and the store closing under them.
        self._closing = True
        self.timer.cancel()
        await self.sign_ons.aclose()  # sign-ons already taken are answered before their session closes
        await self.service.aclose()
        await self.refresher.aclose()
        await self.sign_ons.close_session()
        self.bot.remove_dynamic_items(StatementButton, SignatureChoiceButton)

    def _changed(self, statement_id: int) -> None:
        self.refresher.mark(statement_id)

    def wake_timer(self) -> None:
        self._wake.set()
        self.bot.claims.wake(claims.STATEMENTS)  # the process running the job, if it is another

    # -- the timer: deadlines, site updates, owed announcements ---------------------------------

    @tasks.loop(count=None)
    async def timer(self) -> None:
        if not self.bot.claims.holds(claims.STATEMENTS):  # another process keeps the deadlines (bot.claims)
            await asyncio.sleep(self.bot.claims.retry_seconds)
            return
        self._wake.clear()
        await self.run_timer_once()
        next_at = await self.service.next_timer_at()
        delay = self.timer_cap
        if next_at is not None:
            delay = min(self.timer_cap, max(0.0, (next_at - self.bot.clock.now()).total_seconds()))
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=max(delay, 0.01))
        except TimeoutError:
            pass

    @timer.before_loop
    async def _before_timer(self) -> None:
        await self.bot.wait_until_ready()
        for statement in await self.service.with_message_changes():
            self.refresher.mark(statement.id)

    @timer.error
    async def _timer_error(self, error: BaseException) -> None:  # type: ignore[override]
        log.error("statement timer crashed; restarting it", exc_info=error)
        await asyncio.sleep(5)
        self.timer.restart()

    async def run_timer_once(self) -> None:
        """Close what is due, finish interrupted creates, post owed final counts, enqueue site updates."""
        await self.service.close_due()
        await recover_drafts(self.bot, self.service, self._unreadable_drafts)
        for statement in await self.service.closed_unannounced():
            await self._announce_close(statement)
        await self.service.flush_site_updates()

    async def _announce_close(self, statement: StatementRow) -> None:
        self.refresher.mark(statement.id)
        if statement.channel_id is not None:
            counts = await self.service.counts(statement.id)
            try:
                await self._post_note(
                    statement,
                    f"**{inert(statement.title)}** is closed. Final count: **{counts.signed}** "
                    f"signature{'s' if counts.signed != 1 else ''}. Thank you to everyone who signed.",
                )
            except discord.HTTPException as exc:
                log.warning("could not post the final count of statement %s: %s", statement.id, exc)
                await self.bot.alert(
                    statement.guild_id, f"I couldn't post the final count of statement `{statement.slug}`: {exc}"
                )
        await self.service.mark_announced(statement.id)

    async def _post_note(self, statement: StatementRow, text: str, *, silent: bool = False) -> None:
        """Post `text` in the statement's channel, as a reply to its message (when it still exists)."""
        assert statement.channel_id is not None
        reference = (
            discord.MessageReference(message_id=statement.message_id, channel_id=statement.channel_id,
                                     fail_if_not_exists=False)
            if statement.message_id
            else None
        )  # fmt: skip
        await self.bot.get_partial_messageable(statement.channel_id).send(
            text,
            reference=reference,  # type: ignore[arg-type]
            mention_author=False,
            allowed_mentions=NONE,
            silent=silent,
        )

    # -- the statement message ------------------------------------------------------------------

    async def _refresh_message(self, statement_id: int) -> None:
        """Show the current state; other failures than "gone"/"no access" raise, and the refresher retries."""
        statement = await self.service.current(statement_id)  # read before the counts: its change counter is not newer
        if statement is None or statement.message_id is None or statement.channel_id is None:
            return
        snapshot = Snapshot(statement, await self.service.counts(statement_id, latest=LATEST_SHOWN))
        now = self.bot.clock.now()
        message = self.bot.get_partial_messageable(statement.channel_id).get_partial_message(statement.message_id)
        try:
            await message.edit(
                embed=statement_embed(snapshot, now), view=statement_view(statement, now), allowed_mentions=NONE
            )
        except (discord.NotFound, discord.Forbidden) as exc:
            # Retrying cannot help; the next change to the statement tries once more.
            await self._message_unreachable(statement, exc)
            if isinstance(exc, discord.NotFound):
                await self.service.message_shown(statement)
            return
        self._unreachable.discard(statement_id)
        if not self._is_marked(statement_id):
            await self.service.message_shown(statement)

    async def _message_unreachable(self, statement: StatementRow, exc: discord.HTTPException) -> None:
        """Say once (per failure streak) that a statement's message can't be edited."""
        if statement.id in self._unreachable:
            return
        self._unreachable.add(statement.id)
        what = "is gone" if isinstance(exc, discord.NotFound) else "can't be edited (no access)"
        log.warning("statement %s (%s): its message %s in channel %s %s: %s; not retrying until it changes again",
                    statement.id, statement.slug, statement.message_id, statement.channel_id, what, exc)  # fmt: skip
        await self.bot.alert(
            statement.guild_id,
            f"The message of statement `{statement.slug}` in <#{statement.channel_id}> {what}, so it no longer "
            f"shows the current count ({exc.text or exc}). Its signatures are still recorded."
            + (" An organizer can put it back with `/statement repost`." if isinstance(exc, discord.NotFound) else ""),
        )

    def _is_marked(self, statement_id: int) -> bool:
        return self.refresher.is_marked(statement_id)

    # -- buttons and forms ----------------------------------------------------------------------

    async def on_button(self, interaction: discord.Interaction, statement_id: int, action: str) -> None:
        if await self._turned_away(interaction):
            return
        if action == "sign":
            await self.sign_ons.click(InteractionReply(interaction), statement_id)
        elif action == "sign_org":
            statement, _ = await self.service.prepare_sign(
                statement_id, interaction.user.id, "organization", guild_id=server_of(interaction)
            )
            if not member_can_see_channel(interaction, statement.channel_id):
                raise StatementError("That statement no longer exists.")
            await self._organization_form_or_choice(interaction, statement)
        elif action == "withdraw":
            try:
                withdrawn = await self.service.withdraw(
                    statement_id, interaction.user.id, guild_id=server_of(interaction)
                )
            except SeveralSignatures as several:
                buttons = [("unsign", s.id, f"Withdraw {signature_label(s)}", False) for s in several.signatures]
                await send_ephemeral(
                    interaction,
                    "You have several signatures on this statement. Which one do you want to withdraw?",
                    view=choice_view(statement_id, buttons[:25]),
                )
                return
            await self._answer_withdrawn(interaction, withdrawn)
        elif action == "who":
            await self._who_signed(interaction, statement_id)

    async def _answer_withdrawn(self, interaction: discord.Interaction, withdrawn: SignatureRow | None) -> None:
        await send_ephemeral(interaction, withdrawn_answer(withdrawn))

    async def _organization_form_or_choice(self, interaction: discord.Interaction, statement: StatementRow) -> None:
        """A first organization signature opens the form at once; with some already, ask which to change."""
        mine = [
            s for s in await self.service.my_signatures(statement.id, interaction.user.id) if s.kind == "organization"
        ]
        if not mine:
            await interaction.response.send_modal(self.sign_ons.form(statement, "organization", None))
            return
        full = len(mine) >= ORGANIZATIONS_PER_MEMBER
        buttons = [("orgedit", s.id, f"Change: {s.organization}", False) for s in mine]
        buttons.append(("orgnew", 0, "Sign for another organization", full))
        await send_ephemeral(
            interaction, organizations_question(statement, mine), view=choice_view(statement.id, buttons)
        )

    async def on_choice(
        self, interaction: discord.Interaction, statement_id: int, action: str, signature_id: int
    ) -> None:
        """A click on a private "which signature?" answer: open that signature's form, or withdraw it."""
        if await self._turned_away(interaction):
            return
        if action == "unsign":
            withdrawn = await self.service.withdraw(
                statement_id, interaction.user.id, signature_id, guild_id=server_of(interaction)
            )
            if withdrawn is None:
                raise StatementError("That signature is already withdrawn (or isn't yours); nothing changed.")
            await self._answer_withdrawn(interaction, withdrawn)
            return
        statement, _ = await self.service.prepare_sign(
            statement_id, interaction.user.id, "organization", guild_id=server_of(interaction)
        )
        if action == "orgnew":
            await interaction.response.send_modal(sign_form(statement, "organization", None, another=True))
            return
        mine = {s.id: s for s in await self.service.my_signatures(statement_id, interaction.user.id)}
        current = mine.get(signature_id)
        if current is None or current.kind != "organization":
            raise StatementError("That signature was withdrawn meanwhile; use Sign for an organization again.")
        await interaction.response.send_modal(sign_form(statement, "organization", current))

    async def _who_signed(self, interaction: discord.Interaction, statement_id: int) -> None:
        statement = await self.service.get(statement_id, guild_id=server_of(interaction))
        if not member_can_see_channel(interaction, statement.channel_id):
            raise StatementError("That statement no longer exists.")
        signers = await self.service.public_signers(statement_id)
        counts = await self.service.counts(statement_id)
        await send_ephemeral(interaction, who_signed(statement, counts, signers))

    @commands.Cog.listener()
    @answers_errors
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        if interaction.type is not discord.InteractionType.modal_submit or not interaction.data:
            return
        custom_id = str(interaction.data.get("custom_id", ""))
        if not custom_id.startswith("statements:"):
            return
        values = modal_values(interaction.data.get("components", []))  # type: ignore[arg-type]
        if match := SIGN_FORM.match(custom_id):
            if await self._turned_away(interaction):
                return
            await self.sign_ons.submit(
                InteractionReply(interaction),
                int(match[1]),
                match[2],  # type: ignore[arg-type]
                values,
                replaces=int(match[3]) if match[3] else None,
            )
        elif form := CREATE_FORM.match(custom_id) or EDIT_FORM.match(custom_id):
            try:  # a refused form gives its title and text back: a closed form keeps nothing
                if form.re is CREATE_FORM:
                    await self._submit_create_once(interaction, form, values)
                else:
                    await self._submit_edit(interaction, int(form[1]), values)
            except Exception as error:
                await answer_error(interaction, error, typed=typed_text(values, "title", "body"))

    async def _turned_away(self, interaction: discord.Interaction) -> bool:
        """True if this click or form is not worked on (nothing is recorded): Discord already gave up
        on it while it queued (answering would only delay the next ones), or the cog is unloading
        (it is asked to try again)."""
        if self.bot.shedder.late(interaction.id):
            return True
        if self._closing:
            await self._answer_safely(interaction, RESTARTING)
            return True
        return False

    async def _answer_safely(self, interaction: discord.Interaction, text: str) -> None:
        try:
            await send_ephemeral(interaction, text)
        except discord.HTTPException as exc:
            log.warning("could not answer user %s (interaction expired?): %s", interaction.user.id, exc)

    async def _submit_create_once(
        self, interaction: discord.Interaction, match: re.Match[str], values: dict[str, Any]
    ) -> None:
        """One statement per opened form: sent again (a double click, a retry), it gets the first's link."""
        key = (interaction.user.id, match[5] or interaction.id)
        async with self._creating.hold(key):
            if (url := self._created.get(key)) is not None:
                raise StatementError(f"This form was already published: {url}")
            self._created[key] = await self._submit_create(interaction, match, values)
            if len(self._created) > CREATED_KEPT:
                del self._created[next(iter(self._created))]  # the oldest

    async def _submit_create(
        self, interaction: discord.Interaction, match: re.Match[str], values: dict[str, Any]
    ) -> str:
        await ensure_organizer(interaction)
        assert interaction.guild is not None
        channel_id, deadline_ts = int(match[1]), int(match[2])
        await channel_in_guild(self.bot, interaction, channel_id)
        closes_at = datetime.fromtimestamp(deadline_ts, UTC) if deadline_ts else None
        await interaction.response.defer(ephemeral=True, thinking=True)
        draft = await self.service.create_draft(
            guild_id=interaction.guild.id,
            organizer_id=interaction.user.id,
            title=values.get("title") or "",
            body=values.get("body") or "",
            channel_id=channel_id,
            closes_at=closes_at,
            allow_organizations=match[3] == "1",
            public_by_default=match[4] == "1",
            slug=(values.get("slug") or "").strip() or None,
        )
        now = self.bot.clock.now()
        shown = dataclasses.replace(draft, status="open")  # what it will be once published
        # With its guild, the message's jump URL opens it (without, it points at "@me": DMs).
        channel = self.bot.get_partial_messageable(channel_id, guild_id=interaction.guild.id)
        try:
            message = await channel.send(
                embed=statement_embed(Snapshot(shown, Counts()), now),
                view=statement_view(shown, now),
                allowed_mentions=NONE,
            )
        except discord.HTTPException as exc:
            await self.service.discard_draft(draft.id)
            raise StatementError(f"I couldn't post the statement in <#{channel_id}>: {exc.text or exc}.") from None
        try:
            statement = await self.service.publish(
                draft.id, channel_id=channel_id, message_id=message.id, actor_id=interaction.user.id
            )
        except Exception:
            log.exception("publishing statement %s failed after its message %s was posted", draft.id, message.id)
            raise StatementError(await self._unpost(message, draft.id)) from None
        deadline = f", closing {discord_timestamp(statement.closes_at)}" if statement.closes_at else ""
        await send_ephemeral(
            interaction,
            f"Published **{inert(statement.title)}** (`{statement.slug}`) in <#{channel_id}>{deadline}: "
            f"{message.jump_url}",
        )
        return message.jump_url

    async def _unpost(self, message: discord.Message, draft_id: int) -> str:
        """Undo a post whose publishing failed (its buttons would act on a draft); return what to tell."""
        try:
            if not await self.service.discard_draft(draft_id):
                # The publish committed before something after it failed: the statement is live.
                return "The statement was published, but something failed just after (logged for the operator)."
        except Exception:
            log.exception("could not discard the draft of statement %s", draft_id)
        try:
            await message.delete()
        except discord.HTTPException as exc:
            log.warning("could not delete the message %s of unpublished statement %s: %s", message.id, draft_id, exc)
            return (
                "I couldn't publish the statement (the error is logged for the operator), and I couldn't remove "
                f"its message: please delete it by hand ({message.jump_url}), then try again."
            )
        return (
            "I couldn't publish the statement (the error is logged for the operator), so I removed its message. "
            "Nothing was published; please try again."
        )

    async def _submit_edit(self, interaction: discord.Interaction, statement_id: int, values: dict[str, Any]) -> None:
        await ensure_organizer(interaction)
        statement = await self.service.edit(
            statement_id,
            actor_id=interaction.user.id,
            title=values.get("title"),
            body=values.get("body") or "",
            guild_id=server_of(interaction),
        )
        await send_ephemeral(interaction, f"Updated the text of **{inert(statement.title)}**.")
        if statement.channel_id is not None:
            try:
                await self._post_note(
                    statement,
                    f"📝 The text of **{inert(statement.title)}** was edited by an organizer "
                    f"({self.bot.clock.now():%Y-%m-%d %H:%M} UTC).",
                    silent=True,
                )
            except discord.HTTPException as exc:
                log.warning("could not post the edit note of statement %s: %s", statement_id, exc)

    # -- commands -------------------------------------------------------------------------------

    async def _statement_choices(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        if interaction.guild is None or not await may(ensure_organizer, interaction):
            return []
        found = await self.service.search(interaction.guild.id, current, limit=25)
        return [app_commands.Choice(name=f"{s.title[:80]} ({s.status})"[:100], value=s.slug) for s in found]

    async def _find(self, interaction: discord.Interaction, slug: str) -> StatementRow:
        assert interaction.guild is not None
        return await self.service.find(interaction.guild.id, slug)

    @statement.command(name="create", description="Publish a statement members can sign onto")
    @app_commands.describe(
        channel="Where to post it (default: here)",
        deadline="When it closes, UTC: 2026-12-31 or 2026-12-31 18:00 (optional)",
        organizations="Whether organizations may sign (default yes)",
        public_by_default="Whether signers are listed publicly unless they say no (default yes)",
    )
    @organizer_only()
    async def create(
        self,
        interaction: discord.Interaction,
        channel: discord.TextChannel | None = None,
        deadline: str | None = None,
        organizations: bool = True,
        public_by_default: bool = True,
    ) -> None:
        """Open the form for a new statement (title and text)."""
        target = channel or interaction.channel
        if target is None or not isinstance(target, (discord.TextChannel, discord.Thread)):
            raise StatementError("Pick a text channel for the statement with the `channel:` option.")
        ensure_member_can_post(interaction, target)
        closes_at = parse_deadline(deadline, self.bot.clock.now())
        guild = interaction.guild
        me = guild.me if guild else None
        if me is not None and hasattr(target, "permissions_for"):
            perms = target.permissions_for(me)
            if not (perms.view_channel and perms.send_messages and perms.embed_links):
                raise StatementError(f"I can't post in {target.mention} (I need View, Send Messages and Embed Links).")
        custom_id = (
            f"statements:createform:{target.id}:{int(closes_at.timestamp()) if closes_at else 0}"
            f":{int(organizations)}:{int(public_by_default)}:{interaction.id}"
        )
        await interaction.response.send_modal(statement_form(custom_id, "New statement"))

    @statement.command(name="edit", description="Change a statement's text (signers are told in the channel)")
    @app_commands.describe(statement="The statement (type to search)")
    @app_commands.autocomplete(statement=_statement_choices)
    @organizer_only()
    async def edit(self, interaction: discord.Interaction, statement: str) -> None:
        """Open the form with the statement's current title and text."""
        found = await self._find(interaction, statement)
        await interaction.response.send_modal(
            statement_form(f"statements:editform:{found.id}", "Edit statement", found)
        )

    @statement.command(name="close", description="Stop taking signatures now")
    @app_commands.describe(statement="The statement (type to search)")
    @app_commands.autocomplete(statement=_statement_choices)
    @organizer_only()
    async def close(self, interaction: discord.Interaction, statement: str) -> None:
        """Close a statement; the final count is posted in its channel."""
        found = await self._find(interaction, statement)
        closed = await self.service.close(found.id, actor_id=interaction.user.id)
        if closed is None:
            raise StatementError(f"**{inert(found.title)}** is already closed.")
        await send_ephemeral(interaction, f"Closed **{inert(found.title)}**.")
        self.wake_timer()

    @statement.command(name="reopen", description="Take signatures again")
    @app_commands.describe(statement="The statement (type to search)", deadline="New deadline, UTC (optional)")
    @app_commands.autocomplete(statement=_statement_choices)
    @organizer_only()
    async def reopen(self, interaction: discord.Interaction, statement: str, deadline: str | None = None) -> None:
        """Reopen a closed statement, optionally with a new deadline."""
        found = await self._find(interaction, statement)
        closes_at = parse_deadline(deadline, self.bot.clock.now())
        reopened, dropped = await self.service.reopen(found.id, actor_id=interaction.user.id, closes_at=closes_at)
        text = f"Reopened **{inert(reopened.title)}**"
        if reopened.closes_at:
            text += f"; it closes {discord_timestamp(reopened.closes_at)}"
        if dropped:
            text += " (its old deadline had passed, so it now has none: set one with `deadline:`)"
        await send_ephemeral(interaction, text + ".")

    @statement.command(name="repost", description="Post a statement's message again (after it was deleted)")
    @app_commands.describe(
        statement="The statement (type to search)", channel="Where to post it (default: where it was)"
    )
    @app_commands.autocomplete(statement=_statement_choices)
    @organizer_only()
    async def repost(
        self, interaction: discord.Interaction, statement: str, channel: discord.TextChannel | None = None
    ) -> None:
        """Put the statement's message back, with working buttons and the current count."""
        found = await self._find(interaction, statement)
        assert interaction.guild is not None
        guild_id = interaction.guild.id
        target_id = channel.id if channel is not None else found.channel_id
        if target_id is None:
            raise StatementError("Pick a channel for the statement with the `channel:` option.")
        if channel is not None:
            ensure_member_can_post(interaction, channel)
            me = interaction.guild.me
            perms = channel.permissions_for(me)
            if not (perms.view_channel and perms.send_messages and perms.embed_links):
                raise StatementError(f"I can't post in {channel.mention} (I need View, Send Messages and Embed Links).")
        await interaction.response.defer(ephemeral=True, thinking=True)
        # One repost of a statement at a time: the second sees the first's message (not two live messages).
        async with self._reposting.hold(found.id):
            found = await self.service.get(found.id)
            check = target_id == found.channel_id
            old = await existing_message(self.bot, found, guild_id, must_check=check)
            if old is not None and old.channel.id == target_id:
                raise StatementError(
                    f"The message of **{inert(found.title)}** is still there: {old.jump_url} "
                    "(it shows the current count; to move it, give another `channel:`)."
                )
            now = self.bot.clock.now()
            snapshot = Snapshot(found, await self.service.counts(found.id, latest=LATEST_SHOWN))
            try:
                message = await self.bot.get_partial_messageable(target_id, guild_id=guild_id).send(
                    embed=statement_embed(snapshot, now), view=statement_view(found, now), allowed_mentions=NONE
                )
            except discord.HTTPException as exc:
                raise StatementError(f"I couldn't post the statement in <#{target_id}>: {exc.text or exc}.") from None
            reposted = await self.service.reposted(
                found.id, channel_id=target_id, message_id=message.id, actor_id=interaction.user.id
            )
        self._unreachable.discard(found.id)
        self.sign_ons.forget(found.id)
        moved = ""
        if old is not None:
            try:
                await old.delete()
                moved = " The old message was removed."
            except discord.HTTPException as exc:
                log.warning("statement %s: could not delete its old message %s: %s", found.id, old.id, exc)
                moved = f" I couldn't remove the old message ({old.jump_url}); its buttons still work."
        await send_ephemeral(
            interaction, f"Posted **{inert(reposted.title)}** again in <#{target_id}>: {message.jump_url}.{moved}"
        )

    @statement.command(name="signatures", description="Organizers' list of signatures with ids and spam flags")
    @app_commands.describe(statement="The statement (type to search)")
    @app_commands.autocomplete(statement=_statement_choices)
    @organizer_only()
    async def signatures(self, interaction: discord.Interaction, statement: str) -> None:
        """List live signatures (newest first) with ids, visibility and flags."""
        found = await self._find(interaction, statement)
        rows = list(reversed(await self.service.signatures_for_organizers(found.id)))
        await send_ephemeral(interaction, organizers_list(found, rows))

    @statement.command(name="hide", description="Hide a signature from the public list (or show it again)")
    @app_commands.describe(
        statement="The statement (type to search)",
        signature_id="The #number from /statement signatures",
        hidden="False shows it again",
    )
    @app_commands.autocomplete(statement=_statement_choices)
    @organizer_only()
    async def hide(
        self, interaction: discord.Interaction, statement: str, signature_id: int, hidden: bool = True
    ) -> None:
        """Hide or unhide one signature; recorded in the audit log."""
        found = await self._find(interaction, statement)
        signature = await self.service.hide(found.id, signature_id, actor_id=interaction.user.id, hidden=hidden)
        verb = "Hid" if hidden else "Unhid"
        await send_ephemeral(interaction, f"{verb} signature #{signature.id} ({inert(signature.name)}).")

    @statement.command(name="block", description="Stop an account from signing a statement (or allow it again)")
    @app_commands.describe(statement="The statement (type to search)", user="The account", blocked="False unblocks")
    @app_commands.autocomplete(statement=_statement_choices)
    @organizer_only()
    async def block(
        self, interaction: discord.Interaction, statement: str, user: discord.User, blocked: bool = True
    ) -> None:
        """Block or unblock an account; its live signature is hidden; recorded in the audit log."""
        found = await self._find(interaction, statement)
        changed, hidden = await self.service.block(found.id, user.id, actor_id=interaction.user.id, blocked=blocked)
        if blocked:
            text = f"Blocked {user.mention} from signing **{inert(found.title)}**"
            text += " and hid their signature." if hidden else "."
            if not changed:
                text = f"{user.mention} was already blocked from **{inert(found.title)}**."
        else:
            text = (
                f"{user.mention} may sign **{inert(found.title)}** again."
                if changed
                else f"{user.mention} wasn't blocked."
            )
        await send_ephemeral(interaction, text)

    @statement.command(name="export", description="Download the signatures as CSV or JSON (organizers)")
    @app_commands.describe(
        statement="The statement (type to search)", format="csv or json", bom="Start CSV with a BOM (for Excel)"
    )
    @app_commands.autocomplete(statement=_statement_choices)
    @organizer_only()
    async def export(
        self,
        interaction: discord.Interaction,
        statement: str,
        format: Literal["csv", "json"] = "csv",
        bom: bool = True,
    ) -> None:
        """Send the organizers' export as an ephemeral file."""
        found = await self._find(interaction, statement)
        await interaction.response.defer(ephemeral=True, thinking=True)
        data = await self.service.export(
            found, fmt=format, include_discord_ids=True, bom=bom and format == "csv", actor_id=interaction.user.id
        )
        await interaction.followup.send(
            f"Signatures of **{inert(found.title)}** ({format.upper()}, with Discord ids and flags: keep it private).",
            file=discord.File(io.BytesIO(data), filename=f"{found.slug}-signatures.{format}"),
            ephemeral=True,
            allowed_mentions=NONE,
        )


async def setup(bot: ReadersViewsBot) -> None:
    await bot.add_cog(Statements(bot))
