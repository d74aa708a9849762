"""Sign-ons from Discord: a click on Sign opens the sign form, a submitted form records a signature.

Both arrive two ways and end in the same two methods (`click`, `submit`): through discord.py (the
statement message's `StatementButton`, the cog's `on_interaction` for forms), and, for nearly all of
a sign-on burst, straight from the gateway payload (the hot path below). The cog owns the rest of
the statement's buttons and forms; this owns what a burst runs through.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any

import aiohttp
import discord

from bot.discord_internals import gateway_parsers
from bot.errors import UNEXPECTED
from bot.forms import modal_values
from bot.signing import Elsewhere, RawSignReply, SignReply, server_of, sign_route
from bot.statement_rules import SignRequest, StatementError, split_place
from bot.statement_views import sign_form, signed_answer
from bot.store.statement_rows import SignatureRow, SignKind, StatementRow

if TYPE_CHECKING:
    from bot.app import ReadersViewsBot
    from bot.statements import StatementService

log = logging.getLogger(__name__)

DRAIN_SECONDS = 10.0  # sign-ons in flight at unload get this long to be answered
RESTARTING = "I'm restarting right now, so nothing was recorded; please try again in a minute."
BLANK_FORMS_KEPT = 256
CHANNELS_KEPT = 4096


class SignOns:
    """Sign clicks and sign forms of every statement, for the `Statements` cog."""

    def __init__(self, bot: ReadersViewsBot, service: StatementService, *, closing: Callable[[], bool]) -> None:
        self.bot = bot
        self.service = service
        self._closing = closing  # the cog is unloading: sign-ons are asked to retry
        self._blank_forms: dict[tuple[int, str, bool], discord.ui.Modal] = {}
        self._channels: dict[int, int | None] = {}  # statement id -> its message's channel, as last read
        self._usual: Callable[[Any], None] | None = None  # discord.py's INTERACTION_CREATE parser
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._late_answers, self._late_logged_at = 0, float("-inf")
        self._uninstall: Callable[[], None] = lambda: None

    def form(self, statement: StatementRow, kind: SignKind, current: SignatureRow | None) -> discord.ui.Modal:
        """The sign form; a blank one (first signature) is built once per statement and kind, and reused."""
        if current is not None:
            return sign_form(statement, kind, current)
        key = (statement.id, kind, statement.public_by_default)
        form = self._blank_forms.get(key)
        if form is None:
            if len(self._blank_forms) >= BLANK_FORMS_KEPT:
                self._blank_forms.clear()
            form = self._blank_forms[key] = sign_form(statement, kind, None)
        return form

    async def click(self, reply: SignReply, statement_id: int) -> None:
        """Sign: the personal sign form, filled in with the member's signature if there is one."""
        # One DB read: the statement, whether the account is blocked, its live personal signature.
        statement, current = await self.service.prepare_sign(
            statement_id, reply.user_id, "individual", guild_id=server_of(reply)
        )
        self._remember(statement)
        self._where_it_is(reply, statement.channel_id)
        await reply.form(self.form(statement, "individual", current))

    def forget(self, statement_id: int) -> None:
        """The statement's message moved (repost): read its channel again at the next sign-on."""
        self._channels.pop(statement_id, None)

    def _where_it_is(self, reply: SignReply, channel_id: int | None) -> None:
        """Statement ids in custom_ids can be forged: one whose message is in a channel the member
        can't see is answered as missing (its title is in the form and the answer)."""
        if channel_id is not None and channel_id != reply.channel_id and not reply.can_see(channel_id):
            raise StatementError("That statement no longer exists.")

    async def _channel_of(self, reply: SignReply, statement_id: int) -> int | None:
        """The statement's channel: as read at the member's click, or read again if the form comes
        from elsewhere (the statement may have moved since)."""
        if statement_id in self._channels and self._channels[statement_id] == reply.channel_id:
            return reply.channel_id
        statement = await self.service.get(statement_id, guild_id=server_of(reply))
        self._remember(statement)
        return statement.channel_id

    def _remember(self, statement: StatementRow) -> None:
        if len(self._channels) >= CHANNELS_KEPT:
            self._channels.clear()
        self._channels[statement.id] = statement.channel_id

    async def submit(
        self, reply: SignReply, statement_id: int, kind: SignKind, values: dict[str, Any], *, replaces: int | None
    ) -> None:
        """A submitted sign form: record the signature (committed before the answer) and say what it did."""
        self._where_it_is(reply, await self._channel_of(reply, statement_id))
        city, country = split_place(values.get("place"))
        public_choice = values.get("public") or []
        request = SignRequest(
            statement_id=statement_id,
            user_id=reply.user_id,
            kind=kind,
            name=values.get("name"),
            role=values.get("role"),
            organization=values.get("organization"),
            city=city,
            country=country,
            public=(public_choice[0] if public_choice else "yes") == "yes",
            account_created_at=reply.account_created_at,
            guild_id=server_of(reply),
            replaces=replaces,
        )
        outcome = await self.service.sign(request)
        await reply.text(signed_answer(outcome))

    # -- the hot path ---------------------------------------------------------------------------
    #
    # Why it exists: in a sign-on burst nearly every interaction is a click on Sign or a sign form,
    # and discord.py's usual path costs more than the sign-on itself. It builds an `Interaction`
    # (parsing the whole clicked message: embed, components, author), dispatches it to every cog's
    # `on_interaction` (a task each), then rebuilds a View from the message to find the
    # `DynamicItem` (measured with bench/signons.py: about a third of the bot's CPU per sign-on).
    # These two interactions need only ids, the token and the form's values, so they are taken
    # from the gateway payload and answered with discord.py's own interaction-callback request.
    # Everything else stays the same: the custom ids are unchanged (old buttons keep working, and
    # `StatementButton` still answers a click that reaches it), servers not served are refused by
    # the tenants gate first, the statement's server is checked against the click's, late
    # interactions are skipped, and signatures go through the same group-commit writer.

    def install(self) -> None:
        parsers = gateway_parsers(self.bot)  # bot.discord_internals: the one place that knows the attribute
        usual = parsers["INTERACTION_CREATE"]  # with the tenants gate on it, if servers are listed
        tenants, http = self.bot.tenants, self.bot.http
        session = self._session = aiohttp.ClientSession(
            connector=http.connector, connector_owner=False, cookie_jar=aiohttp.DummyCookieJar()
        )

        self._usual = usual

        def interaction_create(data: Any) -> None:
            route = sign_route(data)
            if route is None or not tenants.serves(int(data["guild_id"])):
                usual(data)
                return
            reply = RawSignReply(http, session, data, int(data["guild_id"]))
            self._spawn(self._fast_sign(reply, *route, data))

        def uninstall() -> None:
            if parsers.get("INTERACTION_CREATE") is interaction_create:
                parsers["INTERACTION_CREATE"] = usual

        parsers["INTERACTION_CREATE"] = interaction_create
        self._uninstall = uninstall

    async def aclose(self) -> None:
        """Stop taking sign-ons from the payload; let those already taken be answered (bounded)."""
        self._uninstall()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=DRAIN_SECONDS)

    async def close_session(self) -> None:
        """After the writer drained: the answers' own HTTP session."""
        if self._session is not None:
            await self._session.close()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fast_sign(
        self, reply: RawSignReply, route: str, match: re.Match[str], payload: Mapping[str, Any]
    ) -> None:
        """A Sign click or a sign form from the hot path, with the same answers as the usual one.

        Not `bot.errors.answer_error`: there is no `discord.Interaction` here (building one is what the
        hot path saves), so this keeps its own minimal answers, with the policy's texts."""
        if self.bot.shedder.late(reply.id):
            return
        data = payload["data"]
        try:
            if self._closing():
                await reply.text(RESTARTING)
            elif route == "click":
                await self.click(reply, int(match[1]))
            else:
                await self.submit(
                    reply,
                    int(match[1]),
                    match[2],  # type: ignore[arg-type]
                    modal_values(data.get("components", [])),
                    replaces=int(match[3]) if match[3] else None,
                )
        except Elsewhere:
            if self._usual is not None:  # nothing was recorded or answered yet
                self._usual(payload)
        except StatementError as exc:
            await self._reply_safely(reply, str(exc))
        except discord.NotFound as exc:
            # 10062: answered too late (over capacity). What was recorded stays recorded; the metrics
            # count each one, the log says so once a minute (a line each would add to the overload).
            self._answered_late(exc)
        except discord.HTTPException as exc:
            log.warning("sign-on %s (%s): could not answer user %s: %s", route, data.get("custom_id"),
                        reply.user_id, exc)  # fmt: skip
        except Exception:
            log.exception("sign-on %s (%s) failed for user %s", route, data.get("custom_id"), reply.user_id)
            await self._reply_safely(reply, UNEXPECTED)

    def _answered_late(self, exc: discord.HTTPException) -> None:
        self._late_answers += 1
        now = time.monotonic()
        if now - self._late_logged_at >= 60:
            log.warning("%d sign-on answer(s) came too late for Discord (%s); their members see "
                        "'This interaction failed' and can try again", self._late_answers, exc)  # fmt: skip
            self._late_answers, self._late_logged_at = 0, now

    async def _reply_safely(self, reply: RawSignReply, text: str) -> None:
        if reply.answered:
            return
        try:
            await reply.text(text)
        except Exception as exc:  # the last answer there is; the cause was logged already
            log.warning("could not answer user %s (interaction expired?): %s", reply.user_id, exc)
