"""Prometheus metrics and a health check, served on `metrics.listen` (GET /metrics, GET /healthz).

Counters are module-level, as is the convention with prometheus-client, in a registry of their own
(so only readersviews' metrics are exposed): the code that does the work counts it with one line,
e.g. `metrics.FEED_POLLS.labels("ok").inc()`. Like discord.py's `Route.BASE`, they are process-wide:
a process runs one bot. Gauges that describe the database (backlog, feeds, letters) and the gateway
are read when Prometheus scrapes, so they are never stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from bot import __version__
from bot.clock import from_db, to_db
from bot.config import ConfigError

if TYPE_CHECKING:
    from bot.app import ReadersViewsBot

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)


def _counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
    return Counter(name, doc, labels, registry=REGISTRY)


def _gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
    return Gauge(name, doc, labels, registry=REGISTRY)


# prometheus-client adds the `_total` suffix to counters: these are readersviews_..._total.
ARTICLES_POSTED = _counter("readersviews_articles_posted", "Articles posted to Discord")
ARTICLES_FAILED = _counter("readersviews_articles_failed", "Articles that could not be posted (see /feed diagnose)")
FEED_POLLS = _counter("readersviews_feed_polls", "Feed polls by outcome (ok, not_modified, error)", ("outcome",))
SIGNATURES = _counter("readersviews_signatures_recorded", "Statement signatures recorded (new or updated)")
INTERACTIONS = _counter(
    "readersviews_interactions",
    "Interactions by outcome: answered, late (Discord had expired it: 10062), skipped (too old to start)",
    ("outcome",),
)
SITE_DELIVERIES = _counter(
    "readersviews_site_deliveries", "Deliveries to the site by outcome (delivered, retry, dead)", ("outcome",)
)
DISCORD_REQUESTS = _counter(
    "readersviews_discord_requests", "HTTP requests to Discord's REST API by method and status", ("method", "status")
)
DISCORD_RATE_LIMITED = _counter("readersviews_discord_rate_limited", "Discord REST answers 429 (rate limited)")
ALERTS = _counter("readersviews_alerts", "Alerts raised for a server's admins or the operator")
DB_WRITES = _counter("readersviews_db_writes", "Write transactions committed to the database")

FEEDS = _gauge("readersviews_feeds", "Feeds by state (ok, failing, paused)", ("state",))
LETTERS = _gauge("readersviews_letters", "Readers' contributions by state (recorded, submitted, ...)", ("state",))
OUTBOX_ITEMS = _gauge("readersviews_outbox_items", "Outbox items by state (pending, inflight, dead)", ("state",))
OUTBOX_OLDEST_AGE = _gauge(
    "readersviews_outbox_oldest_age_seconds", "Age of the oldest item not yet delivered to the site (0: none)"
)
GATEWAY_LATENCY = _gauge("readersviews_gateway_latency_seconds", "Gateway heartbeat round trip")
GATEWAY_CONNECTED = _gauge("readersviews_gateway_connected", "1 while the gateway websocket is connected")
GUILDS = _gauge("readersviews_guilds", "Servers the bot is in")
LOOP_LAG = _gauge("readersviews_event_loop_lag_seconds", "How late the event loop ran a timer, last measured")
BUILD_INFO = _gauge("readersviews_build_info", "Always 1; the version as a label", ("version",))
BUILD_INFO.labels(__version__).set(1)

LETTER_STATES = ("recorded", "submitted", "nominated", "approved", "rejected", "published", "retracted")


# -- Discord's REST API, counted where every request passes: discord.py's aiohttp session ----------


def instrument_discord_http(http: Any) -> None:
    """Count every REST exchange of this discord.py client (call before login, as for the pacer)."""
    trace = http.http_trace or aiohttp.TraceConfig()

    async def on_end(_session: Any, _ctx: SimpleNamespace, params: aiohttp.TraceRequestEndParams) -> None:
        count_discord_answer(params.method, params.url.path, params.response.status)

    trace.on_request_end.append(on_end)
    http.http_trace = trace


def count_discord_answer(method: str, path: str, status: int) -> None:
    key = (method, status, method == "POST" and "/interactions/" in path and path.endswith("/callback"))
    children = _ANSWER_CHILDREN.get(key)
    if children is None:  # `labels()` takes a lock and validates: once per kind of answer, not per answer
        children = [DISCORD_REQUESTS.labels(method, str(status))]
        if status == 429:
            children.append(DISCORD_RATE_LIMITED)
        if key[2]:
            # 404 here is 10062 Unknown interaction: the 3 s window had passed.
            children.append(INTERACTIONS.labels("answered" if status < 300 else "late" if status == 404 else "refused"))
        _ANSWER_CHILDREN[key] = children
    for child in children:
        child.inc()


_ANSWER_CHILDREN: dict[tuple[str, int, bool], list[Any]] = {}


# -- what is read at scrape time -----------------------------------------------------------------


async def refresh(bot: ReadersViewsBot) -> None:
    """Set the gauges that describe the database and the gateway."""
    db = bot.store.db
    feeds = {"ok": 0, "failing": 0, "paused": 0}
    for row in await db.fetchall(
        "SELECT CASE WHEN enabled = 0 THEN 'paused' WHEN consecutive_errors > 0 THEN 'failing' ELSE 'ok' END"
        " AS state, count(*) AS n FROM feeds GROUP BY 1"
    ):
        feeds[row["state"]] = int(row["n"])
    for state, n in feeds.items():
        FEEDS.labels(state).set(n)
    letters = dict.fromkeys(LETTER_STATES, 0)
    for row in await db.fetchall("SELECT state, count(*) AS n FROM contributions GROUP BY state"):
        letters[row["state"]] = int(row["n"])
    for state, n in letters.items():
        LETTERS.labels(state).set(n)
    outbox = dict.fromkeys(("pending", "inflight", "dead"), 0)
    for row in await db.fetchall("SELECT state, count(*) AS n FROM outbox WHERE state != 'done' GROUP BY state"):
        outbox[row["state"]] = int(row["n"])
    for state, n in outbox.items():
        OUTBOX_ITEMS.labels(state).set(n)
    first = await db.fetchone("SELECT min(created_at) AS oldest FROM outbox WHERE state IN ('pending', 'inflight')")
    oldest = from_db(first["oldest"]) if first is not None else None
    OUTBOX_OLDEST_AGE.set(max(0.0, (bot.clock.now() - oldest).total_seconds()) if oldest else 0.0)
    connected = gateway_connected(bot)
    GATEWAY_CONNECTED.set(1 if connected else 0)
    latency = bot.latency
    GATEWAY_LATENCY.set(latency if connected and latency == latency and latency != float("inf") else 0.0)
    GUILDS.set(len(bot.guilds))


def gateway_connected(bot: ReadersViewsBot) -> bool:
    """Connected: ready, and every gateway connection (one per shard when sharded) open."""
    if not bot.is_ready() or bot.is_closed():
        return False
    shards = getattr(bot, "shards", None)
    if isinstance(shards, dict):
        return bool(shards) and all(not info.is_closed() for info in shards.values())
    ws = bot.ws
    return ws is not None and bool(ws.open)


async def health(bot: ReadersViewsBot, *, write_within: float = 5.0) -> tuple[bool, dict[str, object]]:
    """(healthy, body): healthy when the gateway is connected and the database takes a write."""
    body: dict[str, object] = {"version": __version__}
    problems: list[str] = []
    if gateway_connected(bot):
        body["gateway"] = "connected"
        body["guilds"] = len(bot.guilds)
    else:
        body["gateway"] = "disconnected"
        problems.append("the Discord gateway is not connected")
    try:
        await asyncio.wait_for(bot.store.meta.set("healthz_at", to_db(bot.clock.now()) or ""), write_within)
    except Exception as exc:  # any failure to write is the answer, not an error of the check
        body["database"] = "not writable"
        problems.append(f"the database does not take writes: {type(exc).__name__}: {exc}")
    else:
        body["database"] = "writable"
    body["status"] = "ok" if not problems else "unhealthy"
    if problems:
        body["reason"] = "; ".join(problems)
    return not problems, body


# -- the HTTP server -----------------------------------------------------------------------------


async def _watch_loop_lag(interval: float = 0.5) -> None:
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        await asyncio.sleep(interval)
        LOOP_LAG.set(max(0.0, loop.time() - started - interval))


def build_app(bot: ReadersViewsBot) -> web.Application:
    async def metrics_page(_request: web.Request) -> web.Response:
        try:
            await refresh(bot)
        except Exception:
            log.exception("metrics: could not read the database; serving the counters alone")
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_request: web.Request) -> web.Response:
        healthy, body = await health(bot)
        return web.Response(text=json.dumps(body), status=200 if healthy else 503, content_type="application/json")

    app = web.Application()
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/healthz", healthz)
    return app


async def start_server(bot: ReadersViewsBot) -> Callable[[], Awaitable[None]]:
    """Serve /metrics and /healthz on `metrics.listen`; returns the coroutine function that stops it."""
    address = bot.config.metrics.address
    assert address is not None
    host, port = address
    runner = web.AppRunner(build_app(bot), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(f"metrics.listen: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    lag = asyncio.create_task(_watch_loop_lag(), name="metrics-loop-lag")
    log.info("metrics on http://%s:%s/metrics, health on /healthz", host if ":" not in host else f"[{host}]", port)

    async def stop() -> None:
        lag.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await lag
        await runner.cleanup()

    return stop
