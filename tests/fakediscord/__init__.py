"""A loopback fake Discord (REST + gateway) for driving the real discord.py client in tests.

See README.md in this folder.
"""

from __future__ import annotations

from . import perms
from .errors import ApiError
from .interactions import FakeInteraction
from .messages import EPHEMERAL, LOADING, Upload
from .perms import overwrite
from .server import DEFAULT_TOKEN, Edit, FakeDiscord, RequestRecord, pointed_at
from .world import Channel, Guild, Member, Role, User

__all__ = [
    "DEFAULT_TOKEN",
    "EPHEMERAL",
    "LOADING",
    "ApiError",
    "Channel",
    "Edit",
    "FakeDiscord",
    "FakeInteraction",
    "Guild",
    "Member",
    "RequestRecord",
    "Role",
    "Upload",
    "User",
    "overwrite",
    "perms",
    "pointed_at",
]
