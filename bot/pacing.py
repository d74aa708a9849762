"""Pace REST requests under Discord's global limit (50 requests per second per bot).

discord.py learns each per-route bucket from the X-RateLimit-* headers and waits before it is
exhausted, but it only learns about the global limit from a 429. A bot that posts a backlog
(articles into 50 channels, a burst of sign-ons) therefore runs into global 429s, each of which
counts towards Cloudflare's invalid-request ban (10,000 per 10 minutes).

`GlobalPacer` is a counting window: at most `rate` requests in any `per` seconds. A request holds
its slot from the moment it is sent until `per` seconds after its response arrived. Discord
counts a request somewhere between those two moments, so however the latency varies, two
requests sharing a slot reach Discord at least `per` seconds apart: the pacer is safe for a sliding
window and a fixed one alike, at the cost of one round trip per slot per window (~0.5 %).

It is installed as an aiohttp trace hook on discord.py's session (`Client(http_trace=...)`), not
around `HTTPClient.request`: `request()` may first wait inside for a per-route bucket and retries
5xx/429 answers in a loop, so pacing its entry would stamp slots at the wrong moments. The trace
hook paces each real HTTP exchange, retries included. Interaction callbacks and webhook-token
routes (interaction follow-ups) are exempt from the bot's global limit, so they are not paced.
"""

from __future__ import annotations

import asyncio
import collections
import re
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import aiohttp
import discord

from bot.discord_internals import logged_in

__all__ = ["GlobalPacer", "install_global_pacer", "is_exempt", "pacer_trace_config"]

# /interactions/{id}/{token}/callback and /webhooks/{id}/{token}[/...]: not under the global limit.
_EXEMPT = re.compile(r"/interactions/|/webhooks/\d+/[^/?]+")


class GlobalPacer:
    """At most `rate` requests in flight or finished within the last `per` seconds (FIFO)."""

    def __init__(
        self,
        rate: float = 50,
        per: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        if rate < 1 or per <= 0:
            raise ValueError("rate must be at least 1 and per positive")
        self.capacity = int(rate)
        self.per = float(per)
        self._clock = clock
        self._sleep = sleep
        self._in_flight = 0
        self._cooling: collections.deque[float] = collections.deque()  # when each released slot is free again
        self._turn = asyncio.Lock()  # FIFO among waiters
        self._released = asyncio.Event()
        self.waited = 0.0  # total seconds callers spent waiting, for benchmarks and logs
        self.acquired = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def _free_slots(self, now: float) -> int:
        while self._cooling and self._cooling[0] <= now:
            self._cooling.popleft()
        return self.capacity - self._in_flight - len(self._cooling)

    async def acquire(self) -> None:
        """Wait for a slot and take it; pair with exactly one `release()` once the response is in."""
        async with self._turn:
            started = self._clock()
            while True:
                now = self._clock()
                if self._free_slots(now) > 0:
                    break
                if self._cooling:
                    await self._sleep(self._cooling[0] - now)
                else:  # every slot is in flight: wait for a response
                    self._released.clear()
                    await self._released.wait()
            self._in_flight += 1
            self.acquired += 1
            self.waited += self._clock() - started

    def release(self) -> None:
        """The response arrived (or the request failed): the slot is free again `per` seconds from now."""
        if self._in_flight <= 0:
            raise RuntimeError("GlobalPacer.release() without acquire()")
        self._in_flight -= 1
        self._cooling.append(self._clock() + self.per)
        self._released.set()

    async def __aenter__(self) -> GlobalPacer:
        await self.acquire()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()


def is_exempt(url: str, api_base: str | None = None) -> bool:
    """True for requests outside the global limit: not to the REST API, or interaction routes."""
    base = discord.http.Route.BASE if api_base is None else api_base
    if not url.startswith(base):
        return True  # the gateway websocket, the CDN
    return bool(_EXEMPT.search(url, len(base)))


def pacer_trace_config(pacer: GlobalPacer, trace: aiohttp.TraceConfig | None = None) -> aiohttp.TraceConfig:
    """An aiohttp TraceConfig (new, or `trace` extended) that holds a pacer slot for every REST request."""
    trace = trace or aiohttp.TraceConfig()

    async def on_start(_session: Any, ctx: SimpleNamespace, params: aiohttp.TraceRequestStartParams) -> None:
        if is_exempt(str(params.url)):
            return
        await pacer.acquire()
        ctx.readersviews_paced = True  # aiohttp sends a terminal event only after a successful start

    async def on_finish(_session: Any, ctx: SimpleNamespace, _params: Any) -> None:
        if getattr(ctx, "readersviews_paced", False):
            ctx.readersviews_paced = False
            pacer.release()

    trace.on_request_start.append(on_start)
    trace.on_request_end.append(on_finish)
    trace.on_request_exception.append(on_finish)
    return trace


def install_global_pacer(http: discord.http.HTTPClient, rate: float = 50, per: float = 1.0) -> GlobalPacer:
    """Pace every REST request of this discord.py client; call before `login()` (e.g. in `__init__`).

    discord.py builds its aiohttp session from `http.http_trace` at login, so the hook must be in
    place by then; an existing `http_trace` is kept and extended.
    """
    if logged_in(http):
        raise RuntimeError("install_global_pacer() must run before the client logs in")
    pacer = GlobalPacer(rate, per)
    http.http_trace = pacer_trace_config(pacer, http.http_trace)
    return pacer
