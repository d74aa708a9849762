"""The statement service on a real SQLite file: signing rules, moderation, timers, export, mirror."""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import json
import sqlite3
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.concurrency import Debouncer
from bot.statement_export import export_statement, neutralise_formula
from bot.statement_rules import SeveralSignatures, SignRequest, StatementError, parse_deadline, split_place
from bot.statements import StatementService
from bot.store import Store
from bot.store.database import migration_files
from bot.store.dialect import SQLITE
from bot.store.statement_rows import ORGANIZATIONS_PER_MEMBER, StatementRow
from tests.helpers import FakeClock

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GUILD = 111
ORGANIZER = 222


@pytest.fixture
async def env(store_location: str) -> AsyncIterator[tuple[StatementService, Store, FakeClock]]:
    clock = FakeClock(START)
    store = await Store.open(store_location, clock)
    service = StatementService(store, clock, site_update_minutes=10)
    try:
        yield service, store, clock
    finally:
        await service.aclose()
        await store.close()


async def published(
    service: StatementService, *, closes_at: datetime | None = None, orgs: bool = True, slug: str | None = None
) -> StatementRow:
    draft = await service.create_draft(
        guild_id=GUILD,
        organizer_id=ORGANIZER,
        title="Save the library",
        body="We, the undersigned, **insist**.",
        channel_id=5,
        closes_at=closes_at,
        allow_organizations=orgs,
        slug=slug,
    )
    return await service.publish(draft.id, channel_id=5, message_id=6, actor_id=ORGANIZER)


def req(statement: StatementRow, user: int, name: str = "Ann Example", **kw: object) -> SignRequest:
    return SignRequest(statement_id=statement.id, user_id=user, kind=kw.pop("kind", "individual"), name=name, **kw)  # type: ignore[arg-type]


async def test_sign_resign_withdraw(env: tuple[StatementService, Store, FakeClock]) -> None:
    """Signing records, signing again updates the one live signature, withdraw removes it."""
    service, _store, _clock = env
    statement = await published(service)
    first = await service.sign(req(statement, 1, role="Librarian", city="Leeds", country="UK"))
    assert first.status == "created"
    again = await service.sign(req(statement, 1, name="Ann B. Example", public=False))
    assert again.status == "updated"
    live = await service.repo.live_signatures(statement.id)
    assert [(s.name, s.public, s.role) for s in live] == [("Ann B. Example", False, None)]
    counts = await service.repo.counts(statement.id)
    assert (counts.signed, counts.public) == (1, 0)
    withdrawn = await service.withdraw(statement.id, 1)
    assert withdrawn is not None and withdrawn.name == "Ann B. Example"
    assert (await service.repo.counts(statement.id)).signed == 0
    assert await service.withdraw(statement.id, 1) is None
    assert (await service.sign(req(statement, 1))).status == "created"  # may sign again after withdrawing


async def test_concurrent_submits_one_signature(env: tuple[StatementService, Store, FakeClock]) -> None:
    """Many simultaneous submits from one account end as one live signature."""
    service, store, _clock = env
    statement = await published(service)
    outcomes = await asyncio.gather(*(service.sign(req(statement, 7, name=f"Name {i}")) for i in range(20)))
    assert sorted(o.status for o in outcomes).count("created") == 1
    assert await store.db.scalar("SELECT count(*) FROM signatures WHERE user_id = 7") == 1


async def test_many_accounts_batched(env: tuple[StatementService, Store, FakeClock]) -> None:
    """A burst of 1,200 distinct signers is written in a few batches, each exactly once."""
    service, store, _clock = env
    statement = await published(service)
    await asyncio.gather(*(service.sign(req(statement, 1000 + i, name=f"Signer {i}")) for i in range(1200)))
    assert await store.db.scalar("SELECT count(*) FROM signatures") == 1200
    assert service.writer.batches < 100


async def test_closed_blocked_and_organization_rules(env: tuple[StatementService, Store, FakeClock]) -> None:
    """Closed statements, blocked accounts and org signing when not allowed are refused clearly."""
    service, _store, clock = env
    statement = await published(service, orgs=False, closes_at=START + timedelta(hours=1))
    with pytest.raises(StatementError, match="individuals only"):
        await service.sign(req(statement, 1, kind="organization", organization="Acme"))
    await service.sign(req(statement, 2))
    changed, hidden = await service.block(statement.id, 2, actor_id=ORGANIZER)
    assert changed and hidden == 1
    with pytest.raises(StatementError, match="blocked"):
        await service.sign(req(statement, 2))
    counts = await service.repo.counts(statement.id)
    assert (counts.signed, counts.hidden) == (0, 1)
    clock.advance(hours=2)  # deadline passed, timer not yet run: still refused
    with pytest.raises(StatementError, match="closed"):
        await service.sign(req(statement, 3))
    closed = await service.close_due()
    assert [s.id for s in closed] == [statement.id]
    assert (await service.repo.get(statement.id)).status == "closed"  # type: ignore[union-attr]
    actions = [row["action"] for row in await service.store.audit.for_entity(statement.entity)]
    assert actions == ["statement.create", "statement.block", "statement.close"]


def org(statement: StatementRow, user: int, organization: str, name: str = "Ann Example", **kw: object) -> SignRequest:
    return req(statement, user, name, kind="organization", organization=organization, **kw)


async def test_personal_and_organization_signatures_are_separate(
    env: tuple[StatementService, Store, FakeClock],
) -> None:
    """Signing for an organization keeps the personal signature; one signature per organization name, capped."""
    service, store, _clock = env
    statement = await published(service)
    assert (await service.sign(req(statement, 1, name="Ann Personal"))).status == "created"
    assert (await service.sign(org(statement, 1, "Friends of the Library", role="Chair"))).status == "created"
    live = await service.my_signatures(statement.id, 1)
    assert [(s.kind, s.name, s.organization) for s in live] == [
        ("individual", "Ann Personal", None),
        ("organization", "Ann Example", "Friends of the Library"),
    ], "the organization signature did not replace the personal one"
    # The same organization, spelt differently, changes that signature; the personal one is untouched.
    again = await service.sign(org(statement, 1, "  friends of the LIBRARY ", role="Treasurer"))
    assert again.status == "updated"
    assert (await service.sign(req(statement, 1, name="Ann P."))).status == "updated"
    live = await service.my_signatures(statement.id, 1)
    assert [(s.name, s.role) for s in live] == [("Ann P.", None), ("Ann Example", "Treasurer")]
    counts = await service.repo.counts(statement.id)
    assert (counts.signed, counts.organizations) == (2, 1)

    for n in range(2, ORGANIZATIONS_PER_MEMBER + 1):
        assert (await service.sign(org(statement, 1, f"Org {n}"))).status == "created"
    with pytest.raises(StatementError, match=f"{ORGANIZATIONS_PER_MEMBER} organizations"):
        await service.sign(org(statement, 1, "One Too Many"))
    assert (await service.sign(org(statement, 1, "org 2", role="Still fine"))).status == "updated"
    assert await store.db.scalar("SELECT count(*) FROM signatures WHERE withdrawn_at IS NULL") == 6
    assert await store.db.scalar("SELECT count(*) FROM signatures") == 6, "updates change rows, never add"


async def test_organization_form_changes_the_signature_it_names(
    env: tuple[StatementService, Store, FakeClock],
) -> None:
    """A form for one organization signature renames that one; a name already used, or a withdrawn one, is refused."""
    service, _store, _clock = env
    statement = await published(service)
    await service.sign(org(statement, 1, "Acme"))
    await service.sign(org(statement, 1, "Beta"))
    acme, beta = await service.my_signatures(statement.id, 1)
    renamed = await service.sign(org(statement, 1, "Acme Ltd", replaces=acme.id))
    assert renamed.status == "updated"
    live = await service.my_signatures(statement.id, 1)
    assert [(s.id, s.organization) for s in live] == [(acme.id, "Acme Ltd"), (beta.id, "Beta")]
    with pytest.raises(StatementError, match="already signed"):
        await service.sign(org(statement, 1, "beta", replaces=acme.id))
    # The old name is free again: signing for it makes a new signature.
    assert (await service.sign(org(statement, 1, "Acme"))).status == "created"
    await service.withdraw(statement.id, 1, beta.id)
    with pytest.raises(StatementError, match="withdrawn meanwhile"):
        await service.sign(org(statement, 1, "Beta again", replaces=beta.id))
    # Another account cannot change mine by naming its id.
    with pytest.raises(StatementError, match="withdrawn meanwhile"):
        await service.sign(org(statement, 2, "Hijack", replaces=acme.id))
    assert [s.organization for s in await service.my_signatures(statement.id, 1)] == ["Acme Ltd", "Acme"]


async def test_withdraw_asks_which_of_several_and_moderation_per_signature(
    env: tuple[StatementService, Store, FakeClock],
) -> None:
    """Withdraw asks which of several signatures; hiding one hides only that one; the site lists both kinds."""
    service, store, clock = env
    statement = await published(service)
    await service.sign(req(statement, 1, name="Ann Personal"))
    await service.sign(org(statement, 1, "Acme", name="Ann for Acme"))
    with pytest.raises(SeveralSignatures) as several:
        await service.withdraw(statement.id, 1)
    assert [s.name for s in several.value.signatures] == ["Ann Personal", "Ann for Acme"]
    assert len(await service.my_signatures(statement.id, 1)) == 2, "nothing withdrawn without a choice"
    personal, acme = several.value.signatures
    await service.hide(statement.id, acme.id, actor_id=ORGANIZER)
    assert [s.name for s in await service.public_signers(statement.id)] == ["Ann Personal"]
    await service.hide(statement.id, acme.id, actor_id=ORGANIZER, hidden=False)
    clock.advance(minutes=10)
    await service.flush_site_updates()
    update = (await store.outbox.for_entity(statement.entity))[-1]
    assert [(s["name"], s["kind"]) for s in update.payload["metadata"]["signatories"]] == [
        ("Ann Personal", "individual"),
        ("Ann for Acme", "organization"),
    ]
    # Two hidden, one unhidden: the other stays hidden.
    await service.hide(statement.id, personal.id, actor_id=ORGANIZER)
    await service.hide(statement.id, acme.id, actor_id=ORGANIZER)
    await service.hide(statement.id, acme.id, actor_id=ORGANIZER, hidden=False)
    assert [s.name for s in await service.public_signers(statement.id)] == ["Ann for Acme"]
    await service.hide(statement.id, personal.id, actor_id=ORGANIZER, hidden=False)
    data = await export_statement(store, statement.slug, fmt="json", guild_id=None, include_discord_ids=True, bom=False)
    exported = [(r["kind"], r["name"], r["organization"], r["discord_user_id"]) for r in json.loads(data)["signatures"]]
    assert exported == [("individual", "Ann Personal", "", "1"), ("organization", "Ann for Acme", "Acme", "1")]
    withdrawn = await service.withdraw(statement.id, 1, personal.id)
    assert withdrawn is not None and withdrawn.id == personal.id
    assert [s.id for s in await service.my_signatures(statement.id, 1)] == [acme.id]
    last = await service.withdraw(statement.id, 1)  # only one left: no question
    assert last is not None and last.id == acme.id
    assert await service.withdraw(statement.id, 1) is None
    # Blocking an account hides every one of its live signatures.
    await service.sign(req(statement, 2, name="Bo"))
    await service.sign(org(statement, 2, "Bo Corp", name="Bo"))
    assert await service.block(statement.id, 2, actor_id=ORGANIZER) == (True, 2)
    assert await service.public_signers(statement.id) == []


async def test_signatures_from_before_the_migration_keep_working(tmp_path: Path) -> None:
    """A database at schema 4 with an organization signature migrates; that member can now add a personal one."""
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    for version, _name, sql in migration_files()[:4]:
        conn.executescript(sql)
        conn.execute(f"PRAGMA user_version = {version}")
    stamp = START.isoformat()
    conn.execute(
        "INSERT INTO statements (id, guild_id, slug, title, body, organizer_id, status, created_at, updated_at)"
        " VALUES (1, ?, 'old', 'Old', 'Body', ?, 'open', ?, ?)",
        (GUILD, ORGANIZER, stamp, stamp),
    )
    conn.execute(
        "INSERT INTO signatures (statement_id, user_id, kind, name, organization, created_at, updated_at)"
        " VALUES (1, 7, 'organization', 'Ann', 'Café Rouge', ?, ?)",
        (stamp, stamp),
    )
    conn.commit()
    conn.close()
    clock = FakeClock(START)
    store = await Store.open(path, clock)
    service = StatementService(store, clock)
    try:
        statement = await service.get(1)
        assert (await service.sign(req(statement, 7, name="Ann Personal"))).status == "created"
        assert (await service.sign(org(statement, 7, "CAFÉ ROUGE", role="Owner"))).status == "updated"
        live = await service.my_signatures(1, 7)
        assert [(s.kind, s.organization, s.role) for s in live] == [
            ("individual", None, None),
            ("organization", "CAFÉ ROUGE", "Owner"),
        ]
        assert await store.db.scalar("SELECT count(*) FROM signatures") == 2
    finally:
        await service.aclose()
        await store.close()


async def test_organization_requires_name(env: tuple[StatementService, Store, FakeClock]) -> None:
    """Signing for an organization needs the organization's name."""
    service, _store, _clock = env
    statement = await published(service)
    with pytest.raises(StatementError, match="organization"):
        await service.sign(req(statement, 1, kind="organization"))
    outcome = await service.sign(req(statement, 1, kind="organization", organization="Friends of the Library"))
    assert outcome.recorded is not None and outcome.recorded.kind == "organization"


async def test_name_validation(env: tuple[StatementService, Store, FakeClock]) -> None:
    """Over-long names are refused with the limit; control characters and extra spaces are removed."""
    service, _store, _clock = env
    statement = await published(service)
    with pytest.raises(StatementError, match="at most 100 characters"):
        await service.sign(req(statement, 1, name="x" * 201))
    with pytest.raises(StatementError, match="your name"):
        await service.sign(req(statement, 1, name="  \u200b "))
    outcome = await service.sign(req(statement, 1, name="  Ann\x00   \u202eExample "))
    assert outcome.recorded is not None and outcome.recorded.name == "Ann Example"


async def test_flags(env: tuple[StatementService, Store, FakeClock]) -> None:
    """Links in names, brand-new accounts and repeated names are flagged for organizers."""
    service, _store, clock = env
    statement = await published(service)
    await service.sign(
        req(statement, 1, name="Buy at spam.example.com", account_created_at=clock.now() - timedelta(days=400))
    )
    await service.sign(req(statement, 2, name="Bob", account_created_at=clock.now() - timedelta(days=1)))
    await service.sign(req(statement, 3, name="bob ", account_created_at=clock.now() - timedelta(days=400)))
    flags = {s.user_id: set(s.flags) for s in await service.signatures_for_organizers(statement.id)}
    assert flags == {1: {"link_in_name"}, 2: {"new_account", "repeated_name"}, 3: {"repeated_name"}}
    # Two accounts signing for the same organization are flagged; one member's own two signatures are not.
    await service.sign(org(statement, 4, "Acme", name="Dee", account_created_at=clock.now() - timedelta(days=400)))
    await service.sign(org(statement, 5, " ACME ", name="Eve", account_created_at=clock.now() - timedelta(days=400)))
    await service.sign(org(statement, 3, "Other", name="Bob", account_created_at=clock.now() - timedelta(days=400)))
    flags = {(s.user_id, s.kind): set(s.flags) for s in await service.signatures_for_organizers(statement.id)}
    assert flags[(4, "organization")] == flags[(5, "organization")] == {"repeated_organization"}
    assert flags[(3, "organization")] == {"repeated_name"}  # Bob is also user 2's name; not user 3's own repeat


async def test_slugs_unique_and_ascii(env: tuple[StatementService, Store, FakeClock]) -> None:
    """Slugs are ASCII, made from the title, and unique per server."""
    service, _store, _clock = env
    first = await published(service)
    second = await published(service)
    assert (first.slug, second.slug) == ("save-the-library", "save-the-library-2")
    with pytest.raises(StatementError, match="already used"):
        await published(service, slug="save-the-library")
    with pytest.raises(StatementError, match="lowercase ASCII"):
        await published(service, slug="Café Über")


async def test_deadline_parsing() -> None:
    """Deadlines: ISO date (end of day), date and time in UTC, offsets; past and garbage are refused."""
    now = START
    assert parse_deadline("2026-12-31", now) == datetime(2026, 12, 31, 23, 59, tzinfo=UTC)
    assert parse_deadline("2026-12-31 18:00", now) == datetime(2026, 12, 31, 18, 0, tzinfo=UTC)
    assert parse_deadline("2026-12-31T18:00+02:00", now) == datetime(2026, 12, 31, 16, 0, tzinfo=UTC)
    assert parse_deadline(" ", now) is None
    with pytest.raises(StatementError, match="2026-12-31 18:00"):
        parse_deadline("next friday", now)
    with pytest.raises(StatementError, match="already past"):
        parse_deadline("2020-01-01", now)
    assert split_place("Leeds, West Yorkshire, UK") == ("Leeds, West Yorkshire", "UK")
    assert split_place("Leeds") == ("Leeds", None)


async def test_site_mirror_create_throttled_updates_and_final(env: tuple[StatementService, Store, FakeClock]) -> None:
    """Create at publish; updates at most every N minutes with the public list; a final one at close."""
    service, store, clock = env
    statement = await published(service)
    rows = await store.outbox.for_entity(statement.entity)
    assert [r.idempotency_key for r in rows] == [f"statement:{statement.id}:create:1"]
    await service.sign(req(statement, 1, name="Public Person"))
    await service.sign(req(statement, 2, name="Private Person", public=False))
    assert await service.flush_site_updates() == 0  # throttled: created less than 10 minutes ago
    due = await service.next_timer_at()
    assert due == START + timedelta(minutes=10)
    clock.advance(minutes=10)
    assert await service.flush_site_updates() == 1
    assert await service.flush_site_updates() == 0  # nothing new since
    rows = await store.outbox.for_entity(statement.entity)
    update = rows[-1]
    assert update.idempotency_key == f"statement:{statement.id}:update:1"
    names = [s["name"] for s in update.payload["metadata"]["signatories"]]
    assert names == ["Public Person"]
    await service.sign(req(statement, 3, name="Late Signer"))
    closed = await service.close(statement.id, actor_id=ORGANIZER)
    assert closed is not None
    rows = await store.outbox.for_entity(statement.entity)
    assert rows[-1].idempotency_key == f"statement:{statement.id}:update:2"
    assert [s["name"] for s in rows[-1].payload["metadata"]["signatories"]] == ["Public Person", "Late Signer"]


async def test_export_csv_json(env: tuple[StatementService, Store, FakeClock]) -> None:
    """CSV: BOM option, formula prefixes neutralised, quoting; JSON: plain data; hidden/private only for organizers."""
    service, store, _clock = env
    statement = await published(service, slug="library")
    await service.sign(req(statement, 1, name='=HYPERLINK("http://x")', role="+1", city="-Leeds", country="@UK"))
    await service.sign(req(statement, 2, name='Quote "Me", please', organization="Line\nbreak Org"))
    await service.sign(req(statement, 3, name="Private", public=False))
    data = await export_statement(store, "library", fmt="csv", guild_id=None, include_discord_ids=True, bom=True)
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0]["name"] == '\'=HYPERLINK("http://x")'
    assert (rows[0]["role"], rows[0]["city"], rows[0]["country"]) == ("'+1", "'-Leeds", "'@UK")
    assert rows[1]["name"] == 'Quote "Me", please' and rows[1]["organization"] == "Line break Org"
    assert rows[2]["public"] == "no" and rows[2]["discord_user_id"] == "3"
    assert list(rows[0]) == ["name", "role", "organization", "city", "country", "kind", "public", "signed_at",
                             "discord_user_id", "hidden", "flags"]  # fmt: skip
    public = await export_statement(store, "library", fmt="json", guild_id=GUILD, include_discord_ids=False, bom=False)
    document = json.loads(public)
    assert [s["name"] for s in document["signatures"]] == ['=HYPERLINK("http://x")', 'Quote "Me", please']
    assert "discord_user_id" not in document["signatures"][0]
    with pytest.raises(LookupError, match="no statement"):
        await export_statement(store, "nope", fmt="csv", guild_id=None, include_discord_ids=True, bom=False)
    assert neutralise_formula("\tx") == "'\tx" and neutralise_formula("Ann") == "Ann"


async def test_export_csv_neutralises_formulas_after_separators(
    env: tuple[StatementService, Store, FakeClock],
) -> None:
    """A formula after ; , or tab inside a cell (a cell of its own in many locales) gets the apostrophe too."""
    service, store, _clock = env
    statement = await published(service, slug="library")
    await service.sign(req(statement, 1, name="Bob;=1+2", role="Chair, +44", city="Leeds; @SUM(A1)", country="-UK"))
    data = await export_statement(store, "library", fmt="csv", guild_id=None, include_discord_ids=False, bom=False)
    row = next(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    assert (row["name"], row["role"], row["city"], row["country"]) == (
        "Bob;'=1+2", "Chair, '+44", "Leeds; '@SUM(A1)", "'-UK",
    )  # fmt: skip
    # Opened in a ";" locale, no piece of any cell starts with a formula character.
    for line in data.decode("utf-8").splitlines():
        for piece in line.replace('"', "").replace(",", ";").split(";"):
            assert not piece.strip().startswith(("=", "+", "-", "@")), piece
    assert neutralise_formula("a\t=b") == "a\t'=b" and neutralise_formula("Ann; Bob") == "Ann; Bob"


async def test_export_ambiguous_slug(env: tuple[StatementService, Store, FakeClock]) -> None:
    """The same slug in two servers needs --guild."""
    service, store, _clock = env
    await published(service, slug="same")
    draft = await service.create_draft(
        guild_id=999, organizer_id=1, title="Other", body="b", channel_id=5, closes_at=None, slug="same"
    )
    await service.publish(draft.id, channel_id=5, message_id=7, actor_id=1)
    with pytest.raises(LookupError, match="--guild"):
        await export_statement(store, "same", fmt="json", guild_id=None, include_discord_ids=True, bom=False)
    data = await export_statement(store, "same", fmt="json", guild_id=999, include_discord_ids=True, bom=False)
    assert json.loads(data)["statement"]["title"] == "Other"


async def test_reopen_drops_past_deadline(env: tuple[StatementService, Store, FakeClock]) -> None:
    """Reopening after the deadline passed removes the deadline unless a new one is given."""
    service, _store, clock = env
    statement = await published(service, closes_at=START + timedelta(hours=1))
    clock.advance(hours=2)
    await service.close_due()
    reopened, dropped = await service.reopen(statement.id, actor_id=ORGANIZER, closes_at=None)
    assert dropped and reopened.closes_at is None and reopened.status == "open"
    assert (await service.sign(req(statement, 1))).status == "created"
    with pytest.raises(StatementError, match="already open"):
        await service.reopen(statement.id, actor_id=ORGANIZER, closes_at=None)


async def test_debouncer_spaces_flushes() -> None:
    """However fast marks come, flushes are at least `interval` apart and the last mark is flushed."""
    loop = asyncio.get_running_loop()
    times: list[float] = []
    state = {"value": 0, "shown": -1}

    async def flush(_key: object) -> None:
        times.append(loop.time())
        state["shown"] = state["value"]

    debouncer = Debouncer(flush, interval=0.05)
    for i in range(30):
        state["value"] = i
        debouncer.mark(1)
        await asyncio.sleep(0.005)
    await debouncer.wait_idle()
    assert state["shown"] == 29
    assert all(b - a >= 0.05 for a, b in itertools.pairwise(times))
    assert len(times) < 10


async def test_debouncer_retries_failed_flushes_with_backoff() -> None:
    """A flush that raises is retried until it succeeds, with doubling spacing capped at max_backoff."""
    state = {"value": 0, "shown": -1, "calls": 0}

    async def flush(_key: object) -> None:
        state["calls"] += 1
        if state["calls"] <= 2:
            raise RuntimeError("Discord said 503")
        state["shown"] = state["value"]

    debouncer = Debouncer(flush, interval=0.01, max_backoff=0.03)
    assert [debouncer.spacing(n) for n in range(4)] == [0.01, 0.02, 0.03, 0.03]
    state["value"] = 7
    debouncer.mark(1)
    await debouncer.wait_idle()
    assert (state["calls"], state["shown"]) == (3, 7)
    assert not debouncer.is_marked(1) and debouncer.spacing(0) == 0.01


async def test_hidden_account_stays_hidden_after_resign(env: tuple[StatementService, Store, FakeClock]) -> None:
    """Withdrawing and signing again does not undo an organizer's hide; unhiding does, for good."""
    service, _store, _clock = env
    statement = await published(service)
    first = await service.sign(req(statement, 1, name="Spam Spammer"))
    assert first.status == "created"
    hidden = (await service.repo.live_signatures(statement.id))[0]
    await service.hide(statement.id, hidden.id, actor_id=ORGANIZER)
    await service.withdraw(statement.id, 1)
    assert (await service.sign(req(statement, 1, name="Spam Again"))).status == "created"
    again = await service.repo.live_signature(statement.id, 1)
    assert again is not None and again.id != hidden.id and again.hidden_by == ORGANIZER
    assert await service.public_signers(statement.id) == []
    assert (await service.repo.counts(statement.id)).hidden == 1

    await service.hide(statement.id, again.id, actor_id=ORGANIZER, hidden=False)
    await service.withdraw(statement.id, 1)
    await service.sign(req(statement, 1, name="Reformed Signer"))
    assert [s.name for s in await service.public_signers(statement.id)] == ["Reformed Signer"]


async def test_withdraw_refused_after_deadline(env: tuple[StatementService, Store, FakeClock]) -> None:
    """Once the deadline passed the list is final, even before the timer has closed the statement."""
    service, _store, clock = env
    statement = await published(service, closes_at=START + timedelta(hours=1))
    await service.sign(req(statement, 1))
    clock.advance(hours=2)
    with pytest.raises(StatementError, match="closed"):
        await service.withdraw(statement.id, 1)
    assert (await service.repo.get(statement.id)).status == "open"  # type: ignore[union-attr]
    assert (await service.repo.counts(statement.id)).signed == 1


async def test_titles_escaped_in_refusals(env: tuple[StatementService, Store, FakeClock]) -> None:
    """A title's markdown and mentions are shown literally in refusals, inside the bold."""
    service, _store, _clock = env
    draft = await service.create_draft(
        guild_id=GUILD, organizer_id=ORGANIZER, title="Save *the* library_ @everyone", body="b", channel_id=5,
        closes_at=None, allow_organizations=False,
    )  # fmt: skip
    statement = await service.publish(draft.id, channel_id=5, message_id=6, actor_id=ORGANIZER)
    escaped = "**Save \\*the\\* library\\_ @\u200beveryone**"
    with pytest.raises(StatementError) as refused:
        await service.sign(req(statement, 1, kind="organization", organization="Acme"))
    assert escaped in str(refused.value)
    with pytest.raises(StatementError) as refused:
        await service.hide(statement.id, 999, actor_id=ORGANIZER)
    assert escaped in str(refused.value)
    with pytest.raises(StatementError) as refused:
        await service.reopen(statement.id, actor_id=ORGANIZER, closes_at=None)
    assert escaped in str(refused.value)
    await service.close(statement.id, actor_id=ORGANIZER)
    for attempt in (service.sign(req(statement, 1)), service.withdraw(statement.id, 1)):
        with pytest.raises(StatementError) as refused:
            await attempt
        assert escaped in str(refused.value)


async def test_message_changes_cleared_only_if_unchanged(env: tuple[StatementService, Store, FakeClock]) -> None:
    """A change committed while the message was being edited keeps the statement dirty (for a restart)."""
    service, _store, _clock = env
    statement = await published(service)
    repo = service.repo
    await service.sign(req(statement, 1))
    rendered = await repo.get(statement.id)  # what the refresher reads and shows
    assert rendered is not None and rendered.message_changes > 0
    await service.sign(req(statement, 2))  # committed during the edit
    assert not await repo.clear_message_changes(statement.id, rendered.message_changes)
    assert [s.id for s in await repo.with_message_changes()] == [statement.id]
    latest = await repo.get(statement.id)
    assert latest is not None and await repo.clear_message_changes(statement.id, latest.message_changes)
    assert await repo.with_message_changes() == []
    await service.withdraw(statement.id, 1)
    assert [s.id for s in await repo.with_message_changes()] == [statement.id]


async def test_sign_click_read_does_not_queue_behind_the_reading_thread(
    env: tuple[StatementService, Store, FakeClock],
) -> None:
    """The read behind a click on Sign has a connection of its own: a slow read holding the database's
    reading thread (an export, say) does not hold clicks up, and the click sees what was committed."""
    service, store, _clock = env
    sqlite_only(store)
    statement = await published(service)
    await service.sign(req(statement, 1, name="Ann Example"))
    assert store.db.reader is not None
    release = threading.Event()
    slow_read = asyncio.ensure_future(store.db.reader._execute(release.wait, 30))
    try:
        found, current = await asyncio.wait_for(
            service.prepare_sign(statement.id, 1, "individual", guild_id=GUILD), timeout=10
        )
        assert found.id == statement.id and current is not None and current.name == "Ann Example"
        assert not slow_read.done()
    finally:
        release.set()
        await slow_read


async def test_sign_on_commits_without_waiting_for_the_writing_thread(
    env: tuple[StatementService, Store, FakeClock], tmp_path: Path
) -> None:
    """With nothing queued, a sign-on is committed at once on a connection of its own: a slow job on
    the database's writing thread (not holding the file) does not hold it up, and it is on disk."""
    service, store, _clock = env
    sqlite_only(store)
    statement = await published(service)
    release = threading.Event()
    slow_job = asyncio.ensure_future(store.db.conn._execute(release.wait, 30))
    try:
        outcome = await asyncio.wait_for(service.sign(req(statement, 1, name="Ann Example")), timeout=10)
        assert outcome.status == "created" and not slow_job.done()
        other = sqlite3.connect(store.db.path)
        try:
            assert other.execute("SELECT name FROM signatures").fetchall() == [("Ann Example",)]
        finally:
            other.close()
    finally:
        release.set()
        await slow_job


async def test_sign_on_waits_for_a_locked_file_without_blocking_the_loop(
    env: tuple[StatementService, Store, FakeClock], tmp_path: Path
) -> None:
    """While another connection writes, a sign-on joins the group commit (which waits) instead of
    failing or stalling the event loop; it is recorded once the file is free."""
    service, _store, _clock = env
    sqlite_only(_store)
    statement = await published(service)
    other = sqlite3.connect(_store.db.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        signing = asyncio.gather(*(service.sign(req(statement, user, name=f"Signer {user}")) for user in (1, 2, 3)))
        for _ in range(20):
            await asyncio.sleep(0.01)  # the loop keeps turning while the sign-ons wait
        assert not signing.done()
    finally:
        other.execute("COMMIT")
        other.close()
    assert [o.status for o in await asyncio.wait_for(signing, timeout=10)] == ["created"] * 3
    assert sorted(s.name for s in await service.repo.live_signatures(statement.id)) == [
        "Signer 1",
        "Signer 2",
        "Signer 3",
    ]


async def test_sign_ons_of_one_turn_share_one_transaction(env: tuple[StatementService, Store, FakeClock]) -> None:
    """Sign-ons that arrive together (a burst's gateway frames come several at a time) are committed
    in one transaction, each answered with its own outcome; the next ones in a transaction of their own."""
    service, _store, _clock = env
    sqlite_only(_store)
    statement = await published(service)
    first = await asyncio.gather(*(service.sign(req(statement, user, name=f"Signer {user}")) for user in range(1, 6)))
    assert [o.status for o in first] == ["created"] * 5
    assert [o.recorded.name for o in first if o.recorded] == [f"Signer {user}" for user in range(1, 6)]
    assert (service.writer.direct_batches, service.writer.direct_writes) == (1, 5)
    again = await service.sign(req(statement, 3, name="Signer three"))
    assert again.status == "updated"
    assert (service.writer.direct_batches, service.writer.direct_writes) == (2, 6)


def sqlite_only(store: Store) -> None:
    """The sign-on path on the event loop's own connection is SQLite's (PostgreSQL goes through its pool)."""
    if store.db.dialect != SQLITE:
        pytest.skip("SQLite's loop-thread connection; PostgreSQL has none")
