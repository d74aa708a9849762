"""Test helpers in one place: the fake clock, waiting for background work, and the worlds tests build.

Fixtures live in conftest.py; everything a test imports comes from here (never from another test
module, nor from conftest as a module).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import httpx
import yaml

from bot.app import Runtime
from bot.clock import to_db
from bot.config import Config, Secrets, WebhookSettings, WordPressSettings, parse_config
from bot.outbox import OutboxWorker
from bot.site import SiteAdapter
from bot.site.base import RemoteRef, SiteItem
from bot.site.compose import Letter, compose_letter
from bot.site.webhook import WebhookAdapter
from bot.site.wordpress import WordPressAdapter
from bot.store.contributions import Contribution
from bot.store.database import Database
from bot.store.outbox import OutboxRepo, OutboxRow
from tests.fakediscord import FakeDiscord, Guild
from tests.fakediscord.world import Channel, Member, Role
from tests.sitefake import WEBHOOK_SECRET, WP_PASSWORD, WP_USER, FakeSite

ROOT = Path(__file__).resolve().parent.parent

DISCLAIMER = "Views are the writers' own."


class FakeClock:
    """A clock tests move by hand (`advance(seconds)` or `advance(minutes=...)`), so nothing waits on the real one."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC)
        self._mono = time.monotonic()

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float = 0.0, **delta: float) -> None:
        step = timedelta(seconds=seconds, **delta)
        self._now += step
        self._mono += step.total_seconds()


async def eventually(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:  # noqa: ASYNC109
    """Wait for something the bot does in the background (a predicate, or a coroutine's answer); no timing asserted."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.01)


ALL_COGS = tuple(
    name
    for name in ("cogs.admin", "cogs.articles", "cogs.readers_views", "cogs.editorial", "cogs.statements")
    if importlib.util.find_spec(name) is not None
)


@dataclass
class World:
    """A weekly paper's server: staff roles, an alert and a review channel, an articles forum."""

    fake: FakeDiscord
    guild: Guild
    admin: Member
    editor: Member
    organizer: Member
    reader: Member
    editor_role: Role
    organizer_role: Role
    alerts: Channel
    review: Channel
    forum: Channel
    discussion: Channel
    locked: Channel


def make_config(fake: FakeDiscord, tmp_path: Path, **sections: Any) -> Config:
    raw: dict[str, Any] = {
        "discord": {"api_base_url": fake.api_base, "gateway_url": fake.gateway_url, "guild_ready_timeout": 0.1},
        "database": {"path": str(tmp_path / "readersviews.sqlite3")},
        # The test feed sites listen on loopback, which a default config refuses (bot.netguard).
        "feeds": {"allowed_networks": ["127.0.0.0/8"]},
        "cogs": list(ALL_COGS),
    }
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values} if isinstance(values, dict) else values
    return parse_config(raw)


class Booted:
    """A running bot (its runtime) plus helpers to restart it on the same database."""

    def __init__(self, runtime: Runtime, task: asyncio.Task[None]) -> None:
        self.runtime = runtime
        self.task = task

    @property
    def bot(self) -> Any:
        return self.runtime.bot

    def cog(self, name: str) -> Any:
        return self.runtime.bot.get_cog(name)

    async def stop(self) -> None:
        await self.runtime.bot.close()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.task, timeout=10)


async def boot(fake: FakeDiscord, config: Config, *, clock: Any = None, secrets: Secrets | None = None) -> Booted:
    """Start the bot the way `readersviews run` does, pointed at the fake; return once it is ready.

    `secrets`: the environment's secrets (a site password, the webhook secret); none by default.
    """
    runtime = await Runtime.create(config, secrets or Secrets(discord_token=None), clock=clock)
    task = asyncio.create_task(runtime.start(fake.token))
    ready = asyncio.create_task(runtime.bot.wait_until_ready())
    done, _ = await asyncio.wait({task, ready}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        ready.cancel()
        task.result()  # raises the start-up error
    if ready not in done:
        raise TimeoutError("bot did not become ready against the fake Discord")
    await fake.roundtrip()
    return Booted(runtime, task)


LONG_ENOUGH = "I read this article with great interest, and I think the council has it exactly backwards here. "


async def recorded(fake: FakeDiscord, booted: Booted, message: dict[str, Any], *, within: float = 2.0) -> None:
    """Until the bot has recorded `message` (or `within` seconds passed: then the test's own check says so).

    The recorder writes in batches, and its handler first looks the channel up in the database: under
    load (or on PostgreSQL) that takes longer than one settle(), so flush until the row is there.
    """
    await fake.settle()
    recorder = booted.cog("ReadersViews").recorder
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        await recorder.flush()
        if await booted.bot.store.contributions.by_message(int(message["id"])) is not None:
            return
        if loop.time() > deadline:
            return
        await asyncio.sleep(0.01)


@dataclass
class Paper:
    """The running bot, the paper's server and one article with its discussion thread."""

    booted: Booted
    world: World
    thread: Channel
    article_id: int
    site: FakeSite | None = None

    @property
    def bot(self) -> Any:
        return self.booted.bot

    @property
    def fake(self) -> Any:
        return self.world.fake

    async def post(self, author: Member, content: str, reference: dict[str, Any] | None = None) -> dict[str, Any]:
        """A member replies in the article thread; returns once the reply is recorded."""
        message = await self.fake.message_create(self.thread, author, content, reference=reference)
        await recorded(self.fake, self.booted, message)
        return message

    async def letter(self, message: dict[str, Any]) -> Contribution:
        found = await self.bot.store.contributions.by_message(int(message["id"]))
        assert found is not None
        return found

    async def get(self, letter_id: int) -> Contribution:
        found = await self.bot.store.contributions.get(letter_id)
        assert found is not None
        return found

    def queue_messages(self) -> list[dict[str, Any]]:
        return [m for m in self.fake.messages_in(self.world.review) if m.get("embeds")]

    async def card(self, letter_id: int) -> dict[str, Any]:
        """The review channel's card for a letter (as stored by the fake, i.e. after edits)."""

        def find() -> dict[str, Any] | None:
            for message in self.queue_messages():
                if message["embeds"][0]["title"].startswith(f"Letter #{letter_id} "):
                    return message
            return None

        return await eventually(find)

    async def submit(self, author: Member, message: dict[str, Any], byline: str = "Rita R.") -> Contribution:
        """Submit a reply through the context menu and the byline modal."""
        ix = await self.fake.context_menu(self.world.guild, author, "Submit as letter", message)
        assert (await ix.wait_response())["type"] == 9, ix.response
        done = await self.fake.submit_modal(
            self.world.guild, author, None, {"byline": byline, "location": "Leeds", "consent": "yes"}
        )
        answer = await done.wait_response()
        assert "is with the editors" in answer["data"]["content"], answer
        letter = await self.letter(message)
        await self.card(letter.id)
        return letter

    async def click(self, user: Member, letter_id: int, action: str) -> Any:
        card = await self.card(letter_id)
        ix = await self.fake.click(self.world.guild, user, card, button_id(card, action, letter_id))
        await ix.wait_response()
        return ix


def button_id(card: dict[str, Any], action: str, letter_id: int) -> str:
    """The custom_id of a card's button (Approve's carries the version the card shows)."""
    prefix = f"letters:{action}:{letter_id}"
    ids = [c["custom_id"] for row in card["components"] for c in row["components"]]
    return next(i for i in ids if i == prefix or i.startswith(prefix + ":"))


async def make_article(
    booted: Booted, world: World, title: str = "Council backs new cycle lanes"
) -> tuple[Channel, int]:
    """A posted article whose forum post (made by the bot, as the articles cog does) is the discussion thread."""
    forum = booted.bot.get_channel(world.forum.id)
    created = await forum.create_thread(name=title, content="The article")
    thread = world.fake.channel(created.thread.id)
    assert thread is not None
    db = booted.bot.store.db
    now = to_db(datetime.now(UTC))
    feed_id = await db.scalar("SELECT id FROM feeds WHERE guild_id = ?", (world.guild.id,))
    if feed_id is None:
        feed_id = await db.write(
            "INSERT INTO feeds (guild_id, url, channel_id, channel_kind, created_at) VALUES (?, ?, ?, 'forum', ?)",
            (world.guild.id, "https://paper.example/feed", world.forum.id, now),
        )
    article_id = await db.write(
        "INSERT INTO articles (feed_id, guid, title, link, content_hash, status, thread_id, channel_id,"
        " first_seen_at, posted_at) VALUES (?, ?, ?, ?, 'x', 'posted', ?, ?, ?, ?)",
        (
            feed_id,
            f"guid-{thread.id}",
            title,
            f"https://paper.example/{thread.id}",
            thread.id,
            world.forum.id,
            now,
            now,
        ),
    )
    await world.fake.settle()
    return thread, article_id


def use_site(booted: Booted, site: FakeSite) -> None:
    """Publish to the loopback webhook receiver (it answers with the letter's URL)."""
    booted.bot.outbox.adapter = WebhookAdapter(
        WebhookSettings.model_validate({"url": site.webhook_url}), WEBHOOK_SECRET
    )


async def state_is(paper: Paper, letter_id: int, state: str) -> Contribution | None:
    letter = await paper.get(letter_id)
    return letter if letter.state == state else None


def card_has(paper: Paper, letter_id: int, text: str) -> dict[str, Any] | None:
    for message in paper.queue_messages():
        embed = message["embeds"][0]
        if embed["title"].startswith(f"Letter #{letter_id} ") and text in str(embed):
            return message
    return None


def cog(booted: Booted) -> Any:
    statements = booted.cog("Statements")
    statements.refresher.interval = 0.05  # tests need not wait 5 s between message edits
    return statements


async def answer(ix: Any) -> str:
    response = await ix.wait_response()
    if response["type"] == 5:
        message = await ix.wait_original()
        return str(message["content"])
    return str(response["data"].get("content", ""))


async def create_statement(
    world: World,
    booted: Booted,
    *,
    title: str = "Save the library",
    body: str = "We, the undersigned, ask the council to keep the library open.",
    slug: str = "",
    **options: Any,
) -> dict[str, Any]:
    """Run /statement create and its form; return the posted statement message."""
    cog(booted)
    fake = world.fake
    ix = await fake.slash(world.guild, world.organizer, "statement create", channel=world.discussion, **options)
    response = await ix.wait_response()
    assert response["type"] == 9, response
    submit = await fake.submit_modal(world.guild, world.organizer, None, {"title": title, "body": body, "slug": slug})
    text = await answer(submit)
    assert "Published" in text, text
    return fake.messages_in(world.discussion)[-1]


async def sign(
    world: World, message: dict[str, Any], member: Member, values: dict[str, Any], *, action: str = "sign"
) -> str:
    fake = world.fake
    statement_id = message["components"][0]["components"][0]["custom_id"].rsplit(":", 1)[1]
    click = await fake.click(world.guild, member, message, f"statements:{action}:{statement_id}")
    response = await click.wait_response()
    if response["type"] != 9:
        return str(response["data"]["content"])
    submit = await fake.submit_modal(world.guild, member, None, values)
    return await answer(submit)


def sid(message: dict[str, Any]) -> int:
    return int(message["components"][0]["components"][0]["custom_id"].rsplit(":", 1)[1])


def wordpress(
    site: FakeSite, http: httpx.AsyncClient, clock: FakeClock, *, password: str = WP_PASSWORD, timeout: float = 5.0
) -> WordPressAdapter:
    settings = WordPressSettings(url=site.wp_url, username=WP_USER, timeout=timeout, category_ids=(3,))
    return WordPressAdapter(settings, password, http, clock=clock)


class Harness:
    def __init__(self, db: Database, clock: FakeClock, adapter: SiteAdapter) -> None:
        self.db = db
        self.clock = clock
        self.repo = OutboxRepo(db, clock)
        self.alerts: list[str] = []
        self.delivered: list[tuple[OutboxRow, RemoteRef]] = []
        self.worker = self.new_worker(adapter)

    def new_worker(self, adapter: SiteAdapter) -> OutboxWorker:
        async def alert(text: str) -> None:
            self.alerts.append(text)

        async def item_alert(row: OutboxRow, text: str) -> None:
            self.alerts.append(text)

        async def on_delivered(row: OutboxRow, ref: RemoteRef) -> None:
            self.delivered.append((row, ref))

        return OutboxWorker(
            self.repo,
            adapter,
            self.clock,
            alert=item_alert,
            site_alert=alert,
            on_delivered=on_delivered,
            rng=random.Random(1),
        )

    async def enqueue(self, action: str, item: SiteItem, revision: int | str = 1) -> int:
        async with self.db.transaction() as conn:
            return await self.repo.enqueue_item(conn, action, item, revision=revision)

    async def row(self, row_id: int) -> OutboxRow:
        row = await self.repo.get(row_id)
        assert row is not None
        return row

    async def drain(self, rounds: int = 30) -> None:
        """Run the worker, moving the fake clock past each back-off, until nothing is waiting."""
        for _ in range(rounds):
            await self.worker.run_once()
            due = await self.repo.next_due_at()
            if due is None:
                return
            self.clock.advance(max(0.0, (due - self.clock.now()).total_seconds()) + 0.001)
        raise AssertionError("outbox did not drain")


def letter(n: int, text: str = "A thoughtful reply.", title: str | None = None) -> SiteItem:
    return compose_letter(
        Letter(id=n, text=text, byline="Ann Reader", title=title or f"Letter {n}"), disclaimer=DISCLAIMER
    )


def rss(items: list[dict[str, Any]], title: str = "The Weekly") -> bytes:
    """A small RSS 2.0 document; each item may have guid, title, link, description, date, categories, creator,
    image (an image enclosure)."""
    parts = [
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>{escape(title)}</title>'
    ]
    parts.append("<link>https://paper.example/</link><description>news</description>")
    for item in items:
        parts.append("<item>")
        if "guid" in item:
            parts.append(f'<guid isPermaLink="false">{escape(item["guid"])}</guid>')
        parts.append(f"<title>{escape(item.get('title', 'Untitled'))}</title>")
        if "link" in item:
            parts.append(f"<link>{escape(item['link'])}</link>")
        parts.append(f"<description>{escape(item.get('description', 'A summary.'))}</description>")
        parts.append(f"<pubDate>{format_datetime(item.get('date', datetime.now(UTC)))}</pubDate>")
        for category in item.get("categories", []):
            parts.append(f"<category>{escape(category)}</category>")
        if "creator" in item:
            parts.append(f"<dc:creator>{escape(item['creator'])}</dc:creator>")
        if "image" in item:
            parts.append(f'<enclosure url="{escape(item["image"])}" type="image/jpeg" length="1000"/>')
        parts.append("</item>")
    parts.append("</channel></rss>")
    return "".join(parts).encode()


def story(n: int, **extra: Any) -> dict[str, Any]:
    return {"guid": f"story-{n}", "title": f"Story number {n}", "link": f"https://paper.example/{n}", **extra}


async def add_feed(world: World, url: str, channel: Any, **options: Any) -> dict[str, Any]:
    ix = await world.fake.slash(world.guild, world.admin, "feed add", url=url, channel=channel, **options)
    await ix.wait_response()
    return await ix.wait_followup()


async def poll(bot: Booted, clock: FakeClock, world: World, minutes: float = 16) -> None:
    clock.advance(minutes=minutes)
    await bot.cog("Articles").run_cycle()
    await world.fake.roundtrip()


async def add_letter(store: Any, guild_id: int) -> int:
    """A letter row in `guild_id` (what an outbox `letter:<id>` entity points at)."""
    return await store.db.write(
        "INSERT INTO contributions (guild_id, channel_id, author_id, author_name, content, created_at)"
        " VALUES (?, 1, 1, 'w', 'text', '2024-01-01T00:00:00+00:00')",
        (guild_id,),
    )


async def dead_letter(store: Any, guild_id: int, error: str) -> int:
    """A dead outbox item for a new letter of `guild_id`."""
    letter = await add_letter(store, guild_id)
    async with store.db.transaction() as conn:
        row_id = await store.outbox.enqueue(
            conn,
            kind="letter.create",
            entity=f"letter:{letter}",
            payload={},
            idempotency_key=f"letter:{letter}:c:1",
            guild_id=guild_id,
        )
    await store.outbox.mark_dead(row_id, error)
    return int(row_id)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def read_until(process: asyncio.subprocess.Process, needle: str, seen: list[str]) -> None:
    assert process.stdout is not None
    async with asyncio.timeout(60):
        while True:
            line = (await process.stdout.readline()).decode()
            if not line:
                raise AssertionError(f"process ended before {needle!r}: {''.join(seen)}")
            seen.append(line)
            if needle in line:
                return


@contextlib.asynccontextmanager
async def reaped(*processes: asyncio.subprocess.Process | None) -> AsyncIterator[None]:
    """Whatever happens in the block, no process is left running after it (killed, then waited for)."""
    try:
        yield
    finally:
        for process in processes:
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()


async def output_of(process: asyncio.subprocess.Process, timeout: float = 30) -> str:  # noqa: ASYNC109
    """The rest of the process's output once it has exited."""
    output, _ = await asyncio.wait_for(process.communicate(), timeout)
    return output.decode()


async def stop(process: asyncio.subprocess.Process, seen: list[str]) -> int:
    """SIGTERM, then the exit status; what it printed is added to `seen`."""
    process.send_signal(signal.SIGTERM)
    async with reaped(process):
        seen.extend((await output_of(process)).splitlines(keepends=True))
    assert process.returncode is not None
    return process.returncode


async def spawn(world: World, tmp_path: Path, *argv: str, **sections: Any) -> asyncio.subprocess.Process:
    """A Python subprocess with the bot's config written out; `argv` after the interpreter, "{config}"
    replaced by the config's path; stdout and stderr merged into one pipe."""
    config = make_config(world.fake, tmp_path, **sections)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    env = {**os.environ, "DISCORD_TOKEN": world.fake.token, "PYTHONPATH": str(ROOT)}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *(str(config_path) if arg == "{config}" else arg for arg in argv),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in {"DISCORD_TOKEN", "READERSVIEWS_CONFIG"}}
    base["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def closed_port() -> int:
    """A local port nothing listens on (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
