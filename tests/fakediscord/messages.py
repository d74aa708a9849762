"""Message bodies: validation as Discord does it, mentions, components, attachments."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Any

from . import errors as E
from .fastjson import clone

USER_MENTION = re.compile(r"<@!?(\d{15,21})>")
ROLE_MENTION = re.compile(r"<@&(\d{15,21})>")

EPHEMERAL = 1 << 6
LOADING = 1 << 7
SUPPRESS_EMBEDS = 1 << 2
HAS_THREAD = 1 << 5
IS_COMPONENTS_V2 = 1 << 15

# message types
DEFAULT = 0
THREAD_CREATED = 18
REPLY = 19
CHAT_INPUT_COMMAND = 20
THREAD_STARTER_MESSAGE = 21
CONTEXT_MENU_COMMAND = 23


@dataclasses.dataclass
class Upload:
    """A file part of a multipart request."""

    field: str
    filename: str
    content_type: str
    data: bytes


def _embed_errors(embed: dict[str, Any]) -> tuple[dict[str, Any], int]:
    errs: dict[str, Any] = {}
    total = 0

    def check(path: list[str], value: Any, limit: int) -> None:
        nonlocal total
        if value is None:
            return
        s = str(value)
        total += len(s)
        if len(s) > limit:
            node = errs
            for p in path[:-1]:
                node = node.setdefault(p, {})
            node[path[-1]] = E.max_length(limit)

    check(["title"], embed.get("title"), 256)
    check(["description"], embed.get("description"), 4096)
    footer = embed.get("footer") or {}
    check(["footer", "text"], footer.get("text"), 2048)
    author = embed.get("author") or {}
    check(["author", "name"], author.get("name"), 256)
    fields = embed.get("fields") or []
    if len(fields) > 25:
        errs["fields"] = E.max_length(25)
    for i, f in enumerate(fields):
        check(["fields", str(i), "name"], f.get("name"), 256)
        check(["fields", str(i), "value"], f.get("value"), 1024)
        if not f.get("name"):
            errs.setdefault("fields", {}).setdefault(str(i), {})["name"] = E.required()
        if not f.get("value"):
            errs.setdefault("fields", {}).setdefault(str(i), {})["value"] = E.required()
    return errs, total


def _walk(components: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for c in components:
        yield c
        if "components" in c:
            yield from _walk(c["components"])
        if "component" in c:
            yield from _walk([c["component"]])
        if "accessory" in c:
            yield from _walk([c["accessory"]])


def walk_components(components: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    return _walk(components)


def validate_components(components: list[dict[str, Any]], flags: int, errs: dict[str, Any]) -> None:
    if flags & IS_COMPONENTS_V2:
        if sum(1 for _ in _walk(components)) > 40:
            errs["components"] = E.field_error("BASE_TYPE_MAX_LENGTH", "Must be 40 or fewer in length.")
        return
    if len(components) > 5:
        errs["components"] = E.max_length(5)
        return
    seen: set[str] = set()
    for i, row in enumerate(components):
        if row.get("type") != 1:
            errs.setdefault("components", {})[str(i)] = E.field_error(
                "UNION_TYPE_CHOICES", 'Value of field "type" must be one of (1,).'
            )
            continue
        children = row.get("components") or []
        if not 1 <= len(children) <= 5:
            errs.setdefault("components", {}).setdefault(str(i), {})["components"] = E.bad_length(1, 5)
        for j, c in enumerate(children):
            here = errs.setdefault("components", {}).setdefault(str(i), {}).setdefault("components", {})
            cid = c.get("custom_id")
            if c.get("type") == 2 and c.get("style") != 5 and c.get("style") != 6 and not cid:
                here[str(j)] = {"custom_id": E.required()}
            if cid is not None:
                if len(cid) > 100:
                    here[str(j)] = {"custom_id": E.max_length(100)}
                if cid in seen:
                    errs["components"] = E.field_error(
                        "COMPONENT_CUSTOM_ID_DUPLICATED", "Component custom id cannot be duplicated"
                    )
                    return
                seen.add(cid)
            label = c.get("label")
            if label is not None and len(label) > 80:
                here[str(j)] = {"label": E.max_length(80)}
            if not here:
                del errs["components"][str(i)]["components"]
            if not errs["components"][str(i)]:
                del errs["components"][str(i)]
            if not errs["components"]:
                del errs["components"]


def validate_message(body: dict[str, Any], uploads: list[Upload], *, edit: bool = False) -> None:
    """Raise :class:`ApiError` like Discord for invalid message bodies."""
    errs: dict[str, Any] = {}
    content = body.get("content")
    if content is not None and len(str(content)) > 2000:
        errs["content"] = E.max_length(2000)
    embeds = body.get("embeds") or []
    if len(embeds) > 10:
        errs["embeds"] = E.max_length(10)
    else:
        grand_total = 0
        for i, em in enumerate(embeds):
            e_errs, total = _embed_errors(em)
            grand_total += total
            if e_errs:
                errs.setdefault("embeds", {})[str(i)] = e_errs
        if grand_total > 6000 and "embeds" not in errs:
            errs["embeds"] = E.field_error("MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")
    components = body.get("components") or []
    validate_components(components, int(body.get("flags") or 0), errs)
    if errs:
        raise E.invalid_form(errs)
    if not edit:
        has_v2 = int(body.get("flags") or 0) & IS_COMPONENTS_V2 and components
        if not (content or embeds or uploads or body.get("sticker_ids") or body.get("poll") or has_v2):
            raise E.empty_message()
        if content and int(body.get("flags") or 0) & IS_COMPONENTS_V2:
            raise E.invalid_form(
                {
                    "content": E.field_error(
                        "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2",
                        "The 'content' field cannot be used when using MessageFlags.IS_COMPONENTS_V2",
                    )
                }
            )


def normalise_embeds(embeds: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    out = []
    for e in embeds or []:
        e = dict(e)
        e.setdefault("type", "rich")
        e["content_scan_version"] = 0
        out.append(e)
    return out


def number_components(components: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Copy components and give each an ``id`` like Discord does (1, 2, ... in document order)."""
    comps = clone(components or [])
    used = {int(c["id"]) for c in _walk(comps) if c.get("id") is not None}
    n = 0
    for c in _walk(comps):
        if c.get("id") is None:
            n += 1
            while n in used:
                n += 1
            c["id"] = n
    return comps


def parse_mentions(content: str) -> tuple[list[int], list[int], bool]:
    if "@" not in content:
        return [], [], False
    users = [int(x) for x in USER_MENTION.findall(content)]
    roles = [int(x) for x in ROLE_MENTION.findall(content)]
    everyone = "@everyone" in content or "@here" in content
    return users, roles, everyone


def filter_mentions(
    content: str, allowed: dict[str, Any] | None, *, can_mention_everyone: bool, mentionable_roles: set[int]
) -> tuple[list[int], list[int], bool]:
    """Apply ``allowed_mentions`` the way Discord does; returns (user ids, role ids, everyone)."""
    users, roles, everyone = parse_mentions(content)
    if allowed is None:
        parse = {"users", "roles", "everyone"}
        allowed_users: set[int] = set()
        allowed_roles: set[int] = set()
    else:
        parse = set(allowed.get("parse") or [])
        allowed_users = {int(u) for u in allowed.get("users") or []}
        allowed_roles = {int(r) for r in allowed.get("roles") or []}
    out_users = [u for u in dict.fromkeys(users) if "users" in parse or u in allowed_users]
    out_roles = [
        r
        for r in dict.fromkeys(roles)
        if ("roles" in parse or r in allowed_roles) and (r in mentionable_roles or can_mention_everyone)
    ]
    out_everyone = everyone and "everyone" in parse and can_mention_everyone
    return out_users, out_roles, out_everyone
