"""Feeds: polling cost against raw httpx + feedparser, and posting pace under Discord's rate limits.

(a) One poll cycle of 200 feeds x 50 items (full content:encoded, ~330 kB per feed) served by a
    loopback site in a separate process (bench/_feedsite.py, ETag + 304): the bot's
    ArticleService.poll over every feed (first poll: every item is new and recorded in a temp
    SQLite store) vs raw sequential httpx GET + feedparser.parse of the same URLs. Target ≤ 1.3x.
(b) The next cycle, where every feed answers 304: ms per feed, bot vs raw conditional GET. Target < 2 ms.
(c) Posting 500 new articles (50 channels x 10) into the fake Discord with its per-channel (5 per
    5 s) and global (50/s) limits enforced, driving Articles.run_cycle() until all are posted;
    without and with bot.pacing's global pacer (installed here by the bench, before login).
    Reports 429s (target 0), elapsed, and pace = (time the limits require) / elapsed (target ≥ 90%).

Prints figures and ratios measured in the same process; asserts nothing about time (best-of runs,
interleaved). `python bench/feeds.py [--feeds 200] [--repeat 2] [--skip-poll] [--skip-post] [--profile]`
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import logging
import math
import pstats
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import feedparser  # noqa: E402
import httpx  # noqa: E402

import bot.articles as articles_module  # noqa: E402
from bot import __version__  # noqa: E402
from bot.app import apply_endpoints  # noqa: E402
from bot.articles import ArticleService  # noqa: E402
from bot.clock import SystemClock  # noqa: E402
from bot.config import Config, FeedSettings  # noqa: E402
from bot.netguard import AddressPolicy, guarded_client  # noqa: E402
from bot.store import Store  # noqa: E402

PER_CHANNEL = (5, 5.0)  # message create: 5 per 5 s per channel (the fake's fixed window)
GLOBAL_PER_SECOND = 50


# --- (a) and (b): polling --------------------------------------------------------------------


def start_site(feeds: int, items: int) -> tuple[subprocess.Popen[str], str, int]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "_feedsite.py"), "--feeds", str(feeds), "--items", str(items)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    if len(line) < 4 or line[0] != "PORT":
        proc.kill()
        raise RuntimeError(f"feed site did not start: {line}")
    return proc, f"http://127.0.0.1:{line[1]}", int(line[3])


def stop_site(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(Exception):
        assert proc.stdin is not None
        proc.stdin.close()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def new_client(*, guarded: bool = False) -> httpx.AsyncClient:
    """The same client settings as Runtime.create; `guarded`: the bot's feed client (the loopback site opted in)."""
    options: dict[str, Any] = {
        "headers": {"User-Agent": f"readersviews/{__version__} (bench)"},
        "timeout": httpx.Timeout(FeedSettings().timeout_seconds),
        "follow_redirects": False,
    }
    if guarded:
        return guarded_client(AddressPolicy(["127.0.0.0/8"]), **options)
    return httpx.AsyncClient(**options)


class Timers:
    """Wraps the fetch and parse steps ArticleService calls, to split its time into fetch / parse / rest."""

    def __init__(self) -> None:
        self.fetch = 0.0
        self.parse = 0.0
        self._fetch = articles_module.fetch_feed
        self._parse = articles_module.parse_feed_async

    def install(self) -> None:
        async def fetch(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return await self._fetch(*args, **kwargs)
            finally:
                self.fetch += time.perf_counter() - t

        async def parse(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return await self._parse(*args, **kwargs)
            finally:
                self.parse += time.perf_counter() - t

        articles_module.fetch_feed = fetch  # type: ignore[assignment]
        articles_module.parse_feed_async = parse  # type: ignore[assignment]

    def uninstall(self) -> None:
        articles_module.fetch_feed = self._fetch  # type: ignore[assignment]
        articles_module.parse_feed_async = self._parse  # type: ignore[assignment]

    def reset(self) -> None:
        self.fetch = self.parse = 0.0


async def raw_full(client: httpx.AsyncClient, urls: list[str]) -> tuple[float, float, dict[str, str]]:
    """Sequential GET + feedparser.parse (same bytes, same headers as the bot gives it). (total, fetch, etags)"""
    etags: dict[str, str] = {}
    fetch = 0.0
    started = time.perf_counter()
    for url in urls:
        t = time.perf_counter()
        response = await client.get(url)
        fetch += time.perf_counter() - t
        etags[url] = response.headers["ETag"]
        parsed = feedparser.parse(
            io.BytesIO(response.content),
            response_headers={"content-location": url, "content-type": response.headers.get("Content-Type")},
        )
        assert len(parsed.entries) > 0
    return time.perf_counter() - started, fetch, etags


async def raw_conditional(client: httpx.AsyncClient, etags: dict[str, str]) -> float:
    started = time.perf_counter()
    for url, etag in etags.items():
        response = await client.get(url, headers={"If-None-Match": etag})
        assert response.status_code == 304, response.status_code
    return time.perf_counter() - started


async def fresh_store(directory: Path, urls: list[str]) -> Store:
    store = await Store.open(directory / f"bench-{time.monotonic_ns()}.sqlite3", SystemClock())
    for n, url in enumerate(urls):
        feed_id = await store.feeds.add(
            guild_id=1,
            url=url,
            channel_id=10_000 + n,
            channel_kind="forum",
            tag_map={},
            poll_interval=900,
            created_by=None,
        )
        # As /feed add leaves it (baselined), but due at once.
        await store.feeds.record_poll(feed_id, status="ok", next_poll_at=datetime.now(UTC) - timedelta(seconds=1))
    return store


async def bot_cycle(service: ArticleService, store: Store, *, when: datetime, expect: str) -> float:
    started = time.perf_counter()
    reports = [report for _, report in await service.poll_due(when)]
    elapsed = time.perf_counter() - started
    bad = [r for r in reports if r.status != expect]
    if bad:
        raise RuntimeError(f"{len(bad)} feed(s) answered {bad[0].status}: {bad[0].error}")
    return elapsed


async def bench_polling(args: argparse.Namespace) -> None:
    proc, base, total_bytes = start_site(args.feeds, args.items)
    urls = [f"{base}/feed/{n}.xml" for n in range(args.feeds)]
    print(
        f"(a) first poll of {args.feeds} feeds x {args.items} items "
        f"({total_bytes / 1e6:.1f} MB, {total_bytes / args.feeds / 1e3:.0f} kB/feed) from a loopback site process"
    )
    timers = Timers()
    timers.install()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with new_client() as raw_client, new_client(guarded=True) as bot_client:
                await raw_client.get(urls[0])  # warm both connection pools
                await bot_client.get(urls[0])
                raw_best = bot_best = math.inf
                raw_fetch = bot_split = None
                etags: dict[str, str] = {}
                service: ArticleService | None = None
                store: Store | None = None
                for run in range(args.repeat):
                    elapsed, fetch, etags = await raw_full(raw_client, urls)
                    if elapsed < raw_best:
                        raw_best, raw_fetch = elapsed, fetch
                    if store is not None:
                        await store.close()
                    store = await fresh_store(Path(tmp), urls)
                    service = ArticleService(store, bot_client, SystemClock(), FeedSettings())
                    timers.reset()
                    profiler = cProfile.Profile() if args.profile and run == 0 else None
                    if profiler:
                        profiler.enable()
                    elapsed = await bot_cycle(service, store, when=datetime.now(UTC), expect="ok")
                    if profiler:
                        profiler.disable()
                        print_profile(profiler, "event-loop thread, bot first poll (parse runs in worker threads)")
                    if elapsed < bot_best:
                        bot_best, bot_split = elapsed, (timers.fetch, timers.parse)
                    print(f"    run {run + 1}: raw {raw_best:.2f} s best so far, bot {elapsed:.2f} s")
                assert store is not None and service is not None and bot_split is not None and raw_fetch is not None
                recorded = await store.db.scalar("SELECT count(*) FROM articles WHERE status = 'pending'")
                print(f"    articles recorded as new (pending): {recorded}")
                print(
                    f"    raw  {raw_best:6.2f} s  ({raw_best / args.feeds * 1e3:.1f} ms/feed; fetch {raw_fetch:.2f} s, "
                    f"parse {raw_best - raw_fetch:.2f} s)"
                )
                print(
                    f"    bot  {bot_best:6.2f} s  ({bot_best / args.feeds * 1e3:.1f} ms/feed; "
                    f"time inside fetch {bot_split[0]:.2f} s and parse+normalise {bot_split[1]:.2f} s, "
                    f"summed over {FeedSettings().poll_concurrency} concurrent polls)"
                )
                print(f"    ratio bot/raw = {bot_best / raw_best:.2f}x   (target ≤ 1.3x)")

                # (b) unchanged feeds: every feed answers 304.
                print(f"(b) next cycle, all {args.feeds} feeds unchanged (304)")
                raw_304 = bot_304 = math.inf
                fetch_304 = 0.0
                later = datetime.now(UTC)
                for _ in range(args.repeat_304):
                    raw_304 = min(raw_304, await raw_conditional(raw_client, etags))
                    later += timedelta(days=1)
                    timers.reset()
                    elapsed = await bot_cycle(service, store, when=later, expect="not_modified")
                    if elapsed < bot_304:
                        bot_304, fetch_304 = elapsed, timers.fetch
                n = args.feeds
                print(f"    raw conditional GET {raw_304 / n * 1e3:.2f} ms/feed")
                print(
                    f"    bot poll            {bot_304 / n * 1e3:.2f} ms/feed "
                    f"(wall clock per feed; time inside fetch_feed summed over concurrent polls "
                    f"{fetch_304 / n * 1e3:.2f} ms)   (target < 2 ms)"
                )
                print(f"    ratio bot/raw = {bot_304 / raw_304:.2f}x")
                await store.close()
    finally:
        timers.uninstall()
        stop_site(proc)


def print_profile(profiler: cProfile.Profile, title: str) -> None:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(15)
    print(f"    --- cProfile ({title}), top 15 by own time ---")
    for line in out.getvalue().splitlines():
        if line.strip() and not line.startswith(("   Ordered", "         ")):
            print("    " + line[:150])


# --- (c): posting under the fake's enforced limits --------------------------------------------


def required_seconds(kind: str, channels: int, per_channel: int) -> tuple[float, str]:
    """The least time the enforced limits allow for posting everything, and the formula used."""
    per_article = 1 if kind == "forum" else 2  # forum post | message + thread
    requests = channels * per_article * per_channel
    global_bound = requests / GLOBAL_PER_SECOND
    limit, window = PER_CHANNEL
    # Fixed 5-per-5-s window per channel: m messages need ceil(m/5) windows, the last one starts (ceil-1)*5 s in.
    messages = per_channel if kind == "text" else 0
    channel_bound = (math.ceil(messages / limit) - 1) * window if messages else 0.0
    formula = (
        f"T_min = max(N*k/G, (ceil(m/L)-1)*W) = max({channels * per_channel}*{per_article}/{GLOBAL_PER_SECOND}, "
        f"(ceil({messages}/{limit})-1)*{window:g}) = max({global_bound:.1f}, {channel_bound:.1f}) s"
    )
    return max(global_bound, channel_bound), formula


async def bench_posting(kind: str, *, channels: int, per_channel: int, cap: int, deadline: float) -> dict[str, Any]:
    from tests.fakediscord import FakeDiscord
    from tests.helpers import boot, make_config

    fake = FakeDiscord(heartbeat_interval_ms=500)
    await fake.start()
    try:
        guild = fake.add_guild("Bench Gazette")
        targets = [
            guild.add_forum_channel(f"articles-{n}", tags=["News", "Opinion"])
            if kind == "forum"
            else guild.add_text_channel(f"articles-{n}")
            for n in range(channels)
        ]
        with tempfile.TemporaryDirectory() as tmp:
            config = make_config(fake, Path(tmp), cogs=["cogs.articles"], feeds={"per_poll_cap": cap})
            booted = await boot(fake, config)
            runtime, task = booted.runtime, booted.task
            try:
                bot = runtime.bot
                cog = bot.get_cog("Articles")
                cog.poller.cancel()  # the bench drives run_cycle() itself
                store = bot.store
                now = datetime.now(UTC)
                for n, channel in enumerate(targets):
                    feed_id = await store.feeds.add(
                        guild_id=guild.id,
                        url=f"https://paper.example/feed/{n}",
                        channel_id=channel.id,
                        channel_kind=kind,
                        tag_map={},
                        poll_interval=900,
                        created_by=None,
                    )
                    await store.feeds.record_poll(feed_id, status="ok", next_poll_at=now + timedelta(days=1))
                    await store.articles.insert_many(
                        feed_id,
                        [
                            {
                                "guid": f"{n}-{i}",
                                "title": f"Article {i} of channel {n}: the council votes on the new bridge",
                                "link": f"https://paper.example/{n}/{i}",
                                "summary": "<p>" + "The council met on Tuesday to decide. " * 12 + "</p>",
                                "published": now - timedelta(minutes=i),
                                "content_hash": f"h{n}-{i}",
                                "status": "pending",
                                "reason": None,
                                "categories": ["News"],
                            }
                            for i in range(per_channel)
                        ],
                    )
                fake.rate_limits.enable(
                    per_channel_messages=PER_CHANNEL, global_per_second=GLOBAL_PER_SECOND, default=(50, 1.0)
                )
                first_request = len(fake.requests)
                before_429 = fake.count_429
                total = channels * per_channel
                cycles = 0

                def in_discord() -> int:
                    if kind == "forum":
                        return sum(len(fake.threads_in(c)) for c in targets)
                    return sum(len(fake.threads_in(c)) for c in targets)  # text: the thread is the last request

                async def drive() -> None:
                    nonlocal cycles
                    posted = 0
                    while posted < total and cycles < 100:
                        posted += await cog.run_cycle()
                        cycles += 1

                started = time.perf_counter()
                driver = asyncio.create_task(drive())
                done, _ = await asyncio.wait({driver}, timeout=deadline)
                elapsed = time.perf_counter() - started
                if driver in done:
                    driver.result()
                else:
                    driver.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await driver
                await fake.roundtrip()
                requests = fake.requests[first_request:]
                made = in_discord()
                return {
                    "kind": kind,
                    "complete": driver in done,
                    "posted": made,
                    "cycles": cycles,
                    "elapsed": elapsed,
                    "requests": len(requests),
                    "ok_requests": sum(1 for r in requests if r.status != 429),
                    "count_429": fake.count_429 - before_429,
                    "pacer_wait": bot.pacer.waited,
                }
            finally:
                await runtime.bot.close()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, timeout=10)
    finally:
        await fake.stop()
        apply_endpoints(Config())


async def bench_all_posting(args: argparse.Namespace) -> None:
    channels, per_channel, cap = args.channels, args.per_channel, args.cap
    print(
        f"(c) posting {channels * per_channel} articles ({channels} channels x {per_channel}) into the fake Discord, "
        f"limits enforced: message create {PER_CHANNEL[0]} per {PER_CHANNEL[1]:g} s per channel, "
        f"global {GLOBAL_PER_SECOND}/s; per_poll_cap={cap}; run_cycle() driven back to back"
    )
    print("    N articles, k requests each (forum post 1; text: message + thread 2), G global/s, m messages per")
    print("    channel, L per W s per channel. pace = T_min / elapsed for a complete run; for a run stopped at")
    print("    the deadline, the rate form (articles posted * k / G) / elapsed.")
    print("    T_burst = (ceil(N*k/G)-1) s is the fixed-window floor (a full burst at t=0 and in every second after).")
    print("    the bot as shipped: feeds publish concurrently, bot.pacing keeps REST under the global limit")
    per_article = {"forum": 1, "text": 2}
    for kind in args.kinds:
        need, formula = required_seconds(kind, channels, per_channel)
        burst = (math.ceil(channels * per_channel * per_article[kind] / GLOBAL_PER_SECOND) - 1) * 1.0
        print(f"  {kind}: {formula}; T_burst = {burst:.1f} s")
        for _ in range(1):
            r = await bench_posting(
                kind,
                channels=channels,
                per_channel=per_channel,
                cap=cap,
                deadline=args.deadline,
            )
            label = "bot"
            if r["complete"]:
                pace = f"pace {need / r['elapsed']:.0%} (vs T_burst {burst / r['elapsed']:.0%})"
            else:
                pace = (
                    f"STOPPED at {args.deadline:g} s deadline, "
                    f"pace {r['posted'] * per_article[kind] / GLOBAL_PER_SECOND / r['elapsed']:.0%}"
                )
            print(
                f"    {label}: posted {r['posted']}/{channels * per_channel} in {r['cycles']} cycle(s), "
                f"{r['elapsed']:.2f} s, 429s {r['count_429']}, requests {r['requests']} "
                f"({r['ok_requests'] / r['elapsed']:.1f} ok/s), {pace}" + f", pacer waited {r['pacer_wait']:.1f} s",
                flush=True,
            )


async def main_async(args: argparse.Namespace) -> None:
    if not args.skip_poll:
        await bench_polling(args)
    if not args.skip_post:
        await bench_all_posting(args)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=2, help="interleaved raw/bot runs of (a); best-of")
    parser.add_argument("--repeat-304", type=int, default=5)
    parser.add_argument("--channels", type=int, default=50)
    parser.add_argument("--per-channel", type=int, default=10)
    parser.add_argument("--cap", type=int, default=5, help="feeds.per_poll_cap")
    parser.add_argument("--deadline", type=float, default=40.0, help="stop a posting run after this many seconds")
    parser.add_argument("--kinds", nargs="+", default=["forum", "text"], choices=["forum", "text"])
    parser.add_argument("--skip-poll", action="store_true")
    parser.add_argument("--skip-post", action="store_true")
    parser.add_argument("--profile", action="store_true", help="cProfile the first bot poll cycle")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # discord.py logs every 429 as a warning
    asyncio.run(main_async(args))


if __name__ == "__main__":
    # Run directly: our own arguments; via bench/run.py (runpy): its arguments are benchmark names.
    main(sys.argv[1:] if Path(sys.argv[0]).name == "feeds.py" else [])
