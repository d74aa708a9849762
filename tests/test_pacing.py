"""GlobalPacer: at most `rate` REST requests per `per` seconds, counted from send to response + per.

Time is a fake clock moved by a fake sleep: nothing here waits on the real clock.
"""

from __future__ import annotations

import asyncio
import random
from types import SimpleNamespace

import aiohttp
import discord
import pytest
import yarl

from bot.pacing import GlobalPacer, install_global_pacer, is_exempt, pacer_trace_config

BASE = "https://discord.com/api/v10"


class FakeTime:
    """A monotonic clock that only moves when someone sleeps on it (like an event loop's virtual time)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._timers: list[tuple[float, asyncio.Future[None]]] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._timers.append((self.now + max(delay, 0.0), future))
        await future

    async def run(self, until: float | None = None) -> None:
        """Let every task run; then fire the earliest timer, moving the clock; repeat until idle."""
        while True:
            for _ in range(20):
                await asyncio.sleep(0)
            pending = sorted((t for t in self._timers if not t[1].done()), key=lambda t: t[0])
            self._timers = pending
            if not pending or (until is not None and pending[0][0] > until):
                return
            at, future = pending[0]
            self.now = max(self.now, at)
            future.set_result(None)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def pacer(fake_time: FakeTime, rate: float = 3, per: float = 1.0) -> GlobalPacer:
    return GlobalPacer(rate, per, clock=fake_time.clock, sleep=fake_time.sleep)


async def test_first_rate_requests_go_at_once(fake_time: FakeTime) -> None:
    p = pacer(fake_time, rate=50)
    for _ in range(50):
        await p.acquire()
        p.release()
    assert fake_time.sleeps == []
    assert p.acquired == 50 and p.waited == 0


async def test_next_request_waits_until_a_slot_cools(fake_time: FakeTime) -> None:
    p = pacer(fake_time, rate=3, per=1.0)
    for _ in range(3):
        await p.acquire()
        fake_time.now += 0.1  # each response takes 100 ms
        p.release()
    # slots free again at 1000.1+1, 1000.2+1, 1000.3+1
    task = asyncio.create_task(p.acquire())
    await fake_time.run(until=1001.05)
    assert not task.done()
    await fake_time.run(until=1001.1)
    assert task.done()
    assert fake_time.now == pytest.approx(1001.1)
    assert p.waited == pytest.approx(0.8)


async def test_requests_in_flight_hold_their_slots(fake_time: FakeTime) -> None:
    """A slow response keeps its slot: Discord may count the request as late as the response."""
    p = pacer(fake_time, rate=2, per=1.0)
    await p.acquire()
    await p.acquire()
    waiting = asyncio.create_task(p.acquire())
    fake_time.now += 5.0
    await fake_time.run()
    assert not waiting.done() and p.in_flight == 2
    p.release()  # the first response arrives at 1005.0: its slot is free at 1006.0
    await fake_time.run(until=1005.9)
    assert not waiting.done()
    await fake_time.run()
    assert waiting.done() and fake_time.now == pytest.approx(1006.0)


async def test_waiters_are_served_in_order(fake_time: FakeTime) -> None:
    p = pacer(fake_time, rate=1, per=1.0)
    order: list[int] = []

    async def request(n: int) -> None:
        async with p:
            order.append(n)

    tasks = [asyncio.create_task(request(n)) for n in range(5)]
    await fake_time.run()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    assert fake_time.now == pytest.approx(1004.0)


async def test_never_more_than_rate_in_any_window_whatever_the_latency(fake_time: FakeTime) -> None:
    """40 concurrent senders, random latencies: wherever Discord counts a request (between its send
    and its response), no `per`-second window ever holds more than `rate` of them."""
    rate, per = 5, 1.0
    p = pacer(fake_time, rate=rate, per=per)
    rng = random.Random(7)
    spans: list[tuple[float, float]] = []

    async def sender() -> None:
        for _ in range(6):
            async with p:
                sent = fake_time.now
                await fake_time.sleep(rng.uniform(0.0, 0.4))
                spans.append((sent, fake_time.now))
            await fake_time.sleep(rng.uniform(0.0, 0.2))

    tasks = [asyncio.create_task(sender()) for _ in range(40)]
    await fake_time.run()
    await asyncio.gather(*tasks)
    assert len(spans) == 240
    # When request j is sent, request i (itself included) is "live" from its send until its response + per.
    for sent_j, _ in spans:
        live = sum(1 for sent_i, done_i in spans if sent_i <= sent_j < done_i + per)
        assert live <= rate
    # (If rate+1 requests were counted inside one window, the last-sent of them would find the
    # other `rate` still live when it was sent, so the check above covers every counting moment.)
    # and it is not needlessly slow: 240 requests at 5 per ~1.2 s (1 s + mean latency) is ~58 s
    assert fake_time.now - 1000.0 < 240 / rate * (per + 0.4) + 1


async def test_cancelled_waiter_takes_no_slot(fake_time: FakeTime) -> None:
    p = pacer(fake_time, rate=1, per=1.0)
    await p.acquire()
    waiting = asyncio.create_task(p.acquire())
    await fake_time.run(until=fake_time.now)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    p.release()
    assert p.in_flight == 0
    later = asyncio.create_task(p.acquire())
    await fake_time.run()
    await later
    assert p.in_flight == 1 and fake_time.now == pytest.approx(1001.0)


def test_release_without_acquire_is_a_bug(fake_time: FakeTime) -> None:
    with pytest.raises(RuntimeError):
        pacer(fake_time).release()


@pytest.mark.parametrize(
    ("url", "exempt"),
    [
        (f"{BASE}/channels/1/messages", False),
        (f"{BASE}/channels/1/threads", False),
        (f"{BASE}/applications/1/commands", False),
        (f"{BASE}/interactions/123/aW50ZXJhY3Rpb24/callback?with_response=true", True),
        (f"{BASE}/webhooks/123/aW50ZXJhY3Rpb24", True),
        (f"{BASE}/webhooks/123/aW50ZXJhY3Rpb24/messages/@original", True),
        (f"{BASE}/webhooks/123", False),  # webhook management with the bot token counts
        ("wss://gateway.discord.gg/?v=10&encoding=json", True),
        ("https://cdn.discordapp.com/attachments/1/2/a.png", True),
    ],
)
def test_exempt_routes(url: str, exempt: bool) -> None:
    assert is_exempt(url, BASE) is exempt


def _start(url: str) -> SimpleNamespace:
    return SimpleNamespace(method="POST", url=yarl.URL(url), headers={})


async def test_trace_paces_rest_requests_and_releases_on_end_or_error(
    fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(discord.http.Route, "BASE", BASE)
    p = pacer(fake_time, rate=5)
    trace = pacer_trace_config(p)
    (on_start,) = trace.on_request_start
    (on_end,) = trace.on_request_end
    (on_error,) = trace.on_request_exception

    rest, callback = SimpleNamespace(), SimpleNamespace()
    await on_start(None, rest, _start(f"{BASE}/channels/1/messages"))
    await on_start(None, callback, _start(f"{BASE}/interactions/1/tok/callback"))
    assert p.in_flight == 1
    await on_end(None, callback, None)  # exempt: nothing to release
    await on_end(None, rest, None)
    await on_end(None, rest, None)  # a second terminal event must not release twice
    assert p.in_flight == 0

    failing = SimpleNamespace()
    await on_start(None, failing, _start(f"{BASE}/guilds/1/members"))
    assert p.in_flight == 1
    await on_error(None, failing, None)
    assert p.in_flight == 0 and p.acquired == 2


async def test_install_extends_the_clients_trace_before_login() -> None:
    http = discord.http.HTTPClient(asyncio.get_running_loop())
    mine = aiohttp.TraceConfig()
    seen: list[str] = []

    async def spy(_session: object, _ctx: object, params: aiohttp.TraceRequestStartParams) -> None:
        seen.append(str(params.url))

    mine.on_request_start.append(spy)
    http.http_trace = mine
    pacer_ = install_global_pacer(http, rate=40, per=1.0)
    assert http.http_trace is mine and len(mine.on_request_start) == 2
    assert pacer_.capacity == 40

    fresh = discord.http.HTTPClient(asyncio.get_running_loop())
    install_global_pacer(fresh)
    assert isinstance(fresh.http_trace, aiohttp.TraceConfig)


async def test_install_after_login_is_refused() -> None:
    http = discord.http.HTTPClient(asyncio.get_running_loop())
    http._HTTPClient__session = object()  # type: ignore[attr-defined]  # what static_login sets
    with pytest.raises(RuntimeError, match="before the client logs in"):
        install_global_pacer(http)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        GlobalPacer(0)
    with pytest.raises(ValueError):
        GlobalPacer(10, 0)
