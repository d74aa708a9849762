"""The one place that uses discord.py's private internals (tests/test_internals.py fails loudly if they change).

- `HTTPClient.__session` (name-mangled): set by `static_login`; the pacer must be installed before.
- `Client._connection`: the ConnectionState, whose `parsers` map gateway events to their parser
  (the tenant gate wraps them) and whose `_ready_task` is left running by a close during
  `guild_ready_timeout`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import discord


def logged_in(http: discord.http.HTTPClient) -> bool:
    """Whether `static_login` has built the client's aiohttp session yet."""
    return getattr(http, "_HTTPClient__session", discord.utils.MISSING) is not discord.utils.MISSING


def connection_state(client: discord.Client) -> Any:
    """The client's ConnectionState (to build an `Interaction` from a raw payload)."""
    return client._connection


def gateway_parsers(client: discord.Client) -> dict[str, Callable[[Any], None]]:
    """Gateway event name -> the parser discord.py calls with its payload (replaceable in place)."""
    parsers: dict[str, Callable[[Any], None]] = client._connection.parsers
    return parsers


def pending_ready_task(client: discord.Client) -> asyncio.Task[None] | None:
    """The task waiting for GUILD_CREATEs after READY, if any (None once ready or never started)."""
    task: asyncio.Task[None] | None = getattr(client._connection, "_ready_task", None)
    return task
