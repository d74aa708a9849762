"""The letters service on a real SQLite file: states, consent, concurrency, outbox, screening, privacy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.clock import to_db
from bot.config import LetterSettings
from bot.letters import Conflict, LetterError, LetterService, Recorder
from bot.store import Store
from bot.store.contributions import Contribution, NewContribution
from tests.clock import FakeClock

GUILD = 1
TEXT = "A thoughtful letter about the cycle lanes, long enough to pass the minimum length for letters here. "


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2025, 3, 10, 12, 0, tzinfo=UTC))


@pytest.fixture
async def store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "letters.sqlite3", clock)
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
    recorder.start()
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
    approved = await service.approve(letter.id, editor_id=99)
    assert (approved.state, approved.reviewer_id) == ("approved", 99)
    [row] = await store.outbox.for_entity(f"letter:{letter.id}")
    assert row.kind == "letter.create" and "Cycle lanes" in row.payload["html"]
    assert "Rita R., Leeds" in row.payload["html"] and "Views are the writers' own." in row.payload["html"]


async def test_concurrent_approvals_one_wins(service: LetterService, store: Store) -> None:
    """Of two simultaneous approvals exactly one succeeds; the other learns who approved."""
    letter = await submitted(service, 1)
    results = await asyncio.gather(
        service.approve(letter.id, editor_id=98), service.approve(letter.id, editor_id=99), return_exceptions=True
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


async def test_publish_then_withdraw_retracts(service: LetterService, store: Store) -> None:
    """Publication is recorded once; a withdrawal of a live letter enqueues a retract after the create."""
    letter = await submitted(service, 1)
    await service.approve(letter.id, 99)
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
    await service.approve(letter.id, 99)
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
    await service.approve(live.id, 99)
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
    await service.approve(one.id, 99)
    clock.advance(days=3)
    two = await submitted(service, 2, author_id=8, content="Second. " + TEXT)
    await service.approve(two.id, 99)
    draft = await service.digest(GUILD, clock.now() - timedelta(days=1), clock.now() + timedelta(seconds=1), 99)
    assert [c.id for c in draft.letters] == [two.id]
    [row] = await store.outbox.for_entity(f"digest:{draft.key}")
    assert row.payload["status"] == "draft" and "Second." in row.payload["html"] and "Cycle" not in row.payload["title"]
    with pytest.raises(LetterError, match="No letters"):
        await service.digest(GUILD, clock.now() + timedelta(days=1), clock.now() + timedelta(days=2), 99)


async def test_reply_to_published_letter_is_linked(service: LetterService) -> None:
    """A letter answering a published letter carries its title and URL for the site."""
    first = await submitted(service, 1)
    await service.approve(first.id, 99)
    await service.mark_published(first.id, "r1", "https://paper.example/l/1")
    answer = await submitted(service, 2, author_id=8, content="In reply. " + TEXT, reply_to_message_id=1)
    letter = await service.site_letter(answer)
    assert letter.in_reply_to_url == "https://paper.example/l/1" and letter.in_reply_to_title == "Letter from Rita R."
