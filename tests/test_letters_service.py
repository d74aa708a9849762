"""The letters service on a real SQLite file: states, consent, concurrency, outbox, screening, privacy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from bot.clock import to_db
from bot.config import Config, LetterSettings
from bot.letter_notices import notice_text
from bot.letter_states import WRITER_CHANGED_AFTER_EDIT, Conflict, LetterError, public_url, state_label
from bot.letters import LetterService, Recorder
from bot.site.base import RemoteRef
from bot.site.compose import compose_letter
from bot.store import Store
from bot.store.contributions import Contribution, NewContribution
from bot.store.notices import Notice
from cogs.readers_views import ReadersViews, withdrawn_text
from tests.helpers import FakeClock

GUILD = 1
TEXT = "A thoughtful letter about the cycle lanes, long enough to pass the minimum length for letters here. "


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2025, 3, 10, 12, 0, tzinfo=UTC))


@pytest.fixture
async def store(store_location: str, clock: FakeClock) -> AsyncIterator[Store]:
    opened = await Store.open(store_location, clock)
    yield opened
    await opened.close()


@pytest.fixture
def service(store: Store, clock: FakeClock) -> LetterService:
    settings = LetterSettings(blocked_words=("scoundrel",), submissions_per_day=2, retention_days=30)
    return LetterService(store, clock, settings, disclaimer="Views are the writers' own.")


async def article(store: Store, thread_id: int = 500, title: str = "Cycle lanes") -> int:
    now = to_db(datetime.now(UTC))
    feed_id = await store.db.write(
        "INSERT OR IGNORE INTO feeds (guild_id, url, channel_id, channel_kind, created_at)"
        " VALUES (?, ?, 9, 'forum', ?)",
        (GUILD, "https://paper.example/feed", now),
    ) or await store.db.scalar("SELECT id FROM feeds")
    return await store.db.write(
        "INSERT INTO articles (feed_id, guid, title, link, content_hash, status, thread_id, first_seen_at)"
        " VALUES (?, ?, ?, ?, 'h', 'posted', ?, ?)",
        (feed_id, f"g{thread_id}", title, f"https://paper.example/{thread_id}", thread_id, now),
    )


def reply(message_id: int, author_id: int = 7, content: str = TEXT, **extra: object) -> NewContribution:
    return NewContribution(
        guild_id=GUILD,
        message_id=message_id,
        channel_id=500,
        author_id=author_id,
        author_name=f"member{author_id}",
        content=content,
        created_at=datetime(2025, 3, 10, 11, 0, tzinfo=UTC),
        **extra,  # type: ignore[arg-type]
    )


async def submitted(service: LetterService, message_id: int, author_id: int = 7, **extra: object) -> Contribution:
    letter = await service.ensure_recorded(reply(message_id, author_id, **extra))  # type: ignore[arg-type]
    return await service.submit(
        letter.id, user_id=author_id, byline="Rita R.", location="Leeds", consent=True, author_created_at=None
    )


async def test_group_commit_records_everything_once(store: Store) -> None:
    """The recorder writes queued replies in batches; duplicates (gateway replays) are ignored."""
    recorder = Recorder(store.contributions, max_rows=100)
    for i in range(1, 1001):
        recorder.add(reply(i))
    recorder.add(reply(5))
    await recorder.stop()
    assert await store.db.scalar("SELECT count(*) FROM contributions") == 1000
    assert recorder.written == 1001 and recorder.failed == 0


async def test_submit_requires_consent_and_own_message(service: LetterService) -> None:
    """Nothing is submitted without explicit consent, or by someone other than the writer."""
    letter = await service.ensure_recorded(reply(1))
    with pytest.raises(LetterError, match="explicit agreement"):
        await service.submit(letter.id, user_id=7, byline="R", location=None, consent=False, author_created_at=None)
    with pytest.raises(LetterError, match="your own"):
        await service.submit(letter.id, user_id=8, byline="R", location=None, consent=True, author_created_at=None)
    done = await service.submit(
        letter.id, user_id=7, byline=" Rita\n R. ", location="", consent=True, author_created_at=None
    )
    assert (done.state, done.consent, done.byline, done.location) == ("submitted", "granted", "Rita R.", None)


async def test_approve_enqueues_in_the_same_transaction(service: LetterService, store: Store) -> None:
    """Approval and its outbox row commit together; the composed letter links its article."""
    article_id = await article(store)
    letter = await submitted(service, 1, article_id=article_id)
    approved = await service.approve(letter.id, 99, letter.version)
    assert (approved.state, approved.reviewer_id) == ("approved", 99)
    [row] = await store.outbox.for_entity(f"letter:{letter.id}")
    assert row.kind == "letter.create" and "Cycle lanes" in row.payload["html"]
    assert "Rita R., Leeds" in row.payload["html"] and "Views are the writers' own." in row.payload["html"]


async def test_concurrent_approvals_one_wins(service: LetterService, store: Store) -> None:
    """Of two simultaneous approvals exactly one succeeds; the other learns who approved."""
    letter = await submitted(service, 1)
    results = await asyncio.gather(
        service.approve(letter.id, 98, letter.version),
        service.approve(letter.id, 99, letter.version),
        return_exceptions=True,
    )
    wins = [r for r in results if isinstance(r, Contribution)]
    losses = [r for r in results if isinstance(r, Conflict)]
    assert len(wins) == 1 and len(losses) == 1
    assert f"<@{wins[0].reviewer_id}> already marked" in str(losses[0])
    assert len(await store.outbox.for_entity(f"letter:{letter.id}")) == 1


async def test_stale_edit_is_refused(service: LetterService) -> None:
    """An edit made against an older version (someone acted meanwhile) is a conflict."""
    letter = await submitted(service, 1)
    await service.edit(letter.id, 99, letter.version, "Edited once. " + TEXT)
    with pytest.raises(Conflict):
        await service.edit(letter.id, 98, letter.version, "Edited twice")
    current = await service.repo.get(letter.id)
    assert current is not None and current.original_content == TEXT and current.content.startswith("Edited once")


async def test_reject_then_no_resubmission(service: LetterService) -> None:
    letter = await submitted(service, 1)
    rejected = await service.reject(letter.id, 99, letter.version, "  Off topic ")
    assert (rejected.state, rejected.review_note) == ("rejected", "Off topic")
    with pytest.raises(LetterError, match="can't be submitted again"):
        await service.submit(letter.id, user_id=7, byline="R", location=None, consent=True, author_created_at=None)


async def deliver(store: Store) -> list[str]:
    """What the outbox worker does when the site accepts everything due; returns the kinds sent."""
    rows = await store.outbox.claim_due()
    await store.outbox.mark_delivered(
        [(row, RemoteRef(f"r{row.id}", f"https://paper.example/l/{row.id}")) for row in rows]
    )
    return [row.kind for row in rows]


async def test_publish_then_withdraw_retracts(service: LetterService, store: Store) -> None:
    """Publication is recorded once; a withdrawal of a live letter enqueues a retract after the create."""
    letter = await submitted(service, 1)
    await service.approve(letter.id, 99, letter.version)
    assert await deliver(store) == ["letter.create"]
    published, first = await service.mark_published(letter.id, "r1", "https://paper.example/l/1")
    assert first and published.state == "published" and published.remote_url == "https://paper.example/l/1"
    _, again = await service.mark_published(letter.id, "r1", "https://paper.example/l/1")
    assert not again
    with pytest.raises(LetterError, match="your own"):
        await service.withdraw(letter.id, 8, by_editor=False)
    withdrawn = await service.withdraw(letter.id, 7, by_editor=False)
    assert withdrawn.state == "withdrawn"
    kinds = [row.kind for row in await store.outbox.for_entity(f"letter:{letter.id}")]
    assert kinds == ["letter.create", "letter.retract"]


async def test_nomination_and_decline(service: LetterService) -> None:
    """A declined nomination can't be repeated; only the writer answers."""
    letter = await service.ensure_recorded(reply(1))
    nominated = await service.nominate(letter, editor_id=99)
    assert nominated.state == "nominated"
    with pytest.raises(LetterError, match="already been asked"):
        await service.nominate(nominated, editor_id=98)
    with pytest.raises(LetterError, match="Only the writer"):
        await service.decline(letter.id, user_id=99)
    declined = await service.decline(letter.id, user_id=7)
    assert (declined.state, declined.consent) == ("declined", "declined")
    with pytest.raises(LetterError, match="declined"):
        await service.nominate(declined, editor_id=99)


async def test_screening_flags(service: LetterService, clock: FakeClock) -> None:
    """Short, long, linky, listed words, repeated text and new accounts are flagged, never refused."""
    assert any(f.startswith("short") for f in service.screen_text("Too short"))
    assert any(f.startswith("long") for f in service.screen_text("word " * 900))
    assert "many links: 4" in service.screen_text(TEXT + " http://a.x http://b.x http://c.x http://d.x")
    assert any("scoundrel" in f for f in service.screen_text(TEXT + " What a SCOUNDREL."))
    assert not service.screen_text(TEXT)
    first = await submitted(service, 1)
    second = await service.ensure_recorded(reply(2, author_id=8))
    done = await service.submit(
        second.id, user_id=8, byline="B", location=None, consent=True, author_created_at=clock.now() - timedelta(days=2)
    )
    assert f"repeated text: same as letter #{first.id}" in done.flags
    assert "new account: created 2 day(s) ago" in done.flags
    assert done.state == "submitted"


async def test_rate_limit_per_day(service: LetterService, clock: FakeClock) -> None:
    """The third submission within 24 hours is refused with a clear message; a day later it is fine."""
    await submitted(service, 1)
    await submitted(service, 2, content="Another. " + TEXT)
    with pytest.raises(LetterError, match="accepts 2 a day"):
        await submitted(service, 3, content="Third. " + TEXT)
    clock.advance(hours=25)
    assert (await submitted(service, 3, content="Third. " + TEXT)).state == "submitted"


async def test_edits_and_deletes(service: LetterService) -> None:
    """Edits follow until approval; afterwards they are only flagged; deletions of live letters are reported."""
    recorded = await service.ensure_recorded(reply(1))
    assert await service.on_message_edit(1, "changed") is None
    assert (await service.repo.get(recorded.id)).content == "changed"  # type: ignore[union-attr]
    letter = await submitted(service, 2)
    await service.approve(letter.id, 99, letter.version)
    flagged = await service.on_message_edit(2, "rewritten after approval")
    assert flagged is not None and flagged.content == TEXT and any("after approval" in f for f in flagged.flags)
    notable = await service.on_message_delete([1, 2])
    assert [c.id for c in notable] == [letter.id]
    assert (await service.repo.get(recorded.id)).deleted_at is not None  # type: ignore[union-attr]


async def test_forget_and_purge(service: LetterService, clock: FakeClock, store: Store) -> None:
    """Forget deletes all but live letters; the purge expires only old never-submitted replies."""
    await service.ensure_recorded(reply(1))
    await submitted(service, 2)
    live = await submitted(service, 3, content="Live. " + TEXT)
    await service.approve(live.id, 99, live.version)
    deleted = await service.forget(GUILD, 7)
    assert sorted(c.message_id or 0 for c in deleted) == [1, 2]
    assert [c.id for c in await store.contributions.by_author(GUILD, 7)] == [live.id]

    await service.ensure_recorded(reply(10, author_id=8))
    await submitted(service, 11, author_id=8, content="Kept. " + TEXT)
    clock.advance(days=31)
    assert await service.purge_expired() == 1
    assert [c.message_id for c in await store.contributions.by_author(GUILD, 8)] == [11]


async def test_digest_is_a_draft_of_the_period(service: LetterService, store: Store, clock: FakeClock) -> None:
    """The digest gathers letters approved in the period, under their bylines, as a draft."""
    one = await submitted(service, 1)
    await service.approve(one.id, 99, one.version)
    clock.advance(days=3)
    two = await submitted(service, 2, author_id=8, content="Second. " + TEXT)
    await service.approve(two.id, 99, two.version)
    draft = await service.digest(GUILD, clock.now() - timedelta(days=1), clock.now() + timedelta(seconds=1), 99)
    assert [c.id for c in draft.letters] == [two.id]
    [row] = await store.outbox.for_entity(f"digest:{draft.key}")
    assert row.payload["status"] == "draft" and "Second." in row.payload["html"] and "Cycle" not in row.payload["title"]
    with pytest.raises(LetterError, match="No letters"):
        await service.digest(GUILD, clock.now() + timedelta(days=1), clock.now() + timedelta(days=2), 99)


async def test_reply_to_published_letter_is_linked(service: LetterService) -> None:
    """A letter answering a published letter carries its title and URL for the site."""
    first = await submitted(service, 1)
    await service.approve(first.id, 99, first.version)
    await service.mark_published(first.id, "r1", "https://paper.example/l/1")
    answer = await submitted(service, 2, author_id=8, content="In reply. " + TEXT, reply_to_message_id=1)
    letter = await service.site_letter(answer)
    assert letter.in_reply_to_url == "https://paper.example/l/1" and letter.in_reply_to_title == "Letter from Rita R."


# -- regressions --------------------------------------------------------------------------------------


async def test_another_servers_letter_is_out_of_reach(service: LetterService, store: Store) -> None:
    """Editors of another server can't approve, edit, reject or retract a letter: it is as if it didn't exist."""
    letter = await submitted(service, 1)
    other = GUILD + 1
    attempts = [
        service.approve(letter.id, 99, letter.version, guild_id=other),
        service.edit(letter.id, 99, letter.version, "Vandalised. " + TEXT, guild_id=other),
        service.reject(letter.id, 99, letter.version, "no", guild_id=other),
        service.letter_in(letter.id, other),
    ]
    for attempt in attempts:
        with pytest.raises(LetterError, match=f"Letter #{letter.id} no longer exists"):
            await attempt
    approved = await service.approve(letter.id, 99, letter.version, guild_id=GUILD)
    with pytest.raises(LetterError, match="no longer exists"):
        await service.withdraw(letter.id, 666, by_editor=True, guild_id=other)
    current = await store.contributions.get(letter.id)
    assert current is not None and (current.state, current.content) == ("approved", TEXT)
    assert [row.kind for row in await store.outbox.for_entity(approved.entity)] == ["letter.create"]


async def test_withdrawal_before_delivery_cancels_the_publication(service: LetterService, store: Store) -> None:
    """A letter withdrawn (or retracted) before its create was sent never reaches the site, not even on retry."""
    letter = await submitted(service, 1)
    await service.approve(letter.id, 99, letter.version)
    await service.withdraw(letter.id, 7, by_editor=False)
    assert await store.outbox.for_entity(letter.entity) == []
    assert await deliver(store) == []

    never_sent = await submitted(service, 2, content="Second. " + TEXT)
    await service.approve(never_sent.id, 99, never_sent.version)
    [row] = await store.outbox.claim_due()
    await store.outbox.release([row.id])  # claimed, then handed back unsent (the worker stopped)
    retracted, retracting = await service.withdraw_letter(never_sent.id, 99, by_editor=True, guild_id=GUILD)
    assert retracted.state == "retracted" and not retracting
    assert not await store.outbox.retry(row.id)  # `outbox retry` has nothing left to publish
    assert await store.outbox.for_entity(never_sent.entity) == []


async def test_withdrawal_after_a_create_went_dead_still_retracts(service: LetterService, store: Store) -> None:
    """A create whose last attempt timed out (the site may have made the post) and then went dead is not
    cancelled by a withdrawal: the retract is queued behind it. One the site refused (known outcome) is cancelled."""
    letter = await submitted(service, 1)
    await service.approve(letter.id, 99, letter.version)
    [row] = await store.outbox.claim_due()
    await store.outbox.mark_dead(row.id, "gave up after 8 attempts; last error: timed out", outcome_unknown=True)
    parked = await store.outbox.get(row.id)
    assert parked is not None and parked.outcome_unknown
    current, retracting = await service.withdraw_letter(letter.id, 7, by_editor=False)
    assert current.state == "withdrawn" and retracting
    assert [(r.kind, r.state) for r in await store.outbox.for_entity(letter.entity)] == [
        ("letter.create", "dead"),
        ("letter.retract", "pending"),
    ]

    refused = await submitted(service, 2, content="Second. " + TEXT)
    await service.approve(refused.id, 99, refused.version)
    [row] = await store.outbox.claim_due()
    await store.outbox.mark_dead(row.id, "site refused")
    assert not (await service.withdraw_letter(refused.id, 99, by_editor=True, guild_id=GUILD))[1]
    assert await store.outbox.for_entity(refused.entity) == []


def test_withdrawal_message_says_what_happens_on_the_site() -> None:
    """The writer is told the site copy goes only when a retract was queued."""
    assert withdrawn_text(3, live=True, retracting=True) == (
        "Letter #3 is withdrawn. Its copy on the site will be taken down."
    )
    cancelled = withdrawn_text(3, live=True, retracting=False)
    assert "taken down" not in cancelled and "will not be published" in cancelled
    assert withdrawn_text(3, live=False, retracting=False) == "Letter #3 is withdrawn."


async def test_withdrawal_while_the_create_may_be_on_the_site_retracts_after_it(
    service: LetterService, store: Store
) -> None:
    """A create being sent, or whose outcome is unknown, stays, and the retract is queued behind it."""
    letter = await submitted(service, 1)
    await service.approve(letter.id, 99, letter.version)
    [sending] = await store.outbox.claim_due()
    await service.withdraw(letter.id, 7, by_editor=False)
    assert [(r.kind, r.state) for r in await store.outbox.for_entity(letter.entity)] == [
        ("letter.create", "inflight"),
        ("letter.retract", "pending"),
    ]
    await store.outbox.mark_delivered([(sending, RemoteRef("r1", "https://paper.example/l/1"))])
    assert await deliver(store) == ["letter.retract"]

    unknown = await submitted(service, 2, content="Second. " + TEXT)
    await service.approve(unknown.id, 99, unknown.version)
    [row] = await store.outbox.claim_due()
    await store.outbox.mark_retry(row.id, "timed out", store.clock.now(), outcome_unknown=True)
    await service.withdraw(unknown.id, 7, by_editor=False)
    assert [r.kind for r in await store.outbox.for_entity(unknown.entity)] == ["letter.create", "letter.retract"]


async def test_approve_is_tied_to_the_version_the_editor_read(service: LetterService, store: Store) -> None:
    """A writer's edit made while the editor reads makes their Approve a conflict, not an unseen approval."""
    letter = await submitted(service, 1)
    await service.on_message_edit(1, "Swapped-in text the editor never read. " + TEXT)
    with pytest.raises(Conflict, match="changed while you were looking"):
        await service.approve(letter.id, 99, letter.version)
    current = await store.contributions.get(letter.id)
    assert current is not None and current.state == "submitted"
    assert await store.outbox.for_entity(letter.entity) == []
    approved = await service.approve(letter.id, 99, current.version)
    assert approved.state == "approved" and approved.content.startswith("Swapped-in")


async def test_writer_edit_does_not_overwrite_the_editors_edit(service: LetterService, store: Store) -> None:
    """After an editor's edit, a writer's edit is kept beside it and flagged; a no-op update changes nothing."""
    letter = await submitted(service, 1)
    edited = await service.edit(letter.id, 99, letter.version, "Editor's tidied text. " + TEXT)
    assert await service.on_message_edit(1, TEXT) is None  # e.g. Discord adding a link preview
    unchanged = await store.contributions.get(letter.id)
    assert unchanged is not None and unchanged.version == edited.version and not unchanged.flags

    flagged = await service.on_message_edit(1, TEXT + " (typo fixed)")
    assert flagged is not None
    assert flagged.content == edited.content and flagged.original_content == TEXT + " (typo fixed)"
    assert WRITER_CHANGED_AFTER_EDIT in flagged.flags and flagged.version > edited.version
    with pytest.raises(Conflict):
        await service.approve(letter.id, 99, edited.version)


async def test_edit_while_withdrawn_is_what_a_resubmission_sends(service: LetterService) -> None:
    """Edits made while withdrawn are kept, and resubmitting from the message takes its current text."""
    letter = await submitted(service, 1)
    await service.withdraw(letter.id, 7, by_editor=False)
    await service.on_message_edit(1, "New text the writer now stands by. " + TEXT)
    again = await service.submit(letter.id, user_id=7, byline="R", location=None, consent=True, author_created_at=None)
    assert again.content.startswith("New text")

    other = await submitted(service, 2, content="Old. " + TEXT)
    await service.withdraw(other.id, 7, by_editor=False)
    # The edit never reached the bot (it was offline); the message as Discord shows it now:
    current = await service.ensure_recorded(reply(2, content="Rewritten. " + TEXT))
    assert current.content == "Rewritten. " + TEXT and current.state == "withdrawn"


async def test_refused_letter_submit_stores_nothing(service: LetterService, store: Store) -> None:
    """`/letter submit` without a byline or consent leaves no row behind; a good one is submitted at once."""

    async def write(byline: str, consent: bool) -> Contribution:
        return await service.write_letter(
            guild_id=GUILD,
            channel_id=500,
            author_id=7,
            author_name="member7",
            article_id=None,
            text=TEXT,
            byline=byline,
            location=" Leeds ",
            consent=consent,
            author_created_at=None,
        )

    with pytest.raises(LetterError, match="name to print"):
        await write("   ", True)
    with pytest.raises(LetterError, match="explicit agreement"):
        await write("Rita", False)
    assert await store.db.scalar("SELECT count(*) FROM contributions") == 0
    letter = await write("Rita", True)
    assert (letter.state, letter.byline, letter.location, letter.message_id) == ("submitted", "Rita", "Leeds", None)
    assert await store.db.scalar("SELECT count(*) FROM contributions") == 1


async def test_title_markup_is_inert_on_the_site(service: LetterService) -> None:
    """A byline with HTML can't become markup in the WordPress title; the title stays plain text."""
    letter = await service.ensure_recorded(reply(1))
    letter = await service.submit(
        letter.id,
        user_id=7,
        byline="<img src=x onerror=alert(1)> & co",
        location=None,
        consent=True,
        author_created_at=None,
    )
    item = compose_letter(await service.site_letter(letter), disclaimer=None)
    assert "<" not in item.title and ">" not in item.title
    # plain text, no entities: the writer's name and the letter's first words (letters.title_template)
    assert item.title == "\u2039img src=x onerror=alert(1)\u203a & co: A thoughtful letter about the cycle lanes, long…"
    assert "&lt;img src=x onerror=alert(1)&gt; &amp; co" in item.html


async def test_edits_and_deletes_wait_for_the_batch_recording_their_message(
    store: Store, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An edit or delete arriving while its message's batch is being written is applied after it, not lost."""
    letters = SimpleNamespace(
        service=LetterService(store, clock, Config().letters, disclaimer=None),
        queue=None,
        recorder=Recorder(store.contributions),
    )
    cog = ReadersViews(SimpleNamespace(store=store, clock=clock, config=Config(), letters=letters))  # type: ignore[arg-type]
    writing, release, written = asyncio.Event(), asyncio.Event(), asyncio.Event()
    record_rows = store.contributions.record_rows

    async def slow_record_rows(rows: list[tuple[object, ...]]) -> None:
        writing.set()
        await release.wait()
        await record_rows(rows)
        written.set()

    monkeypatch.setattr(store.contributions, "record_rows", slow_record_rows)
    seen: list[bool] = []
    on_edit, on_delete = cog.service.on_message_edit, cog.service.on_message_delete

    async def spy_edit(message_id: int, content: str) -> Contribution | None:
        seen.append(written.is_set())
        return await on_edit(message_id, content)

    async def spy_delete(message_ids: list[int]) -> list[Contribution]:
        seen.append(written.is_set())
        return await on_delete(message_ids)

    monkeypatch.setattr(cog.service, "on_message_edit", spy_edit)
    monkeypatch.setattr(cog.service, "on_message_delete", spy_delete)

    cog.recorder.add(reply(5, content="original text"))
    batch = asyncio.create_task(cog.recorder.flush())
    await writing.wait()  # the batch has left the queue (`pending` is 0) and is being written
    edit = SimpleNamespace(guild_id=GUILD, message_id=5, data={"content": "edited text"})
    handlers = [
        asyncio.create_task(cog.on_raw_message_edit(edit)),  # type: ignore[arg-type]
        asyncio.create_task(cog._deleted([5])),
    ]
    await asyncio.sleep(0)  # let both handlers run as far as they can before the write finishes
    release.set()
    await asyncio.gather(batch, *handlers)
    assert seen == [True, True]
    row = await store.contributions.by_message(5)
    assert row is not None and row.content == "edited text" and row.deleted_at is not None


async def test_site_answers_queue_each_notice_once(service: LetterService, store: Store) -> None:
    """Pending first (sent for review), a redelivery changes nothing, publication owes the link once."""
    letter = await submitted(service, 1)
    await service.approve(letter.id, 99, letter.version)
    pending, first = await service.mark_published(letter.id, "r1", "https://paper.example/?p=1", "pending")
    assert first and pending.remote_status == "pending"
    assert state_label(pending) == "sent to the site's editors" and public_url(pending) is None
    await service.mark_published(letter.id, "r1", "https://paper.example/?p=1", "pending")  # after a crash
    assert await store.notices.for_letter(letter.id) == [
        ("sent_for_review", "writer", False),
        ("sent_for_review", "thread", False),
    ]
    public = await service.apply_site_status(letter.id, "publish", "https://paper.example/letters/rita/")
    assert public is not None and public_url(public) == "https://paper.example/letters/rita/"
    assert await service.apply_site_status(letter.id, "publish", "https://paper.example/letters/rita/") is None
    # An editor's later edit answered with "publish" again owes nothing more.
    await service.mark_published(letter.id, "r1", "https://paper.example/letters/rita/", "publish")
    assert [n[:2] for n in await store.notices.for_letter(letter.id)] == [
        ("sent_for_review", "writer"),
        ("sent_for_review", "thread"),
        ("published", "writer"),
        ("published", "thread"),
    ]


async def test_decline_owes_the_nominating_editor_a_notice(service: LetterService, store: Store) -> None:
    letter = await service.ensure_recorded(reply(1))
    await service.nominate(letter, editor_id=99)
    await service.decline(letter.id, user_id=7)
    assert await store.notices.for_letter(letter.id) == [("declined", "editor", False)]


async def test_webhook_writers_are_told_the_bot_cannot_follow(service: LetterService) -> None:
    """A webhook can't be asked about a pending letter: the writer is told to watch the page, without a link."""
    letter = await submitted(service, 1)
    await service.approve(letter.id, 99, letter.version)
    pending, _ = await service.mark_published(letter.id, "r1", "https://x.example/?p=3", "pending")
    notice = Notice(1, pending.id, "sent_for_review", "writer", 0)
    text = notice_text(notice, pending, can_follow=False)
    assert "sent to the site's editors" in text and "watch the letters page" in text and "?p=" not in text
    assert "I'll tell you here" in notice_text(notice, pending, can_follow=True)


def test_title_template_with_an_unknown_placeholder_fails_at_start() -> None:
    """A typo in letters.title_template is one config line naming the field, not a crash at approval."""
    from bot.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"letters\.title_template: unknown placeholder\(s\) writer"):
        parse_config({"letters": {"title_template": "{writer}: {first_words}"}})
    assert parse_config({"letters": {"title_template": "Letter {id} from {byline}"}}).letters.title_template


async def test_reply_to_a_letter_still_with_the_sites_editors_has_no_link(service: LetterService) -> None:
    """Answering a letter whose post is pending: no ?p= link on the site (readers would get a 404)."""
    first = await submitted(service, 1)
    await service.approve(first.id, 99, first.version)
    await service.mark_published(first.id, "r1", "https://paper.example/?p=1", "pending")
    second = await submitted(service, 2, author_id=8, content="Second. " + TEXT, reply_to_message_id=1)
    assert (await service.site_letter(second)).in_reply_to_url is None
    await service.apply_site_status(first.id, "publish", "https://paper.example/letters/1/")
    assert (await service.site_letter(second)).in_reply_to_url == "https://paper.example/letters/1/"
