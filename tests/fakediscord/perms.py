"""Permission bits, gateway intents and the permission computation Discord performs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# Permission bits (https://discord.com/developers/docs/topics/permissions)
CREATE_INSTANT_INVITE = 1 << 0
KICK_MEMBERS = 1 << 1
BAN_MEMBERS = 1 << 2
ADMINISTRATOR = 1 << 3
MANAGE_CHANNELS = 1 << 4
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_AUDIT_LOG = 1 << 7
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
SEND_TTS_MESSAGES = 1 << 12
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
MENTION_EVERYONE = 1 << 17
USE_EXTERNAL_EMOJIS = 1 << 18
CHANGE_NICKNAME = 1 << 26
MANAGE_NICKNAMES = 1 << 27
MANAGE_ROLES = 1 << 28
MANAGE_WEBHOOKS = 1 << 29
USE_APPLICATION_COMMANDS = 1 << 31
MANAGE_EVENTS = 1 << 33
MANAGE_THREADS = 1 << 34
CREATE_PUBLIC_THREADS = 1 << 35
CREATE_PRIVATE_THREADS = 1 << 36
SEND_MESSAGES_IN_THREADS = 1 << 38
MODERATE_MEMBERS = 1 << 40
SEND_POLLS = 1 << 49
USE_EXTERNAL_APPS = 1 << 50

ALL = (1 << 51) - 1

# What a fresh server gives @everyone (close to Discord's current default).
DEFAULT_EVERYONE = (
    CREATE_INSTANT_INVITE
    | ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | MENTION_EVERYONE
    | USE_EXTERNAL_EMOJIS
    | CHANGE_NICKNAME
    | USE_APPLICATION_COMMANDS
    | CREATE_PUBLIC_THREADS
    | CREATE_PRIVATE_THREADS
    | SEND_MESSAGES_IN_THREADS
    | SEND_POLLS
    | USE_EXTERNAL_APPS
)

# A typical invite permission set for a bot like readersviews (no ADMINISTRATOR).
DEFAULT_BOT = (
    VIEW_CHANNEL
    | SEND_MESSAGES
    | SEND_MESSAGES_IN_THREADS
    | CREATE_PUBLIC_THREADS
    | MANAGE_THREADS
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | ADD_REACTIONS
    | USE_EXTERNAL_EMOJIS
)

# Gateway intents
GUILDS = 1 << 0
GUILD_MEMBERS = 1 << 1
GUILD_PRESENCES = 1 << 8
GUILD_MESSAGES = 1 << 9
GUILD_MESSAGE_REACTIONS = 1 << 10
DIRECT_MESSAGES = 1 << 12
MESSAGE_CONTENT = 1 << 15


def overwrite(target_id: int, *, allow: int = 0, deny: int = 0, member: bool = False) -> dict[str, Any]:
    """A permission overwrite payload (type 0 = role, 1 = member)."""
    return {"id": str(target_id), "type": 1 if member else 0, "allow": str(allow), "deny": str(deny)}


def compute_base(everyone_perms: int, role_perms: Iterable[int], is_owner: bool) -> int:
    if is_owner:
        return ALL
    perms = everyone_perms
    for p in role_perms:
        perms |= p
    if perms & ADMINISTRATOR:
        return ALL
    return perms


def apply_overwrites(
    base: int, overwrites: list[dict[str, Any]], guild_id: int, role_ids: Iterable[int], member_id: int
) -> int:
    """Discord's overwrite algorithm: @everyone, then roles (deny then allow), then member."""
    if base & ADMINISTRATOR:
        return ALL
    perms = base
    by_id = {int(o["id"]): o for o in overwrites}
    everyone = by_id.get(guild_id)
    if everyone is not None:
        perms &= ~int(everyone["deny"])
        perms |= int(everyone["allow"])
    allow = deny = 0
    for rid in role_ids:
        o = by_id.get(int(rid))
        if o is not None and int(o.get("type", 0)) == 0:
            allow |= int(o["allow"])
            deny |= int(o["deny"])
    perms &= ~deny
    perms |= allow
    mo = by_id.get(member_id)
    if mo is not None and int(mo.get("type", 1)) == 1:
        perms &= ~int(mo["deny"])
        perms |= int(mo["allow"])
    return perms
