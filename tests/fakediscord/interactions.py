"""INTERACTION_CREATE payloads built like Discord's, and the record of how the bot answered."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from . import messages as M
from .fastjson import clone
from .world import Channel, Guild, Member, Role, User

if TYPE_CHECKING:
    from .server import FakeDiscord

# interaction types
PING, APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 1, 2, 3, 4, 5
# callback types
PONG, CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE = 1, 4, 5, 6, 7
AUTOCOMPLETE_RESULT, MODAL = 8, 9

ALLOWED_CALLBACKS: dict[int, set[int]] = {
    APPLICATION_COMMAND: {CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, MODAL},
    MESSAGE_COMPONENT: {CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE, MODAL},
    AUTOCOMPLETE: {AUTOCOMPLETE_RESULT},
    MODAL_SUBMIT: {CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE},
    PING: {PONG},
}

# option types
SUB_COMMAND, SUB_COMMAND_GROUP, STRING, INTEGER, BOOLEAN, USER, CHANNEL, ROLE, MENTIONABLE, NUMBER, ATTACHMENT = (
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
)


class FakeInteraction:
    """One interaction sent to the bot and everything the bot did with it."""

    def __init__(
        self,
        fake: FakeDiscord,
        payload: dict[str, Any],
        *,
        guild: Guild | None,
        user: User,
        channel: Channel,
        message: dict[str, Any] | None = None,
        command_name: str | None = None,
        command_type: int | None = None,
    ) -> None:
        self.fake = fake
        self.payload = payload
        self.id = int(payload["id"])
        self.token: str = payload["token"]
        self.type: int = payload["type"]
        self.guild = guild
        self.user = user
        self.channel = channel
        self.message = message  # the message a component/modal interaction came from
        self.command_name = command_name
        self.command_type = command_type
        self.created = time.monotonic()
        self.callbacks: list[dict[str, Any]] = []  # every callback body received (also rejected ones)
        self.response: dict[str, Any] | None = None  # the accepted callback body
        self.response_type: int | None = None
        self.original: dict[str, Any] | None = None
        self.followups: list[dict[str, Any]] = []
        self.edits: list[dict[str, Any]] = []
        self.modal: dict[str, Any] | None = None
        self.choices: list[dict[str, Any]] | None = None
        self.uploads: list[M.Upload] = []
        self._responded = asyncio.Event()
        self._changed = asyncio.Event()

    # --- state ----------------------------------------------------------
    @property
    def acknowledged(self) -> bool:
        return self.response is not None

    @property
    def ephemeral(self) -> bool:
        """Whether the response (or the first message) is ephemeral."""
        if self.original is not None:
            return bool(int(self.original.get("flags", 0)) & M.EPHEMERAL)
        if self.response is not None:
            data = self.response.get("data") or {}
            return bool(int(data.get("flags") or 0) & M.EPHEMERAL)
        return False

    @property
    def deferred(self) -> bool:
        return self.response_type in (DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE_MESSAGE)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Original response (if any) then follow-ups."""
        out = [self.original] if self.original is not None else []
        return out + [f for f in self.followups if self.original is None or f["id"] != self.original["id"]]

    def _touch(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # --- waiting -------------------------------------------------------
    async def wait_response(self, timeout: float = 5.0) -> dict[str, Any]:  # noqa: ASYNC109
        """The accepted callback body: ``{"type": 4|5|6|7|8|9, "data": ...}``."""
        await asyncio.wait_for(self._responded.wait(), timeout)
        assert self.response is not None
        return self.response

    async def wait_for(self, predicate: Any, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until ``predicate(self)`` is true (re-checked on every callback/followup/edit)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate(self):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"interaction {self.id}: condition not met in {timeout}s")
            ev = self._changed
            try:
                await asyncio.wait_for(ev.wait(), remaining)
            except TimeoutError:
                continue

    async def wait_followup(self, n: int = 1, timeout: float = 5.0) -> dict[str, Any]:  # noqa: ASYNC109
        await self.wait_for(lambda ix: len(ix.followups) >= n, timeout)
        return self.followups[n - 1]

    async def wait_original(self, timeout: float = 5.0, *, loaded: bool = True) -> dict[str, Any]:  # noqa: ASYNC109
        """The original response message; with ``loaded`` wait until a deferred one is filled in."""

        def ok(ix: FakeInteraction) -> bool:
            if ix.original is None:
                return False
            return not loaded or not int(ix.original.get("flags", 0)) & M.LOADING

        await self.wait_for(ok, timeout)
        assert self.original is not None
        return self.original

    async def wait_edit(self, n: int = 1, timeout: float = 5.0) -> dict[str, Any]:  # noqa: ASYNC109
        await self.wait_for(lambda ix: len(ix.edits) >= n, timeout)
        return self.edits[n - 1]

    def __repr__(self) -> str:
        return f"<FakeInteraction id={self.id} type={self.type} response={self.response_type}>"


# --- payload building ----------------------------------------------------------
def new_token() -> str:
    return "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(120)


def channel_with_permissions(channel: Channel, member: Member | None) -> dict[str, Any]:
    d = channel.payload()
    if member is not None:
        d["permissions"] = str(member.permissions_in(channel))
    else:
        d["permissions"] = "0"
    return d


def base_payload(
    fake: FakeDiscord,
    itype: int,
    guild: Guild | None,
    user: User,
    channel: Channel,
    data: dict[str, Any] | None,
    *,
    message: dict[str, Any] | None = None,
    locale: str = "en-US",
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": str(fake.ids.next()),
        "application_id": str(fake.application_id),
        "type": itype,
        "token": new_token(),
        "version": 1,
        "locale": locale,
        "entitlements": [],
        "entitlement_sku_ids": [],
        "attachment_size_limit": fake.attachment_size_limit,
    }
    if data is not None:
        payload["data"] = data
    if guild is not None:
        member = guild.members.get(user.id)
        if member is None:
            raise ValueError(f"{user.username} is not a member of {guild.name}")
        perms = member.permissions_in(channel)
        payload.update(
            {
                "guild_id": str(guild.id),
                "guild": {"id": str(guild.id), "locale": guild.preferred_locale, "features": []},
                "guild_locale": guild.preferred_locale,
                "channel_id": str(channel.id),
                "channel": channel_with_permissions(channel, member),
                "member": member.payload(permissions=perms),
                "app_permissions": str(guild.me.permissions_in(channel)),
                "authorizing_integration_owners": {"0": str(guild.id)},
                "context": 0,
            }
        )
    else:
        payload.update(
            {
                "channel_id": str(channel.id),
                "channel": {**channel.payload(), "permissions": "0"},
                "user": user.payload(),
                "app_permissions": str(fake.dm_app_permissions),
                "authorizing_integration_owners": {"0": "0"},
                "context": 1,
            }
        )
    if message is not None:
        payload["message"] = clone(message)
    return payload


def _as_id(value: Any) -> int:
    if isinstance(value, (User, Member, Role, Channel)):
        return value.id
    if isinstance(value, dict):
        return int(value["id"])
    return int(value)


class _Resolver:
    def __init__(self, fake: FakeDiscord, guild: Guild | None, invoker_channel: Channel, invoker: User) -> None:
        self.fake = fake
        self.guild = guild
        self.invoker_channel = invoker_channel
        self.invoker = guild.members.get(invoker.id) if guild is not None else None
        self.resolved: dict[str, dict[str, Any]] = {}

    def user(self, value: Any) -> str:
        uid = _as_id(value)
        user = self.fake.users.get(uid)
        if user is None:
            raise ValueError(f"unknown user {uid}")
        self.resolved.setdefault("users", {})[str(uid)] = user.payload()
        if self.guild is not None:
            member = self.guild.members.get(uid)
            if member is not None:
                self.resolved.setdefault("members", {})[str(uid)] = member.payload(
                    with_user=False, permissions=member.permissions_in(self.invoker_channel)
                )
        return str(uid)

    def role(self, value: Any) -> str:
        rid = _as_id(value)
        if self.guild is None or rid not in self.guild.roles:
            raise ValueError(f"unknown role {rid}")
        self.resolved.setdefault("roles", {})[str(rid)] = self.guild.roles[rid].payload()
        return str(rid)

    def channel(self, value: Any, allowed_types: list[int] | None) -> str:
        cid = _as_id(value)
        ch = self.fake.channels.get(cid)
        if ch is None:
            raise ValueError(f"unknown channel {cid}")
        if allowed_types and ch.type not in allowed_types:
            raise ValueError(f"channel {ch.name} type {ch.type} not allowed here ({allowed_types})")
        self.resolved.setdefault("channels", {})[str(cid)] = channel_with_permissions(ch, self.invoker)
        return str(cid)

    def attachment(self, value: Any) -> str:
        filename, data = value
        aid = self.fake.ids.next()
        att = self.fake.store_attachment(self.invoker_channel.id, aid, filename, data, "application/octet-stream")
        self.resolved.setdefault("attachments", {})[str(aid)] = att
        return str(aid)


def _convert(option: dict[str, Any], value: Any, r: _Resolver) -> Any:
    t = option["type"]
    name = option["name"]
    if t == STRING:
        value = str(value)
        lo, hi = option.get("min_length"), option.get("max_length")
        if (lo is not None and len(value) < lo) or (hi is not None and len(value) > hi):
            raise ValueError(f"option {name}: length must be within [{lo}, {hi}]")
    elif t == INTEGER:
        value = int(value)
    elif t == NUMBER:
        value = float(value)
    elif t == BOOLEAN:
        value = bool(value)
    elif t == USER:
        return r.user(value)
    elif t == ROLE:
        return r.role(value)
    elif t == MENTIONABLE:
        if isinstance(value, Role):
            return r.role(value)
        return r.user(value)
    elif t == CHANNEL:
        return r.channel(value, option.get("channel_types"))
    elif t == ATTACHMENT:
        return r.attachment(value)
    if t in (INTEGER, NUMBER):
        lo, hi = option.get("min_value"), option.get("max_value")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ValueError(f"option {name}: value must be within [{lo}, {hi}]")
    choices = option.get("choices")
    if choices and value not in [c["value"] for c in choices]:
        raise ValueError(f"option {name}: {value!r} is not one of the choices {[c['value'] for c in choices]}")
    return value


def build_options(
    schema: list[dict[str, Any]], values: Mapping[str, Any], r: _Resolver, *, focused: str | None = None
) -> list[dict[str, Any]]:
    by_name = {o["name"]: o for o in schema}
    unknown = set(values) - set(by_name)
    if unknown:
        raise ValueError(f"unknown options {sorted(unknown)}; command has {sorted(by_name)}")
    out = []
    for o in schema:
        if o["name"] not in values:
            if o.get("required") and o["name"] != focused:
                raise ValueError(f"missing required option {o['name']!r}")
            continue
        v = values[o["name"]]
        if o["name"] == focused:
            out.append({"name": o["name"], "type": o["type"], "value": str(v), "focused": True})
            continue
        out.append({"name": o["name"], "type": o["type"], "value": _convert(o, v, r)})
    return out


def find_component(components: list[dict[str, Any]], custom_id: str) -> dict[str, Any] | None:
    for c in M.walk_components(components):
        if c.get("custom_id") == custom_id:
            return c
    return None


def modal_submit_components(modal: dict[str, Any], values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Mirror the modal the bot sent, filling values by custom_id, as the Discord client does."""
    used: set[str] = set()

    def fill(c: dict[str, Any]) -> dict[str, Any]:
        t = c.get("type")
        out: dict[str, Any] = {"type": t, "id": c.get("id")}
        if t == 1:
            out["components"] = [fill(x) for x in c.get("components", [])]
        elif t == 18:
            out["component"] = fill(c["component"])
        elif t == 4:
            cid = c["custom_id"]
            v = values.get(cid, c.get("value") or "")
            if cid in values:
                used.add(cid)
            v = str(v)
            if c.get("required", True) and not v:
                raise ValueError(f"text input {cid!r} is required")
            lo, hi = c.get("min_length"), c.get("max_length", 4000)
            if v and ((lo is not None and len(v) < lo) or (hi is not None and len(v) > hi)):
                raise ValueError(f"text input {cid!r}: length {len(v)} outside [{lo}, {hi}]")
            out.update({"custom_id": cid, "value": v})
        elif t in (3, 5, 6, 7, 8, 19):
            cid = c["custom_id"]
            if cid in values:
                used.add(cid)
                raw = values[cid]
                vals = [str(x) for x in (raw if isinstance(raw, (list, tuple)) else [raw])]
            else:
                vals = [str(o["value"]) for o in c.get("options", []) if o.get("default")]
            if c.get("required", True) and not vals and c.get("min_values", 1) > 0:
                raise ValueError(f"select {cid!r} is required")
            if t == 3:
                allowed = {o["value"] for o in c.get("options", [])}
                bad = [v for v in vals if v not in allowed]
                if bad:
                    raise ValueError(f"select {cid!r}: {bad} not among options {sorted(allowed)}")
            out.update({"custom_id": cid, "values": vals})
        elif t == 23:  # checkbox-like / unknown newer inputs: pass value through
            cid = c.get("custom_id")
            if cid is not None:
                out.update({"custom_id": cid, "value": values.get(cid)})
                used.add(cid)
        return out

    comps = [fill(c) for c in modal.get("components", [])]
    extra = set(values) - used
    if extra:
        raise ValueError(f"modal {modal.get('custom_id')!r} has no inputs {sorted(extra)}")
    return comps


def response_message_type(ix: FakeInteraction) -> int:
    if ix.type == APPLICATION_COMMAND:
        return M.CHAT_INPUT_COMMAND if ix.command_type == 1 else M.CONTEXT_MENU_COMMAND
    return M.DEFAULT


def interaction_metadata(ix: FakeInteraction) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": str(ix.id),
        "type": ix.type,
        "user": ix.user.payload(),
        "authorizing_integration_owners": ix.payload.get("authorizing_integration_owners", {}),
    }
    if ix.type == APPLICATION_COMMAND:
        d["name"] = ix.command_name
        d["command_type"] = ix.command_type
    if ix.type == MESSAGE_COMPONENT and ix.message is not None:
        d["interacted_message_id"] = ix.message["id"]
    return d


def legacy_interaction(ix: FakeInteraction) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": str(ix.id),
        "type": ix.type,
        "name": ix.command_name or "",
        "user": ix.user.payload(),
    }
    if ix.guild is not None:
        m = ix.guild.members.get(ix.user.id)
        if m is not None:
            d["member"] = m.payload(with_user=False)
    return d
