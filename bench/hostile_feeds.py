"""Hostile feeds: the event loop's longest stall and a poll's peak memory, as ratios to a benign feed.

Three feeds are served by a loopback site in its own process (this script with --serve):
  benign     a newspaper's feed: 50 items with full content:encoded HTML (bench/_feedsite.py)
  quadratic  3 items of ~20 kB HTML: 500 nested <blockquote>s around 500 <p>s (rendering was cubic)
  bomb       a "Content-Encoding: gzip, gzip" body of ~5 kB that inflates to 2 GiB of zeros

Each is polled the way the bot does it: ArticleService.poll (fetch through the bot's feed client,
parse, record) and then the post of every new article is planned (rendered) as the publisher does,
while a 1 ms ticker records the longest gap in the event loop. A second pass under tracemalloc
gives the poll's peak memory. Prints figures and ratios; asserts nothing about time.

    python bench/hostile_feeds.py [--repeat 2] [--bomb-mib 2048]

It runs against older versions of the bot too (no bot.netguard, plan_post inline), so the same
script measures before and after a change.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import gzip
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

import bot.articles as articles_module  # noqa: E402
from bot.articles import ArticleService  # noqa: E402
from bot.clock import SystemClock  # noqa: E402
from bot.config import FeedSettings  # noqa: E402
from bot.store import Store  # noqa: E402
from tests.feedserver import LoopWatch, gzip_of_zeros, quadratic_html  # noqa: E402

SCENARIOS = ("benign", "quadratic", "bomb")


# --- the site (a separate process) -------------------------------------------------------------


def hostile_feed(now: datetime) -> bytes:
    items = "".join(
        f"<item><guid>q{n}</guid><title>Quadratic {n}</title><link>https://evil.example/{n}</link>"
        f"<pubDate>{format_datetime(now)}</pubDate><description>{escape(quadratic_html(n))}</description></item>"
        for n in range(3)
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>Q</title>{items}</channel></rss>'.encode()


async def serve(bomb_mib: int) -> None:
    from aiohttp import web

    from bench._feedsite import feed_xml

    now = datetime.now(UTC)
    routes = {
        "/benign": (feed_xml(0, 50, now), {}),
        "/quadratic": (hostile_feed(now), {}),
        "/bomb": (gzip.compress(gzip_of_zeros(bomb_mib)), {"Content-Encoding": "gzip, gzip"}),
    }

    async def handle(request: web.Request) -> web.StreamResponse:
        body, headers = routes[request.path]
        return web.Response(body=body, headers={"Content-Type": "application/rss+xml", **headers})

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    sizes = " ".join(f"{path[1:]}={len(body)}" for path, (body, _) in routes.items())
    print(f"PORT {runner.addresses[0][1]} {sizes}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


# --- the bot's side ------------------------------------------------------------------------------


def feed_settings() -> FeedSettings:
    if "allowed_networks" in FeedSettings.model_fields:  # the site is on loopback: opt in, as the tests do
        return FeedSettings(allowed_networks=["127.0.0.0/8"])  # type: ignore[call-arg]
    return FeedSettings()


def feed_client() -> httpx.AsyncClient:
    options: dict[str, Any] = {"timeout": httpx.Timeout(20.0), "follow_redirects": False}
    try:
        from bot.netguard import AddressPolicy, guarded_client
    except ImportError:  # a version without the address guard
        return httpx.AsyncClient(**options)
    return guarded_client(AddressPolicy(["127.0.0.0/8"]), **options)


def renderer() -> Callable[[Any], Awaitable[Any]]:
    """How the publisher plans a post: in a worker thread where the bot does so, else inline."""
    if hasattr(articles_module, "plan_post_async"):
        return articles_module.plan_post_async  # type: ignore[no-any-return]

    async def inline(article: Any) -> Any:
        return articles_module.plan_post(article)

    return inline


async def one_poll(url: str, directory: Path, *, traced: bool) -> tuple[float, int, float, str]:
    """(longest stall s, peak traced bytes or 0, seconds, outcome) of one poll plus the planning of its posts."""
    store = await Store.open(directory / f"bench-{time.monotonic_ns()}.sqlite3", SystemClock())
    client = feed_client()
    render = renderer()
    try:
        feed_id = await store.feeds.add(
            guild_id=1, url=url, channel_id=10, channel_kind="forum", tag_map={}, poll_interval=900, created_by=None
        )
        # As /feed add leaves it (baselined, so this poll's items are new and their posts planned).
        await store.feeds.record_poll(feed_id, status="ok", next_poll_at=datetime.now(UTC))
        feed = await store.feeds.get(feed_id)
        assert feed is not None
        service = ArticleService(store, client, SystemClock(), feed_settings())
        gc.collect()
        gc.freeze()  # the harness's own heap must not pass for the bot's latency
        async with LoopWatch() as watch:
            if traced:
                tracemalloc.start()
            started = time.perf_counter()
            report = await service.poll(feed)
            planned = 0
            for article in await store.articles.pending(feed_id, 100):
                await render(article)
                planned += 1
            elapsed = time.perf_counter() - started
            peak = tracemalloc.get_traced_memory()[1] if traced else 0
            if traced:
                tracemalloc.stop()
        gc.unfreeze()
        outcome = f"{report.status}, {planned} post(s) planned" + (f" ({report.error})" if report.error else "")
        return watch.longest, peak, elapsed, outcome
    finally:
        await client.aclose()
        await store.close()


async def bench(base: str, repeat: int) -> None:
    results: dict[str, tuple[float, int, float, str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        await one_poll(f"{base}/benign", Path(tmp), traced=False)  # warm imports and caches
        for name in SCENARIOS:
            stalls, times, peaks = [], [], []
            outcome = ""
            for _ in range(repeat):
                stall, _, elapsed, outcome = await one_poll(f"{base}/{name}", Path(tmp), traced=False)
                stalls.append(stall)
                times.append(elapsed)
                peaks.append((await one_poll(f"{base}/{name}", Path(tmp), traced=True))[1])
            results[name] = (min(stalls), min(peaks), min(times), outcome)
    benign_stall, benign_peak, _, _ = results["benign"]
    render_where = "worker thread" if hasattr(articles_module, "plan_post_async") else "event loop"
    print(f"posts rendered on the {render_where}; best of {repeat} run(s) per feed")
    print(f"{'feed':10} {'longest stall':>14} {'x benign':>9} {'peak memory':>12} {'x benign':>9} {'poll':>8}  outcome")
    for name, (stall, peak, elapsed, outcome) in results.items():
        print(
            f"{name:10} {stall * 1000:11.1f} ms {stall / benign_stall:8.1f}x {peak / 1e6:9.1f} MB "
            f"{peak / benign_peak:8.1f}x {elapsed:6.2f} s  {outcome}"
        )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--bomb-mib", type=int, default=2048, help="what the gzip, gzip body inflates to")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args(argv)  # bench/run.py passes the benchmarks' names along
    if args.serve:
        asyncio.run(serve(args.bomb_mib))
        return
    site = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve", "--bomb-mib", str(args.bomb_mib)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert site.stdout is not None
        line = site.stdout.readline().split()
        if not line or line[0] != "PORT":
            raise RuntimeError(f"the feed site did not start: {line}")
        print(f"loopback site: {' '.join(line[2:])} bytes on the wire; the bomb inflates to {args.bomb_mib} MiB")
        asyncio.run(bench(f"http://127.0.0.1:{line[1]}", args.repeat))
    finally:
        with contextlib.suppress(Exception):
            assert site.stdin is not None
            site.stdin.close()
        site.wait(timeout=10)


if __name__ == "__main__":
    main(sys.argv[1:])
