"""The sign-on hot path: group commit of signatures, the read behind a click on Sign, and the answers
(`SignReply`: from a discord.py `Interaction`, or straight from the gateway payload).

See `LoopConnection` for why sign-ons use a plain sqlite3 connection in the event loop's thread.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import re
import sqlite3
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
import discord
import orjson
import yarl
from discord.http import json_or_text
from discord.webhook.async_ import interaction_message_response_params

from bot import metrics
from bot.checks import member_can_see_channel
from bot.concurrency import Batcher
from bot.errors import send_ephemeral
from bot.statement_rules import StatementError
from bot.store.statement_rows import SignatureInput, SignatureRow, SignOutcome, StatementRow
from bot.store.statements import StatementsRepo, sign_contexts_on

if TYPE_CHECKING:
    from bot.store.database import Database

log = logging.getLogger(__name__)


class LoopConnection:
    """A plain sqlite3 connection to the database file for the sign-on hot path, used only in the
    event loop's thread, and only for one short transaction or read at a time.

    Why: every call through aiosqlite is a hop to its thread and back, and that hop costs several
    times the query (`python bench/signons.py --hops`: ~140 µs of CPU per read through the thread,
    ~26-36 µs directly). In WAL mode a reader never waits for the writer, and a writer that finds
    the file locked is told so at once (`busy_timeout = 0`): the caller then takes the aiosqlite
    path, which waits, so the event loop never does. Checkpoints are left to the main connection.
    Without a database file (`:memory:`, URIs: no reading connection either) there is none.
    """

    def __init__(self, db: Database) -> None:
        self._path = db.path if db.reader is not None else None
        self._conn: sqlite3.Connection | None = None

    def get(self) -> sqlite3.Connection | None:
        if self._conn is None and self._path is not None:
            conn = sqlite3.connect(self._path, isolation_level=None)
            conn.row_factory = sqlite3.Row
            for pragma in ("busy_timeout = 0", "synchronous = NORMAL", "foreign_keys = ON", "wal_autocheckpoint = 0"):
                conn.execute(f"PRAGMA {pragma}")
            self._conn = conn
        return self._conn

    def reset(self, exc: sqlite3.Error) -> None:
        """After an error other than "locked": start over with a fresh connection next time."""
        log.info("sign-on connection: %s; reconnecting on the next sign-on", exc)
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def is_locked(exc: sqlite3.Error) -> bool:
    """SQLite answered "busy" or "locked": another connection is writing."""
    return getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class SignatureWriter(Batcher[SignatureInput, SignOutcome]):
    """Writes sign-ons: committed before `write` returns, so an answer "signed" means "on disk".

    While nothing waits in the group commit, sign-ons are committed on the `LoopConnection`, in the
    event loop's thread: those that arrive in the same turn of the loop (a burst's gateway frames
    come several at a time) are collected and written together in one short transaction, at the end
    of that turn. If the file is locked (another writer), they join the group commit instead:
    submits queue up and one flusher writes everything queued in one transaction through aiosqlite.
    Going direct only while that queue is empty keeps sign-ons in arrival order.
    """

    def __init__(self, repo: StatementsRepo, *, max_batch: int = 500, direct: LoopConnection | None = None) -> None:
        super().__init__(repo.sign_batch, name="statement-signature-writer", max_batch=max_batch)
        self._repo = repo
        self._direct = direct
        self._turn: list[tuple[SignatureInput, asyncio.Future[SignOutcome]]] = []
        self.direct_writes = 0
        self.direct_batches = 0

    async def write(self, request: SignatureInput) -> SignOutcome:
        if self._direct is None or not (self._turn or self._group_idle()):
            return await self.submit(request)
        future: asyncio.Future[SignOutcome] = asyncio.get_running_loop().create_future()
        self._turn.append((request, future))
        if len(self._turn) == 1:
            asyncio.get_running_loop().call_soon(self._write_turn)
        return await asyncio.shield(future)

    def _group_idle(self) -> bool:
        """Nothing waits in the group commit, and no batch of it is being written."""
        return not self._queue and (self._worker is None or self._worker.done())

    def _write_turn(self) -> None:
        """Commit the sign-ons collected in this turn of the loop (those the file refuses take the queue)."""
        batch, self._turn = self._turn, []
        if not batch:
            return
        assert self._direct is not None
        conn = self._direct.get()
        outcomes: list[SignOutcome] | None = None
        if conn is not None:
            try:
                outcomes = self._repo.sign_batch_on(conn, [request for request, _ in batch])
            except sqlite3.Error as exc:
                if not is_locked(exc):
                    self._direct.reset(exc)
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
        if outcomes is None:  # in the queue at once, in order, before any later sign-on can go direct
            for request, future in batch:
                self._enqueue(request, future)
            return
        self.direct_writes += len(batch)
        self.direct_batches += 1
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)

    async def drain(self) -> None:
        self._write_turn()
        await super().drain()


SignContext = tuple[StatementRow | None, bool, SignatureRow | None]


class SignContextReader(Batcher[tuple[int, int], SignContext]):
    """The read behind a click on Sign: the statement, the block list and the account's live signature.

    On a database file it is one indexed read on the `LoopConnection`, in the event loop's thread:
    in WAL mode a reader never waits for the writer and sees every committed change. Should that
    read fail (the file busy during recovery, say), or without a file, the click takes the group
    read: lookups queued while one is in flight share the next hop to aiosqlite's reading thread.
    Each read starts after its click arrived, so it sees every change committed before.
    """

    def __init__(self, repo: StatementsRepo, *, max_batch: int = 400, direct: LoopConnection | None = None) -> None:
        async def read(pairs: list[tuple[int, int]]) -> list[SignContext]:
            found = await repo.sign_contexts(pairs)
            return [found[pair] for pair in pairs]

        super().__init__(read, name="statement-sign-context-reader", max_batch=max_batch)
        self._direct = direct
        self.direct_reads = 0

    async def get(self, statement_id: int, user_id: int) -> SignContext:
        pair = (statement_id, user_id)
        conn = self._direct.get() if self._direct is not None else None
        if conn is not None:
            try:
                context = sign_contexts_on(conn, [pair])[pair]
            except sqlite3.Error as exc:
                if not is_locked(exc):
                    assert self._direct is not None
                    self._direct.reset(exc)
            else:
                self.direct_reads += 1
                return context
        return await self.submit(pair)


# -- the Discord side: who signs, and how they are answered ---------------------------------------

# An organization form that changes one of the member's signatures names it: `:organization:<id>`.
SIGN_FORM = re.compile(r"^statements:signform:(\d+):(individual|organization)(?::(\d+))?$")
SIGN_CLICK = re.compile(r"^statements:sign:(\d+)$")  # StatementButton's custom_id for the Sign button
COMPONENT_INTERACTION, MODAL_SUBMIT_INTERACTION = 3, 5  # Discord's interaction types
BUTTON = 2  # Discord's component type
NONE = discord.AllowedMentions.none()


class Elsewhere(Exception):
    """A sign-on from the hot path for a statement whose message is in another channel than the click
    (an old message of a reposted statement, or a forged id): discord.py's usual path, which has the
    member's permissions, decides whether they may see it."""


def server_of(interaction: discord.Interaction | SignReply) -> int:
    """The server a click or form comes from: statements of any other server are out of its reach."""
    if interaction.guild_id is None:
        raise StatementError("Statements work only inside a server.")
    return interaction.guild_id


class SignReply(Protocol):
    """Who is signing, where, and how to answer them: a `discord.Interaction` (`InteractionReply`) or
    the raw gateway payload of the sign-on hot path (`RawSignReply`)."""

    id: int
    user_id: int
    guild_id: int | None
    channel_id: int | None  # where the click or form came from

    @property
    def account_created_at(self) -> datetime: ...

    def can_see(self, channel_id: int) -> bool:
        """Whether the member may see that channel of the server (raises `Elsewhere` if this reply can't tell)."""
        ...

    async def text(self, content: str) -> None: ...

    async def form(self, modal: discord.ui.Modal) -> None: ...


class InteractionReply:
    """A `SignReply` over a discord.py `Interaction` (buttons and forms that took the usual path)."""

    def __init__(self, interaction: discord.Interaction) -> None:
        self.interaction = interaction
        self.id = interaction.id
        self.user_id = interaction.user.id
        self.guild_id = interaction.guild_id
        self.channel_id = interaction.channel_id

    @property
    def account_created_at(self) -> datetime:
        return self.interaction.user.created_at

    def can_see(self, channel_id: int) -> bool:
        return member_can_see_channel(self.interaction, channel_id)

    async def text(self, content: str) -> None:
        await send_ephemeral(self.interaction, content)

    async def form(self, modal: discord.ui.Modal) -> None:
        await self.interaction.response.send_modal(modal)


CALLBACK_PATH = "/interactions/{id}/{token}/callback"  # for the metrics: what was answered, how


class RawSignReply:
    """A `SignReply` read straight from an INTERACTION_CREATE payload, answered with `post_callback`.

    `session` is an aiohttp session on discord.py's connector (its connections and limit) without
    the bot's trace hooks: measured, they cost a third of an interaction callback's client-side CPU,
    and callbacks are exempt from the global limit the pacer keeps. `post_callback` counts the
    answers in the metrics instead."""

    def __init__(
        self, http: discord.http.HTTPClient, session: aiohttp.ClientSession, data: Mapping[str, Any], guild_id: int
    ) -> None:
        self._http = http
        self._session = session
        self.id = int(data["id"])
        self.token: str = data["token"]
        self.user_id = int(data["member"]["user"]["id"])
        self.guild_id: int | None = guild_id
        self.channel_id = int(data["channel_id"]) if data.get("channel_id") else None
        self.answered = False

    @property
    def account_created_at(self) -> datetime:
        return discord.utils.snowflake_time(self.user_id)

    def can_see(self, channel_id: int) -> bool:
        raise Elsewhere  # the payload has no member to compute permissions with: discord.py's path has

    async def _callback(self, payload: dict[str, Any]) -> None:
        await post_callback(self._session, self._http, self.id, self.token, payload)
        self.answered = True

    async def text(self, content: str) -> None:
        if self.answered:
            raise RuntimeError("a sign-on is answered once")
        params = interaction_message_response_params(
            type=discord.InteractionResponseType.channel_message.value,
            content=content,
            flags=discord.MessageFlags(ephemeral=True),
            allowed_mentions=NONE,
        )
        assert params.payload is not None  # no files: a JSON body
        await self._callback(params.payload)

    async def form(self, modal: discord.ui.Modal) -> None:
        await self._callback({"type": discord.InteractionResponseType.modal.value, "data": modal.to_dict()})


CALLBACK_ATTEMPTS = 5
_JSON = {"Content-Type": "application/json"}
_TOKEN = re.compile(r"[A-Za-z0-9._-]+")


async def post_callback(
    session: aiohttp.ClientSession,
    http: discord.http.HTTPClient,
    interaction_id: int,
    token: str,
    payload: dict[str, Any],
) -> None:
    """Answer an interaction: the request discord.py's `InteractionResponse` makes, made leaner.

    Why not discord.py's `AsyncWebhookAdapter.create_interaction_response`: in a sign-on burst
    (bench/signons.py, py-spy) it was 44 % of the event loop's CPU, a quarter of that around
    aiohttp's own request: the route, a lock per token (a token is answered once), and
    `with_response=1`, which makes Discord send the created message back to be read and parsed.
    This asks for Discord's default, 204 without a body, and answers errors as discord.py does:
    a 429 waits `retry_after` and tries again (one without `Via` is Cloudflare's and is raised),
    5xx and a reset connection wait 1, 3, 5 … s, other statuses raise discord.py's exceptions."""
    path = f"/interactions/{interaction_id}/{token}/callback"
    url = yarl.URL(discord.http.Route.BASE + path, encoded=_TOKEN.fullmatch(token) is not None)
    body = orjson.dumps(payload)
    response: aiohttp.ClientResponse | None = None
    data: Any = None
    for attempt in range(CALLBACK_ATTEMPTS):
        try:
            async with session.post(
                url, data=body, headers=_JSON, proxy=http.proxy, proxy_auth=http.proxy_auth
            ) as response:
                metrics.count_discord_answer("POST", CALLBACK_PATH, response.status)
                if response.status < 300:
                    return
                data = await json_or_text(response)
                if response.status == 429 and response.headers.get("Via"):
                    retry_after = data.get("retry_after") if isinstance(data, dict) else None
                    await asyncio.sleep(float(retry_after or 1.0))
                    continue
                if response.status >= 500:
                    await asyncio.sleep(1 + attempt * 2)
                    continue
                error = {403: discord.Forbidden, 404: discord.NotFound}.get(response.status, discord.HTTPException)
                raise error(response, data)
        except OSError as exc:
            if attempt < CALLBACK_ATTEMPTS - 1 and exc.errno in (errno.ECONNRESET, 10054):
                await asyncio.sleep(1 + attempt * 2)
                continue
            raise
    assert response is not None
    if response.status >= 500:
        raise discord.DiscordServerError(response, data)
    raise discord.HTTPException(response, data)


def sign_route(data: Any) -> tuple[str, re.Match[str]] | None:
    """("click", match) for a click on a Sign button, ("form", match) for a sign form submitted in a
    server; None for every other interaction (they take discord.py's usual path)."""
    if not isinstance(data, dict) or "member" not in data or not data.get("guild_id"):
        return None
    inner = data.get("data") or {}
    custom_id = inner.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id.startswith("statements:sign"):
        return None
    kind = data.get("type")
    if kind == COMPONENT_INTERACTION and inner.get("component_type") == BUTTON:
        match = SIGN_CLICK.match(custom_id)
        return ("click", match) if match else None
    if kind == MODAL_SUBMIT_INTERACTION:
        match = SIGN_FORM.match(custom_id)
        return ("form", match) if match else None
    return None
