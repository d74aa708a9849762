"""Past one process: one process running both shards against two processes (one shard each), one PostgreSQL.

    bash scripts/postgres-local.sh up; set -a; . /tmp/readersviews-pg/env; set +a
    .venv/bin/python bench/shards.py                  # at 400 and 800 accounts/s: one process, then two (~1.5 min)
    .venv/bin/python bench/shards.py --rates 300 --seconds 5
    .venv/bin/python bench/shards.py --kill           # two processes; one SIGKILLed mid-work and restarted (~40 s)

Every process is `python -m bot run` against the loopback fake Discord (tests/fakediscord), which
sends a server's events only to shard (server_id >> 22) % shard_count, as Discord does. The
statements are in SERVERS servers, half of them on each of the two shards, and the members of
each server click Sign and submit the form (bench/signons.py's load), spread evenly over the burst.

Default run: at each rate (--rates, accounts/s), the same burst twice, on one PostgreSQL schema: first
one process with `shard_count: 2` (both shards), then two processes with `shard_ids: [0]` and `[1]`.
The load waits 5 s for an answer (the fake, like Discord, refuses one after 3 s). Prints, for each:
interactions answered, signatures recorded (distinct, expected), latency from dispatching
INTERACTION_CREATE to the fake receiving the callback (p50/p95/p99), CPU per interaction of the bot
processes and of PostgreSQL's backends, the ratios two processes / one process, and a table of all.

--kill: two processes; at the same time as the sign-on burst, a feed per server is posted (from a
loopback feed server) and letters are delivered to a loopback WordPress that answers slowly. Mid-burst,
once articles and letters are under way, the process holding the feeds and outbox jobs is SIGKILLed
and restarted at once. Then checks: every signature answered "Signed" is on disk once and none is
doubled, every article is in Discord exactly once, every outbox item is on the site exactly once.

The fake Discord and the load generator run in this process and cost about as much CPU as a bot, and
PostgreSQL runs on the same machine: with two cores, two bot processes share what one had, so they
cannot take twice the load here. The figures say what splitting costs and that nothing is lost or
doubled; the gain needs processes on cores (or machines) of their own. Never asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from bench.signons import BotProcess, Load, create_statement, percentile  # noqa: E402
from bench.stores import drop_schema, fresh_schema  # noqa: E402
from bot.claims import JOBS  # noqa: E402
from bot.clock import SystemClock  # noqa: E402
from bot.site.compose import Letter, compose_letter  # noqa: E402
from bot.store import Store  # noqa: E402
from tests.fakediscord import FakeDiscord, Guild  # noqa: E402
from tests.fakediscord.world import Channel, Member, Role  # noqa: E402
from tests.feedserver import FeedServer  # noqa: E402
from tests.helpers import make_config, rss, story  # noqa: E402
from tests.sitefake import WP_PASSWORD, WP_USER, FakeSite  # noqa: E402

SHARDS = 2
SERVERS = 4  # half on each shard
ARTICLES = 40  # per server's feed (--kill), enough that posting them all outlasts the moment of the kill
LETTERS = 120  # letters queued for the site (--kill); publishing each statement queues one more item
WAIT = 5.0  # seconds the load waits for an answer before counting the interaction unanswered
SITE_DELAY = 0.1  # seconds the loopback WordPress takes per request (--kill), so the drain is under way


@dataclass
class Server:
    guild: Guild
    role: Role
    organizer: Member
    channel: Channel  # the statement's
    news: Channel  # the feed's (--kill)
    members: list[Member]

    @property
    def shard(self) -> int:
        return (self.guild.id >> 22) % SHARDS


def build_servers(fake: FakeDiscord, users: int, servers: int) -> list[Server]:
    built = []
    for n in range(servers):
        guild = fake.add_guild(f"Campaign {n}", shard=(n % SHARDS, SHARDS))
        role = guild.add_role("Organizer")
        built.append(
            Server(
                guild=guild,
                role=role,
                organizer=guild.add_member(f"organizer-{n}", roles=[role]),
                channel=guild.add_text_channel("petitions"),
                news=guild.add_text_channel("news"),
                members=[guild.add_member(f"user-{n}-{i}") for i in range(users // servers)],
            )
        )
    return built


class ShardProcess(BotProcess):
    """`python -m bot run` on the PostgreSQL schema, running `shard_ids` (None: every shard)."""

    def __init__(
        self, fake: FakeDiscord, tmp: Path, location: str, shard_ids: list[int] | None, **sections: Any
    ) -> None:
        self.shard_ids = shard_ids if shard_ids is not None else list(range(SHARDS))
        self.name = "shards " + "+".join(map(str, self.shard_ids))
        tmp.mkdir(parents=True, exist_ok=True)
        discord: dict[str, Any] = {"shard_count": SHARDS}
        if shard_ids is not None:
            discord["shard_ids"] = shard_ids
        config = make_config(
            fake, tmp, logging={"level": "WARNING"}, database={"url": location}, discord=discord, **sections
        )
        super().__init__(fake, tmp, config)
        self.log_path = tmp / "bot.log"

    async def start(self) -> asyncio.subprocess.Process:
        wanted = self.fake.identify_count + len(self.shard_ids)
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, *self.argv, env=self.env, stdout=log, stderr=asyncio.subprocess.STDOUT
            )
        while self.fake.identify_count < wanted:
            if self.process.returncode is not None:
                raise RuntimeError(f"the bot ({self.name}) exited at start; see {self.log_path}")
            await asyncio.sleep(0.05)
        await self.fake.wait_for_shards(set(self.shard_ids), timeout=60)
        await asyncio.sleep(0.5)  # READY, guild_ready_timeout, command sync
        await self.fake.roundtrip()
        return self.process

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()


async def query(location: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(location)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def cpu_of(pid: int) -> float | None:
    """User + system CPU seconds a process on this machine has used so far (Linux /proc); None if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def backend_cpu(location: str) -> dict[int, float]:
    """CPU seconds used so far by each PostgreSQL backend serving this database (same machine)."""
    rows = await query(
        location, "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    found = {row["pid"]: cpu_of(row["pid"]) for row in rows}
    return {pid: cpu for pid, cpu in found.items() if cpu is not None}


async def job_holders(location: str) -> dict[str, int]:
    """{job: pid of the process holding it} (bot.claims: advisory locks of the guard connections)."""
    holders = {}
    for job in JOBS:
        rows = await query(
            location,
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
            " AND ((l.classid::bigint << 32) | l.objid::bigint)"
            " = hashtextextended(current_schema() || ':readersviews-job:' || $1, 0)",
            job,
        )
        if rows and rows[0]["application_name"]:
            holders[job] = int(rows[0]["application_name"].split()[2].partition("@")[0])
    return holders


@dataclass
class Burst:
    """One sign-on burst over every server, and what it cost."""

    title: str
    loads: list[Load]
    statements: list[int]
    seconds: float = 0.0
    bot_cpu: float = 0.0
    pg_cpu: float = 0.0
    harness_cpu: float = 0.0
    recorded: dict[tuple[int, int], int] = field(default_factory=dict)  # (statement, user) -> live rows

    @property
    def dispatched(self) -> int:
        return sum(len(load.dispatched) for load in self.loads)

    @property
    def answered(self) -> int:
        return sum(load.answered for load in self.loads)

    def latencies(self, kind: str) -> list[float]:
        return [value for load in self.loads for value in load.latencies()[kind]]

    def acknowledged(self) -> set[tuple[int, int]]:
        return {(sid, uid) for sid, load in zip(self.statements, self.loads, strict=True) for uid in load.succeeded}

    def per_interaction(self, cpu: float) -> float:
        return cpu / max(1, self.dispatched) * 1000

    @property
    def bot_ms(self) -> float:
        """CPU milliseconds of the bot processes per interaction dispatched."""
        return self.per_interaction(self.bot_cpu)


async def run_burst(
    fake: FakeDiscord,
    servers: list[Server],
    processes: list[ShardProcess],
    location: str,
    title: str,
    seconds: float,
    per_server: int,
    *,
    wait: float = WAIT,
    during: Any = None,
) -> Burst:
    """Statements in every server (made through the processes), then the burst; `during(burst)` runs alongside."""
    made = [await create_statement(fake, s.guild, s.organizer, s.channel) for s in servers]
    loads = [
        Load(fake, s.guild, s.members[:per_server], message, sid, wait=wait)
        for s, (message, sid) in zip(servers, made, strict=True)
    ]
    burst = Burst(title, loads, [sid for _, sid in made])
    bot_before = sum(p.cpu_seconds() for p in processes)
    pg_before = await backend_cpu(location)
    own_before = time.process_time()
    started = time.monotonic()
    work = [asyncio.create_task(load.run(seconds)) for load in loads]
    if during is not None:
        await during(burst)
    await asyncio.gather(*work)
    burst.seconds = time.monotonic() - started
    burst.harness_cpu = time.process_time() - own_before
    burst.bot_cpu = sum(p.cpu_seconds() for p in processes) - bot_before
    pg_after = await backend_cpu(location)
    burst.pg_cpu = sum(cpu - pg_before.get(pid, 0.0) for pid, cpu in pg_after.items())
    rows = await query(
        location,
        "SELECT statement_id, user_id, count(*) AS n FROM signatures"
        " WHERE withdrawn_at IS NULL AND statement_id = ANY($1::bigint[]) GROUP BY statement_id, user_id",
        burst.statements,
    )
    burst.recorded = {(row["statement_id"], row["user_id"]): row["n"] for row in rows}
    return burst


def report(burst: Burst, users: int, servers: int, *, cpu: bool = True) -> None:
    unanswered = sum(load.unanswered for load in burst.loads)
    refused = sum(load.refused for load in burst.loads)
    acknowledged = burst.acknowledged()
    lost = acknowledged - set(burst.recorded)
    doubled = sum(1 for n in burst.recorded.values() if n > 1)
    print(
        f"{burst.title}: {users} accounts in {servers} servers ({servers // SHARDS} per shard)"
        f" over {burst.seconds:.1f} s"
    )
    print(
        f"  interactions answered {burst.answered} of {burst.dispatched} dispatched"
        f" (unanswered {unanswered}, refused {refused})"
    )
    print(
        f"  signatures recorded {sum(burst.recorded.values())} (distinct {len(burst.recorded)}; expected {users});"
        f" answered 'Signed' {len(acknowledged)}, of those missing {len(lost)}; doubled {doubled}"
    )
    for kind in ("click", "submit"):
        values = burst.latencies(kind)
        if values:
            print(
                f"  {kind:6s} dispatch->callback ms: p50 {percentile(values, 50):7.1f}"
                f"  p95 {percentile(values, 95):7.1f}  p99 {percentile(values, 99):7.1f}  (n={len(values)})"
            )
    if not cpu:
        return
    print(
        f"  CPU per interaction: bot process(es) {burst.per_interaction(burst.bot_cpu):.2f} ms"
        f" ({burst.bot_cpu:.1f} s), PostgreSQL backends {burst.per_interaction(burst.pg_cpu):.2f} ms"
        f" ({burst.pg_cpu:.1f} s); fake Discord + load generator {burst.harness_cpu:.1f} s"
    )


def ratio(two: float, one: float) -> str:
    return f"{two / one:.2f}x" if one else "n/a"


async def one_then_two(rates: list[int], seconds: float, servers: int) -> None:
    """At each rate, the same burst against one process running both shards, then against two processes."""
    base = os.environ.get("READERSVIEWS_TEST_PG_URL")
    if not base:
        print("skipped: set READERSVIEWS_TEST_PG_URL (bash scripts/postgres-local.sh up; see README)")
        return
    location, schema = await fresh_schema(base)
    fake = FakeDiscord(heartbeat_interval_ms=5000)
    await fake.start()
    tmp = Path(tempfile.mkdtemp(prefix="rv-shards-"))
    world = build_servers(fake, int(max(rates) * seconds), servers)
    rows: list[tuple[int, Burst, Burst]] = []
    try:
        await seed_organizers(location, world)
        for rate in rates:
            users = int(rate * seconds)
            pair = []
            for title, shard_sets in (
                ("one process, shards 0+1", [None]),
                ("two processes, shard 0 and shard 1", [[0], [1]]),
            ):
                processes = [
                    ShardProcess(fake, tmp / f"{rate}-{len(pair)}-{n}", location, shard_ids)
                    for n, shard_ids in enumerate(shard_sets)
                ]
                try:
                    for process in processes:
                        await process.start()
                    title_at = f"{title}, {rate} accounts/s"
                    # Discord takes an answer for 3 s: one not in within WAIT never reaches the member.
                    burst = await run_burst(
                        fake, world, processes, location, title_at, seconds, users // servers, wait=WAIT
                    )
                finally:
                    for process in processes:
                        await process.stop()
                report(burst, users, servers)
                pair.append(burst)
            one, two = pair
            rows.append((rate, one, two))
            print(
                "ratio two processes / one process:"
                f" interactions answered {ratio(two.answered, one.answered)},"
                f" CPU per interaction (bots) {ratio(two.bot_ms, one.bot_ms)},"
                f" p99 click {ratio(p99_of(two, 'click'), p99_of(one, 'click'))},"
                f" p99 submit {ratio(p99_of(two, 'submit'), p99_of(one, 'submit'))}"
            )
        summary(rows)
    finally:
        await fake.stop()
        await drop_schema(base, schema)


def p99_of(burst: Burst, kind: str) -> float:
    return percentile(burst.latencies(kind), 99)


def summary(rows: list[tuple[int, Burst, Burst]]) -> None:
    print(
        f"{'accounts/s':>10s} {'processes':>9s} {'answered':>9s} {'signatures':>10s} {'p99 click':>10s}"
        f" {'p99 submit':>11s} {'bot CPU ms/ix':>13s} {'PG CPU ms/ix':>12s}"
    )
    for rate, *bursts in rows:
        for count, burst in enumerate(bursts, 1):
            print(
                f"{rate:10d} {count:9d} {burst.answered / max(1, burst.dispatched):9.1%} {len(burst.recorded):10d}"
                f" {p99_of(burst, 'click'):8.0f}ms {p99_of(burst, 'submit'):9.0f}ms"
                f" {burst.per_interaction(burst.bot_cpu):13.2f} {burst.per_interaction(burst.pg_cpu):12.2f}"
            )
    print(
        f"(this machine: {os.cpu_count()} cores, shared by the bot processes, PostgreSQL, the fake Discord and the"
        " load generator, and by other work: two processes here split the same cores, so the ratios are the cost"
        " of splitting, not the gain of processes on cores or machines of their own)"
    )


async def seed_organizers(location: str, world: list[Server]) -> None:
    store = await Store.open(location, SystemClock())
    try:
        for server in world:
            await store.settings.set_many(server.guild.id, {"organizer_role_id": server.role.id}, actor_id=None)
    finally:
        await store.close()


async def add_work(location: str, world: list[Server], feeds: FeedServer) -> None:
    """A feed per server (ARTICLES stories each) and LETTERS letters for the site; the jobs' holder is woken."""
    store = await Store.open(location, SystemClock(), migrate=False)
    try:
        for n, server in enumerate(world):
            feeds.set_feed(f"/feed-{n}.xml", rss([story(1000 * n + i) for i in range(ARTICLES)]))
            feed_id = await store.feeds.add(
                guild_id=server.guild.id,
                url=feeds.url(f"/feed-{n}.xml"),
                channel_id=server.news.id,
                channel_kind="text",
                tag_map={},
                poll_interval=900,
                created_by=None,
            )
            # As /feed add leaves a feed (baselined: its first poll's stories are new), but due at once.
            await store.feeds.record_poll(feed_id, status="ok", next_poll_at=datetime.now(UTC))
        async with store.db.transaction() as conn:
            for i in range(1, LETTERS + 1):
                item = compose_letter(Letter(id=i, text=f"Letter {i} about the bus.", byline=f"R {i}"), disclaimer=None)
                await store.outbox.enqueue_item(conn, "create", item, revision=1)
        await store.db.notify_job("feeds")
        await store.db.notify_job("outbox")
    finally:
        await store.close()


@dataclass
class Progress:
    """Articles posted and outbox items delivered, according to the database."""

    posted: int
    delivered: int
    queued: int  # every outbox item: the letters and the statements' pages

    def finished(self, articles: int) -> bool:
        return self.posted >= articles and self.delivered >= self.queued


async def progress(location: str) -> Progress:
    rows = await query(
        location,
        "SELECT (SELECT count(*) FROM articles WHERE status = 'posted') AS posted,"
        " (SELECT count(*) FROM outbox WHERE state = 'done') AS delivered, (SELECT count(*) FROM outbox) AS queued",
    )
    return Progress(int(rows[0]["posted"]), int(rows[0]["delivered"]), int(rows[0]["queued"]))


async def killed_mid_work(users: int, seconds: float, servers: int, seed: int) -> None:
    """Two processes; feeds, outbox and a sign-on burst under way; the jobs' holder SIGKILLed and restarted."""
    base = os.environ.get("READERSVIEWS_TEST_PG_URL")
    if not base:
        print("skipped: set READERSVIEWS_TEST_PG_URL (bash scripts/postgres-local.sh up; see README)")
        return
    rng = random.Random(seed)
    location, schema = await fresh_schema(base)
    fake = FakeDiscord(heartbeat_interval_ms=5000)
    await fake.start()
    feeds = FeedServer()
    await feeds.start()
    site = FakeSite()
    await site.start()
    # A slow site: each request to the posts endpoint waits, so the drain is under way at the kill.
    site.hang_next(LETTERS * 4, seconds=SITE_DELAY, path="/wp-json/wp/v2/posts")
    tmp = Path(tempfile.mkdtemp(prefix="rv-shards-kill-"))
    world = build_servers(fake, users, servers)
    sections: dict[str, Any] = {
        "site": {"kind": "wordpress", "wordpress": {"url": site.wp_url, "username": WP_USER}},
        "feeds": {"allowed_networks": ["127.0.0.0/8"], "per_poll_cap": 100},
    }
    processes = [ShardProcess(fake, tmp / f"shard-{n}", location, [n], **sections) for n in range(SHARDS)]
    for process in processes:
        process.env["READERSVIEWS_WP_APP_PASSWORD"] = WP_PASSWORD
    kill_after = rng.uniform(0.2, 0.5) * seconds
    notes: list[str] = []

    async def kill_one(burst: Burst) -> None:
        started = time.monotonic()
        while True:  # under way: some articles posted, some letters on the site (the outbox commits in batches)
            now = await progress(location)
            if time.monotonic() - started >= kill_after and now.posted and site.live_posts():
                break
            await asyncio.sleep(0.1)
        holders = await job_holders(location)
        victim = next(
            (p for p in processes if p.process is not None and p.process.pid == holders.get("outbox")), processes[0]
        )
        jobs = sorted(job for job, pid in holders.items() if victim.process and pid == victim.process.pid)
        await victim.kill()
        now = await progress(location)
        notes.append(
            f"SIGKILL of the process running {victim.name} after {time.monotonic() - started:.1f} s of the burst"
            f" (seed {seed}); it held the jobs {', '.join(jobs) or 'none'}; at that moment {now.posted} of"
            f" {ARTICLES * servers} articles posted, {len(site.live_posts())} of {now.queued} outbox items on the site"
            f" ({now.delivered} marked delivered)"
        )
        await victim.start()
        notes.append(f"  restarted; {time.monotonic() - started:.1f} s after the burst began its shard was back")

    try:
        await seed_organizers(location, world)
        for process in processes:
            await process.start()
        await add_work(location, world, feeds)  # under way while the statements are made and the burst runs
        burst = await run_burst(
            fake,
            world,
            processes,
            location,
            "two processes, one killed mid-burst",
            seconds,
            users // servers,
            wait=WAIT,
            during=kill_one,
        )
        deadline = time.monotonic() + 180
        # Until the restarted or the surviving process has done the rest (the database offers no event to wait on).
        while not (await progress(location)).finished(ARTICLES * servers) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.5)
        await fake.roundtrip()
        for line in notes:
            print(line)
        report(burst, users, servers, cpu=False)  # a process was replaced mid-burst: its CPU is not comparable
        print(
            "  (interactions of the killed shard's servers dispatched while it was down go unanswered, as on Discord)"
        )
        verdicts = [verify_signatures(burst), verify_articles(fake, world), await verify_outbox(site, location)]
        holders = await job_holders(location)
        owners = {pid: p.name for p in processes if p.process for pid in [p.process.pid]}
        print(
            "  jobs now run by: " + ", ".join(f"{job} {owners.get(pid, pid)}" for job, pid in sorted(holders.items()))
        )
        print("verdict: " + ("nothing lost, nothing doubled" if all(verdicts) else "FAILED (see above)"))
    finally:
        for process in processes:
            await process.stop()
        await site.stop()
        await feeds.stop()
        await fake.stop()
        await drop_schema(base, schema)


def verify_signatures(burst: Burst) -> bool:
    acknowledged = burst.acknowledged()
    lost = acknowledged - set(burst.recorded)
    doubled = [key for key, n in burst.recorded.items() if n > 1]
    print(
        f"  signatures: {len(acknowledged)} answered 'Signed', {len(lost)} of them missing, {len(doubled)} doubled;"
        f" {len(set(burst.recorded) - acknowledged)} on disk whose answer was lost with the process or the wait"
    )
    return not lost and not doubled


def verify_articles(fake: FakeDiscord, world: list[Server]) -> bool:
    expected = {f"Story number {1000 * n + i}" for n in range(len(world)) for i in range(ARTICLES)}
    titles = Counter(
        embed["title"]
        for server in world
        for message in fake.messages_in(server.news)
        for embed in message.get("embeds", [])
        if embed.get("title", "").startswith("Story number ")
    )
    missing = expected - set(titles)
    doubled = [title for title, n in titles.items() if n > 1]
    print(
        f"  articles: {len(expected)} in the feeds, {len(set(titles) & expected)} in Discord,"
        f" {len(missing)} missing, {len(doubled)} posted twice or more"
    )
    return not missing and not doubled


async def verify_outbox(site: FakeSite, location: str) -> bool:
    now = await progress(location)
    slugs = Counter(post["requested_slug"] for post in site.live_posts())
    doubled = [slug for slug, n in slugs.items() if n > 1]
    print(
        f"  outbox: {now.queued} queued ({LETTERS} letters, the rest statements' pages), {now.delivered} marked"
        f" delivered, {len(slugs)} distinct posts on the site, {len(doubled)} created twice or more"
    )
    return now.delivered == now.queued == len(slugs) and not doubled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rates", default="400,800", help="accounts/s (comma-separated): a burst at each, one process then two"
    )
    parser.add_argument("--users", type=int, default=4000, help="--kill: accounts signing, spread over the servers")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the burst")
    parser.add_argument("--servers", type=int, default=SERVERS, help="servers with a statement (half per shard)")
    parser.add_argument("--kill", action="store_true", help="two processes; SIGKILL one mid-work, restart, verify")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()
    if args.kill:
        asyncio.run(killed_mid_work(args.users, args.seconds, args.servers, args.seed))
    else:
        asyncio.run(one_then_two([int(r) for r in args.rates.split(",")], args.seconds, args.servers))


if __name__ == "__main__":
    main()
