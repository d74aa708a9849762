"""Statements mirrored end to end: the real bot, the loopback fake Discord and a loopback webhook site.

A statement created and signed through Discord reaches the site once, with its public signers only,
signed with the shared secret, updated at most every `site.statement_update_minutes`, and finally at
close; a site that answers 503 for a while still ends with one statement and the right list.
The bot's time is a FakeClock moved by hand: the throttle is checked on the clock, never on wall time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot.config import Secrets
from tests.fakediscord import FakeDiscord
from tests.fakediscord.world import Member
from tests.helpers import Booted, FakeClock, World, answer, boot, cog, create_statement, make_config, sid, sign
from tests.sitefake import WEBHOOK_SECRET, FakeSite

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
UPDATE_MINUTES = 10


@dataclass
class Received:
    """One POST to the webhook exactly as the bot sent it, and what the site answered."""

    headers: dict[str, str]
    body: bytes
    status: int = 0

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


class RecordingSite(FakeSite):
    """The loopback site, also keeping every webhook request, the ones it answered 503 included."""

    def reset(self) -> None:
        super().reset()
        self.received: list[Received] = []

    @web.middleware
    async def _faults_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path != "/webhook":
            return await super()._faults_middleware(request, handler)
        record = Received(dict(request.headers), await request.read())  # read() is cached for the handler
        self.received.append(record)
        response = await super()._faults_middleware(request, handler)
        record.status = response.status
        return response

    def to(self, entity: str) -> list[Received]:
        return [r for r in self.received if r.event.get("entity") == entity]

    def accepted(self, entity: str) -> list[dict[str, Any]]:
        """Events the receiver accepted for `entity`, first delivery of each key, in order."""
        return [e for e in self.webhook_events if e["entity"] == entity]


@pytest.fixture
async def site() -> AsyncIterator[RecordingSite]:
    # The bot signs with its FakeClock's time, far from the wall clock: skip the staleness check.
    fake_site = RecordingSite(tolerance=None)
    await fake_site.start()
    yield fake_site
    await fake_site.stop()


@pytest.fixture
async def mirrored(
    fake: FakeDiscord, world: World, site: RecordingSite, tmp_path: Path
) -> AsyncIterator[tuple[Booted, FakeClock]]:
    """The bot with `site.kind: webhook` pointed at the loopback site, and the FakeClock it runs on."""
    world.guild.add_member("pat-public")
    world.guild.add_member("sam-spam")
    clock = FakeClock(START)
    config = make_config(
        fake,
        tmp_path,
        site={
            "kind": "webhook",
            "webhook": {"url": site.webhook_url, "timeout": 5},
            "statement_update_minutes": UPDATE_MINUTES,
        },
    )
    booted = await boot(fake, config, clock=clock, secrets=Secrets.model_validate({"webhook_secret": WEBHOOK_SECRET}))
    await booted.bot.store.settings.set_many(
        world.guild.id,
        {"organizer_role_id": world.organizer_role.id, "alert_channel_id": world.alerts.id},
        actor_id=None,
    )
    cog(booted)
    try:
        yield booted, clock
    finally:
        if not booted.task.done():
            await booted.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await booted.task


def member(world: World, username: str) -> Member:
    return next(m for m in world.guild.members.values() if m.user.username == username)


async def settle(booted: Booted, clock: FakeClock) -> None:
    """Let the outbox deliver all that is queued, moving the FakeClock past each back-off (no wall-time limits)."""
    repo = booted.bot.store.outbox
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while True:
        waiting = await repo.list(("pending", "inflight", "dead"))
        dead = [row for row in waiting if row.state == "dead"]
        assert not dead, f"outbox parked {[(r.idempotency_key, r.last_error) for r in dead]}"
        if not waiting:
            return
        due = await repo.next_due_at()
        if due is not None and due > clock.now():
            clock.advance(seconds=(due - clock.now()).total_seconds())
        booted.bot.outbox.notify()
        if loop.time() > deadline:
            raise TimeoutError(f"outbox did not drain: {[(r.idempotency_key, r.state) for r in waiting]}")
        await asyncio.sleep(0.01)


async def tick(booted: Booted, clock: FakeClock) -> None:
    """What the statement timer does when it wakes (at the FakeClock's time), then deliver."""
    await booted.cog("Statements").run_timer_once()
    await settle(booted, clock)


def names(event: dict[str, Any]) -> list[str]:
    return [s["name"] for s in event["data"]["metadata"]["signatories"]]


def status_of(event: dict[str, Any]) -> tuple[str, bool, int, int]:
    """(status, final, signature_count, signatory_count) of a statement event."""
    metadata = event["data"]["metadata"]
    return metadata["status"], metadata["final"], metadata["signature_count"], metadata["signatory_count"]


def assert_signed_and_anonymous(site: RecordingSite, world: World, booted: Booted, clock: FakeClock) -> None:
    """Every request carries a valid HMAC of its exact body and no Discord id appears in any of them."""
    assert site.webhook_rejected == 0
    discord_ids = {m.id for m in world.guild.members.values()} | {world.guild.id, world.discussion.id}
    discord_ids |= {int(m["id"]) for m in world.fake.messages_in(world.discussion)}
    for record in site.received:
        timestamp = record.headers["X-Readersviews-Timestamp"]
        expected = hmac.new(WEBHOOK_SECRET.encode(), f"{timestamp}.".encode() + record.body, hashlib.sha256)
        assert hmac.compare_digest(record.headers["X-Readersviews-Signature"], "sha256=" + expected.hexdigest())
        assert START.timestamp() <= int(timestamp) <= clock.now().timestamp(), "signed with the bot's clock"
        assert record.headers["Idempotency-Key"] == record.event["id"]
        for discord_id in discord_ids:
            assert str(discord_id).encode() not in record.body, f"Discord id {discord_id} sent to the site"


async def test_statement_reaches_the_site_once_with_public_signers_throttled(
    mirrored: tuple[Booted, FakeClock], world: World, site: RecordingSite
) -> None:
    """Create once; public signers only; one update per interval however many sign; hidden ones drop; final at close."""
    booted, clock = mirrored
    fake = world.fake
    message = await create_statement(world, booted, slug="library")
    entity = f"statement:{sid(message)}"
    await settle(booted, clock)
    [create] = site.accepted(entity)
    assert create["event"] == "statement.create" and create["id"] == f"{entity}:create:1"
    assert create["data"]["title"] == "Save the library" and names(create) == []
    assert status_of(create) == ("open", False, 0, 0)
    remote_id = site.webhook_remote[entity]

    assert "Signed" in await sign(world, message, world.reader, {"name": "Rita Reader", "place": "Leeds, UK"})
    assert "Signed" in await sign(world, message, world.editor, {"name": "Quiet Editor", "public": "no"})
    assert "Signed" in await sign(world, message, member(world, "pat-public"), {"name": "Pat Public", "role": "Nurse"})
    assert "Signed" in await sign(
        world, message, world.admin, {"organization": "Friends of the Library", "name": "Ada"}, action="sign_org"
    )
    await tick(booted, clock)
    clock.advance(minutes=UPDATE_MINUTES - 1, seconds=59)
    await tick(booted, clock)
    assert [e["event"] for e in site.accepted(entity)] == ["statement.create"], "no update before the interval"

    clock.advance(seconds=1)
    await tick(booted, clock)
    await tick(booted, clock)
    _, first = site.accepted(entity)
    assert first["event"] == "statement.update" and first["id"] == f"{entity}:update:1"
    assert first["data"]["remote_id"] == remote_id
    assert names(first) == ["Rita Reader", "Pat Public", "Ada"]
    assert first["data"]["metadata"]["signatory_count"] == 3
    [rita] = [s for s in first["data"]["metadata"]["signatories"] if s["name"] == "Rita Reader"]
    assert (rita["city"], rita["country"]) == ("Leeds", "UK")
    assert "Quiet Editor" not in first["data"]["html"] and "Pat Public" in first["data"]["html"]
    assert status_of(first) == ("open", False, 4, 3), "the total counts the private signature too"
    assert "Open for signatures. 4 signatures so far, 3 of them listed publicly." in first["data"]["html"]

    assert "Signed" in await sign(world, message, member(world, "sam-spam"), {"name": "Sam Late"})
    pat = await booted.bot.store.db.scalar("SELECT id FROM signatures WHERE name = 'Pat Public'")
    ix = await fake.slash(world.guild, world.organizer, "statement hide", statement="library", signature_id=pat)
    assert "Hid signature" in await answer(ix)
    clock.advance(minutes=UPDATE_MINUTES - 1)
    await tick(booted, clock)
    assert len(site.accepted(entity)) == 2, "changes within the interval wait for it"

    ix = await fake.slash(world.guild, world.organizer, "statement close", statement="library")
    assert "Closed" in await answer(ix)
    await settle(booted, clock)
    *_, final = site.accepted(entity)
    assert final["event"] == "statement.update" and final["id"] == f"{entity}:update:2"
    assert names(final) == ["Rita Reader", "Ada", "Sam Late"], "the final list: hidden Pat gone, Sam added"
    assert status_of(final) == ("closed", True, 4, 3), "closed, final, hidden Pat not counted"
    assert "Final count: 4 signatures, 3 of them listed publicly." in final["data"]["html"]
    assert final["data"]["metadata"]["closed_at"] == clock.now().isoformat()
    assert final["data"]["remote_id"] == remote_id
    clock.advance(minutes=UPDATE_MINUTES * 3)
    await tick(booted, clock)
    assert len(site.accepted(entity)) == 3, "nothing more after the final update"
    assert site.stats()["webhook_created_entities"] == 1 and site.stats()["webhook_duplicate_creates"] == 0
    assert all(count == 1 for count in site.webhook_deliveries.values())
    assert_signed_and_anonymous(site, world, booted, clock)


async def test_site_down_then_back_still_one_statement_and_the_final_list(
    mirrored: tuple[Booted, FakeClock], world: World, site: RecordingSite
) -> None:
    """503s on the create and on the final update are retried with the same key: one statement, the right list."""
    booted, clock = mirrored
    site.fail_next(3, 503, path="/webhook")
    message = await create_statement(world, booted, slug="library")
    entity = f"statement:{sid(message)}"
    assert "Signed" in await sign(world, message, world.reader, {"name": "Rita Reader"})
    assert "Signed" in await sign(world, message, world.editor, {"name": "Quiet Editor", "public": "no"})
    await settle(booted, clock)  # moves the clock past each back-off: seconds, far below the interval
    creates = [r for r in site.to(entity) if r.event["event"] == "statement.create"]
    assert [r.status for r in creates] == [503, 503, 503, 200]
    assert {r.headers["Idempotency-Key"] for r in creates} == {f"{entity}:create:1"}
    assert [e["event"] for e in site.accepted(entity)] == ["statement.create"]

    clock.advance(minutes=UPDATE_MINUTES)
    await tick(booted, clock)
    assert names(site.accepted(entity)[-1]) == ["Rita Reader"]

    assert "Signed" in await sign(world, message, member(world, "pat-public"), {"name": "Pat Public"})
    site.fail_next(2, 503, path="/webhook")
    ix = await world.fake.slash(world.guild, world.organizer, "statement close", statement="library")
    assert "Closed" in await answer(ix)
    await settle(booted, clock)
    finals = [r for r in site.to(entity) if r.event["id"] == f"{entity}:update:2"]
    assert [r.status for r in finals] == [503, 503, 200]
    assert len({r.body for r in finals}) == 1, "a retry re-sends the same event"

    events = site.accepted(entity)
    assert [e["event"] for e in events] == ["statement.create", "statement.update", "statement.update"]
    assert names(events[-1]) == ["Rita Reader", "Pat Public"]
    remote_id = site.webhook_remote[entity]
    assert all(e["data"]["remote_id"] == remote_id for e in events[1:])
    assert site.stats()["webhook_created_entities"] == 1 and site.stats()["webhook_duplicate_creates"] == 0
    rows = await booted.bot.store.outbox.for_entity(entity)
    assert [(r.idempotency_key, r.state) for r in rows] == [
        (f"{entity}:create:1", "done"),
        (f"{entity}:update:1", "done"),
        (f"{entity}:update:2", "done"),
    ]
    assert_signed_and_anonymous(site, world, booted, clock)
