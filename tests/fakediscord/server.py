"""FakeDiscord: the loopback server, its world and the helpers tests drive it with."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from aiohttp import web

from . import interactions as I
from . import messages as M
from . import perms as P
from .fastjson import clone
from .gateway import Gateway
from .ratelimit import RateLimits
from .snowflake import SnowflakeGenerator, iso, now
from .world import DM, PUBLIC_THREAD, Channel, Guild, Member, Role, User

log = logging.getLogger("fakediscord")

DEFAULT_TOKEN = "MTAwMDAwMDAwMDAwMDAwMDAw.fake.token-for-tests"


@dataclasses.dataclass
class RequestRecord:
    method: str
    path: str  # path under /api/v10, e.g. /channels/123/messages
    route: str  # template, e.g. POST /channels/{channel_id}/messages
    query: dict[str, str]
    json: Any
    files: list[M.Upload]
    headers: dict[str, str]
    status: int = 0
    response: Any = None
    at: float = dataclasses.field(default_factory=time.monotonic)


@dataclasses.dataclass
class FailRule:
    method: str
    pattern: re.Pattern[str]
    status: int
    code: int
    message: str
    times: int
    retry_after: float = 0.05
    is_global: bool = False
    errors: dict[str, Any] | None = None
    after_effect: bool = False  # the request takes effect, then this error answers it (the answer is lost)


@dataclasses.dataclass
class HoldRule:
    """The next matching request waits until released (`arrived` is set when it comes in): a slow answer.

    `release()` lets it through; `release(fail=503)` answers it with that error instead, leaving no effect.
    With `after_effect` the request is carried out first and only its answer is held (Discord did it; the
    client does not know yet).
    """

    method: str
    pattern: re.Pattern[str]
    after_effect: bool = False
    arrived: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    released: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    fail_status: int | None = None

    def release(self, fail: int | None = None) -> None:
        self.fail_status = fail
        self.released.set()


@dataclasses.dataclass
class Edit:
    """A message edit: who edited it, through which route, before and after."""

    message_id: int
    channel_id: int
    before: dict[str, Any]
    after: dict[str, Any]
    via: str


class FakeDiscord:
    """A loopback Discord: REST under ``/api/v10`` and a gateway websocket at ``/gateway``."""

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        bot_name: str = "readersviews",
        heartbeat_interval_ms: int = 1000,
        host: str = "127.0.0.1",
    ) -> None:
        self.ids = SnowflakeGenerator()
        self.token = token
        self.host = host
        self.port = 0
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.recommended_shards = 1  # GET /gateway/bot "shards" (AutoShardedBot without a count uses it)
        self.interaction_timeout = 3.0  # seconds to answer an interaction
        self.followup_timeout = 15 * 60.0  # token lifetime
        self.attachment_size_limit = 10 * 1024 * 1024
        self.dm_app_permissions = 0
        self.refuse_resume = False  # make RESUME fail with op 9

        self.users: dict[int, User] = {}
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, Channel] = {}
        self.bot = self.add_user(bot_name, bot=True)
        self.application_id = self.bot.id  # as for bots created since 2019
        self.application_flags = (1 << 19) | (1 << 23)  # GATEWAY_MESSAGE_CONTENT_LIMITED | APPLICATION_COMMAND_BADGE
        self.app_owner = self.add_user("app-owner")

        # application commands: key None = global, else guild id
        self.commands: dict[int | None, list[dict[str, Any]]] = {}
        self.command_syncs: list[tuple[int | None, list[dict[str, Any]]]] = []

        # records
        self.requests: list[RequestRecord] = []
        self.errors: list[str] = []  # fake-side crashes (answered 400)
        self.unhandled: list[str] = []  # unknown routes (answered 404)
        self.edits: list[Edit] = []
        self.deleted_messages: list[dict[str, Any]] = []
        self.interactions: dict[int, I.FakeInteraction] = {}
        self.channel_webhooks: dict[int, dict[str, Any]] = {}  # id -> webhook object (with its token)
        self.modals: dict[int, tuple[dict[str, Any], I.FakeInteraction]] = {}  # user id -> last modal
        self.attachments: dict[int, bytes] = {}
        self.message_meta: dict[int, dict[str, Any]] = {}  # allowed_mentions, uploads per message id
        self.all_messages: dict[int, dict[str, Any]] = {}  # including ephemeral ones
        self.dm_closed: set[int] = set()  # users who refuse DMs (50007)
        self.count_429 = 0
        self.rate_limits = RateLimits()
        self._fail_rules: list[FailRule] = []
        self._hold_rules: list[HoldRule] = []

        self.gateway = Gateway(self)
        self._queue: asyncio.Queue[tuple[str, dict[str, Any], int | None, asyncio.Future[bool]]] | None = None
        self._pump: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None

        from .rest import Api

        self.api = Api(self)

    # ------------------------------------------------------------------ lifecycle
    async def start(self, *, backlog: int = 1024) -> None:
        """Listen on a free port. `backlog` is the accept queue: aiohttp's default (128) overflows under
        a burst of new connections, and the kernel then drops SYNs (retried after 1 s, 3 s, ...)."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_get("/", self.gateway.handle)
        app.router.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", self._serve_attachment)
        app.router.add_route("*", "/api/{version}/{tail:.*}", self.api.handle)
        app.router.add_route("*", "/{tail:.*}", self.api.handle_unknown)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=backlog)  # self.port set before start: that port
        await site.start()
        server: Any = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]
        self._queue = asyncio.Queue()
        self._pump = asyncio.create_task(self._pump_events(), name="fakediscord-pump")

    async def stop(self) -> None:
        await self.gateway.close_all()
        if self._pump is not None:
            self._pump.cancel()
            try:
                await self._pump
            except asyncio.CancelledError:
                pass
            self._pump = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://{self.host}:{self.port}/gateway"

    # ------------------------------------------------------------------ world
    def add_user(
        self,
        username: str,
        *,
        bot: bool = False,
        created_at: dt.datetime | None = None,
        global_name: str | None = None,
    ) -> User:
        user = User(id=self.ids.next(created_at), username=username, bot=bot, global_name=global_name)
        self.users[user.id] = user
        return user

    def add_guild(
        self,
        name: str = "Test Server",
        *,
        owner: User | None = None,
        bot_permissions: int = P.DEFAULT_BOT,
        everyone_permissions: int = P.DEFAULT_EVERYONE,
        shard: tuple[int, int] | None = None,
    ) -> Guild:
        """A guild with an owner member, the bot (with a managed role holding ``bot_permissions``).

        `shard`: (shard id, shard count) the guild's id must fall on ((id >> 22) % count).
        """
        owner = owner or self.add_user(f"{name.lower().replace(' ', '-')}-owner")
        guild_id = self.ids.next()
        if shard is not None:
            wanted, count = shard
            # The shard comes from the id's timestamp part: step it by whole milliseconds.
            guild_id += ((wanted - (guild_id >> 22) % count) % count) << 22
        guild = Guild(self, guild_id, name, owner)
        guild.everyone.permissions = everyone_permissions
        self.guilds[guild.id] = guild
        guild.add_member(owner.username, user=owner)
        bot_role = Role(
            id=self.ids.next(),
            guild=guild,
            name=self.bot.username,
            permissions=bot_permissions,
            position=1,
            managed=True,
            bot_id=self.bot.id,
        )
        guild.roles[bot_role.id] = bot_role
        guild.bot_role = bot_role  # type: ignore[attr-defined]
        guild.add_member(self.bot.username, roles=[bot_role], user=self.bot)
        self._world_event("GUILD_CREATE", guild.payload(include_members=False), intent=P.GUILDS)
        return guild

    def bot_role(self, guild: Guild) -> Role:
        return guild.bot_role  # type: ignore[attr-defined,no-any-return]

    def channel(self, channel_id: int | str) -> Channel | None:
        return self.channels.get(int(channel_id))

    def messages_in(self, channel: Channel | int | str) -> list[dict[str, Any]]:
        """Messages stored in a channel or thread (oldest first; no ephemeral ones)."""
        cid = channel.id if isinstance(channel, Channel) else int(channel)
        ch = self.channels.get(cid)
        return list(ch.messages.values()) if ch else []

    def threads_in(self, parent: Channel | int | str) -> list[Channel]:
        pid = parent.id if isinstance(parent, Channel) else int(parent)
        return [c for c in self.channels.values() if c.is_thread and c.parent_id == pid and not c.deleted]

    def find_message(self, message_id: int | str) -> dict[str, Any] | None:
        return self.all_messages.get(int(message_id))

    def requests_to(self, route: str | None = None, *, method: str | None = None) -> list[RequestRecord]:
        """Recorded requests whose route template contains ``route`` (and method)."""
        return [
            r
            for r in self.requests
            if (route is None or route in r.route) and (method is None or r.method == method.upper())
        ]

    def commands_for(self, guild: Guild | None = None) -> list[dict[str, Any]]:
        return self.commands.get(guild.id if guild else None, [])

    # ------------------------------------------------------------------ failures
    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int,
        code: int = 0,
        message: str | None = None,
        *,
        times: int = 1,
        retry_after: float = 0.05,
        is_global: bool = False,
        errors: dict[str, Any] | None = None,
        after_effect: bool = False,
    ) -> None:
        """Answer the next ``times`` matching requests with an error (``re.search`` on the path
        under /api/v10, e.g. ``r"/channels/\\d+/messages$"``). Status 429 sends a rate-limit answer.
        ``after_effect``: the request is carried out first, then answered with the error (a lost answer:
        Discord did it, the client can't tell)."""
        default = {
            400: "Bad Request",
            401: "401: Unauthorized",
            403: "Missing Permissions",
            404: "404: Not Found",
            429: "You are being rate limited.",
            500: "500: Internal Server Error",
        }
        self._fail_rules.append(
            FailRule(
                method.upper(),
                re.compile(path_regex),
                status,
                code,
                message or default.get(status, "Error"),
                times,
                retry_after,
                is_global,
                errors,
                after_effect,
            )
        )

    def hold_next(self, method: str, path_regex: str, *, after_effect: bool = False) -> HoldRule:
        """Hold the next matching request (or, `after_effect`, its answer) until the returned rule is released."""
        rule = HoldRule(method.upper(), re.compile(path_regex), after_effect)
        self._hold_rules.append(rule)
        return rule

    def _take_hold_rule(self, method: str, path: str) -> HoldRule | None:
        for rule in self._hold_rules:
            if rule.method in (method, "*") and rule.pattern.search(path):
                self._hold_rules.remove(rule)
                return rule
        return None

    def _take_fail_rule(self, method: str, path: str) -> FailRule | None:
        for rule in self._fail_rules:
            if rule.method in (method, "*") and rule.pattern.search(path):
                rule.times -= 1
                if rule.times <= 0:
                    self._fail_rules.remove(rule)
                return rule
        return None

    # ------------------------------------------------------------------ gateway
    @property
    def identify_count(self) -> int:
        return self.gateway.identify_count

    @property
    def resume_count(self) -> int:
        return self.gateway.resume_count

    @property
    def intents(self) -> int:
        return self.gateway.session.intents if self.gateway.session else 0

    async def wait_for_ready(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Until the client has identified and all GUILD_CREATEs were sent."""
        await asyncio.wait_for(self.gateway.ready.wait(), timeout)

    async def wait_for_shards(self, shard_ids: set[int], timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Until each of these shards has identified (by any client) and got its guilds."""
        await self.gateway.wait_for_shards(shard_ids, timeout)

    @property
    def shards(self) -> dict[int, tuple[int, int]]:
        """{shard id: (shard id, shard count)} of the sessions identified so far."""
        return {shard_id: session.shard for shard_id, session in self.gateway.sessions.items()}

    async def wait_for_resume(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        await asyncio.wait_for(self.gateway.resumed.wait(), timeout)

    async def drop_gateway(self, code: int = 4000, *, abrupt: bool = False) -> None:
        """Close the bot's websocket; the client reconnects and RESUMEs (missed events replayed)."""
        await self.flush()
        await self.gateway.drop(code, abrupt=abrupt)

    async def send_reconnect(self) -> None:
        """Op 7: ask the client to reconnect and resume."""
        await self.gateway.send_op(7)

    async def invalidate_session(self, resumable: bool = False) -> None:
        await self.gateway.send_op(9, resumable)

    async def roundtrip(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until the client has parsed every event sent so far (handlers may still run)."""
        await self.flush()
        await self.gateway.roundtrip(timeout)

    async def settle(self, delay: float = 0.05) -> None:
        """roundtrip() and give event handlers a moment to run."""
        await self.roundtrip()
        await asyncio.sleep(delay)

    def _world_event(self, t: str, d: dict[str, Any], intent: int | None = P.GUILDS) -> asyncio.Future[bool] | None:
        if self._queue is None or self.gateway.session is None:
            return None
        return self._emit(t, d, intent)

    def _emit(self, t: str, d: dict[str, Any], intent: int | None) -> asyncio.Future[bool]:
        assert self._queue is not None, "FakeDiscord not started"
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((t, d, intent, fut))
        return fut

    async def dispatch(self, t: str, d: dict[str, Any], *, intent: int | None = None) -> bool:
        """Send a raw gateway event (in order with all others); False if not delivered."""
        return await self._emit(t, d, intent)

    async def flush(self) -> None:
        """Until every queued event is on the wire."""
        if self._queue is not None:
            await self._emit("__FLUSH__", {}, None)

    async def _pump_events(self) -> None:
        assert self._queue is not None
        while True:
            t, d, intent, fut = await self._queue.get()
            try:
                ok = True if t == "__FLUSH__" else await self.gateway.dispatch(t, d, intent=intent)
            except Exception as exc:  # pragma: no cover - fake bug
                log.exception("dispatch failed")
                self.errors.append(f"dispatch {t}: {exc!r}")
                ok = False
            if not fut.done():
                fut.set_result(ok)

    # ------------------------------------------------------------------ messages
    def store_attachment(
        self,
        channel_id: int,
        attachment_id: int,
        filename: str,
        data: bytes,
        content_type: str,
        description: str | None = None,
    ) -> dict[str, Any]:
        self.attachments[attachment_id] = data
        url = f"{self.base_url}/attachments/{channel_id}/{attachment_id}/{filename}"
        att: dict[str, Any] = {
            "id": str(attachment_id),
            "filename": filename,
            "size": len(data),
            "url": url,
            "proxy_url": url,
            "content_type": content_type,
            "content_scan_version": 0,
        }
        if description:
            att["description"] = description
        return att

    async def _serve_attachment(self, request: web.Request) -> web.Response:
        data = self.attachments.get(int(request.match_info["attachment_id"]))
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="application/octet-stream")

    def attachment_bytes(self, attachment: Mapping[str, Any] | int | str) -> bytes:
        aid = int(attachment["id"]) if isinstance(attachment, Mapping) else int(attachment)
        return self.attachments[aid]

    def can_see_content(self, message: Mapping[str, Any]) -> bool:
        """Whether the bot's gateway session receives this message's content (intent rules)."""
        if self.intents & P.MESSAGE_CONTENT:
            return True
        if int(message["author"]["id"]) == self.bot.id:
            return True
        if message.get("guild_id") is None and "member" not in message:
            ch = self.channels.get(int(message["channel_id"]))
            if ch is None or ch.type == DM:
                return True
        return any(int(u["id"]) == self.bot.id for u in message.get("mentions", []))

    def visible(self, message: dict[str, Any]) -> dict[str, Any]:
        """The message as the bot sees it (blank content without the message-content intent)."""
        if self.can_see_content(message):
            return message
        m = dict(message)
        m.update({"content": "", "embeds": [], "attachments": [], "components": []})
        m.pop("poll", None)
        return m

    def build_message(
        self,
        channel: Channel,
        author: User,
        body: Mapping[str, Any],
        *,
        uploads: Iterable[M.Upload] = (),
        mtype: int = M.DEFAULT,
        message_id: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A message dict in Discord's REST shape (no ``guild_id``/``member``); not stored."""
        mid = message_id or self.ids.next()
        content = str(body.get("content") or "")
        guild = channel.guild
        member = guild.members.get(author.id) if guild else None
        allowed = body.get("allowed_mentions")
        user_ids: list[int] = []
        role_ids: list[int] = []
        everyone = False
        if "@" in content:  # no mention syntax, nothing to resolve
            can_everyone = bool(member and (member.permissions_in(channel) & P.MENTION_EVERYONE)) if guild else False
            mentionable = {r.id for r in guild.roles.values() if r.mentionable} if guild else set()
            user_ids, role_ids, everyone = M.filter_mentions(
                content, allowed, can_mention_everyone=can_everyone, mentionable_roles=mentionable
            )
        attachments = []
        meta_atts = {str(a.get("id")): a for a in body.get("attachments") or []}
        for up in uploads:
            idx = up.field[len("files[") : -1] if up.field.startswith("files[") else up.field
            desc = (meta_atts.get(idx) or {}).get("description")
            aid = self.ids.next()
            attachments.append(self.store_attachment(channel.id, aid, up.filename, up.data, up.content_type, desc))
        msg: dict[str, Any] = {
            "type": mtype,
            "channel_id": str(channel.id),
            "content": content,
            "attachments": attachments,
            "embeds": M.normalise_embeds(body.get("embeds")),
            "timestamp": iso(),
            "edited_timestamp": None,
            "flags": int(body.get("flags") or 0),
            "components": M.number_components(body.get("components")),
            "id": str(mid),
            "author": author.payload(),
            "mentions": [self.users[u].payload() for u in user_ids if u in self.users],
            "mention_roles": [str(r) for r in role_ids],
            "mention_everyone": everyone,
            "pinned": False,
            "tts": bool(body.get("tts", False)),
        }
        if body.get("nonce") is not None:
            msg["nonce"] = body["nonce"]
        ref = body.get("message_reference")
        if ref:
            ref_id = int(ref["message_id"])
            referenced = channel.messages.get(ref_id) or self.all_messages.get(ref_id)
            msg["message_reference"] = {
                "type": int(ref.get("type", 0)),
                "channel_id": str(ref.get("channel_id") or channel.id),
                "message_id": str(ref_id),
            }
            if guild:
                msg["message_reference"]["guild_id"] = str(guild.id)
            if referenced is not None:
                msg["referenced_message"] = clone(referenced)
                msg["referenced_message"].pop("referenced_message", None)
                msg["type"] = M.REPLY if mtype == M.DEFAULT else mtype
                replied = (allowed or {}).get("replied_user", allowed is None)
                ra = referenced["author"]
                if replied and all(u["id"] != ra["id"] for u in msg["mentions"]):
                    msg["mentions"].append(ra)
            else:
                msg["referenced_message"] = None
        if extra:
            msg.update(extra)
        self.message_meta[mid] = {"allowed_mentions": allowed, "uploads": list(uploads)}
        return msg

    def store_message(self, channel: Channel, msg: dict[str, Any]) -> None:
        mid = int(msg["id"])
        self.all_messages[mid] = msg
        if int(msg.get("flags", 0)) & M.EPHEMERAL:
            return
        channel.messages[mid] = msg
        channel.last_message_id = mid
        if channel.is_thread:
            channel.total_message_sent += 1
            if mid != channel.id:  # the starter message is not counted
                channel.message_count += 1
            author_id = int(msg["author"]["id"])
            channel.thread_members.add(author_id)
        parent = channel.parent()
        if channel.is_thread and parent is not None and parent.is_forum:
            parent.last_message_id = channel.id

    def gateway_message(self, channel: Channel, msg: dict[str, Any]) -> dict[str, Any]:
        d = clone(msg)
        if channel.guild is not None:
            d["guild_id"] = str(channel.guild.id)
            member = channel.guild.members.get(int(msg["author"]["id"]))
            if member is not None and not msg.get("webhook_id"):
                d["member"] = member.payload(with_user=False)
        d["channel_type"] = channel.type
        return self.visible(d)

    async def post_message(self, channel: Channel, msg: dict[str, Any]) -> dict[str, Any]:
        """Store and dispatch MESSAGE_CREATE (unless ephemeral)."""
        self.store_message(channel, msg)
        if not int(msg.get("flags", 0)) & M.EPHEMERAL:
            intent = P.GUILD_MESSAGES if channel.guild else P.DIRECT_MESSAGES
            self._emit("MESSAGE_CREATE", self.gateway_message(channel, msg), intent)
        return msg

    def record_edit(self, channel: Channel, before: dict[str, Any], after: dict[str, Any], via: str) -> None:
        self.edits.append(Edit(int(after["id"]), channel.id, before, after, via))
        if not int(after.get("flags", 0)) & M.EPHEMERAL:
            intent = P.GUILD_MESSAGES if channel.guild else P.DIRECT_MESSAGES
            self._emit("MESSAGE_UPDATE", self.gateway_message(channel, after), intent)

    def apply_edit(
        self, channel: Channel, msg: dict[str, Any], body: Mapping[str, Any], uploads: list[M.Upload], via: str
    ) -> dict[str, Any]:
        """Edit a stored message in place (content/embeds/components/flags/attachments)."""
        before = clone(msg)
        if "content" in body:
            msg["content"] = str(body["content"] or "")
            guild = channel.guild
            mentionable = {r.id for r in guild.roles.values() if r.mentionable} if guild else set()
            users, roles, _everyone = M.filter_mentions(
                msg["content"],
                body.get("allowed_mentions"),
                can_mention_everyone=False,
                mentionable_roles=mentionable,
            )
            msg["mentions"] = [self.users[u].payload() for u in users if u in self.users]
            msg["mention_roles"] = [str(r) for r in roles]
        if "embeds" in body:
            msg["embeds"] = M.normalise_embeds(body["embeds"])
        if "components" in body:
            msg["components"] = M.number_components(body["components"])
        if body.get("flags") is not None:
            keep = int(msg.get("flags", 0)) & (M.EPHEMERAL | M.HAS_THREAD | M.IS_COMPONENTS_V2)
            msg["flags"] = keep | (int(body["flags"]) & (M.SUPPRESS_EMBEDS | M.IS_COMPONENTS_V2))
        if "attachments" in body or uploads:
            keep_ids = {str(a.get("id")) for a in body.get("attachments") or []} if "attachments" in body else None
            atts = [a for a in msg["attachments"] if keep_ids is None or a["id"] in keep_ids]
            for up in uploads:
                aid = self.ids.next()
                atts.append(self.store_attachment(channel.id, aid, up.filename, up.data, up.content_type))
            msg["attachments"] = atts
        if int(msg.get("flags", 0)) & M.LOADING:
            msg["flags"] = int(msg["flags"]) & ~M.LOADING
        else:
            msg["edited_timestamp"] = iso()
        self.record_edit(channel, before, msg, via)
        return msg

    # ------------------------------------------------------------------ test-side events
    async def message_create(
        self,
        channel: Channel,
        author: User | Member,
        content: str = "",
        *,
        reference: Mapping[str, Any] | int | None = None,
        embeds: list[dict[str, Any]] | None = None,
        files: Iterable[tuple[str, bytes]] = (),
        mentions_users: bool = True,
    ) -> dict[str, Any]:
        """A user posts a message (stored, MESSAGE_CREATE dispatched with intent rules applied)."""
        user = author.user if isinstance(author, Member) else author
        body: dict[str, Any] = {"content": content, "embeds": embeds or []}
        if reference is not None:
            rid = reference if isinstance(reference, int) else int(reference["id"])
            body["message_reference"] = {"message_id": str(rid), "channel_id": str(channel.id)}
        if not mentions_users:
            body["allowed_mentions"] = {"parse": []}
        uploads = [
            M.Upload(f"files[{i}]", name, "application/octet-stream", data) for i, (name, data) in enumerate(files)
        ]
        msg = self.build_message(channel, user, body, uploads=uploads)
        await self.post_message(channel, msg)
        await self.flush()
        return msg

    async def message_update(self, message: Mapping[str, Any], content: str) -> dict[str, Any]:
        msg = self.all_messages[int(message["id"])]
        ch = self.channels[int(msg["channel_id"])]
        before = clone(msg)
        msg["content"] = content
        msg["edited_timestamp"] = iso()
        self.record_edit(ch, before, msg, "user")
        await self.flush()
        return msg

    async def message_delete(self, message: Mapping[str, Any]) -> None:
        mid = int(message["id"])
        msg = self.all_messages.pop(mid, None)
        if msg is None:
            return
        ch = self.channels[int(msg["channel_id"])]
        ch.messages.pop(mid, None)
        self.deleted_messages.append(msg)
        d: dict[str, Any] = {"id": str(mid), "channel_id": str(ch.id)}
        if ch.guild:
            d["guild_id"] = str(ch.guild.id)
        await self.dispatch("MESSAGE_DELETE", d, intent=P.GUILD_MESSAGES if ch.guild else P.DIRECT_MESSAGES)

    async def channel_delete(self, channel: Channel) -> None:
        channel.deleted = True
        if channel.is_thread:
            assert channel.guild is not None
            await self.dispatch(
                "THREAD_DELETE",
                {
                    "id": str(channel.id),
                    "guild_id": str(channel.guild.id),
                    "parent_id": str(channel.parent_id),
                    "type": channel.type,
                },
                intent=P.GUILDS,
            )
        else:
            await self.dispatch("CHANNEL_DELETE", channel.payload(), intent=P.GUILDS)

    async def user_thread(
        self,
        channel: Channel,
        author: User | Member,
        name: str,
        content: str = "",
        applied_tags: Iterable[str] = (),
    ) -> tuple[Channel, dict[str, Any] | None]:
        """A user opens a thread (forum post with ``content`` and tag names, or a text-channel thread)."""
        user = author.user if isinstance(author, Member) else author
        assert channel.guild is not None
        thread = self.new_thread(
            channel, user, name, thread_id=None, applied_tags=[channel.tag_id(t) for t in applied_tags]
        )
        await self.dispatch(
            "THREAD_CREATE", {**thread.payload(with_member_for=user.id), "newly_created": True}, intent=P.GUILDS
        )
        starter = None
        if channel.is_forum:
            starter = self.build_message(thread, user, {"content": content}, message_id=thread.id)
            await self.post_message(thread, starter)
            await self.flush()
        return thread, starter

    def new_thread(
        self,
        parent: Channel,
        owner: User,
        name: str,
        *,
        thread_id: int | None,
        ttype: int = PUBLIC_THREAD,
        applied_tags: list[int] | None = None,
        auto_archive_duration: int = 4320,
        rate_limit_per_user: int = 0,
    ) -> Channel:
        assert parent.guild is not None
        ts = iso()
        thread = Channel(
            id=thread_id or self.ids.next(),
            type=ttype,
            name=name,
            guild=parent.guild,
            parent_id=parent.id,
            owner_id=owner.id,
            applied_tags=list(applied_tags or []),
            auto_archive_duration=auto_archive_duration,
            rate_limit_per_user=rate_limit_per_user,
            create_timestamp=ts,
            archive_timestamp=ts,
        )
        thread.thread_members.add(owner.id)
        parent.guild.channels[thread.id] = thread
        self.channels[thread.id] = thread
        return thread

    async def member_add(self, guild: Guild, username: str, roles: Iterable[Role] = ()) -> Member:
        member = guild.add_member(username, roles=roles)
        await self.flush()
        return member

    # ------------------------------------------------------------------ interactions
    def _resolve_member(self, guild: Guild | None, user: User | Member) -> User:
        u = user.user if isinstance(user, Member) else user
        if guild is not None and u.id not in guild.members:
            raise ValueError(f"{u.username} is not in {guild.name}")
        return u

    def _default_channel(self, guild: Guild | None, user: User, in_channel: Channel | None) -> Channel:
        if in_channel is not None:
            return in_channel
        if guild is None:
            return self.dm_channel(user)
        chans = guild.text_channels()
        if not chans:
            raise ValueError("guild has no text channel; pass in_channel=")
        return chans[0]

    def dm_channel(self, user: User) -> Channel:
        for ch in self.channels.values():
            if ch.type == DM and ch.recipients and ch.recipients[0].id == user.id:
                return ch
        ch = Channel(id=self.ids.next(), type=DM, name=None, recipients=[user])
        self.channels[ch.id] = ch
        return ch

    def find_command(self, guild: Guild | None, name: str, ctype: int) -> dict[str, Any]:
        pools = ([self.commands.get(guild.id, [])] if guild else []) + [self.commands.get(None, [])]
        for pool in pools:
            for cmd in pool:
                if cmd["name"] == name and cmd.get("type", 1) == ctype:
                    return cmd
        known = [c["name"] for pool in pools for c in pool]
        raise LookupError(f"no synced command {name!r} (type {ctype}); synced: {known}")

    async def _deliver(self, ix: I.FakeInteraction) -> I.FakeInteraction:
        self.interactions[ix.id] = ix
        ok = await self.dispatch("INTERACTION_CREATE", ix.payload)
        if not ok:
            raise RuntimeError("no gateway session to deliver the interaction to")
        ix.created = time.monotonic()
        return ix

    async def slash(
        self,
        guild: Guild | None,
        user: User | Member,
        name: str,
        /,
        *,
        in_channel: Channel | None = None,
        options: Mapping[str, Any] | None = None,
        locale: str = "en-US",
        **kwargs: Any,
    ) -> I.FakeInteraction:
        """Invoke a chat-input command: ``"status"``, ``"feed add"`` or ``"readersviews feed add"``."""
        u = self._resolve_member(guild, user)
        channel = self._default_channel(guild, u, in_channel)
        parts = name.split()
        cmd = self.find_command(guild, parts[0], 1)
        values = {**(options or {}), **kwargs}
        r = I._Resolver(self, guild, channel, u)
        schema = cmd.get("options", [])
        top: list[dict[str, Any]] = []
        cursor = top
        for part in parts[1:]:
            sub = next((o for o in schema if o["name"] == part and o["type"] in (1, 2)), None)
            if sub is None:
                raise LookupError(f"{name!r}: no subcommand/group {part!r}")
            node: dict[str, Any] = {"name": part, "type": sub["type"], "options": []}
            cursor.append(node)
            cursor = node["options"]
            schema = sub.get("options", [])
        if any(o["type"] in (1, 2) for o in schema):
            raise LookupError(f"{name!r} is a group; name a subcommand")
        cursor.extend(I.build_options(schema, values, r))
        data: dict[str, Any] = {"id": cmd["id"], "name": cmd["name"], "type": 1}
        if cmd.get("guild_id"):
            data["guild_id"] = cmd["guild_id"]
        if top:
            data["options"] = top
        if r.resolved:
            data["resolved"] = r.resolved
        payload = I.base_payload(self, I.APPLICATION_COMMAND, guild, u, channel, data, locale=locale)
        ix = I.FakeInteraction(self, payload, guild=guild, user=u, channel=channel, command_name=name, command_type=1)
        return await self._deliver(ix)

    async def autocomplete(
        self,
        guild: Guild | None,
        user: User | Member,
        name: str,
        focused: str,
        value: str,
        /,
        *,
        in_channel: Channel | None = None,
        **kwargs: Any,
    ) -> I.FakeInteraction:
        u = self._resolve_member(guild, user)
        channel = self._default_channel(guild, u, in_channel)
        parts = name.split()
        cmd = self.find_command(guild, parts[0], 1)
        schema = cmd.get("options", [])
        top: list[dict[str, Any]] = []
        cursor = top
        for part in parts[1:]:
            sub = next(o for o in schema if o["name"] == part)
            node: dict[str, Any] = {"name": part, "type": sub["type"], "options": []}
            cursor.append(node)
            cursor = node["options"]
            schema = sub.get("options", [])
        r = I._Resolver(self, guild, channel, u)
        cursor.extend(I.build_options(schema, {**kwargs, focused: value}, r, focused=focused))
        data: dict[str, Any] = {"id": cmd["id"], "name": cmd["name"], "type": 1, "options": top}
        if cmd.get("guild_id"):
            data["guild_id"] = cmd["guild_id"]
        payload = I.base_payload(self, I.AUTOCOMPLETE, guild, u, channel, data)
        ix = I.FakeInteraction(self, payload, guild=guild, user=u, channel=channel, command_name=name, command_type=1)
        return await self._deliver(ix)

    async def context_menu(
        self,
        guild: Guild | None,
        user: User | Member,
        name: str,
        target: Mapping[str, Any] | User | Member,
        /,
    ) -> I.FakeInteraction:
        """A message command (target = a stored message dict) or a user command (target = user/member)."""
        u = self._resolve_member(guild, user)
        if isinstance(target, (User, Member)):
            cmd = self.find_command(guild, name, 2)
            channel = self._default_channel(guild, u, None)
            r = I._Resolver(self, guild, channel, u)
            tid = r.user(target)
            data: dict[str, Any] = {"id": cmd["id"], "name": name, "type": 2, "target_id": tid, "resolved": r.resolved}
            ctype = 2
        else:
            cmd = self.find_command(guild, name, 3)
            msg = self.all_messages.get(int(target["id"])) or dict(target)
            channel = self.channels[int(msg["channel_id"])]
            data = {
                "id": cmd["id"],
                "name": name,
                "type": 3,
                "target_id": msg["id"],
                "resolved": {"messages": {msg["id"]: self.visible(clone(msg))}},
            }
            ctype = 3
        if cmd.get("guild_id"):
            data["guild_id"] = cmd["guild_id"]
        payload = I.base_payload(self, I.APPLICATION_COMMAND, guild, u, channel, data)
        ix = I.FakeInteraction(
            self, payload, guild=guild, user=u, channel=channel, command_name=name, command_type=ctype
        )
        return await self._deliver(ix)

    async def click(
        self,
        guild: Guild | None,
        user: User | Member,
        message: Mapping[str, Any],
        custom_id: str,
        /,
        *,
        values: list[str] | None = None,
    ) -> I.FakeInteraction:
        """Click a button (or choose ``values`` in a select menu) on a stored message."""
        u = self._resolve_member(guild, user)
        msg = self.all_messages.get(int(message["id"])) or dict(message)
        comp = I.find_component(msg.get("components", []), custom_id)
        if comp is None:
            raise LookupError(f"no component {custom_id!r} on message {msg['id']}")
        if comp.get("disabled"):
            raise ValueError(f"component {custom_id!r} is disabled")
        channel = self.channels[int(msg["channel_id"])]
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": comp["type"]}
        if comp.get("id") is not None:
            data["id"] = comp["id"]
        if comp["type"] != 2:
            data["values"] = [str(v) for v in (values or [])]
            if comp["type"] in (5, 6, 7, 8):
                r = I._Resolver(self, guild, channel, u)
                for v in data["values"]:
                    if int(v) in self.users:
                        r.user(int(v))
                    elif guild and int(v) in guild.roles:
                        r.role(int(v))
                    else:
                        r.channel(int(v), None)
                data["resolved"] = r.resolved
        elif values is not None:
            raise ValueError("values= is for select menus")
        payload = I.base_payload(self, I.MESSAGE_COMPONENT, guild, u, channel, data, message=msg)
        ix = I.FakeInteraction(self, payload, guild=guild, user=u, channel=channel, message=msg)
        return await self._deliver(ix)

    async def select(
        self,
        guild: Guild | None,
        user: User | Member,
        message: Mapping[str, Any],
        custom_id: str,
        values: list[str],
        /,
    ) -> I.FakeInteraction:
        return await self.click(guild, user, message, custom_id, values=values)

    def last_modal(self, user: User | Member) -> dict[str, Any] | None:
        u = user.user if isinstance(user, Member) else user
        entry = self.modals.get(u.id)
        return entry[0] if entry else None

    async def submit_modal(
        self,
        guild: Guild | None,
        user: User | Member,
        custom_id: str | None,
        values: Mapping[str, Any],
        /,
        message: Mapping[str, Any] | None = None,
    ) -> I.FakeInteraction:
        """Submit the last modal the bot showed this user, filling inputs by custom_id."""
        u = self._resolve_member(guild, user)
        entry = self.modals.get(u.id)
        if entry is None:
            raise LookupError(f"the bot showed no modal to {u.username}")
        modal, source = entry
        if custom_id is not None and modal["custom_id"] != custom_id:
            raise LookupError(f"last modal shown to {u.username} is {modal['custom_id']!r}, not {custom_id!r}")
        data = {"custom_id": modal["custom_id"], "components": I.modal_submit_components(modal, values)}
        msg = dict(message) if message is not None else source.message
        if msg is not None:
            msg = self.all_messages.get(int(msg["id"]), msg)
        payload = I.base_payload(self, I.MODAL_SUBMIT, guild, u, source.channel, data, message=msg)
        del self.modals[u.id]
        ix = I.FakeInteraction(self, payload, guild=guild, user=u, channel=source.channel, message=msg)
        return await self._deliver(ix)

    def thread_now(self) -> str:
        return iso(now())


@contextlib.contextmanager
def pointed_at(fake: FakeDiscord) -> Iterator[None]:
    """Point discord.py's REST base and default gateway at ``fake``; restore on exit."""
    import discord.gateway
    import discord.http
    import yarl

    old_base = discord.http.Route.BASE
    old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = fake.api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    try:
        yield
    finally:
        discord.http.Route.BASE = old_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway
