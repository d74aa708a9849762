"""REST routes under /api/v10: routing, auth, rate limits, error bodies, recording."""

from __future__ import annotations

import dataclasses
import logging
import re
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import errors as E
from . import interactions as I
from . import messages as M
from . import perms as P
from .fastjson import clone, dumps, loads
from .ratelimit import rate_limited_body
from .snowflake import iso
from .world import (
    DM,
    GUILD_ANNOUNCEMENT,
    GUILD_FORUM,
    GUILD_TEXT,
    PRIVATE_THREAD,
    PUBLIC_THREAD,
    Channel,
    Guild,
    Member,
    User,
)

if TYPE_CHECKING:
    from .server import FakeDiscord, RequestRecord

log = logging.getLogger("fakediscord.rest")

JSON_HEADERS = {"Content-Type": "application/json"}


@dataclasses.dataclass
class Ctx:
    request: web.Request
    method: str
    path: str
    route: str
    params: dict[str, str]
    query: dict[str, str]
    json: Any
    uploads: list[M.Upload]
    record: RequestRecord

    def p(self, name: str) -> int:
        try:
            return int(self.params[name])
        except ValueError:
            raise E.NOT_FOUND from None


@dataclasses.dataclass
class Reply:
    body: Any = None
    status: int = 200


Handler = Callable[["Api", Ctx], Awaitable[Reply]]


@dataclasses.dataclass
class RouteDef:
    method: str
    template: str
    regex: re.Pattern[str]
    handler: Handler
    auth: bool
    global_limit: bool


ROUTES: list[RouteDef] = []


def route(method: str, template: str, *, auth: bool = True, global_limit: bool = True) -> Callable[[Handler], Handler]:
    pattern = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$"

    def deco(fn: Handler) -> Handler:
        ROUTES.append(RouteDef(method, template, re.compile(pattern), fn, auth, global_limit))
        return fn

    return deco


_BY_HEAD: dict[tuple[str, str], list[RouteDef]] = {}


def _head(path: str) -> str:
    return path.split("/", 2)[1] if path.startswith("/") else path


def _candidates(method: str, path: str) -> list[RouteDef]:
    """The routes that can match `path`: same method and first segment, in declaration order."""
    key = (method, _head(path))
    found = _BY_HEAD.get(key)
    if found is None:
        found = _BY_HEAD[key] = [
            r
            for r in ROUTES
            if r.method == method and (_head(r.template) in (key[1], "") or _head(r.template).startswith("{"))
        ]
    return found


DROP = 0  # fail_next(status=DROP, after_effect=True): carry the request out, then drop the connection


def json_response(body: Any, status: int, headers: dict[str, str]) -> web.Response:
    if status == 204 or body is None:
        return web.Response(status=204 if status < 300 else status, headers=headers)
    return web.Response(body=dumps(body), status=status, headers={**headers, **JSON_HEADERS})


class Api:
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake

    async def handle_unknown(self, request: web.Request) -> web.Response:
        self.fake.unhandled.append(f"{request.method} {request.path}")
        log.warning("fakediscord: unknown path %s %s", request.method, request.path)
        return json_response(E.NOT_FOUND.body(), 404, {})

    async def handle(self, request: web.Request) -> web.Response:
        from .server import RequestRecord

        fake = self.fake
        path = "/" + request.match_info["tail"]
        method = request.method
        headers_of_interest = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("authorization", "x-audit-log-reason", "content-type", "user-agent")
        }
        record = RequestRecord(method, path, f"{method} ?", dict(request.query), None, [], headers_of_interest)
        fake.requests.append(record)
        if request.match_info.get("version") != "v10":
            record.status = 404
            return json_response(E.NOT_FOUND.body(), 404, {})

        rdef, params = self._match(method, path)
        try:
            body, uploads = await self._read_body(request)
        except Exception as exc:
            record.status = 400
            return json_response({"message": f"400: Bad Request ({exc})", "code": 50109}, 400, {})
        record.json = body
        record.files = uploads
        if rdef is None:
            fake.unhandled.append(f"{method} {path}")
            log.warning("fakediscord: unhandled route %s %s", method, path)
            record.status = 404
            record.response = E.NOT_FOUND.body()
            return json_response(record.response, 404, {})
        record.route = f"{method} {rdef.template}"

        if rdef.auth and request.headers.get("Authorization") != f"Bot {fake.token}":
            record.status = 401
            record.response = E.UNAUTHORIZED.body()
            return json_response(record.response, 401, {})

        major = params.get("channel_id") or params.get("guild_id") or params.get("webhook_id") or ""
        if "webhook_token" in params:
            major = f"{major}/{params['webhook_token'][:16]}"
        rule = fake._take_fail_rule(method, path)
        verdict = fake.rate_limits.check(record.route, major, global_applies=rdef.global_limit and rdef.auth)
        headers = dict(verdict.headers)
        if rule is not None and rule.status == 429:
            verdict.limited, verdict.retry_after, verdict.is_global = True, rule.retry_after, rule.is_global
            verdict.scope = "global" if rule.is_global else "user"
        if verdict.limited:
            fake.count_429 += 1
            headers.update(
                {
                    "Retry-After": str(max(1, int(verdict.retry_after + 0.999))),
                    "X-RateLimit-Scope": verdict.scope,
                    "Via": "1.1 google",
                }
            )
            if verdict.is_global:
                headers["X-RateLimit-Global"] = "true"
            record.status = 429
            record.response = rate_limited_body(verdict.retry_after, verdict.is_global)
            return json_response(record.response, 429, headers)
        if rule is not None and not rule.after_effect:
            err = E.ApiError(rule.status, rule.code, rule.message, rule.errors)
            record.status = rule.status
            record.response = err.body()
            return json_response(record.response, rule.status, headers)
        hold = fake._take_hold_rule(method, path)
        if hold is not None and not hold.after_effect:
            hold.arrived.set()
            await hold.released.wait()
            if hold.fail_status is not None:
                record.status = hold.fail_status
                record.response = {"message": "Service Unavailable", "code": 0}
                return json_response(record.response, hold.fail_status, headers)

        ctx = Ctx(request, method, path, record.route, params, dict(request.query), body, uploads, record)
        try:
            reply = await rdef.handler(self, ctx)
        except E.ApiError as err:
            record.status = err.status
            record.response = err.body()
            return json_response(record.response, err.status, headers)
        except Exception as exc:
            tb = traceback.format_exc()
            log.error("fakediscord handler crashed on %s %s\n%s", method, path, tb)
            fake.errors.append(f"{method} {path}: {exc!r}\n{tb}")
            record.status = 400
            record.response = {"message": f"fakediscord internal error: {exc!r}", "code": 0}
            return json_response(record.response, 400, headers)
        if hold is not None and hold.after_effect:
            hold.arrived.set()
            await hold.released.wait()
            if hold.fail_status is not None:
                record.status = hold.fail_status
                record.response = {"message": "Service Unavailable", "code": 0}
                return json_response(record.response, hold.fail_status, headers)
        if rule is not None and rule.after_effect and reply.status < 400 and rule.status == DROP:
            # Discord did it, then the connection died before the answer: the client sees a disconnect.
            record.status = DROP
            record.response = reply.body
            if request.transport is not None:
                request.transport.abort()
            raise ConnectionResetError("fakediscord dropped the connection after the effect")
        if rule is not None and rule.after_effect and reply.status < 400:
            err = E.ApiError(rule.status, rule.code, rule.message, rule.errors)
            record.status = rule.status
            record.response = err.body()
            return json_response(record.response, rule.status, headers)
        record.status = reply.status
        record.response = reply.body
        return json_response(reply.body, reply.status, headers)

    @staticmethod
    def _match(method: str, path: str) -> tuple[RouteDef | None, dict[str, str]]:
        for rdef in _candidates(method, path):
            m = rdef.regex.match(path)
            if m:
                return rdef, m.groupdict()
        return None, {}

    @staticmethod
    async def _read_body(request: web.Request) -> tuple[Any, list[M.Upload]]:
        ctype = request.headers.get("Content-Type", "")
        if ctype.startswith("multipart/"):
            reader = await request.multipart()
            payload: Any = None
            uploads: list[M.Upload] = []
            while True:
                part = await reader.next()
                if part is None:
                    break
                name = part.name or ""  # type: ignore[union-attr]
                data = await part.read()  # type: ignore[union-attr]
                if name == "payload_json":
                    payload = loads(data)
                else:
                    uploads.append(
                        M.Upload(
                            name,
                            part.filename or name,  # type: ignore[union-attr]
                            part.headers.get("Content-Type", "application/octet-stream"),  # type: ignore[union-attr]
                            bytes(data),
                        )
                    )
            return payload, uploads
        raw = await request.read()
        if not raw:
            return None, []
        if "json" in ctype:
            return loads(raw), []
        return None, []

    # ------------------------------------------------------------------ helpers
    def channel_or_404(self, cid: int) -> Channel:
        ch = self.fake.channels.get(cid)
        if ch is None or ch.deleted:
            raise E.unknown_channel()
        return ch

    def bot_member(self, ch: Channel) -> Member | None:
        return ch.guild.members.get(self.fake.bot.id) if ch.guild else None

    def require(self, ch: Channel, *needed: int) -> None:
        """403 like Discord: 50001 Missing Access without VIEW_CHANNEL, 50013 otherwise."""
        if ch.type == DM:
            return
        me = self.bot_member(ch)
        if me is None:
            raise E.missing_access()
        perms = me.permissions_in(ch)
        if not perms & P.VIEW_CHANNEL:
            raise E.missing_access()
        for n in needed:
            if not perms & n:
                raise E.missing_permissions()

    def message_or_404(self, ch: Channel, mid: int) -> dict[str, Any]:
        msg = ch.messages.get(mid)
        if msg is None:
            raise E.unknown_message()
        return msg

    def send_permission(self, ch: Channel, uploads: list[M.Upload], body: dict[str, Any]) -> None:
        if ch.type == DM:
            recipient = ch.recipients[0]
            if recipient.id in self.fake.dm_closed or recipient.bot:
                raise E.ApiError(403, 50007, "Cannot send messages to this user")
            return
        needed = [P.SEND_MESSAGES_IN_THREADS if ch.is_thread else P.SEND_MESSAGES]
        if uploads:
            needed.append(P.ATTACH_FILES)
        if body.get("message_reference"):
            needed.append(P.READ_MESSAGE_HISTORY)
        if ch.type == GUILD_FORUM:
            raise E.ApiError(400, 50008, "Cannot send messages in a non-text channel")
        self.require(ch, *needed)
        if ch.is_thread and ch.archived:
            me = self.bot_member(ch)
            assert me is not None
            if ch.locked and not me.permissions_in(ch) & P.MANAGE_THREADS:
                raise E.ApiError(400, 50083, "Thread is archived")
            ch.archived = False
            ch.archive_timestamp = iso()
            self.fake._emit("THREAD_UPDATE", ch.payload(), P.GUILDS)

    def check_reference(self, ch: Channel, body: dict[str, Any]) -> None:
        ref = body.get("message_reference")
        if not ref:
            return
        rid = int(ref["message_id"])
        target_ch = self.fake.channels.get(int(ref.get("channel_id") or ch.id))
        if target_ch is None or rid not in target_ch.messages:
            if ref.get("fail_if_not_exists", True):
                raise E.invalid_form(
                    {"message_reference": E.field_error("MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")}
                )
            body.pop("message_reference")

    # ------------------------------------------------------------------ users / gateway / app
    @route("GET", "/users/@me")
    async def get_me(self, ctx: Ctx) -> Reply:
        return Reply(
            {
                **self.fake.bot.payload(),
                "verified": True,
                "mfa_enabled": False,
                "email": None,
                "locale": "en-US",
                "flags": 0,
                "bio": "",
                "premium_type": 0,
            }
        )

    @route("GET", "/users/{user_id}")
    async def get_user(self, ctx: Ctx) -> Reply:
        user = self.fake.users.get(ctx.p("user_id"))
        if user is None:
            raise E.unknown_user()
        return Reply(user.payload())

    @route("GET", "/gateway", auth=False)
    async def get_gateway(self, ctx: Ctx) -> Reply:
        return Reply({"url": self.fake.gateway_url})

    @route("GET", "/gateway/bot")
    async def get_gateway_bot(self, ctx: Ctx) -> Reply:
        return Reply(
            {
                "url": self.fake.gateway_url,
                "shards": self.fake.recommended_shards,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 1000 - self.fake.identify_count,
                    "reset_after": 86_400_000,
                    "max_concurrency": 1,
                },
            }
        )

    def _application(self) -> dict[str, Any]:
        fake = self.fake
        return {
            "id": str(fake.application_id),
            "name": fake.bot.username,
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "is_monetized": False,
            "is_verified": False,
            "is_discoverable": False,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "flags": fake.application_flags,
            "hook": True,
            "owner": fake.app_owner.payload(),
            "team": None,
            "bot": fake.bot.payload(),
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "role_connections_verification_url": None,
            "tags": [],
            "approximate_guild_count": len(fake.guilds),
            "approximate_user_install_count": 0,
            "integration_types_config": {"0": {}},
            "install_params": {"scopes": ["bot", "applications.commands"], "permissions": str(P.DEFAULT_BOT)},
        }

    @route("GET", "/applications/@me")
    async def get_application(self, ctx: Ctx) -> Reply:
        return Reply(self._application())

    @route("GET", "/oauth2/applications/@me")
    async def get_oauth_application(self, ctx: Ctx) -> Reply:
        return Reply(self._application())

    # ------------------------------------------------------------------ application commands
    def _app_check(self, ctx: Ctx) -> None:
        if ctx.p("application_id") != self.fake.application_id:
            raise E.ApiError(403, 50001, "Missing Access")

    def _guild_key(self, ctx: Ctx) -> int | None:
        if "guild_id" not in ctx.params:
            return None
        gid = ctx.p("guild_id")
        if gid not in self.fake.guilds:
            raise E.ApiError(403, 50001, "Missing Access")
        return gid

    @route("GET", "/applications/{application_id}/commands")
    async def get_global_commands(self, ctx: Ctx) -> Reply:
        self._app_check(ctx)
        return Reply(clone(self.fake.commands.get(None, [])))

    @route("GET", "/applications/{application_id}/guilds/{guild_id}/commands")
    async def get_guild_commands(self, ctx: Ctx) -> Reply:
        self._app_check(ctx)
        return Reply(clone(self.fake.commands.get(self._guild_key(ctx), [])))

    @route("PUT", "/applications/{application_id}/commands")
    async def put_global_commands(self, ctx: Ctx) -> Reply:
        return await self._put_commands(ctx)

    @route("PUT", "/applications/{application_id}/guilds/{guild_id}/commands")
    async def put_guild_commands(self, ctx: Ctx) -> Reply:
        return await self._put_commands(ctx)

    @route("POST", "/applications/{application_id}/commands")
    async def post_global_command(self, ctx: Ctx) -> Reply:
        return await self._upsert_command(ctx)

    @route("POST", "/applications/{application_id}/guilds/{guild_id}/commands")
    async def post_guild_command(self, ctx: Ctx) -> Reply:
        return await self._upsert_command(ctx)

    @route("DELETE", "/applications/{application_id}/commands/{command_id}")
    async def delete_global_command(self, ctx: Ctx) -> Reply:
        return self._delete_command(ctx)

    @route("DELETE", "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}")
    async def delete_guild_command(self, ctx: Ctx) -> Reply:
        return self._delete_command(ctx)

    def _delete_command(self, ctx: Ctx) -> Reply:
        self._app_check(ctx)
        key = self._guild_key(ctx)
        cmds = self.fake.commands.get(key, [])
        cid = str(ctx.p("command_id"))
        if not any(c["id"] == cid for c in cmds):
            raise E.ApiError(404, 10063, "Unknown application command")
        self.fake.commands[key] = [c for c in cmds if c["id"] != cid]
        return Reply(None, 204)

    def _validate_command(self, cmd: dict[str, Any]) -> dict[str, Any]:
        errs: dict[str, Any] = {}
        ctype = int(cmd.get("type", 1))
        name = cmd.get("name") or ""
        if ctype == 1:
            if not re.fullmatch(r"[-_'\w]{1,32}", name) or name != name.lower():
                errs["name"] = E.field_error("APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
            desc = cmd.get("description")
            if desc is None or not 1 <= len(desc) <= 100:
                errs["description"] = E.bad_length(1, 100)
        else:
            if not 1 <= len(name) <= 32:
                errs["name"] = E.bad_length(1, 32)
            if cmd.get("description"):
                errs["description"] = E.field_error(
                    "APPLICATION_COMMAND_CONTEXT_MENU_DESCRIPTION", "Context menu commands cannot have description"
                )
        opt_errs = self._validate_options(cmd.get("options") or [])
        if opt_errs:
            errs["options"] = opt_errs
        return errs

    def _validate_options(self, options: list[dict[str, Any]]) -> dict[str, Any]:
        errs: dict[str, Any] = {}
        if len(options) > 25:
            return E.max_length(25)
        seen_optional = False
        names: set[str] = set()
        for i, o in enumerate(options):
            e: dict[str, Any] = {}
            name = o.get("name") or ""
            if not re.fullmatch(r"[-_'\w]{1,32}", name) or name != name.lower():
                e["name"] = E.field_error("APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
            if name in names:
                e["name"] = E.field_error(
                    "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS", "Command option names must be unique"
                )
            names.add(name)
            desc = o.get("description") or ""
            if not 1 <= len(desc) <= 100:
                e["description"] = E.bad_length(1, 100)
            if len(o.get("choices") or []) > 25:
                e["choices"] = E.max_length(25)
            if o.get("type") in (1, 2):
                sub = self._validate_options(o.get("options") or [])
                if sub:
                    e["options"] = sub
            else:
                if o.get("required"):
                    if seen_optional:
                        e["required"] = E.field_error(
                            "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                            "Required options must be placed before non-required options",
                        )
                else:
                    seen_optional = True
            if e:
                errs[str(i)] = e
        return errs

    def _command_payload(self, cmd: dict[str, Any], key: int | None, old: dict[str, Any] | None) -> dict[str, Any]:
        fake = self.fake
        ctype = int(cmd.get("type", 1))
        out: dict[str, Any] = {
            "id": old["id"] if old else str(fake.ids.next()),
            "application_id": str(fake.application_id),
            "version": str(fake.ids.next()),
            "default_member_permissions": cmd.get("default_member_permissions"),
            "type": ctype,
            "name": cmd["name"],
            "name_localizations": cmd.get("name_localizations"),
            "description": cmd.get("description") or "",
            "description_localizations": cmd.get("description_localizations"),
            "dm_permission": cmd.get("dm_permission", True) if key is None else None,
            "contexts": cmd.get("contexts"),
            "integration_types": cmd.get("integration_types") or [0],
            "nsfw": bool(cmd.get("nsfw", False)),
        }
        if out["dm_permission"] is None:
            del out["dm_permission"]
        if cmd.get("options"):
            out["options"] = clone(cmd["options"])
        if key is not None:
            out["guild_id"] = str(key)
        if old is not None:
            same = {k: v for k, v in old.items() if k != "version"} == {k: v for k, v in out.items() if k != "version"}
            if same:
                out["version"] = old["version"]
        return out

    async def _put_commands(self, ctx: Ctx) -> Reply:
        self._app_check(ctx)
        key = self._guild_key(ctx)
        body = ctx.json or []
        if not isinstance(body, list):
            raise E.invalid_form({"_errors": [{"code": "BASE_TYPE_ARRAY", "message": "Must be an array."}]})
        if len(body) > 100:
            raise E.invalid_form(E.max_length(100))
        errs: dict[str, Any] = {}
        seen: set[tuple[int, str]] = set()
        for i, cmd in enumerate(body):
            e = self._validate_command(cmd)
            k = (int(cmd.get("type", 1)), cmd.get("name") or "")
            if k in seen:
                e["name"] = E.field_error(
                    "APPLICATION_COMMANDS_DUPLICATE_NAME", f"Application command names must be unique: {k[1]}"
                )
            seen.add(k)
            if e:
                errs[str(i)] = e
        if errs:
            raise E.invalid_form(errs)
        existing = {(int(c["type"]), c["name"]): c for c in self.fake.commands.get(key, [])}
        out = [self._command_payload(c, key, existing.get((int(c.get("type", 1)), c["name"]))) for c in body]
        self.fake.commands[key] = out
        self.fake.command_syncs.append((key, clone(out)))
        return Reply(clone(out))

    async def _upsert_command(self, ctx: Ctx) -> Reply:
        self._app_check(ctx)
        key = self._guild_key(ctx)
        cmd = ctx.json or {}
        errs = self._validate_command(cmd)
        if errs:
            raise E.invalid_form(errs)
        cmds = self.fake.commands.setdefault(key, [])
        k = (int(cmd.get("type", 1)), cmd["name"])
        old = next((c for c in cmds if (int(c["type"]), c["name"]) == k), None)
        new = self._command_payload(cmd, key, old)
        if old is not None:
            cmds[cmds.index(old)] = new
            return Reply(clone(new), 200)
        cmds.append(new)
        return Reply(clone(new), 201)

    # ------------------------------------------------------------------ guilds
    def guild_or_404(self, gid: int) -> Guild:
        g = self.fake.guilds.get(gid)
        if g is None:
            raise E.unknown_guild()
        return g

    @route("GET", "/guilds/{guild_id}")
    async def get_guild(self, ctx: Ctx) -> Reply:
        g = self.guild_or_404(ctx.p("guild_id"))
        d = g.payload(include_members=False)
        for k in (
            "members",
            "channels",
            "threads",
            "presences",
            "voice_states",
            "joined_at",
            "large",
            "member_count",
            "lazy",
            "unavailable",
            "stage_instances",
            "guild_scheduled_events",
            "embedded_activities",
            "activity_instances",
            "soundboard_sounds",
        ):
            d.pop(k, None)
        if ctx.query.get("with_counts") in ("true", "1"):
            d["approximate_member_count"] = len(g.members)
            d["approximate_presence_count"] = 0
        return Reply(d)

    @route("GET", "/guilds/{guild_id}/channels")
    async def get_guild_channels(self, ctx: Ctx) -> Reply:
        g = self.guild_or_404(ctx.p("guild_id"))
        return Reply([c.payload() for c in g.channels.values() if not c.is_thread and not c.deleted])

    @route("GET", "/guilds/{guild_id}/roles")
    async def get_roles(self, ctx: Ctx) -> Reply:
        g = self.guild_or_404(ctx.p("guild_id"))
        return Reply([r.payload() for r in g.roles.values()])

    @route("GET", "/guilds/{guild_id}/members/{user_id}")
    async def get_member(self, ctx: Ctx) -> Reply:
        g = self.guild_or_404(ctx.p("guild_id"))
        m = g.members.get(ctx.p("user_id"))
        if m is None:
            raise E.unknown_member()
        return Reply(m.payload())

    @route("GET", "/guilds/{guild_id}/members")
    async def list_members(self, ctx: Ctx) -> Reply:
        g = self.guild_or_404(ctx.p("guild_id"))
        if not self.fake.intents & P.GUILD_MEMBERS:
            raise E.ApiError(403, 50001, "Missing Access")
        after = int(ctx.query.get("after", 0))
        limit = int(ctx.query.get("limit", 1))
        ms = sorted((m for m in g.members.values() if m.id > after), key=lambda m: m.id)[:limit]
        return Reply([m.payload() for m in ms])

    @route("PUT", "/guilds/{guild_id}/members/{user_id}/roles/{role_id}")
    async def add_member_role(self, ctx: Ctx) -> Reply:
        return self._member_role(ctx, add=True)

    @route("DELETE", "/guilds/{guild_id}/members/{user_id}/roles/{role_id}")
    async def remove_member_role(self, ctx: Ctx) -> Reply:
        return self._member_role(ctx, add=False)

    def _member_role(self, ctx: Ctx, *, add: bool) -> Reply:
        g = self.guild_or_404(ctx.p("guild_id"))
        m = g.members.get(ctx.p("user_id"))
        if m is None:
            raise E.unknown_member()
        role = g.roles.get(ctx.p("role_id"))
        if role is None:
            raise E.unknown_role()
        me = g.me
        if not me.base_permissions() & P.MANAGE_ROLES:
            raise E.missing_permissions()
        top = max((r.position for r in me.roles), default=0)
        if role.position >= top and me.id != g.owner_id:
            raise E.missing_permissions()
        if add and role not in m.roles:
            m.roles.append(role)
        elif not add and role in m.roles:
            m.roles.remove(role)
        self.fake._emit("GUILD_MEMBER_UPDATE", {**m.payload(), "guild_id": str(g.id)}, P.GUILD_MEMBERS)
        return Reply(None, 204)

    @route("GET", "/guilds/{guild_id}/threads/active")
    async def active_threads(self, ctx: Ctx) -> Reply:
        g = self.guild_or_404(ctx.p("guild_id"))
        threads = [t for t in g.threads() if not t.archived]
        me = self.fake.bot.id
        return Reply(
            {
                "threads": [t.payload() for t in threads],
                "members": [t.payload(with_member_for=me)["member"] for t in threads if me in t.thread_members],
            }
        )

    # ------------------------------------------------------------------ channels
    @route("GET", "/channels/{channel_id}")
    async def get_channel(self, ctx: Ctx) -> Reply:
        ch = self.channel_or_404(ctx.p("channel_id"))
        self.require(ch)
        return Reply(ch.payload(with_member_for=self.fake.bot.id))

    @route("PATCH", "/channels/{channel_id}")
    async def edit_channel(self, ctx: Ctx) -> Reply:
        ch = self.channel_or_404(ctx.p("channel_id"))
        body = ctx.json or {}
        me = self.bot_member(ch)
        if me is None:
            raise E.missing_access()
        perms = me.permissions_in(ch)
        if not perms & P.VIEW_CHANNEL:
            raise E.missing_access()
        errs: dict[str, Any] = {}
        if "name" in body and not 1 <= len(body["name"] or "") <= 100:
            errs["name"] = E.bad_length(1, 100)
        if errs:
            raise E.invalid_form(errs)
        if ch.is_thread:
            is_owner = ch.owner_id == self.fake.bot.id
            manage = bool(perms & P.MANAGE_THREADS)
            if ("locked" in body or "invitable" in body) and not manage:
                raise E.missing_permissions()
            if not (manage or is_owner):
                raise E.missing_permissions()
            if "name" in body:
                ch.name = body["name"]
            if "archived" in body and body["archived"] is not None:
                ch.archived = bool(body["archived"])
                ch.archive_timestamp = iso()
            if "locked" in body and body["locked"] is not None:
                ch.locked = bool(body["locked"])
            if "auto_archive_duration" in body and body["auto_archive_duration"] is not None:
                ch.auto_archive_duration = int(body["auto_archive_duration"])
            if "rate_limit_per_user" in body and body["rate_limit_per_user"] is not None:
                ch.rate_limit_per_user = int(body["rate_limit_per_user"])
            if "applied_tags" in body:
                parent = ch.parent()
                valid = {int(t["id"]) for t in (parent.available_tags if parent else [])}
                tags = [int(t) for t in body["applied_tags"] or []]
                if len(tags) > 5:
                    raise E.invalid_form({"applied_tags": E.max_length(5)})
                bad = [t for t in tags if t not in valid]
                if bad:
                    raise E.invalid_form(
                        {"applied_tags": E.field_error("CHANNEL_TAG_INVALID", "Tag does not exist on this channel")}
                    )
                ch.applied_tags = tags
            if "flags" in body and body["flags"] is not None:
                ch.flags = int(body["flags"])
            self.fake._emit("THREAD_UPDATE", ch.payload(), P.GUILDS)
            return Reply(ch.payload(with_member_for=self.fake.bot.id))
        if not perms & P.MANAGE_CHANNELS:
            raise E.missing_permissions()
        for k in ("name", "topic", "nsfw", "rate_limit_per_user", "position"):
            if k in body:
                setattr(ch, k, body[k])
        if "permission_overwrites" in body:
            if not perms & P.MANAGE_ROLES:
                raise E.missing_permissions()
            ch.permission_overwrites = list(body["permission_overwrites"])
        if "available_tags" in body and ch.is_forum:
            new_tags: list[dict[str, Any]] = []
            for raw in body["available_tags"]:
                tag = dict(raw)
                if tag.get("id") is None:
                    tag["id"] = str(self.fake.ids.next())
                tag.setdefault("moderated", False)
                tag.setdefault("emoji_id", None)
                tag.setdefault("emoji_name", None)
                new_tags.append(tag)
            ch.available_tags = new_tags
        self.fake._emit("CHANNEL_UPDATE", ch.payload(), P.GUILDS)
        return Reply(ch.payload())

    @route("DELETE", "/channels/{channel_id}")
    async def delete_channel(self, ctx: Ctx) -> Reply:
        ch = self.channel_or_404(ctx.p("channel_id"))
        if ch.type == DM:
            return Reply(ch.payload())
        needed = P.MANAGE_THREADS if ch.is_thread else P.MANAGE_CHANNELS
        self.require(ch, needed)
        payload = ch.payload()
        await self.fake.channel_delete(ch)
        return Reply(payload)

    @route("PUT", "/channels/{channel_id}/thread-members/@me")
    async def join_thread(self, ctx: Ctx) -> Reply:
        ch = self.channel_or_404(ctx.p("channel_id"))
        if not ch.is_thread:
            raise E.ApiError(400, 50024, "Cannot execute action on this channel type")
        self.require(ch)
        if ch.archived:
            raise E.ApiError(400, 50083, "Thread is archived")
        ch.thread_members.add(self.fake.bot.id)
        return Reply(None, 204)

    @route("DELETE", "/channels/{channel_id}/thread-members/@me")
    async def leave_thread(self, ctx: Ctx) -> Reply:
        ch = self.channel_or_404(ctx.p("channel_id"))
        ch.thread_members.discard(self.fake.bot.id)
        return Reply(None, 204)

    @route("GET", "/channels/{channel_id}/threads/archived/public")
    async def archived_threads(self, ctx: Ctx) -> Reply:
        ch = self.channel_or_404(ctx.p("channel_id"))
        self.require(ch, P.READ_MESSAGE_HISTORY)
        threads = [t for t in self.fake.threads_in(ch) if t.archived and t.type == PUBLIC_THREAD]
        return Reply({"threads": [t.payload() for t in threads], "members": [], "has_more": False})

    # ------------------------------------------------------------------ messages
    @route("GET", "/channels/{channel_id}/messages")
    async def list_messages(self, ctx: Ctx) -> Reply:
        ch = self.channel_or_404(ctx.p("channel_id"))
        self.require(ch, P.READ_MESSAGE_HISTORY)
        limit = min(int(ctx.query.get("limit", 50)), 100)
        msgs = sorted(ch.messages.values(), key=lambda m: int(m["id"]), reverse=True)
        if "before" in ctx.query:
            msgs = [m for m in msgs if int(m["id"]) < int(ctx.query["before"])]
        if "after" in ctx.query:
            msgs = sorted((m for m in msgs if int(m["id"]) > int(ctx.query["after"])), key=lambda m: int(m["id"]))
            msgs = msgs[:limit][::-1]
        return Reply([self.fake.visible(m) for m in msgs[:limit]])

    @route("GET", "/channels/{channel_id}/messages/{message_id}")
    async def get_message(self, ctx: Ctx) -> Reply:
        ch = self.channel_or_404(ctx.p("channel_id"))
        self.require(ch, P.READ_MESSAGE_HISTORY)
        return Reply(self.fake.visible(self.message_or_404(ch, ctx.p("message_id"))))

    @route("POST", "/channels/{channel_id}/messages")
    async def create_message(self, ctx: Ctx) -> Reply:
        ch = self.channel_or_404(ctx.p("channel_id"))
        body = dict(ctx.json or {})
        self.send_permission(ch, ctx.uploads, body)
        M.validate_message(body, ctx.uploads)
        self.check_reference(ch, body)
        if int(body.get("flags") or 0) & M.EPHEMERAL:
            body["flags"] = int(body["flags"]) & ~M.EPHEMERAL
        if body.get("enforce_nonce") and body.get("nonce") is not None:
            # Discord: a message by the same author with the same nonce (in the past few minutes) is
            # returned instead of creating another one.
            for earlier in ch.messages.values():
                if earlier.get("nonce") == body["nonce"] and int(earlier["author"]["id"]) == self.fake.bot.id:
                    return Reply(clone(earlier))
        msg = self.fake.build_message(ch, self.fake.bot, body, uploads=ctx.uploads)
        await self.fake.post_message(ch, msg)
        return Reply(clone(msg))

    @route("PATCH", "/channels/{channel_id}/messages/{message_id}")
    async def edit_message(self, ctx: Ctx) -> Reply:
        ch = self.channel_or_404(ctx.p("channel_id"))
        self.require(ch)
        msg = self.message_or_404(ch, ctx.p("message_id"))
        body = dict(ctx.json or {})
        if int(msg["author"]["id"]) != self.fake.bot.id:
            if set(body) - {"flags"}:
                raise E.ApiError(403, 50005, "Cannot edit a message authored by another user")
            self.require(ch, P.MANAGE_MESSAGES)
        M.validate_message(body, ctx.uploads, edit=True)
        self.fake.apply_edit(ch, msg, body, ctx.uploads, "rest")
        if not (msg["content"] or msg["embeds"] or msg["attachments"] or msg["components"]):
            raise E.empty_message()
        return Reply(clone(msg))

    @route("DELETE", "/channels/{channel_id}/messages/{message_id}")
    async def delete_message(self, ctx: Ctx) -> Reply:
        ch = self.channel_or_404(ctx.p("channel_id"))
        msg = self.message_or_404(ch, ctx.p("message_id"))
        if int(msg["author"]["id"]) != self.fake.bot.id:
            self.require(ch, P.MANAGE_MESSAGES)
        else:
            self.require(ch)
        await self.fake.message_delete(msg)
        return Reply(None, 204)

    @route("PUT", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me")
    async def add_reaction(self, ctx: Ctx) -> Reply:
        ch = self.channel_or_404(ctx.p("channel_id"))
        self.require(ch, P.ADD_REACTIONS, P.READ_MESSAGE_HISTORY)
        msg = self.message_or_404(ch, ctx.p("message_id"))
        from urllib.parse import unquote

        emoji = unquote(ctx.params["emoji"])
        reactions = msg.setdefault("reactions", [])
        for r in reactions:
            if r["emoji"]["name"] == emoji:
                if not r["me"]:
                    r["count"] += 1
                    r["me"] = True
                break
        else:
            reactions.append(
                {
                    "emoji": {"id": None, "name": emoji},
                    "count": 1,
                    "me": True,
                    "me_burst": False,
                    "burst_colors": [],
                    "count_details": {"burst": 0, "normal": 1},
                    "burst_count": 0,
                }
            )
        return Reply(None, 204)

    @route("POST", "/channels/{channel_id}/typing")
    async def typing(self, ctx: Ctx) -> Reply:
        ch = self.channel_or_404(ctx.p("channel_id"))
        self.require(ch, P.SEND_MESSAGES_IN_THREADS if ch.is_thread else P.SEND_MESSAGES)
        return Reply(None, 204)

    # ------------------------------------------------------------------ threads
    def _thread_name(self, body: dict[str, Any]) -> str:
        name = body.get("name")
        if name is None:
            raise E.invalid_form({"name": E.required()})
        if not 1 <= len(name) <= 100:
            raise E.invalid_form({"name": E.bad_length(1, 100)})
        return str(name)

    async def _announce_thread(self, thread: Channel) -> None:
        self.fake._emit(
            "THREAD_CREATE", {**thread.payload(with_member_for=self.fake.bot.id), "newly_created": True}, P.GUILDS
        )

    @route("POST", "/channels/{channel_id}/messages/{message_id}/threads")
    async def thread_from_message(self, ctx: Ctx) -> Reply:
        ch = self.channel_or_404(ctx.p("channel_id"))
        if ch.type not in (GUILD_TEXT, GUILD_ANNOUNCEMENT):
            raise E.ApiError(400, 50024, "Cannot execute action on this channel type")
        self.require(ch, P.CREATE_PUBLIC_THREADS, P.READ_MESSAGE_HISTORY)
        msg = self.message_or_404(ch, ctx.p("message_id"))
        body = ctx.json or {}
        name = self._thread_name(body)
        if msg.get("thread") or self.fake.channels.get(int(msg["id"])):
            raise E.ApiError(400, 160004, "A thread has already been created for this message")
        thread = self.fake.new_thread(
            ch,
            self.fake.bot,
            name,
            thread_id=int(msg["id"]),
            ttype=10 if ch.type == GUILD_ANNOUNCEMENT else 11,
            auto_archive_duration=int(body.get("auto_archive_duration") or 4320),
            rate_limit_per_user=int(body.get("rate_limit_per_user") or 0),
        )
        await self._announce_thread(thread)
        before = clone(msg)
        msg["flags"] = int(msg.get("flags", 0)) | M.HAS_THREAD
        msg["thread"] = thread.payload()
        self.fake.record_edit(ch, before, msg, "thread")
        return Reply(thread.payload(with_member_for=self.fake.bot.id), 201)

    @route("POST", "/channels/{channel_id}/threads")
    async def create_thread(self, ctx: Ctx) -> Reply:
        ch = self.channel_or_404(ctx.p("channel_id"))
        body = dict(ctx.json or {})
        fake = self.fake
        if ch.is_forum:
            self.require(ch, P.SEND_MESSAGES)
            name = self._thread_name(body)
            message = body.get("message")
            if not isinstance(message, dict):
                raise E.invalid_form({"message": E.required()})
            try:
                M.validate_message(message, ctx.uploads)
            except E.ApiError as err:
                if err.errors:
                    err.errors = {"message": err.errors}
                raise
            if ctx.uploads:
                self.require(ch, P.ATTACH_FILES)
            tags = [int(t) for t in body.get("applied_tags") or []]
            valid = {int(t["id"]): t for t in ch.available_tags}
            if len(tags) > 5:
                raise E.invalid_form({"applied_tags": E.max_length(5)})
            if any(t not in valid for t in tags):
                raise E.invalid_form(
                    {"applied_tags": E.field_error("CHANNEL_TAG_INVALID", "Tag does not exist on this channel")}
                )
            me = self.bot_member(ch)
            assert me is not None
            if any(valid[t].get("moderated") for t in tags) and not me.permissions_in(ch) & P.MANAGE_THREADS:
                raise E.missing_permissions()
            if ch.flags & 16 and not tags:
                raise E.ApiError(400, 40067, "A tag is required to create a forum post in this channel")
            thread = fake.new_thread(
                ch,
                fake.bot,
                name,
                thread_id=None,
                applied_tags=tags,
                auto_archive_duration=int(body.get("auto_archive_duration") or 4320),
                rate_limit_per_user=int(body.get("rate_limit_per_user") or 0),
            )
            await self._announce_thread(thread)
            starter = fake.build_message(thread, fake.bot, message, uploads=ctx.uploads, message_id=thread.id)
            await fake.post_message(thread, starter)
            out = thread.payload(with_member_for=fake.bot.id)
            out["message"] = clone(starter)
            return Reply(out, 201)
        if ch.type not in (GUILD_TEXT, GUILD_ANNOUNCEMENT):
            raise E.ApiError(400, 50024, "Cannot execute action on this channel type")
        ttype = int(body.get("type") or PRIVATE_THREAD)
        name = self._thread_name(body)
        self.require(ch, P.CREATE_PRIVATE_THREADS if ttype == PRIVATE_THREAD else P.CREATE_PUBLIC_THREADS)
        thread = fake.new_thread(
            ch,
            fake.bot,
            name,
            thread_id=None,
            ttype=ttype,
            auto_archive_duration=int(body.get("auto_archive_duration") or 4320),
            rate_limit_per_user=int(body.get("rate_limit_per_user") or 0),
        )
        await self._announce_thread(thread)
        if ttype == PUBLIC_THREAD:
            sysmsg = fake.build_message(
                ch,
                fake.bot,
                {"content": name},
                mtype=M.THREAD_CREATED,
                extra={"message_reference": {"type": 0, "channel_id": str(thread.id), "guild_id": str(ch.guild_id)}},
            )
            await fake.post_message(ch, sysmsg)
        return Reply(thread.payload(with_member_for=fake.bot.id), 201)

    # ------------------------------------------------------------------ DMs
    @route("POST", "/users/@me/channels")
    async def open_dm(self, ctx: Ctx) -> Reply:
        body = ctx.json or {}
        uid = int(body.get("recipient_id") or 0)
        user = self.fake.users.get(uid)
        if user is None:
            raise E.invalid_form(
                {"recipient_id": E.field_error("NUMBER_TYPE_COERCE", f'Value "{uid}" is not snowflake.')}
            )
        return Reply(self.fake.dm_channel(user).payload())

    # ------------------------------------------------------------------ interactions
    def _interaction(self, iid: int, token: str) -> I.FakeInteraction:
        ix = self.fake.interactions.get(iid)
        if ix is None or ix.token != token:
            raise E.unknown_interaction()
        return ix

    @route("POST", "/interactions/{webhook_id}/{webhook_token}/callback", auth=False, global_limit=False)
    async def interaction_callback(self, ctx: Ctx) -> Reply:
        ix = self._interaction(ctx.p("webhook_id"), ctx.params["webhook_token"])
        body = dict(ctx.json or {})
        ix.callbacks.append(body)
        try:
            return await self._interaction_callback(ctx, ix, body)
        finally:
            ix._touch()

    async def _interaction_callback(self, ctx: Ctx, ix: I.FakeInteraction, body: dict[str, Any]) -> Reply:
        fake = self.fake
        if time.monotonic() - ix.created > fake.interaction_timeout:
            raise E.unknown_interaction()
        if ix.acknowledged:
            raise E.already_acknowledged()
        ctype = int(body.get("type", 0))
        if ctype not in I.ALLOWED_CALLBACKS.get(ix.type, set()):
            raise E.invalid_form(
                {
                    "type": E.field_error(
                        "INTERACTION_RESPONSE_TYPE_INVALID", "Interaction response type is invalid for this interaction"
                    )
                }
            )
        if ctype in (I.DEFERRED_UPDATE_MESSAGE, I.UPDATE_MESSAGE) and ix.message is None:
            raise E.invalid_form(
                {
                    "type": E.field_error(
                        "INTERACTION_RESPONSE_TYPE_INVALID", "Interaction response type is invalid for this interaction"
                    )
                }
            )
        data = dict(body.get("data") or {})
        message: dict[str, Any] | None = None
        if ctype == I.CHANNEL_MESSAGE:
            M.validate_message(data, ctx.uploads)
            message = self._interaction_message(ix, data, ctx.uploads, flags=int(data.get("flags") or 0))
            ix.original = message
        elif ctype == I.DEFERRED_CHANNEL_MESSAGE:
            flags = (int(data.get("flags") or 0) & M.EPHEMERAL) | M.LOADING
            message = self._interaction_message(ix, {"content": ""}, [], flags=flags)
            ix.original = message
        elif ctype == I.UPDATE_MESSAGE:
            M.validate_message(data, ctx.uploads, edit=True)
            assert ix.message is not None
            target_ch = fake.channels[int(ix.message["channel_id"])]
            stored = fake.all_messages.get(int(ix.message["id"]))
            if stored is None:
                raise E.unknown_message()
            message = fake.apply_edit(target_ch, stored, data, ctx.uploads, "interaction")
            ix.edits.append(clone(message))
        elif ctype == I.MODAL:
            self._validate_modal(data)
            modal = clone(data)
            modal["components"] = M.number_components(modal.get("components"))
            ix.modal = modal
            fake.modals[ix.user.id] = (modal, ix)
        elif ctype == I.AUTOCOMPLETE_RESULT:
            choices = data.get("choices") or []
            if len(choices) > 25:
                raise E.invalid_form({"data": {"choices": E.max_length(25)}})
            ix.choices = choices
        ix.uploads = list(ctx.uploads)
        ix.response = body
        ix.response_type = ctype
        ix._responded.set()
        ix._touch()
        interaction: dict[str, Any] = {"id": str(ix.id), "type": ix.type}
        if message is not None:
            interaction.update(
                {
                    "response_message_id": message["id"],
                    "response_message_loading": bool(int(message.get("flags", 0)) & M.LOADING),
                    "response_message_ephemeral": bool(int(message.get("flags", 0)) & M.EPHEMERAL),
                }
            )
        out: dict[str, Any] = {"interaction": interaction}
        if message is not None:
            out["resource"] = {"type": ctype, "message": clone(message)}
        if ctx.query.get("with_response") in ("1", "true", "True"):
            return Reply(out)
        return Reply(None, 204)

    def _validate_modal(self, data: dict[str, Any]) -> None:
        errs: dict[str, Any] = {}
        if not data.get("custom_id"):
            errs["custom_id"] = E.required()
        elif len(data["custom_id"]) > 100:
            errs["custom_id"] = E.max_length(100)
        title = data.get("title") or ""
        if not 1 <= len(title) <= 45:
            errs["title"] = E.bad_length(1, 45)
        comps = data.get("components") or []
        if not 1 <= len(comps) <= 5:
            errs["components"] = E.bad_length(1, 5)
        for i, c in enumerate(comps):
            inner = (
                c.get("components", []) if c.get("type") == 1 else [c.get("component")] if c.get("type") == 18 else []
            )
            if c.get("type") == 18 and not 1 <= len(c.get("label") or "") <= 45:
                errs.setdefault("components", {}).setdefault(str(i), {})["label"] = E.bad_length(1, 45)
            if c.get("type") == 18 and len(c.get("description") or "") > 100:
                errs.setdefault("components", {}).setdefault(str(i), {})["description"] = E.max_length(100)
            for x in inner:
                if x and x.get("type") == 4:
                    if x.get("type") == 4 and int(x.get("max_length") or 4000) > 4000:
                        errs.setdefault("components", {}).setdefault(str(i), {})["max_length"] = E.field_error(
                            "NUMBER_TYPE_MAX", "int value should be less than or equal to 4000."
                        )
                    if x.get("value") and len(x["value"]) > 4000:
                        errs.setdefault("components", {}).setdefault(str(i), {})["value"] = E.max_length(4000)
        if errs:
            raise E.invalid_form({"data": errs})

    def _interaction_message(
        self, ix: I.FakeInteraction, data: dict[str, Any], uploads: list[M.Upload], *, flags: int
    ) -> dict[str, Any]:
        fake = self.fake
        body = dict(data)
        body["flags"] = flags
        msg = fake.build_message(
            ix.channel,
            fake.bot,
            body,
            uploads=uploads,
            mtype=I.response_message_type(ix),
            extra={
                "webhook_id": str(fake.application_id),
                "application_id": str(fake.application_id),
                "interaction_metadata": I.interaction_metadata(ix),
                "interaction": I.legacy_interaction(ix),
            },
        )
        self._post_sync(ix.channel, msg)
        return msg

    def _post_sync(self, ch: Channel, msg: dict[str, Any]) -> None:
        fake = self.fake
        fake.store_message(ch, msg)
        if not int(msg.get("flags", 0)) & M.EPHEMERAL:
            fake._emit(
                "MESSAGE_CREATE", fake.gateway_message(ch, msg), P.GUILD_MESSAGES if ch.guild else P.DIRECT_MESSAGES
            )

    # ------------------------------------------------------------------ webhooks (follow-ups)
    def _webhook_ix(self, ctx: Ctx) -> I.FakeInteraction:
        fake = self.fake
        if ctx.p("webhook_id") != fake.application_id:
            raise E.unknown_webhook()
        token = ctx.params["webhook_token"]
        ix = next((i for i in fake.interactions.values() if i.token == token), None)
        if ix is None or not ix.acknowledged:
            raise E.unknown_webhook()
        if time.monotonic() - ix.created > fake.followup_timeout:
            raise E.ApiError(401, 50027, "Invalid Webhook Token")
        return ix

    def _webhook_message(self, ix: I.FakeInteraction, mid_param: str) -> dict[str, Any]:
        if mid_param == "@original":
            if ix.original is not None:
                return ix.original
            if ix.response_type in (I.DEFERRED_UPDATE_MESSAGE, I.UPDATE_MESSAGE) and ix.message is not None:
                stored = self.fake.all_messages.get(int(ix.message["id"]))
                if stored is not None:
                    return stored
            raise E.unknown_message()
        try:
            mid = int(mid_param)
        except ValueError:
            raise E.unknown_message() from None
        for m in ix.messages:
            if int(m["id"]) == mid:
                return m
        raise E.unknown_message()

    # ------------------------------------------------------------------ channel webhooks
    _WEBHOOK_NAME_BANNED = ("clyde", "discord")

    def _webhook_name(self, field: str, name: Any) -> str:
        """Discord's rules for a webhook's name (and a message's `username`): 1-80 characters, and not
        containing "clyde" or "discord"."""
        if not isinstance(name, str) or not 1 <= len(name) <= 80:
            raise E.invalid_form({field: E.bad_length(1, 80)})
        if any(word in name.lower() for word in self._WEBHOOK_NAME_BANNED):
            raise E.invalid_form(
                {field: E.field_error("USERNAME_INVALID_CONTAINS", 'Username cannot contain "clyde" or "discord"')}
            )
        return name

    @route("GET", "/channels/{channel_id}/webhooks")
    async def channel_webhooks(self, ctx: Ctx) -> Reply:
        ch = self.channel_or_404(ctx.p("channel_id"))
        self.require(ch, P.MANAGE_WEBHOOKS)
        return Reply([clone(w) for w in self.fake.channel_webhooks.values() if w["channel_id"] == str(ch.id)])

    @route("POST", "/channels/{channel_id}/webhooks")
    async def create_channel_webhook(self, ctx: Ctx) -> Reply:
        fake = self.fake
        ch = self.channel_or_404(ctx.p("channel_id"))
        if ch.is_thread or ch.type == DM:
            raise E.ApiError(400, 50024, "Cannot execute action on this channel type")
        self.require(ch, P.MANAGE_WEBHOOKS)
        body = dict(ctx.json or {})
        name = self._webhook_name("name", body.get("name"))
        wid = fake.ids.next()
        webhook = {
            "id": str(wid),
            "type": 1,
            "guild_id": str(ch.guild_id),
            "channel_id": str(ch.id),
            "name": name,
            "avatar": None,
            "token": f"whtoken-{wid}",
            "application_id": str(fake.application_id),
            "user": fake.bot.payload(),
        }
        fake.channel_webhooks[wid] = webhook
        return Reply(clone(webhook))

    def _channel_webhook(self, ctx: Ctx) -> dict[str, Any]:
        webhook = self.fake.channel_webhooks.get(ctx.p("webhook_id"))
        if webhook is None:
            raise E.unknown_webhook()
        if ctx.params["webhook_token"] != webhook["token"]:
            raise E.ApiError(401, 50027, "Invalid Webhook Token")
        return webhook

    def _webhook_target(self, ctx: Ctx, webhook: dict[str, Any]) -> Channel:
        """The channel a webhook call acts in: its own, or `?thread_id=` (a thread of it)."""
        ch = self.channel_or_404(int(webhook["channel_id"]))
        thread_id = ctx.query.get("thread_id")
        if thread_id is None:
            return ch
        thread = self.fake.channels.get(int(thread_id)) if thread_id.isdigit() else None
        if thread is None or thread.parent_id != ch.id:
            raise E.ApiError(400, 10003, "Unknown Channel")
        return thread

    async def _execute_channel_webhook(self, ctx: Ctx, webhook: dict[str, Any]) -> Reply:
        """A message from a channel webhook: authored by the webhook (its name, or `username`), with
        `webhook_id`; in a forum it needs `thread_name` (a new post, owned by the webhook) or `thread_id`."""
        fake = self.fake
        body = dict(ctx.json or {})
        author = User(
            id=int(webhook["id"]),
            username=self._webhook_name("username", body.pop("username", None) or webhook["name"]),
            bot=True,
        )
        body.pop("avatar_url", None)
        thread_name = body.pop("thread_name", None)
        applied_tags = body.pop("applied_tags", None)
        M.validate_message(body, ctx.uploads)
        ch = self._webhook_target(ctx, webhook)
        extra = {"webhook_id": webhook["id"], "application_id": webhook["application_id"]}
        if ch.is_forum:
            if not thread_name:
                raise E.ApiError(400, 220001, "Webhooks posted to forum channels must have a thread_name or thread_id")
            name = self._thread_name({"name": thread_name})
            tags = [int(t) for t in applied_tags or []]
            valid = {int(t["id"]) for t in ch.available_tags}
            if len(tags) > 5 or any(t not in valid for t in tags):
                raise E.invalid_form({"applied_tags": E.field_error("CHANNEL_TAG_INVALID", "Tag does not exist")})
            if ch.flags & 16 and not tags:
                raise E.ApiError(400, 40067, "A tag is required to create a forum post in this channel")
            thread = fake.new_thread(ch, author, name, thread_id=None, applied_tags=tags)
            await self._announce_thread(thread)
            msg = fake.build_message(thread, author, body, uploads=ctx.uploads, message_id=thread.id, extra=extra)
            await fake.post_message(thread, msg)
        else:
            msg = fake.build_message(ch, author, body, uploads=ctx.uploads, extra=extra)
            await fake.post_message(ch, msg)
        if ctx.query.get("wait") in ("1", "true", "True"):
            return Reply(clone(msg))
        return Reply(None, 204)

    @route("POST", "/webhooks/{webhook_id}/{webhook_token}", auth=False, global_limit=False)
    async def execute_webhook(self, ctx: Ctx) -> Reply:
        fake = self.fake
        if ctx.p("webhook_id") != fake.application_id:
            return await self._execute_channel_webhook(ctx, self._channel_webhook(ctx))
        ix = self._webhook_ix(ctx)
        body = dict(ctx.json or {})
        M.validate_message(body, ctx.uploads)
        orig = ix.original
        if orig is not None and int(orig.get("flags", 0)) & M.LOADING:
            # the first follow-up after a deferral fills in the "thinking" message
            ch = fake.channels.get(int(orig["channel_id"]), ix.channel)
            body.pop("flags", None)
            msg = fake.apply_edit(ch, orig, body, ctx.uploads, "followup")
        else:
            flags = int(body.get("flags") or 0) & (M.EPHEMERAL | M.SUPPRESS_EMBEDS | M.IS_COMPONENTS_V2)
            body["flags"] = flags
            msg = fake.build_message(
                ix.channel,
                fake.bot,
                body,
                uploads=ctx.uploads,
                mtype=M.DEFAULT,
                extra={
                    "webhook_id": str(fake.application_id),
                    "application_id": str(fake.application_id),
                    "interaction_metadata": I.interaction_metadata(ix),
                },
            )
            if ix.channel.is_thread and ix.channel.archived:
                ix.channel.archived = False
            self._post_sync(ix.channel, msg)
        ix.followups.append(msg)
        ix._touch()
        if ctx.query.get("wait") in ("1", "true", "True"):
            return Reply(clone(msg))
        return Reply(None, 204)

    @route("GET", "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}", auth=False, global_limit=False)
    async def get_webhook_message(self, ctx: Ctx) -> Reply:
        ix = self._webhook_ix(ctx)
        return Reply(clone(self._webhook_message(ix, ctx.params["message_id"])))

    @route("PATCH", "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}", auth=False, global_limit=False)
    async def edit_webhook_message(self, ctx: Ctx) -> Reply:
        fake = self.fake
        if ctx.p("webhook_id") != fake.application_id:
            webhook = self._channel_webhook(ctx)
            ch = self._webhook_target(ctx, webhook)
            msg = self.message_or_404(ch, ctx.p("message_id"))
            if msg.get("webhook_id") != webhook["id"]:
                raise E.unknown_message()
            body = dict(ctx.json or {})
            M.validate_message(body, ctx.uploads, edit=True)
            fake.apply_edit(ch, msg, body, ctx.uploads, "webhook")
            return Reply(clone(msg))
        ix = self._webhook_ix(ctx)
        msg = self._webhook_message(ix, ctx.params["message_id"])
        body = dict(ctx.json or {})
        M.validate_message(body, ctx.uploads, edit=True)
        ch = fake.channels.get(int(msg["channel_id"]), ix.channel)
        fake.apply_edit(ch, msg, body, ctx.uploads, "webhook")
        ix.edits.append(clone(msg))
        ix._touch()
        return Reply(clone(msg))

    @route("DELETE", "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}", auth=False, global_limit=False)
    async def delete_webhook_message(self, ctx: Ctx) -> Reply:
        fake = self.fake
        ix = self._webhook_ix(ctx)
        msg = self._webhook_message(ix, ctx.params["message_id"])
        if int(msg.get("flags", 0)) & M.EPHEMERAL:
            fake.all_messages.pop(int(msg["id"]), None)
        else:
            await fake.message_delete(msg)
        if ix.original is msg:
            ix.original = None
        ix._touch()
        return Reply(None, 204)
