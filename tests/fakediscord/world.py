"""The fake's world: users, guilds, roles, members and channels, with Discord payload shapes."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from . import perms as P
from .snowflake import iso, now, snowflake_time

if TYPE_CHECKING:
    from .server import FakeDiscord

# channel types
GUILD_TEXT = 0
DM = 1
GUILD_VOICE = 2
GUILD_CATEGORY = 4
GUILD_ANNOUNCEMENT = 5
ANNOUNCEMENT_THREAD = 10
PUBLIC_THREAD = 11
PRIVATE_THREAD = 12
GUILD_FORUM = 15
THREAD_TYPES = (ANNOUNCEMENT_THREAD, PUBLIC_THREAD, PRIVATE_THREAD)


@dataclasses.dataclass(eq=False)
class User:
    id: int
    username: str
    global_name: str | None = None
    bot: bool = False
    avatar: str | None = None

    @property
    def created_at(self) -> dt.datetime:
        return snowflake_time(self.id)

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"

    def payload(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": str(self.id),
            "username": self.username,
            "avatar": self.avatar,
            "discriminator": "0" if not self.bot else "0000",
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
            "global_name": self.global_name,
            "avatar_decoration_data": None,
            "collectibles": None,
            "display_name_styles": None,
            "banner_color": None,
            "clan": None,
            "primary_guild": None,
        }
        if self.bot:
            d["bot"] = True
        return d


@dataclasses.dataclass(eq=False)
class Role:
    id: int
    guild: Guild
    name: str
    permissions: int = 0
    position: int = 1
    color: int = 0
    hoist: bool = False
    managed: bool = False
    mentionable: bool = False
    bot_id: int | None = None

    @property
    def mention(self) -> str:
        return f"<@&{self.id}>"

    def payload(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": str(self.id),
            "name": self.name,
            "description": None,
            "permissions": str(self.permissions),
            "position": self.position,
            "color": self.color,
            "colors": {"primary_color": self.color, "secondary_color": None, "tertiary_color": None},
            "hoist": self.hoist,
            "managed": self.managed,
            "mentionable": self.mentionable,
            "icon": None,
            "unicode_emoji": None,
            "flags": 0,
        }
        if self.bot_id is not None:
            d["tags"] = {"bot_id": str(self.bot_id)}
        return d


@dataclasses.dataclass(eq=False)
class Member:
    user: User
    guild: Guild
    roles: list[Role] = dataclasses.field(default_factory=list)
    nick: str | None = None
    joined_at: dt.datetime = dataclasses.field(default_factory=now)

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"

    @property
    def role_ids(self) -> list[int]:
        return [r.id for r in self.roles]

    def base_permissions(self) -> int:
        return P.compute_base(
            self.guild.everyone.permissions, (r.permissions for r in self.roles), self.id == self.guild.owner_id
        )

    def permissions_in(self, channel: Channel) -> int:
        base = self.base_permissions()
        target = channel.permission_source()
        perms = P.apply_overwrites(base, target.permission_overwrites, self.guild.id, self.role_ids, self.id)
        if not perms & P.VIEW_CHANNEL:
            return 0
        return perms

    def payload(self, *, with_user: bool = True, permissions: int | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {
            "avatar": None,
            "banner": None,
            "communication_disabled_until": None,
            "flags": 0,
            "joined_at": iso(self.joined_at),
            "nick": self.nick,
            "pending": False,
            "premium_since": None,
            "roles": [str(r.id) for r in self.roles],
            "unusual_dm_activity_until": None,
            "collectibles": None,
            "deaf": False,
            "mute": False,
        }
        if with_user:
            d["user"] = self.user.payload()
        if permissions is not None:
            d["permissions"] = str(permissions)
        return d


@dataclasses.dataclass(eq=False)
class Channel:
    id: int
    type: int
    name: str | None
    guild: Guild | None = None
    position: int = 0
    parent_id: int | None = None
    topic: str | None = None
    nsfw: bool = False
    rate_limit_per_user: int = 0
    permission_overwrites: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    flags: int = 0
    last_message_id: int | None = None
    # forum
    available_tags: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    default_reaction_emoji: dict[str, Any] | None = None
    # threads
    owner_id: int | None = None
    applied_tags: list[int] = dataclasses.field(default_factory=list)
    archived: bool = False
    locked: bool = False
    auto_archive_duration: int = 4320
    archive_timestamp: str | None = None
    create_timestamp: str | None = None
    message_count: int = 0
    total_message_sent: int = 0
    thread_members: set[int] = dataclasses.field(default_factory=set)
    # DMs
    recipients: list[User] = dataclasses.field(default_factory=list)
    # state
    deleted: bool = False
    messages: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)

    @property
    def guild_id(self) -> int | None:
        return self.guild.id if self.guild else None

    @property
    def mention(self) -> str:
        return f"<#{self.id}>"

    @property
    def is_thread(self) -> bool:
        return self.type in THREAD_TYPES

    @property
    def is_forum(self) -> bool:
        return self.type == GUILD_FORUM

    def parent(self) -> Channel | None:
        if self.parent_id is None or self.guild is None:
            return None
        return self.guild.channels.get(self.parent_id)

    def permission_source(self) -> Channel:
        """Threads take their permissions from the parent channel."""
        if self.is_thread:
            parent = self.parent()
            if parent is not None:
                return parent
        return self

    def tag_id(self, name: str) -> int:
        for t in self.available_tags:
            if t["name"] == name:
                return int(t["id"])
        raise KeyError(name)

    def payload(self, *, with_member_for: int | None = None) -> dict[str, Any]:
        if self.type == DM:
            return {
                "id": str(self.id),
                "type": DM,
                "last_message_id": str(self.last_message_id) if self.last_message_id else None,
                "flags": 0,
                "recipients": [u.payload() for u in self.recipients],
            }
        assert self.guild is not None
        d: dict[str, Any] = {
            "id": str(self.id),
            "type": self.type,
            "guild_id": str(self.guild.id),
            "name": self.name,
            "parent_id": str(self.parent_id) if self.parent_id else None,
            "flags": self.flags,
            "rate_limit_per_user": self.rate_limit_per_user,
        }
        if self.is_thread:
            d.update(
                {
                    "owner_id": str(self.owner_id),
                    "last_message_id": str(self.last_message_id) if self.last_message_id else None,
                    "message_count": self.message_count,
                    "member_count": min(len(self.thread_members), 50),
                    "total_message_sent": self.total_message_sent,
                    "member_ids_preview": [str(i) for i in list(self.thread_members)[:8]],
                    "thread_metadata": {
                        "archived": self.archived,
                        "archive_timestamp": self.archive_timestamp or self.create_timestamp or iso(),
                        "auto_archive_duration": self.auto_archive_duration,
                        "locked": self.locked,
                        "create_timestamp": self.create_timestamp,
                    },
                }
            )
            if self.type == PRIVATE_THREAD:
                d["thread_metadata"]["invitable"] = True
            parent = self.parent()
            if parent is not None and parent.is_forum:
                d["applied_tags"] = [str(t) for t in self.applied_tags]
            if with_member_for is not None and with_member_for in self.thread_members:
                d["member"] = {
                    "id": str(self.id),
                    "user_id": str(with_member_for),
                    "join_timestamp": self.create_timestamp or iso(),
                    "flags": 1,
                    "muted": False,
                    "mute_config": None,
                }
            return d
        d.update(
            {
                "position": self.position,
                "permission_overwrites": list(self.permission_overwrites),
                "nsfw": self.nsfw,
            }
        )
        if self.type in (GUILD_TEXT, GUILD_ANNOUNCEMENT, GUILD_FORUM):
            d["topic"] = self.topic
            d["last_message_id"] = str(self.last_message_id) if self.last_message_id else None
            d["default_thread_rate_limit_per_user"] = 0
            d["default_auto_archive_duration"] = 4320
        if self.type == GUILD_FORUM:
            d.update(
                {
                    "available_tags": [dict(t) for t in self.available_tags],
                    "default_reaction_emoji": self.default_reaction_emoji,
                    "default_sort_order": None,
                    "default_forum_layout": 0,
                    "template": "",
                }
            )
        if self.type == GUILD_VOICE:
            d.update({"bitrate": 64000, "user_limit": 0, "rtc_region": None, "last_message_id": None})
        return d


class Guild:
    """A server. Build it with :meth:`FakeDiscord.add_guild`."""

    def __init__(self, fake: FakeDiscord, gid: int, name: str, owner: User) -> None:
        self.fake = fake
        self.id = gid
        self.name = name
        self.owner_id = owner.id
        self.owner = owner
        self.roles: dict[int, Role] = {}
        self.members: dict[int, Member] = {}
        self.channels: dict[int, Channel] = {}
        self.everyone = Role(id=gid, guild=self, name="@everyone", permissions=P.DEFAULT_EVERYONE, position=0)
        self.roles[gid] = self.everyone
        self.preferred_locale = "en-US"
        self.created_at = snowflake_time(gid)
        self.system_channel_id: int | None = None  # where Discord posts join messages (set it to a channel's id)

    # --- world building -------------------------------------------------
    def add_role(
        self, name: str, permissions: int = 0, *, color: int = 0, mentionable: bool = False, hoist: bool = False
    ) -> Role:
        role = Role(
            id=self.fake.ids.next(),
            guild=self,
            name=name,
            permissions=permissions,
            position=len(self.roles),
            color=color,
            mentionable=mentionable,
            hoist=hoist,
        )
        self.roles[role.id] = role
        self.fake._world_event("GUILD_ROLE_CREATE", {"guild_id": str(self.id), "role": role.payload()})
        return role

    def add_admin_role(self, name: str = "Admin") -> Role:
        return self.add_role(name, permissions=P.ADMINISTRATOR)

    def add_member(
        self,
        username: str,
        roles: Iterable[Role] = (),
        *,
        bot: bool = False,
        joined_at: dt.datetime | None = None,
        created_at: dt.datetime | None = None,
        nick: str | None = None,
        global_name: str | None = None,
        user: User | None = None,
    ) -> Member:
        if user is None:
            user = self.fake.add_user(username, bot=bot, created_at=created_at, global_name=global_name)
        member = Member(user=user, guild=self, roles=list(roles), nick=nick, joined_at=joined_at or now())
        self.members[user.id] = member
        data = member.payload()
        data["guild_id"] = str(self.id)
        self.fake._world_event("GUILD_MEMBER_ADD", data, intent=P.GUILD_MEMBERS)
        return member

    def add_text_channel(
        self,
        name: str,
        *,
        overwrites: list[dict[str, Any]] | None = None,
        topic: str | None = None,
        parent: Channel | None = None,
        announcement: bool = False,
    ) -> Channel:
        ch = Channel(
            id=self.fake.ids.next(),
            type=GUILD_ANNOUNCEMENT if announcement else GUILD_TEXT,
            name=name,
            guild=self,
            position=len(self.channels),
            topic=topic,
            parent_id=parent.id if parent else None,
            permission_overwrites=list(overwrites or []),
        )
        return self._add_channel(ch)

    def add_category(self, name: str, *, overwrites: list[dict[str, Any]] | None = None) -> Channel:
        ch = Channel(
            id=self.fake.ids.next(),
            type=GUILD_CATEGORY,
            name=name,
            guild=self,
            position=len(self.channels),
            permission_overwrites=list(overwrites or []),
        )
        return self._add_channel(ch)

    def add_forum_channel(
        self,
        name: str,
        tags: Iterable[str] = (),
        *,
        overwrites: list[dict[str, Any]] | None = None,
        require_tag: bool = False,
        topic: str | None = None,
        moderated_tags: Iterable[str] = (),
    ) -> Channel:
        moderated = set(moderated_tags)
        ch = Channel(
            id=self.fake.ids.next(),
            type=GUILD_FORUM,
            name=name,
            guild=self,
            position=len(self.channels),
            topic=topic,
            flags=16 if require_tag else 0,
            permission_overwrites=list(overwrites or []),
            available_tags=[
                {
                    "id": str(self.fake.ids.next()),
                    "name": t,
                    "moderated": t in moderated,
                    "emoji_id": None,
                    "emoji_name": None,
                }
                for t in tags
            ],
        )
        return self._add_channel(ch)

    def _add_channel(self, ch: Channel) -> Channel:
        self.channels[ch.id] = ch
        self.fake.channels[ch.id] = ch
        if ch.is_thread:
            self.fake._world_event("THREAD_CREATE", {**ch.payload(), "newly_created": True})
        else:
            self.fake._world_event("CHANNEL_CREATE", ch.payload())
        return ch

    # --- queries ---------------------------------------------------------
    @property
    def me(self) -> Member:
        return self.members[self.fake.bot.id]

    def member(self, user_or_id: User | Member | int) -> Member | None:
        uid = user_or_id if isinstance(user_or_id, int) else user_or_id.id
        return self.members.get(uid)

    def text_channels(self) -> list[Channel]:
        return [c for c in self.channels.values() if c.type == GUILD_TEXT and not c.deleted]

    def threads(self) -> list[Channel]:
        return [c for c in self.channels.values() if c.is_thread and not c.deleted]

    def payload(self, *, include_members: bool) -> dict[str, Any]:
        """The GUILD_CREATE payload."""
        bot_id = self.fake.bot.id
        members = list(self.members.values()) if include_members else [self.members[bot_id]]
        return {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(self.owner_id),
            "application_id": None,
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 1,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": self.preferred_locale,
            "features": [],
            "system_channel_id": str(self.system_channel_id) if self.system_channel_id else None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "max_members": 25000000,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "roles": [r.payload() for r in self.roles.values()],
            "emojis": [],
            "stickers": [],
            "soundboard_sounds": [],
            "joined_at": iso(self.members[bot_id].joined_at),
            "large": False,
            "lazy": True,
            "unavailable": False,
            "member_count": len(self.members),
            "members": [m.payload() for m in members],
            "channels": [c.payload() for c in self.channels.values() if not c.is_thread and not c.deleted],
            "threads": [
                c.payload() for c in self.channels.values() if c.is_thread and not c.deleted and not c.archived
            ],
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "embedded_activities": [],
            "activity_instances": [],
            "incidents_data": None,
            "inventory_settings": None,
            "home_header": None,
            "hub_type": None,
            "latest_onboarding_question_id": None,
            "version": 0,
            "region": "deprecated",
        }
