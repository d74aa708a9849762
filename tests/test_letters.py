"""Readers' views end to end: the real bot against the loopback fake Discord (and a fake site)."""

from __future__ import annotations

import ast
import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import cogs
from bot.clock import to_db
from bot.errors import UNEXPECTED
from bot.review import queue_embed
from bot.store.contributions import ArticleRef, Contribution
from tests.fakediscord import EPHEMERAL, perms
from tests.fakediscord.world import Member
from tests.helpers import (
    LONG_ENOUGH,
    Booted,
    Paper,
    World,
    button_id,
    card_has,
    eventually,
    make_article,
    recorded,
    state_is,
    use_site,
)
from tests.sitefake import FakeSite


@pytest.fixture
async def paper(running: Booted, world: World, site: FakeSite) -> Paper:
    use_site(running, site)
    thread, article_id = await make_article(running, world)
    return Paper(running, world, thread, article_id, site)


# -- recording --------------------------------------------------------------------------------------


async def test_replies_in_article_threads_are_recorded(paper: Paper) -> None:
    """Members' replies in an article thread are recorded with author, article and reply-to; bots are not."""
    first = await paper.post(paper.world.reader, "First thoughts")
    second = await paper.post(paper.world.editor, "A reply to Rita", reference=first)
    other = await paper.fake.message_create(paper.world.discussion, paper.world.reader, "off topic")
    await paper.bot.get_channel(paper.thread.id).send("bot message")
    await paper.fake.settle()
    await paper.booted.cog("ReadersViews").recorder.flush()

    one = await paper.letter(first)
    assert (one.author_id, one.article_id, one.state, one.content) == (
        paper.world.reader.id,
        paper.article_id,
        "recorded",
        "First thoughts",
    )
    two = await paper.letter(second)
    assert two.reply_to_message_id == int(first["id"]) and two.author_name == "ed-editor"
    assert await paper.bot.store.contributions.by_message(int(other["id"])) is None
    count = await paper.bot.store.db.scalar("SELECT count(*) FROM contributions")
    assert count == 2


async def test_record_channels_from_config(world: World, booter: Any) -> None:
    """Channels listed in letters.record_channel_ids are recorded too."""
    booted: Booted = await booter(letters={"record_channel_ids": [world.discussion.id]})
    message = await world.fake.message_create(world.discussion, world.reader, "In the general channel")
    await recorded(world.fake, booted, message)
    row = await booted.bot.store.contributions.by_message(int(message["id"]))
    assert row is not None and row.article_id is None


async def test_edit_and_delete_update_the_record(paper: Paper) -> None:
    """Editing a recorded reply updates it; deleting marks it deleted."""
    message = await paper.post(paper.world.reader, "Draft")
    await paper.fake.message_update(message, "Draft, improved")
    await paper.fake.settle()
    assert (await paper.letter(message)).content == "Draft, improved"
    await paper.fake.message_delete(message)
    await paper.fake.settle()
    assert (await paper.letter(message)).deleted_at is not None


# -- submitting and reviewing ---------------------------------------------------------------------------


async def test_submit_approve_publish(paper: Paper) -> None:
    """Submit via context menu → queue card → Approve → site → link posted in the thread, writer told."""
    message = await paper.post(paper.world.reader, LONG_ENOUGH + "@everyone <b>bold</b> **really**")
    letter = await paper.submit(paper.world.reader, message)
    assert (letter.state, letter.consent, letter.byline, letter.location) == (
        "submitted",
        "granted",
        "Rita R.",
        "Leeds",
    )

    card = await paper.card(letter.id)
    embed = card["embeds"][0]
    assert "@\u200beveryone" in embed["description"]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert "Council backs new cycle lanes" in fields["Article"] and "Rita R., Leeds" in fields["Byline"]
    assert "new account" in fields["Screening"]
    meta = paper.fake.message_meta[int(card["id"])]
    assert meta["allowed_mentions"].get("parse") == []
    assert {c["custom_id"] for row in card["components"] for c in row["components"]} == {
        f"letters:approve:{letter.id}:{letter.version}",
        f"letters:edit:{letter.id}",
        f"letters:reject:{letter.id}",
    }

    ix = await paper.click(paper.world.editor, letter.id, "approve")
    assert ix.response_type == 7  # the click is answered by updating the card itself

    published = await eventually(lambda: state_is(paper, letter.id, "published"))
    assert published.remote_url and published.remote_url.startswith(paper.site.base_url)  # type: ignore[union-attr]
    [event] = site_events(paper, f"letter:{letter.id}")
    html = event["data"]["html"]
    assert "<b>" not in html and "&lt;b&gt;" in html and "<strong>really</strong>" in html
    assert "Rita R." in html and "Opinions expressed" in html and "Council backs new cycle lanes" in html

    announced = await eventually(
        lambda: [m for m in paper.fake.messages_in(paper.thread) if "was published" in m["content"]]
    )
    assert published.remote_url in announced[0]["content"]
    assert paper.fake.message_meta[int(announced[0]["id"])]["allowed_mentions"].get("parse") == []
    card = await eventually(lambda: card_has(paper, letter.id, published.remote_url))
    fields = {f["name"]: f["value"] for f in card["embeds"][0]["fields"]}
    assert "approved by" in fields["Decision"] and f"<@{paper.world.editor.id}>" in fields["Decision"]
    dm = paper.fake.dm_channel(paper.world.reader.user)
    await eventually(lambda: any("was published" in m["content"] for m in paper.fake.messages_in(dm)))


def site_events(paper: Paper, entity: str) -> list[dict[str, Any]]:
    assert paper.site is not None
    return [e for e in paper.site.webhook_events if e["entity"] == entity]


async def test_cannot_submit_someone_elses_message(paper: Paper) -> None:
    """Submitting another member's reply is refused clearly."""
    message = await paper.post(paper.world.editor, LONG_ENOUGH)
    ix = await paper.fake.context_menu(paper.world.guild, paper.world.reader, "Submit as letter", message)
    answer = await ix.wait_response()
    assert answer["data"]["flags"] & EPHEMERAL
    assert "only submit your own messages" in answer["data"]["content"]
    assert (await paper.letter(message)).state == "recorded"


async def test_reject_with_reason_tells_the_writer(paper: Paper) -> None:
    """Reject opens a reason modal; the writer gets the reason by DM; nothing reaches the site."""
    letter = await paper.submit(paper.world.reader, await paper.post(paper.world.reader, LONG_ENOUGH))
    ix = await paper.click(paper.world.editor, letter.id, "reject")
    assert ix.response_type == 9
    done = await paper.fake.submit_modal(paper.world.guild, paper.world.editor, None, {"reason": "Too close to libel"})
    assert (await done.wait_response())["type"] == 7
    rejected = await paper.get(letter.id)
    assert (rejected.state, rejected.review_note, rejected.reviewer_id) == (
        "rejected",
        "Too close to libel",
        paper.world.editor.id,
    )
    dm = paper.fake.dm_channel(paper.world.reader.user)
    await eventually(lambda: any("Too close to libel" in m["content"] for m in paper.fake.messages_in(dm)))
    card = await paper.card(letter.id)
    assert card["components"] == [] and "not selected" in card["embeds"][0]["title"]
    assert not site_events(paper, f"letter:{letter.id}")


async def test_reject_when_dms_are_closed_is_noted(paper: Paper) -> None:
    """A writer with closed DMs can't be told; the editor hears so."""
    letter = await paper.submit(paper.world.reader, await paper.post(paper.world.reader, LONG_ENOUGH))
    paper.fake.dm_closed.add(paper.world.reader.id)
    await paper.click(paper.world.editor, letter.id, "reject")
    done = await paper.fake.submit_modal(paper.world.guild, paper.world.editor, None, {"reason": ""})
    await done.wait_followup()
    assert "DMs are closed" in done.followups[0]["content"]
    assert (await paper.get(letter.id)).state == "rejected"


async def test_edit_keeps_original_and_updates_published_copy(paper: Paper) -> None:
    """Edit shows the current text; the original is kept; a published letter is updated on the site."""
    original = LONG_ENOUGH + "Typo teh end."
    letter = await paper.submit(paper.world.reader, await paper.post(paper.world.reader, original))
    ix = await paper.click(paper.world.editor, letter.id, "edit")
    modal = ix.response["data"]
    assert original in str(modal)
    done = await paper.fake.submit_modal(
        paper.world.guild, paper.world.editor, None, {"text": LONG_ENOUGH + "The end."}
    )
    assert (await done.wait_response())["type"] == 7
    edited = await paper.get(letter.id)
    assert (edited.content, edited.original_content, edited.state) == (LONG_ENOUGH + "The end.", original, "submitted")

    await paper.click(paper.world.editor, letter.id, "approve")
    await eventually(lambda: state_is(paper, letter.id, "published"))
    await paper.click(paper.world.editor, letter.id, "edit")
    done = await paper.fake.submit_modal(paper.world.guild, paper.world.editor, None, {"text": LONG_ENOUGH + "Fin."})
    await done.wait_response()
    await eventually(lambda: len(site_events(paper, f"letter:{letter.id}")) == 2)
    create, update = site_events(paper, f"letter:{letter.id}")
    assert create["event"] == "letter.create" and "The end." in create["data"]["html"]
    assert update["event"] == "letter.update" and "Fin." in update["data"]["html"]
    assert (await paper.get(letter.id)).original_content == original


async def test_concurrent_approvals_exactly_one_wins(paper: Paper) -> None:
    """Two editors click Approve at once: one publication, and the other is told who approved it."""
    second_editor = paper.world.guild.add_member("eve-editor", roles=[paper.world.editor_role])
    await paper.fake.settle()
    letter = await paper.submit(paper.world.reader, await paper.post(paper.world.reader, LONG_ENOUGH))
    card = await paper.card(letter.id)
    approve = button_id(card, "approve", letter.id)
    clicks = await asyncio.gather(
        paper.fake.click(paper.world.guild, paper.world.editor, card, approve),
        paper.fake.click(paper.world.guild, second_editor, card, approve),
    )
    answers = [await ix.wait_response() for ix in clicks]
    assert sorted(a["type"] for a in answers) == [4, 7]
    loser = next(a for a in answers if a["type"] == 4)
    winner = next(ix for ix in clicks if ix.response_type == 7)
    assert loser["data"]["flags"] & EPHEMERAL
    assert f"<@{winner.user.id}> already marked letter #{letter.id} as approved" in loser["data"]["content"]
    await eventually(lambda: state_is(paper, letter.id, "published"))
    assert len(site_events(paper, f"letter:{letter.id}")) == 1
    approvals = await paper.bot.store.db.scalar("SELECT count(*) FROM audit_log WHERE action = 'letter.approve'")
    assert approvals == 1


async def test_buttons_survive_a_restart(world: World, booter: Any, site: FakeSite) -> None:
    """Stop the bot between submission and approval: the card's buttons still work on the next boot."""
    first: Booted = await booter()
    await first.bot.store.settings.set_many(
        world.guild.id,
        {"review_channel_id": world.review.id, "editor_role_id": world.editor_role.id},
        actor_id=None,
    )
    thread, article_id = await make_article(first, world)
    paper = Paper(first, world, thread, article_id, site)
    letter = await paper.submit(world.reader, await paper.post(world.reader, LONG_ENOUGH))
    card = await paper.card(letter.id)
    await first.stop()

    second: Booted = await booter()
    use_site(second, site)
    ix = await world.fake.click(world.guild, world.editor, card, button_id(card, "approve", letter.id))
    assert (await ix.wait_response())["type"] == 7
    paper.booted = second
    published = await eventually(lambda: state_is(paper, letter.id, "published"))
    assert published.reviewer_id == world.editor.id


async def test_non_editor_is_refused_on_editor_actions(paper: Paper) -> None:
    """A reader pressing Approve, nominating or drafting a digest gets a clear refusal."""
    letter = await paper.submit(paper.world.reader, await paper.post(paper.world.reader, LONG_ENOUGH))
    ix = await paper.click(paper.world.reader, letter.id, "approve")
    assert ix.response["data"]["flags"] & EPHEMERAL
    assert "Only members with the editor role" in ix.response["data"]["content"]
    assert (await paper.get(letter.id)).state == "submitted"

    other = await paper.post(paper.world.editor, LONG_ENOUGH)
    ix = await paper.fake.context_menu(paper.world.guild, paper.world.reader, "Nominate as reader's view", other)
    assert "Only members with the editor role" in (await ix.wait_response())["data"]["content"]
    ix = await paper.fake.slash(paper.world.guild, paper.world.reader, "views digest", since="2020-01-01")
    assert "Only members with the editor role" in (await ix.wait_response())["data"]["content"]


async def test_an_unexpected_failure_is_answered_and_logged_once(
    paper: Paper, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A button whose work fails unexpectedly: the editor reads one generic sentence; the log has one traceback."""
    letter = await paper.submit(paper.world.reader, await paper.post(paper.world.reader, LONG_ENOUGH))

    async def broken(*args: Any, **kwargs: Any) -> Contribution:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(paper.bot.letters.service, "approve", broken)
    caplog.set_level("ERROR")
    ix = await paper.click(paper.world.editor, letter.id, "approve")
    assert ix.response["data"]["flags"] & EPHEMERAL
    assert ix.response["data"]["content"] == UNEXPECTED
    logged = [r for r in caplog.records if r.exc_info and "the database went away" in str(r.exc_info[1])]
    assert len(logged) == 1 and logged[0].name == "bot.errors"
    assert f"letters:approve:{letter.id}" in logged[0].getMessage()


# -- nomination ---------------------------------------------------------------------------------------


async def nominate(paper: Paper, message: dict[str, Any]) -> dict[str, Any]:
    """An editor nominates a reply; returns the consent request posted in the thread."""
    ix = await paper.fake.context_menu(paper.world.guild, paper.world.editor, "Nominate as reader's view", message)
    await ix.wait_followup()
    assert "asked" in ix.followups[0]["content"], ix.followups
    asks = [m for m in paper.fake.messages_in(paper.thread) if m.get("components")]
    return asks[-1]


async def test_nomination_accepted(paper: Paper) -> None:
    """The nomination pings only the writer; someone else can't answer; Agree → byline → queue."""
    message = await paper.post(paper.world.reader, LONG_ENOUGH)
    ask = await nominate(paper, message)
    meta = paper.fake.message_meta[int(ask["id"])]
    assert [u["id"] for u in ask["mentions"]] == [str(paper.world.reader.id)]
    assert [str(u) for u in meta["allowed_mentions"]["users"]] == [str(paper.world.reader.id)]
    letter = await paper.letter(message)
    assert (letter.state, letter.consent) == ("nominated", "pending")

    intruder = await paper.fake.click(paper.world.guild, paper.world.editor, ask, f"letters:consent:{letter.id}:agree")
    answer = await intruder.wait_response()
    assert answer["data"]["flags"] & EPHEMERAL and "Only the writer" in answer["data"]["content"]

    ix = await paper.fake.click(paper.world.guild, paper.world.reader, ask, f"letters:consent:{letter.id}:agree")
    assert (await ix.wait_response())["type"] == 9
    done = await paper.fake.submit_modal(
        paper.world.guild, paper.world.reader, None, {"byline": "R. Reader", "consent": "YES"}
    )
    assert "is with the editors" in (await done.wait_response())["data"]["content"]
    submitted = await paper.get(letter.id)
    assert (submitted.state, submitted.consent, submitted.byline) == ("submitted", "granted", "R. Reader")
    await paper.card(letter.id)
    await eventually(lambda: "agreed" in (paper.fake.find_message(ask["id"]) or {}).get("content", ""))


async def test_nomination_declined_is_respected(paper: Paper) -> None:
    """Decline is recorded; nominating again tells the editor they declined; nothing is queued."""
    message = await paper.post(paper.world.reader, LONG_ENOUGH)
    ask = await nominate(paper, message)
    letter = await paper.letter(message)
    ix = await paper.fake.click(paper.world.guild, paper.world.reader, ask, f"letters:consent:{letter.id}:decline")
    assert (await ix.wait_response())["type"] == 7
    declined = await paper.get(letter.id)
    assert (declined.state, declined.consent) == ("declined", "declined")
    assert paper.fake.find_message(ask["id"])["components"] == []  # type: ignore[index]

    again = await paper.fake.context_menu(paper.world.guild, paper.world.editor, "Nominate as reader's view", message)
    await again.wait_followup()
    assert "declined" in again.followups[0]["content"]
    assert not paper.queue_messages()


async def test_consent_without_yes_submits_nothing(paper: Paper) -> None:
    """Without an explicit yes, nothing is submitted."""
    message = await paper.post(paper.world.reader, LONG_ENOUGH)
    ix = await paper.fake.context_menu(paper.world.guild, paper.world.reader, "Submit as letter", message)
    await ix.wait_response()
    done = await paper.fake.submit_modal(paper.world.guild, paper.world.reader, None, {"byline": "R", "consent": "no"})
    assert "explicit agreement" in (await done.wait_response())["data"]["content"]
    assert (await paper.letter(message)).state == "recorded"


# -- after publication, withdrawal, digest -----------------------------------------------------------------


async def test_reply_to_a_published_letter_links_it(paper: Paper) -> None:
    """A letter answering a published letter links it on the site."""
    first = await paper.post(paper.world.reader, LONG_ENOUGH)
    one = await paper.submit(paper.world.reader, first)
    await paper.click(paper.world.editor, one.id, "approve")
    published = await eventually(lambda: state_is(paper, one.id, "published"))
    answer = await paper.post(paper.world.organizer, "I disagree with Rita. " + LONG_ENOUGH, reference=first)
    two = await paper.submit(paper.world.organizer, answer, byline="Olu O.")
    card = await paper.card(two.id)
    assert f"letter #{one.id}" in str(card["embeds"][0])
    await paper.click(paper.world.editor, two.id, "approve")
    await eventually(lambda: state_is(paper, two.id, "published"))
    [event] = site_events(paper, f"letter:{two.id}")
    assert event["data"]["metadata"]["in_reply_to"]["url"] == published.remote_url
    assert published.remote_url in event["data"]["html"]


async def test_withdrawal_retracts_the_site_copy(paper: Paper) -> None:
    """`/letter withdraw` on a published letter retracts it on the site and updates the card."""
    letter = await paper.submit(paper.world.reader, await paper.post(paper.world.reader, LONG_ENOUGH))
    await paper.click(paper.world.editor, letter.id, "approve")
    await eventually(lambda: state_is(paper, letter.id, "published"))

    ac = await paper.fake.autocomplete(paper.world.guild, paper.world.reader, "letter withdraw", "letter", "")
    await ac.wait_response()
    assert [c["value"] for c in ac.choices] == [letter.id]
    ix = await paper.fake.slash(paper.world.guild, paper.world.reader, "letter withdraw", letter=letter.id)
    assert "taken down" in (await ix.wait_response())["data"]["content"]
    await eventually(lambda: any(e["event"] == "letter.retract" for e in site_events(paper, f"letter:{letter.id}")))
    assert (await paper.get(letter.id)).state == "withdrawn"
    await eventually(lambda: card_has(paper, letter.id, "withdrawn by the writer"))


async def test_editor_retract_button_asks_first(paper: Paper) -> None:
    """Retract on a card asks for confirmation (ephemeral); only the confirm button takes the letter down."""
    letter = await paper.submit(paper.world.reader, await paper.post(paper.world.reader, LONG_ENOUGH))
    await paper.click(paper.world.editor, letter.id, "approve")
    await eventually(lambda: state_is(paper, letter.id, "published"))
    await eventually(lambda: card_has(paper, letter.id, "published"))
    ix = await paper.click(paper.world.editor, letter.id, "retract")
    asked = await ix.wait_response()
    assert asked["data"]["flags"] & EPHEMERAL and f"Retract letter #{letter.id}" in asked["data"]["content"]
    await paper.fake.settle()
    assert (await paper.get(letter.id)).state == "published"
    assert [e["event"] for e in site_events(paper, f"letter:{letter.id}")] == ["letter.create"]

    original = await ix.wait_original()
    confirm = await paper.fake.click(paper.world.guild, paper.world.editor, original, f"letters:retractok:{letter.id}")
    assert "is retracted" in (await confirm.wait_response())["data"]["content"]
    await eventually(lambda: any(e["event"] == "letter.retract" for e in site_events(paper, f"letter:{letter.id}")))
    assert (await paper.get(letter.id)).state == "retracted"
    await eventually(lambda: card_has(paper, letter.id, "retracted"))


async def test_views_retract_command_asks_first(paper: Paper) -> None:
    """`/views retract` answers with the same confirmation step, not a retraction."""
    letter = await paper.submit(paper.world.reader, await paper.post(paper.world.reader, LONG_ENOUGH))
    await paper.click(paper.world.editor, letter.id, "approve")
    await eventually(lambda: state_is(paper, letter.id, "published"))
    ix = await paper.fake.slash(paper.world.guild, paper.world.editor, "views retract", letter=letter.id)
    assert f"Retract letter #{letter.id}" in (await ix.wait_response())["data"]["content"]
    await paper.fake.settle()
    assert (await paper.get(letter.id)).state == "published"


async def test_deleting_an_approved_letter_alerts_editors(paper: Paper) -> None:
    """A writer deleting (or editing) an approved letter's message is flagged to editors."""
    message = await paper.post(paper.world.reader, LONG_ENOUGH)
    letter = await paper.submit(paper.world.reader, message)
    await paper.click(paper.world.editor, letter.id, "approve")
    await eventually(lambda: state_is(paper, letter.id, "published"))
    await paper.fake.message_update(message, "changed my mind")
    await paper.fake.settle()
    await eventually(
        lambda: [m for m in paper.fake.messages_in(paper.world.review) if "edited the Discord message" in m["content"]]
    )
    assert (await paper.get(letter.id)).content == LONG_ENOUGH  # the approved text stays
    await paper.fake.message_delete(message)
    await paper.fake.settle()
    await eventually(
        lambda: [m for m in paper.fake.messages_in(paper.world.review) if "deleted the Discord message" in m["content"]]
    )
    flags = (await paper.get(letter.id)).flags
    assert any("deleted on Discord after approval" in f for f in flags)
    await eventually(lambda: card_has(paper, letter.id, "Deleted on Discord"))


async def test_digest_gathers_the_period(paper: Paper) -> None:
    """`/views digest` drafts one post with each letter under its byline and the disclaimer."""
    ids = []
    for name, member in (("Rita R.", paper.world.reader), ("Olu O.", paper.world.organizer)):
        letter = await paper.submit(member, await paper.post(member, f"{name} writes. " + LONG_ENOUGH), byline=name)
        await paper.click(paper.world.editor, letter.id, "approve")
        ids.append(letter.id)
    since = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
    ix = await paper.fake.slash(paper.world.guild, paper.world.editor, "views digest", since=since)
    text = (await ix.wait_response())["data"]["content"]
    assert "2 letter(s)" in text and "Rita R." in text and "Olu O." in text
    events = await eventually(lambda: [e for e in paper.site.webhook_events if e["event"] == "digest.create"])  # type: ignore[union-attr]
    data = events[0]["data"]
    assert data["status"] == "draft" and data["html"].count("readersviews-byline") == 2
    assert "Rita R." in data["html"] and "Olu O." in data["html"] and "Opinions expressed" in data["html"]
    ix = await paper.fake.slash(
        paper.world.guild, paper.world.editor, "views digest", since="2001-01-01", until="2001-02-01"
    )
    assert "No letters were approved" in (await ix.wait_response())["data"]["content"]


# -- /letter submit, screening, limits, privacy --------------------------------------------------------------


async def test_letter_submit_command(paper: Paper) -> None:
    """`/letter submit` offers recent articles, and its form queues a letter about the chosen one."""
    ac = await paper.fake.autocomplete(paper.world.guild, paper.world.reader, "letter submit", "article", "cycle")
    await ac.wait_response()
    assert ac.choices == [{"name": "Council backs new cycle lanes", "value": paper.article_id}]
    ix = await paper.fake.slash(paper.world.guild, paper.world.reader, "letter submit", article=paper.article_id)
    assert (await ix.wait_response())["type"] == 9
    text = "x" * 3980 + " <@&1> @here"
    done = await paper.fake.submit_modal(
        paper.world.guild, paper.world.reader, None, {"text": text, "byline": "Rita", "consent": "yes"}
    )
    assert "is with the editors" in (await done.wait_response())["data"]["content"]
    letter_id = await paper.bot.store.db.scalar("SELECT max(id) FROM contributions")
    letter = await paper.get(letter_id)
    assert (letter.message_id, letter.article_id, letter.state, letter.content) == (
        None,
        paper.article_id,
        "submitted",
        text,
    )
    card = await paper.card(letter.id)
    assert "@​here" in card["embeds"][0]["description"] and "<​@&1>" in card["embeds"][0]["description"]


async def test_two_editors_requeueing_at_once_post_one_card(paper: Paper) -> None:
    """Two editors run `/views queue` at the same moment for a letter missing from the review channel:
    one card is posted for it, not one each."""
    fake, world = paper.fake, paper.world
    ix = await fake.slash(world.guild, world.reader, "letter submit", article=paper.article_id)
    assert (await ix.wait_response())["type"] == 9
    done = await fake.submit_modal(
        world.guild, world.reader, None, {"text": LONG_ENOUGH, "byline": "Rita", "consent": "yes"}
    )
    assert "is with the editors" in (await done.wait_response())["data"]["content"]
    letter_id = await paper.bot.store.db.scalar("SELECT max(id) FROM contributions")
    await paper.card(letter_id)  # its card, then lost (as if posted before a review channel was set)
    await paper.bot.store.db.write(
        "UPDATE contributions SET review_message_id = NULL, review_channel_id = NULL WHERE id = ?", (letter_id,)
    )
    before = len(fake.messages_in(world.review))
    second_editor = world.guild.add_member("eddie-editor", roles=[world.editor_role])
    runs = await asyncio.gather(
        fake.slash(world.guild, world.editor, "views queue"), fake.slash(world.guild, second_editor, "views queue")
    )
    answers = [(await run.wait_followup())["content"] for run in runs]
    assert sorted(answers) == ["Posted 0 letter(s) to the review channel.", "Posted 1 letter(s) to the review channel."]
    assert len(fake.messages_in(world.review)) == before + 1


async def test_screening_flags(world: World, booter: Any) -> None:
    """Short, linky, listed-word and repeated letters are flagged for editors (and still queued)."""
    booted: Booted = await booter(letters={"blocked_words": ["scoundrel"], "max_links": 1, "min_chars": 100})
    await booted.bot.store.settings.set_many(
        world.guild.id, {"review_channel_id": world.review.id, "editor_role_id": world.editor_role.id}, actor_id=None
    )
    thread, article_id = await make_article(booted, world)
    paper = Paper(booted, world, thread, article_id)
    text = "The mayor is a scoundrel: https://a.example https://b.example"
    first = await paper.submit(world.reader, await paper.post(world.reader, text))
    flags = " | ".join(first.flags)
    assert "short" in flags and "many links: 2" in flags and "scoundrel" in flags and "new account" in flags
    second = await paper.submit(world.organizer, await paper.post(world.organizer, text), byline="Olu")
    assert f"repeated text: same as letter #{first.id}" in second.flags
    assert second.state == "submitted"


async def test_rate_limit(world: World, booter: Any) -> None:
    """A member over letters.submissions_per_day gets a clear message."""
    booted: Booted = await booter(letters={"submissions_per_day": 1})
    await booted.bot.store.settings.set_many(world.guild.id, {"review_channel_id": world.review.id}, actor_id=None)
    thread, article_id = await make_article(booted, world)
    paper = Paper(booted, world, thread, article_id)
    await paper.submit(world.reader, await paper.post(world.reader, LONG_ENOUGH))
    second = await paper.post(world.reader, "Another one. " + LONG_ENOUGH)
    ix = await world.fake.context_menu(world.guild, world.reader, "Submit as letter", second)
    answer = await ix.wait_response()
    assert answer["type"] == 4 and "this server accepts 1 a day" in answer["data"]["content"]


async def test_no_review_channel_says_how_to_set_one(world: World, booter: Any) -> None:
    """Without a review channel the writer is told which setup command the admins need."""
    booted: Booted = await booter()
    thread, article_id = await make_article(booted, world)
    paper = Paper(booted, world, thread, article_id)
    message = await paper.post(world.reader, LONG_ENOUGH)
    ix = await world.fake.context_menu(world.guild, world.reader, "Submit as letter", message)
    await ix.wait_response()
    done = await world.fake.submit_modal(world.guild, world.reader, None, {"byline": "Rita", "consent": "yes"})
    assert "/readersviews setup review_channel:" in (await done.wait_response())["data"]["content"]
    assert (await paper.letter(message)).state == "submitted"


async def test_mine_and_forget(paper: Paper) -> None:
    """`/letter mine` lists my records; `/letter forget` asks first, then deletes what isn't published."""
    recorded = await paper.post(paper.world.reader, "Just chatting")
    submitted = await paper.submit(paper.world.reader, await paper.post(paper.world.reader, LONG_ENOUGH))
    published = await paper.submit(paper.world.reader, await paper.post(paper.world.reader, "Yes. " + LONG_ENOUGH))
    await paper.click(paper.world.editor, published.id, "approve")
    await eventually(lambda: state_is(paper, published.id, "published"))

    ix = await paper.fake.slash(paper.world.guild, paper.world.reader, "letter mine")
    text = (await ix.wait_response())["data"]["content"]
    assert "Just chatting" in text and "waiting for review" in text and "published" in text

    ix = await paper.fake.slash(paper.world.guild, paper.world.reader, "letter forget")
    response = await ix.wait_response()
    assert "Delete 2 unpublished record(s)" in response["data"]["content"]
    assert await paper.bot.store.contributions.by_message(int(recorded["id"])) is not None  # not before confirming
    original = await ix.wait_original()
    button = original["components"][0]["components"][0]["custom_id"]
    confirm = await paper.fake.click(paper.world.guild, paper.world.reader, original, button)
    assert "2 record(s) deleted" in (await confirm.wait_response())["data"]["content"]
    assert await paper.bot.store.contributions.by_message(int(recorded["id"])) is None
    assert await paper.bot.store.contributions.get(submitted.id) is None
    assert (await paper.get(published.id)).state == "published"
    await eventually(
        lambda: any("deleted by its writer" in m["content"] for m in paper.fake.messages_in(paper.world.review))
    )


async def test_recorded_replies_expire(paper: Paper) -> None:
    """The purge deletes recorded replies older than retention_days, never submitted letters."""
    old = await paper.post(paper.world.reader, "Old chatter")
    kept = await paper.submit(paper.world.reader, await paper.post(paper.world.reader, LONG_ENOUGH))
    long_ago = to_db(datetime.now(UTC) - timedelta(days=91))
    await paper.bot.store.db.write("UPDATE contributions SET created_at = ?", (long_ago,))
    await paper.booted.cog("ReadersViews").purge()
    assert await paper.bot.store.contributions.by_message(int(old["id"])) is None
    assert (await paper.get(kept.id)).state == "submitted"


# -- regressions ------------------------------------------------------------------------------------------


@pytest.fixture
def rival(world: World) -> tuple[Any, Member]:
    """Another server the bot is in, whose admin is not an editor of The Weekly."""
    guild = world.fake.add_guild("Rival Server")
    admins = guild.add_role("Admins", permissions=perms.MANAGE_GUILD)
    guild.add_text_channel("general")
    return guild, guild.add_member("mallory", roles=[admins])


async def test_another_servers_admin_cannot_retract_or_click(rival: tuple[Any, Member], paper: Paper) -> None:
    """An admin of another server is refused, as if the letter didn't exist, by `/views retract` and the buttons."""
    guild, mallory = rival
    letter = await paper.submit(paper.world.reader, await paper.post(paper.world.reader, LONG_ENOUGH))
    card = await paper.card(letter.id)
    forged = await paper.fake.click(guild, mallory, card, button_id(card, "approve", letter.id))
    answer = await forged.wait_response()
    assert answer["data"]["flags"] & EPHEMERAL and f"Letter #{letter.id} no longer exists" in answer["data"]["content"]
    assert (await paper.get(letter.id)).state == "submitted"

    await paper.click(paper.world.editor, letter.id, "approve")
    await eventually(lambda: state_is(paper, letter.id, "published"))
    ix = await paper.fake.slash(guild, mallory, "views retract", letter=letter.id)
    answer = await ix.wait_response()
    assert answer["data"]["flags"] & EPHEMERAL and f"Letter #{letter.id} no longer exists" in answer["data"]["content"]
    card = await eventually(lambda: card_has(paper, letter.id, "published"))
    forged = await paper.fake.click(guild, mallory, card, button_id(card, "retract", letter.id))
    assert "no longer exists" in (await forged.wait_response())["data"]["content"]
    assert (await paper.get(letter.id)).state == "published"
    assert [e["event"] for e in site_events(paper, f"letter:{letter.id}")] == ["letter.create"]


async def test_approve_button_from_before_the_upgrade_refreshes_the_card(paper: Paper) -> None:
    """A card posted without the version on Approve is refreshed and the editor asked to look again."""
    letter = await paper.submit(paper.world.reader, await paper.post(paper.world.reader, LONG_ENOUGH))
    card = paper.fake.find_message((await paper.card(letter.id))["id"])
    assert card is not None
    for row in card["components"]:
        for component in row["components"]:
            if component["custom_id"].startswith(f"letters:approve:{letter.id}:"):
                component["custom_id"] = f"letters:approve:{letter.id}"  # as the previous version posted it
    ix = await paper.fake.click(paper.world.guild, paper.world.editor, card, f"letters:approve:{letter.id}")
    answer = await ix.wait_response()
    assert answer["data"]["flags"] & EPHEMERAL and "read the letter again" in answer["data"]["content"]
    assert (await paper.get(letter.id)).state == "submitted"

    def card_is_current() -> bool:
        stored = paper.fake.find_message(card["id"]) or {}
        ids = [c["custom_id"] for row in stored.get("components", []) for c in row["components"]]
        return f"letters:approve:{letter.id}:{letter.version}" in ids

    await eventually(card_is_current)
    assert not site_events(paper, f"letter:{letter.id}")


async def test_approved_letter_shows_mentioned_members_by_name(world: World, booter: Any, site: FakeSite) -> None:
    """A member mentioned in an approved letter appears on the site under their name, not as "a member"."""
    booted: Booted = await booter(discord={"members_intent": True})
    await booted.bot.store.settings.set_many(
        world.guild.id, {"review_channel_id": world.review.id, "editor_role_id": world.editor_role.id}, actor_id=None
    )
    use_site(booted, site)
    thread, article_id = await make_article(booted, world)
    paper = Paper(booted, world, thread, article_id, site)
    text = f"As <@{world.organizer.id}> said, " + LONG_ENOUGH
    letter = await paper.submit(paper.world.reader, await paper.post(paper.world.reader, text))
    await paper.click(paper.world.editor, letter.id, "approve")
    await eventually(lambda: state_is(paper, letter.id, "published"))
    [event] = site_events(paper, f"letter:{letter.id}")
    assert "olu-organizer" in event["data"]["html"] and "a member" not in event["data"]["html"]


async def test_nomination_nobody_could_see_is_undone(paper: Paper) -> None:
    """If neither the thread nor the writer's DMs take the question, the reply is not left nominated."""
    message = await paper.post(paper.world.reader, LONG_ENOUGH)
    paper.fake.fail_next("POST", rf"/channels/{paper.thread.id}/messages$", 403, 50013)
    paper.fake.dm_closed.add(paper.world.reader.id)
    ix = await paper.fake.context_menu(paper.world.guild, paper.world.editor, "Nominate as reader's view", message)
    await ix.wait_followup()
    assert "couldn't ask" in ix.followups[0]["content"] and "not nominated" in ix.followups[0]["content"]
    assert (await paper.letter(message)).state == "recorded"


def maximal_letter(now: datetime) -> Contribution:
    """A letter with every field of its review card filled, most of them to the limit."""
    words = "The council's plan for cycle lanes on Park_Road is *not* what residents asked for. "
    return Contribution(
        id=12345,
        guild_id=1,
        message_id=111111111111111111,
        channel_id=222222222222222222,
        article_id=1,
        reply_to_message_id=333333333333333333,
        author_id=444444444444444444,
        author_name="the_real_council_watcher_of_lee",
        content=(words * 60)[:4000],
        original_content="x",
        created_at=now,
        edited_at=None,
        deleted_at=now,
        state="rejected",
        consent="granted",
        byline="Rita_R.",
        location="Headingley, Leeds",
        reviewer_id=555555555555555555,
        review_note=("Too close to libel about named_councillors; see https://paper.example/policy. " * 14)[:1000],
        flags=tuple(f"flag_{i}: " + "x_" * 40 for i in range(12)),
        review_message_id=1,
        review_channel_id=1,
        remote_id=None,
        remote_url="https://paper.example/" + "a" * 990,
        submitted_at=now,
        decided_at=now,
        version=5,
    )


def test_card_of_a_long_letter_fits_discord_limits() -> None:
    """The review card of a maximal letter stays within Discord's embed limits and still shows the letter."""
    now = datetime(2025, 3, 10, tzinfo=UTC)
    letter = maximal_letter(now)
    article = ArticleRef(
        1, "Council backs new cycle_lanes on Park_Road " * 6, "https://paper.example/" + "b" * 900, 1, 1
    )
    for state in ("rejected", "published", "submitted"):
        embed = queue_embed(replace(letter, state=state), article, None)
        assert len(embed) <= 6000 and len(embed.title or "") <= 256
        assert len(embed.description or "") <= 4096 and all(len(f.value or "") <= 1024 for f in embed.fields)
        assert (embed.description or "").startswith("The council's plan")


async def test_rejecting_a_long_letter_updates_its_card_and_tells_the_writer(paper: Paper) -> None:
    """A long letter with a long reason is rejected: the card shows it and the writer gets the DM."""
    letter = await paper.submit(paper.world.reader, await paper.post(paper.world.reader, LONG_ENOUGH))
    long = ("The council's plan for cycle lanes on Park_Road is *not* what residents asked for. " * 60)[:4000]
    flags = json.dumps([f"screening note {i}: " + "x_" * 40 for i in range(8)])
    await paper.bot.store.db.write(
        "UPDATE contributions SET content = ?, flags = ?, original_content = 'x' WHERE id = ?", (long, flags, letter.id)
    )
    await paper.click(paper.world.editor, letter.id, "reject")
    reason = ("Too close to libel about named_councillors; see our policy at https://paper.example/policy. " * 12)[
        :1000
    ]
    done = await paper.fake.submit_modal(paper.world.guild, paper.world.editor, None, {"reason": reason})
    assert (await done.wait_response())["type"] == 7
    card = await paper.card(letter.id)
    assert "not selected" in card["embeds"][0]["title"]
    dm = paper.fake.dm_channel(paper.world.reader.user)
    await eventually(lambda: any("decided not to publish" in m["content"] for m in paper.fake.messages_in(dm)))


async def test_writer_is_told_of_a_rejection_even_if_the_card_update_fails(paper: Paper) -> None:
    """The rejection is saved and DM'd even when Discord refuses the card update; the editor hears of both."""
    letter = await paper.submit(paper.world.reader, await paper.post(paper.world.reader, LONG_ENOUGH))
    await paper.click(paper.world.editor, letter.id, "reject")
    paper.fake.fail_next("POST", r"/interactions/\d+/[^/]+/callback$", 400, 50035)
    done = await paper.fake.submit_modal(paper.world.guild, paper.world.editor, None, {"reason": "Off topic"})
    answer = await done.wait_response()
    assert answer["data"]["flags"] & EPHEMERAL and "couldn't update its card" in answer["data"]["content"]
    assert "told by DM" in answer["data"]["content"]
    assert (await paper.get(letter.id)).state == "rejected"
    dm = paper.fake.dm_channel(paper.world.reader.user)
    assert any("Off topic" in m["content"] for m in paper.fake.messages_in(dm))


def test_review_card_shows_where_links_go() -> None:
    """A letter's masked link shows its real URL; a hostile article title or link can't add a link of its own."""
    letter = replace(
        maximal_letter(datetime(2025, 3, 10, tzinfo=UTC)),
        content="Before approving, please [click to verify](https://evil.example/login) my details.",
        state="submitted",
        review_note=None,
        flags=(),
        remote_url=None,
    )
    article = ArticleRef(
        1,
        "Budget](https://evil.example/a) [APPROVE THIS",
        "https://paper.example/1)[APPROVE THIS](https://evil.example/b",
        1,
        1,
    )
    embed = queue_embed(letter, article, None)
    assert "click to verify (https://evil.example/login)" in (embed.description or "")
    assert "](" not in (embed.description or "")
    [article_field] = [f.value or "" for f in embed.fields if f.name == "Article"]
    assert article_field == (
        "[Budget\\](https\\://evil.example/a) \\[APPROVE THIS]"
        "(https://paper.example/1%29%5BAPPROVE%20THIS%5D%28https://evil.example/b)"
    )


# -- one feature ------------------------------------------------------------------------------------


async def test_letter_cogs_share_one_feature_and_no_cog_imports_another(running: Booted) -> None:
    """Both letters cogs use the bot's one LetterService, ReviewQueue and Recorder; no cog imports a cog."""
    members, editors, letters = running.cog("ReadersViews"), running.cog("Editorial"), running.bot.letters
    assert members.service is editors.service is letters.service
    assert members.queue is editors.queue is letters.queue
    assert members.recorder is letters.recorder
    for path in Path(cogs.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert not [m for m in imported if m == "cogs" or m.startswith("cogs.")], path.name
        if path.stem in ("readers_views", "editorial"):
            assert "get_cog(" not in path.read_text(), path.name
            assert "bot.store." not in path.read_text().replace("from bot.store.", ""), path.name  # the service


async def test_members_submit_letters_without_the_editorial_cog(world: World, booter: Any) -> None:
    """With only the members' cog loaded, `/letter submit` still queues the letter and confirms it."""
    booted: Booted = await booter(cogs=["cogs.readers_views"])
    await booted.bot.store.settings.set_many(world.guild.id, {"review_channel_id": world.review.id}, actor_id=None)
    ix = await world.fake.slash(world.guild, world.reader, "letter submit")
    assert (await ix.wait_response())["type"] == 9
    done = await world.fake.submit_modal(
        world.guild, world.reader, None, {"text": LONG_ENOUGH * 2, "byline": "Rita", "consent": "yes"}
    )
    assert "is with the editors" in (await done.wait_response())["data"]["content"]
    await eventually(lambda: any(m.get("embeds") for m in world.fake.messages_in(world.review)))


def typed_back(world: World, ix: Any) -> str:
    """The text a refused form gave back to its member as a file (a closed form keeps nothing)."""
    message = ix.original or (ix.followups[-1] if ix.followups else None)
    assert message is not None and message["attachments"], message
    return world.fake.attachment_bytes(message["attachments"][0]).decode()


async def test_a_refused_letter_form_gives_the_writer_their_letter_back(paper: Paper) -> None:
    """`/letter submit` sent without typing yes: refused, and the whole letter (over a message's 2,000
    characters) comes back as a file to paste, instead of being lost with the form."""
    world = paper.world
    ix = await paper.fake.slash(world.guild, world.reader, "letter submit")
    assert (await ix.wait_response())["type"] == 9
    text = "My long considered letter. " * 140
    done = await paper.fake.submit_modal(
        world.guild, world.reader, None, {"text": text, "byline": "Rita", "consent": "no"}
    )
    response = await done.wait_response()
    assert "explicit agreement" in response["data"]["content"] and response["data"]["flags"] & EPHEMERAL
    assert typed_back(world, done) == text
    assert await paper.bot.store.db.scalar("SELECT count(*) FROM contributions") == 0


async def test_an_edit_that_came_too_late_gives_the_editor_their_text_back(paper: Paper) -> None:
    """Two editors edit one letter: the second is told it changed, and gets the edit they typed back."""
    world = paper.world
    second = world.guild.add_member("eddie-editor", roles=[world.editor_role])
    await paper.fake.settle()
    letter = await paper.submit(world.reader, await paper.post(world.reader, LONG_ENOUGH))
    letter_id = letter.id
    card = await paper.card(letter_id)
    for editor in (world.editor, second):
        click = await paper.fake.click(world.guild, editor, card, button_id(card, "edit", letter_id))
        assert (await click.wait_response())["type"] == 9
    first = await paper.fake.submit_modal(world.guild, world.editor, None, {"text": LONG_ENOUGH + "(first edit)"})
    await first.wait_response()
    late = await paper.fake.submit_modal(world.guild, second, None, {"text": LONG_ENOUGH + "(my careful edit)"})
    assert "changed while you were looking" in (await late.wait_response())["data"]["content"]
    assert typed_back(world, late) == LONG_ENOUGH + "(my careful edit)"


async def test_articles_of_channels_a_member_cannot_see_are_not_offered_or_accepted(paper: Paper) -> None:
    """An article posted in a staff-only channel is not in a reader's `/letter submit` choices, and naming
    it (the option, or a forged form id) is refused: its title would reach the card and the site."""
    world, db = paper.world, paper.bot.store.db
    staff = world.guild.add_text_channel(
        "staff-news",
        overwrites=[
            perms.overwrite(world.guild.id, deny=perms.VIEW_CHANNEL),
            perms.overwrite(paper.fake.bot.id, allow=perms.VIEW_CHANNEL | perms.SEND_MESSAGES, member=True),
        ],
    )
    await paper.fake.settle()
    now = to_db(datetime.now(UTC))
    feed_id = await db.write(
        "INSERT INTO feeds (guild_id, url, channel_id, channel_kind, created_at) VALUES (?, ?, ?, 'text', ?)",
        (world.guild.id, "https://paper.example/staff", staff.id, now),
    )
    secret = await db.write(
        "INSERT INTO articles (feed_id, guid, title, link, content_hash, status, channel_id, first_seen_at,"
        " posted_at) VALUES (?, 'g-staff', 'Embargoed: cycle lanes budget cut', 'https://paper.example/x', 'x',"
        " 'posted', ?, ?, ?)",
        (feed_id, staff.id, now, now),
    )
    ac = await paper.fake.autocomplete(world.guild, world.reader, "letter submit", "article", "cycle")
    await ac.wait_response()
    assert [c["value"] for c in ac.choices] == [paper.article_id]
    ix = await paper.fake.slash(world.guild, world.reader, "letter submit", article=secret)
    assert "don't know that article" in (await ix.wait_response())["data"]["content"]

    ix = await paper.fake.slash(world.guild, world.reader, "letter submit", article=paper.article_id)
    assert (await ix.wait_response())["type"] == 9
    modal, _ = paper.fake.modals[world.reader.id]
    modal["custom_id"] = f"letters:write:{secret}"  # a modified client names the staff-only article
    done = await paper.fake.submit_modal(
        world.guild, world.reader, None, {"text": LONG_ENOUGH, "byline": "Rita", "consent": "yes"}
    )
    assert "don't know that article" in (await done.wait_response())["data"]["content"]
    assert await db.scalar("SELECT count(*) FROM contributions WHERE article_id = ?", (secret,)) == 0


async def test_a_private_channel_named_in_a_letter_is_not_named_on_the_site(paper: Paper) -> None:
    """`<#id>` of a staff-only channel in a letter: the public site doesn't get the channel's name (editors
    see only the id on the card); a channel everyone can read is named."""
    world = paper.world
    secret = world.guild.add_text_channel(
        "layoffs-planning", overwrites=[perms.overwrite(world.guild.id, deny=perms.VIEW_CHANNEL)]
    )
    await paper.fake.settle()
    text = f"See <#{secret.id}> and <#{world.discussion.id}>. " + LONG_ENOUGH
    letter = await paper.submit(world.reader, await paper.post(world.reader, text))
    await paper.click(world.editor, letter.id, "approve")
    await eventually(lambda: state_is(paper, letter.id, "published"))
    [event] = site_events(paper, f"letter:{letter.id}")
    assert "layoffs-planning" not in json.dumps(event) and "#discussion" in event["data"]["html"]
