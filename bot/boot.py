"""At start, wait for Discord to be reachable (a host whose network comes up after the service).

`readersviews run` asks Discord who the token belongs to (`GET /users/@me`, the request discord.py's
login makes first) until it gets an answer, with back-off, for `discord.connect_timeout_seconds`.
A 401 means the token is wrong: that is final, and reported at once. Any other failure (no route,
connection refused, a timeout, a 5xx or 429 from Discord or a proxy) is worth waiting out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import discord

from bot.site.base import redact_text

log = logging.getLogger(__name__)


class DiscordUnreachable(Exception):
    """Discord did not answer within the configured time; `last` is the last failure."""

    def __init__(self, waited: float, attempts: int, last: BaseException) -> None:
        super().__init__(f"no answer after {attempts} attempt(s) over {waited:.0f} s: {type(last).__name__}: {last}")
        self.waited = waited
        self.attempts = attempts
        self.last = last


class _NotYet(Exception):
    """Discord (or a proxy) answered, but not with the user: try again."""


def backoff(attempt: int, *, first: float = 1.0, cap: float = 30.0) -> float:
    """Seconds to wait after failed attempt number `attempt` (1, 2, 4, ... up to `cap`)."""
    return float(min(cap, first * 2 ** max(0, attempt - 1)))


async def wait_for_discord(
    api_base: str,
    token: str,
    give_up_after: float,
    *,
    request_timeout: float = 10.0,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Return once Discord accepts the token (the number of attempts it took).

    Raises discord.LoginFailure for a rejected token (at once) and DiscordUnreachable when
    `give_up_after` seconds pass without an answer.
    """
    url = f"{api_base.rstrip('/')}/users/@me"
    headers = {"Authorization": f"Bot {token}", "User-Agent": "DiscordBot (readersviews start-up check)"}
    started = clock()
    attempt = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=request_timeout)) as session:
        while True:
            attempt += 1
            try:
                async with session.get(url, headers=headers) as response:
                    if response.status == 401:
                        raise discord.LoginFailure("Improper token has been passed.")
                    if response.status >= 400:
                        raise _NotYet(f"HTTP {response.status} {response.reason or ''}".strip())
                    return attempt
            except (aiohttp.ClientError, OSError, TimeoutError, _NotYet) as exc:
                waited = clock() - started
                delay = min(backoff(attempt), give_up_after - waited)
                if delay <= 0:
                    raise DiscordUnreachable(waited, attempt, exc) from None
                log.warning(
                    "Discord can't be reached yet (%s); retrying in %.0f s (giving up %.0f s from now)",
                    redact_text(f"{type(exc).__name__}: {exc}"),
                    delay,
                    give_up_after - waited,
                )
                await sleep(delay)
