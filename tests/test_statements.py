"""Statement sign-ons through the fake Discord and the real bot: create, sign, moderate, close, export."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import discord
import pytest

from bot import metrics
from bot.errors import UNEXPECTED
from bot.signing import CALLBACK_PATH
from bot.statement_export import export_statement
from bot.statement_rules import SignRequest
from bot.statement_views import cut_line
from bot.store.statement_rows import ORGANIZATIONS_PER_MEMBER
from tests.fakediscord import FakeDiscord
from tests.fakediscord.world import Member
from tests.helpers import Booted, FakeClock, World, answer, cog, create_statement, eventually, sid, sign, spawn

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def current(fake: FakeDiscord, message: dict[str, Any]) -> dict[str, Any]:
    found = fake.find_message(message["id"])
    assert found is not None
    return found


def field(message: dict[str, Any], name: str) -> str:
    for f in message["embeds"][0].get("fields", []):
        if f["name"] == name:
            return str(f["value"])
    return ""


async def test_create_sign_resign_withdraw(running: Booted, world: World) -> None:
    """An organizer publishes; a reader signs, re-signs (update), withdraws; each step is answered privately."""
    fake = world.fake
    message = await create_statement(world, running, deadline="2099-12-31 18:00")
    buttons = [c["custom_id"] for c in message["components"][0]["components"]]
    assert buttons == [f"statements:{a}:{sid(message)}" for a in ("sign", "sign_org", "withdraw", "who")]
    assert message["embeds"][0]["title"] == "Save the library"

    text = await sign(world, message, world.reader, {"name": "Rita Reader", "role": "Teacher", "place": "Leeds, UK"})
    assert "Signed **Save the library**" in text and "Rita Reader" in text and "Place: Leeds, UK" in text
    await eventually(lambda: "Rita Reader" in field(current(fake, message), "Latest signers"))
    assert "**1**" in field(current(fake, message), "Signatures")

    text = await sign(world, message, world.reader, {"name": "Rita R.", "public": "no"})
    assert "Updated your signature" in text and "Listed publicly: no" in text
    await eventually(lambda: "1 listed publicly" not in field(current(fake, message), "Signatures")
                     and "0 listed publicly" in field(current(fake, message), "Signatures"))  # fmt: skip
    assert "Rita" not in field(current(fake, message), "Latest signers")
    store = running.bot.store
    assert await store.db.scalar("SELECT count(*) FROM signatures WHERE withdrawn_at IS NULL") == 1

    click = await fake.click(world.guild, world.reader, current(fake, message), f"statements:withdraw:{sid(message)}")
    assert "withdrawn" in await answer(click) and click.ephemeral
    await eventually(lambda: "**0**" in field(current(fake, message), "Signatures"))
    click = await fake.click(world.guild, world.reader, current(fake, message), f"statements:withdraw:{sid(message)}")
    assert "haven't signed" in await answer(click)


async def test_create_answer_links_to_the_message(running: Booted, world: World) -> None:
    """The organizer's answer to /statement create links to the posted message in its server."""
    fake = world.fake
    ix = await fake.slash(world.guild, world.organizer, "statement create", channel=world.discussion)
    await ix.wait_response()
    submit = await fake.submit_modal(world.guild, world.organizer, None, {"title": "Linked", "body": "Text."})
    text = await answer(submit)
    message = fake.messages_in(world.discussion)[-1]
    assert f"https://discord.com/channels/{world.guild.id}/{world.discussion.id}/{message['id']}" in text, text
    assert "@me" not in text


async def test_repost_puts_a_deleted_message_back(running: Booted, world: World) -> None:
    """/statement repost posts the message again with the current count and working buttons; refuses a duplicate."""
    fake = world.fake
    message = await create_statement(world, running, slug="library")
    await sign(world, message, world.reader, {"name": "Rita Reader"})
    await eventually(lambda: "**1**" in field(current(fake, message), "Signatures"))
    await fake.message_delete(current(fake, message))

    ix = await fake.slash(world.guild, world.organizer, "statement repost", statement="library")
    text = await answer(ix)
    [again] = fake.messages_in(world.discussion)
    assert again["id"] != message["id"] and ix.ephemeral
    assert f"https://discord.com/channels/{world.guild.id}/{world.discussion.id}/{again['id']}" in text, text
    assert "**1**" in field(again, "Signatures") and "Rita Reader" in field(again, "Latest signers")
    assert [c["custom_id"] for c in again["components"][0]["components"]] == [
        f"statements:{a}:{sid(message)}" for a in ("sign", "sign_org", "withdraw", "who")
    ]
    assert "Signed" in await sign(world, again, world.editor, {"name": "Ed Editor"})
    await eventually(lambda: "**2**" in field(current(fake, again), "Signatures"))

    ix = await fake.slash(world.guild, world.organizer, "statement repost", statement="library")
    assert "is still there" in await answer(ix)
    assert len(fake.messages_in(world.discussion)) == 1

    elsewhere = world.guild.add_text_channel("campaigns")
    await fake.roundtrip()
    ix = await fake.slash(world.guild, world.organizer, "statement repost", statement="library", channel=elsewhere)
    assert "old message was removed" in await answer(ix)
    [moved] = fake.messages_in(elsewhere)
    assert fake.messages_in(world.discussion) == [] and "**2**" in field(moved, "Signatures")
    row = await running.bot.store.db.fetchone(
        "SELECT channel_id, message_id FROM statements WHERE id = ?", (sid(message),)
    )
    assert (row["channel_id"], row["message_id"]) == (elsewhere.id, int(moved["id"]))
    audit = [a["action"] for a in await running.bot.store.audit.for_entity(f"statement:{sid(message)}")]
    assert audit.count("statement.repost") == 2


async def test_two_reposts_at_once_post_one_message(running: Booted, world: World) -> None:
    """/statement repost run twice at the same moment after the message was deleted: one message comes
    back; the other run is told it is still there (not a second live message the statement forgets)."""
    fake = world.fake
    message = await create_statement(world, running, slug="library")
    await fake.message_delete(current(fake, message))
    runs = await asyncio.gather(
        fake.slash(world.guild, world.organizer, "statement repost", statement="library"),
        fake.slash(world.guild, world.organizer, "statement repost", statement="library"),
    )
    texts = sorted([await answer(ix) for ix in runs], key=lambda t: "is still there" in t)
    assert "Posted **Save the library** again" in texts[0], texts
    assert "is still there" in texts[1], texts
    [again] = fake.messages_in(world.discussion)
    row = await running.bot.store.db.fetchone("SELECT message_id FROM statements WHERE id = ?", (sid(message),))
    assert row["message_id"] == int(again["id"])


async def test_a_create_form_submitted_twice_publishes_once(running: Booted, world: World) -> None:
    """The /statement create form sent twice at the same moment (a double click, a client's retry): one
    statement is published; the second submission is told it already was, with the link."""
    fake = world.fake
    cog(running)
    ix = await fake.slash(world.guild, world.organizer, "statement create", channel=world.discussion)
    await ix.wait_response()
    shown = fake.modals[world.organizer.id]
    values = {"title": "Save the library", "body": "Keep it open.", "slug": ""}
    first = await fake.submit_modal(world.guild, world.organizer, None, values)
    fake.modals[world.organizer.id] = shown
    second = await fake.submit_modal(world.guild, world.organizer, None, values)
    texts = sorted([await answer(first), await answer(second)], key=lambda t: "already" in t)
    [message] = fake.messages_in(world.discussion)
    assert "Published **Save the library**" in texts[0], texts
    assert "already published" in texts[1] and str(message["id"]) in texts[1], texts
    assert await running.bot.store.db.scalar("SELECT count(*) FROM statements") == 1


async def test_private_and_public_listing(running: Booted, world: World) -> None:
    """Public signers appear in the embed and 'Who signed'; private ones only count."""
    fake = world.fake
    message = await create_statement(world, running, public_by_default=False)
    await sign(world, message, world.reader, {"name": "Quiet Person"})  # default: not listed
    await sign(world, message, world.editor, {"name": "Loud Person", "public": "yes"})
    await eventually(lambda: "**2** (1 listed publicly)" in field(current(fake, message), "Signatures"))
    latest = field(current(fake, message), "Latest signers")
    assert "Loud Person" in latest and "Quiet Person" not in latest
    click = await fake.click(world.guild, world.admin, current(fake, message), f"statements:who:{sid(message)}")
    text = await answer(click)
    assert "Loud Person" in text and "Quiet Person" not in text and "2 signatures, 1 listed publicly" in text


async def test_organization_signing_on_and_off(running: Booted, world: World) -> None:
    """'Sign for an organization' exists only when allowed, and asks for the organization."""
    fake = world.fake
    message = await create_statement(world, running, organizations=False)
    assert [c["custom_id"].split(":")[1] for c in message["components"][0]["components"]] == ["sign", "withdraw", "who"]

    message = await create_statement(world, running, title="Second statement")
    text = await sign(
        world, message, world.reader, {"organization": "Friends of the Library", "name": "Rita", "role": "Chair"},
        action="sign_org",
    )  # fmt: skip
    assert "Organization: Friends of the Library" in text
    await eventually(
        lambda: "**Friends of the Library**, signed by Rita" in field(current(fake, message), "Latest signers")
    )


def buttons_of(message: dict[str, Any]) -> dict[str, str]:
    """{label: custom_id} of a message's buttons."""
    return {c["label"]: c["custom_id"] for row in message.get("components", []) for c in row["components"]}


async def test_member_signs_personally_and_for_organizations(running: Booted, world: World) -> None:
    """Signing for an organization keeps the personal signature; each form says which one it creates or changes."""
    fake = world.fake
    message = await create_statement(world, running)
    text = await sign(world, message, world.reader, {"name": "Rita Reader"})
    assert "Signed **Save the library** (your personal signature)" in text

    click = await fake.click(world.guild, world.reader, message, f"statements:sign_org:{sid(message)}")
    await click.wait_response()
    assert click.modal is not None and click.modal["title"] == "Sign for an organization"
    submit = await fake.submit_modal(world.guild, world.reader, None, {"organization": "Friends", "name": "Rita"})
    text = await answer(submit)
    assert "Signed **Save the library** for **Friends**" in text and "personal signature" in text
    await eventually(lambda: "**2**" in field(current(fake, message), "Signatures"))
    assert "1 on behalf of organizations" in field(current(fake, message), "Signatures")
    latest = field(current(fake, message), "Latest signers")
    assert "• Rita Reader" in latest and "**Friends**, signed by Rita" in latest

    click = await fake.click(world.guild, world.reader, current(fake, message), f"statements:sign:{sid(message)}")
    await click.wait_response()
    assert click.modal is not None and click.modal["title"] == "Change your personal signature"

    # With an organization signature already, the button asks which one (or another organization).
    click = await fake.click(world.guild, world.reader, current(fake, message), f"statements:sign_org:{sid(message)}")
    text = await answer(click)
    assert "You have signed **Save the library** for **Friends**" in text and click.ephemeral
    assert click.original is not None
    choices = buttons_of(click.original)
    assert list(choices) == ["Change: Friends", "Sign for another organization"]
    edit = await fake.click(world.guild, world.reader, click.original, choices["Change: Friends"])
    await edit.wait_response()
    assert edit.modal is not None and edit.modal["title"] == "Change: Friends"
    submit = await fake.submit_modal(world.guild, world.reader, None, {"organization": "Friends of Leeds"})
    assert "Updated your signature on **Save the library** for **Friends of Leeds**" in await answer(submit)
    another = await fake.click(world.guild, world.reader, click.original, choices["Sign for another organization"])
    await another.wait_response()
    assert another.modal is not None and another.modal["title"] == "Sign for another organization"
    submit = await fake.submit_modal(world.guild, world.reader, None, {"organization": "Parents", "name": "Rita"})
    assert "Signed **Save the library** for **Parents**" in await answer(submit)
    db = running.bot.store.db
    rows = await db.fetchall("SELECT kind, name, organization FROM signatures WHERE withdrawn_at IS NULL ORDER BY id")
    assert [tuple(r) for r in rows] == [
        ("individual", "Rita Reader", None),
        ("organization", "Rita", "Friends of Leeds"),
        ("organization", "Rita", "Parents"),
    ]

    # Withdraw asks which; the personal one goes, the organizations stay.
    click = await fake.click(world.guild, world.reader, current(fake, message), f"statements:withdraw:{sid(message)}")
    assert "Which one" in await answer(click)
    assert click.original is not None
    choices = buttons_of(click.original)
    assert list(choices) == ["Withdraw personal (Rita Reader)", "Withdraw for Friends of Leeds", "Withdraw for Parents"]
    gone = await fake.click(world.guild, world.reader, click.original, choices["Withdraw personal (Rita Reader)"])
    assert "Your signature as Rita Reader was withdrawn" in await answer(gone)
    await eventually(lambda: "**2**" in field(current(fake, message), "Signatures"))
    click = await fake.click(world.guild, world.admin, current(fake, message), f"statements:who:{sid(message)}")
    assert "2 signatures (2 on behalf of organizations)" in await answer(click)
    # Someone else's click on a forged choice id changes nothing.
    forged = await fake.click(world.guild, world.editor, gone.message or {}, choices["Withdraw for Parents"])
    assert "already withdrawn (or isn't yours)" in await answer(forged)
    assert await db.scalar("SELECT count(*) FROM signatures WHERE withdrawn_at IS NULL") == 2


async def test_untrusted_names_are_escaped(running: Booted, world: World) -> None:
    """@everyone, mentions and markdown in names never ping or format; over-long names cannot be submitted."""
    fake = world.fake
    message = await create_statement(world, running)
    text = await sign(world, message, world.reader, {"name": "@everyone **bold** <@1> =1+1"})
    assert "@everyone" not in text and "**bold**" not in text
    latest = await eventually(lambda: field(current(fake, message), "Latest signers"))
    assert "@everyone" not in latest and "<@1>" not in latest and "\\*\\*bold\\*\\*" in latest
    click = await fake.click(world.guild, world.editor, current(fake, message), f"statements:sign:{sid(message)}")
    await click.wait_response()
    assert click.modal is not None
    with pytest.raises(ValueError, match="length"):  # the form itself caps names at 100 characters
        await fake.submit_modal(world.guild, world.editor, None, {"name": "x" * 201})
    for sent in fake.messages_in(world.discussion):
        meta = fake.message_meta.get(int(sent["id"]), {})
        assert meta.get("allowed_mentions", {}).get("parse", []) == []


async def test_signers_text_cannot_make_links(running: Booted, world: World) -> None:
    """Bare URLs, <https://...> and [x](https://...) in names and organizations show as plain text."""
    fake = world.fake
    message = await create_statement(world, running)
    hostile = {
        "organization": "<https://evil.example/org>",
        "name": "[Ada](https://evil.example/login)",
        "role": "see https://evil.example/role",
        "public": "yes",
    }
    await sign(world, message, world.reader, hostile, action="sign_org")
    latest = await eventually(lambda: field(current(fake, message), "Latest signers"))
    click = await fake.click(world.guild, world.editor, current(fake, message), f"statements:who:{sid(message)}")
    who = await answer(click)
    for shown in (latest, who):
        assert "evil.example" in shown
        assert not re.search(r"https?://", shown), shown  # the scheme is escaped: https\://
        assert not re.search(r"(?<!\\)\]\(", shown), shown  # no masked link
        assert "https\\://evil.example/login" in shown


async def test_two_submits_at_once_one_signature(running: Booted, world: World) -> None:
    """Two form submits from the same account at the same moment give one signature, both answered."""
    fake = world.fake
    message = await create_statement(world, running)
    click = await fake.click(world.guild, world.reader, message, f"statements:sign:{sid(message)}")
    await click.wait_response()
    entry = fake.modals[world.reader.user.id]
    first = await fake.submit_modal(world.guild, world.reader, None, {"name": "Rita One"})
    fake.modals[world.reader.user.id] = entry
    second = await fake.submit_modal(world.guild, world.reader, None, {"name": "Rita Two"})
    texts = sorted([await answer(first), await answer(second)])
    assert any(t.startswith("Signed") for t in texts) and any(t.startswith("Updated") for t in texts)
    assert await running.bot.store.db.scalar("SELECT count(*) FROM signatures") == 1


async def test_block_and_hide(running: Booted, world: World) -> None:
    """Blocking hides an account's signature and refuses its next attempt; hide works per signature; all audited."""
    fake = world.fake
    message = await create_statement(world, running, slug="library")
    await sign(world, message, world.reader, {"name": "Spam Spammer"})
    await sign(world, message, world.editor, {"name": "Ed Editor"})
    ix = await fake.slash(world.guild, world.organizer, "statement block", statement="library", user=world.reader)
    assert "hid their signature" in await answer(ix)
    text = await sign(world, current(fake, message), world.reader, {"name": "Again"})
    assert "blocked" in text
    await eventually(lambda: "Spam" not in field(current(fake, message), "Latest signers")
                     and "Ed Editor" in field(current(fake, message), "Latest signers"))  # fmt: skip
    ix = await fake.slash(world.guild, world.organizer, "statement signatures", statement="library")
    listing = await answer(ix)
    assert "hidden" in listing and "new_account" in listing
    editor_sig = await running.bot.store.db.scalar("SELECT id FROM signatures WHERE name = 'Ed Editor'")
    ix = await fake.slash(world.guild, world.organizer, "statement hide", statement="library", signature_id=editor_sig)
    assert "Hid signature" in await answer(ix)
    await eventually(lambda: "**0**" in field(current(fake, message), "Signatures"))
    audit = await running.bot.store.audit.for_entity(f"statement:{sid(message)}")
    assert [a["action"] for a in audit] == ["statement.create", "statement.block", "statement.signature.hide"]


async def test_non_organizer_refused(running: Booted, world: World) -> None:
    """A reader using organizer commands gets a clear refusal."""
    fake = world.fake
    await create_statement(world, running, slug="library")
    for name, options in (
        ("statement create", {}),
        ("statement close", {"statement": "library"}),
        ("statement export", {"statement": "library"}),
        ("statement block", {"statement": "library", "user": world.editor}),
    ):
        ix = await fake.slash(world.guild, world.reader, name, **options)
        text = await answer(ix)
        assert "Only members with the organizer role" in text, (name, text)
        assert ix.ephemeral


async def test_close_reopen_and_closed_refusal(running: Booted, world: World) -> None:
    """Closing disables signing, posts the final count; reopening enables it again."""
    fake = world.fake
    message = await create_statement(world, running, slug="library")
    await sign(world, message, world.reader, {"name": "Rita"})
    ix = await fake.slash(world.guild, world.organizer, "statement close", statement="library")
    assert "Closed" in await answer(ix)
    final = await eventually(lambda: [m for m in fake.messages_in(world.discussion) if "Final count" in m["content"]])
    assert "**1**" in final[0]["content"]
    await eventually(lambda: current(fake, message)["components"][0]["components"][0].get("disabled"))
    with pytest.raises(ValueError, match="disabled"):
        await fake.click(world.guild, world.editor, current(fake, message), f"statements:sign:{sid(message)}")
    ix = await fake.slash(world.guild, world.organizer, "statement reopen", statement="library")
    assert "Reopened" in await answer(ix)
    await eventually(lambda: not current(fake, message)["components"][0]["components"][0].get("disabled"))
    assert "Signed" in await sign(world, current(fake, message), world.editor, {"name": "Ed"})


async def test_edit_posts_note(running: Booted, world: World) -> None:
    """Editing the text updates the message and leaves a short note in the channel, without pings."""
    fake = world.fake
    message = await create_statement(world, running, slug="library")
    ix = await fake.slash(world.guild, world.organizer, "statement edit", statement="library")
    await ix.wait_response()
    assert ix.modal is not None
    submit = await fake.submit_modal(world.guild, world.organizer, None, {"body": "New text @everyone"})
    assert "Updated the text" in await answer(submit)
    await eventually(lambda: current(fake, message)["embeds"][0]["description"] == "New text @everyone")
    note = await eventually(lambda: [m for m in fake.messages_in(world.discussion) if "was edited" in m["content"]])
    assert not note[0].get("mention_everyone")


async def test_export_from_discord(running: Booted, world: World) -> None:
    """/statement export sends an ephemeral CSV (BOM, neutralised formulas) or JSON file."""
    fake = world.fake
    message = await create_statement(world, running, slug="library")
    await sign(world, message, world.reader, {"name": "=cmd|' /C calc'!A0", "role": "+44", "place": "-x, @y"})
    ix = await fake.slash(world.guild, world.organizer, "statement export", statement="library", format="csv")
    await ix.wait_original()
    attachment = ix.messages[0]["attachments"][0]
    data = fake.attachment_bytes(attachment)
    assert data.startswith(b"\xef\xbb\xbf") and ix.ephemeral
    row = next(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert row["name"].startswith("'=") and row["role"] == "'+44" and row["city"] == "'-x" and row["country"] == "'@y"
    assert row["discord_user_id"] == str(world.reader.id)
    ix = await fake.slash(world.guild, world.organizer, "statement export", statement="library", format="json")
    await ix.wait_original()
    document = json.loads(fake.attachment_bytes(ix.messages[0]["attachments"][0]))
    assert document["signatures"][0]["name"] == "=cmd|' /C calc'!A0"
    cli = await export_statement(running.bot.store, "library", fmt="csv", guild_id=world.guild.id,
                                 include_discord_ids=True, bom=False)  # fmt: skip
    assert cli.startswith(b"name,role")


async def test_mirror_enqueued(running: Booted, world: World) -> None:
    """The statement is queued for the site once at publish, with a final update at close."""
    message = await create_statement(world, running, slug="library")
    await sign(world, message, world.reader, {"name": "Rita"})
    ix = await world.fake.slash(world.guild, world.organizer, "statement close", statement="library")
    await answer(ix)
    rows = await running.bot.store.outbox.for_entity(f"statement:{sid(message)}")
    keys = [r.idempotency_key for r in rows]
    assert keys == [f"statement:{sid(message)}:create:1", f"statement:{sid(message)}:update:1"]
    assert [s["name"] for s in rows[-1].payload["metadata"]["signatories"]] == ["Rita"]


async def test_the_organizations_question_fits_one_message_whatever_the_names(running: Booted, world: World) -> None:
    """A member with the most organization signatures, long names full of markdown characters (each
    escaped, so twice as long) on a long title: "Sign for an organization" still answers."""
    fake = world.fake
    message = await create_statement(world, running, title="*_" * 100, slug="long")
    service = running.cog("Statements").service
    for n in range(ORGANIZATIONS_PER_MEMBER):
        await service.sign(
            SignRequest(
                statement_id=sid(message), user_id=world.reader.id, kind="organization", name="Rita",
                role=None, organization=f"{n}" + "_*" * 74, city=None, country=None, public=True,
                account_created_at=START, guild_id=world.guild.id,
            )
        )  # fmt: skip
    click = await fake.click(world.guild, world.reader, message, f"statements:sign_org:{sid(message)}")
    text = await answer(click)
    assert text.startswith("You have signed") and len(text) <= 2000
    assert click.original is not None and len(buttons_of(click.original)) == ORGANIZATIONS_PER_MEMBER + 1


async def test_deadline_and_restart(world: World, booter: Any) -> None:
    """A statement survives a restart: buttons still work; the deadline closes it after the restart."""
    fake = world.fake
    clock = FakeClock(START)
    first: Booted = await booter(clock=clock)
    await first.bot.store.settings.set_many(
        world.guild.id, {"organizer_role_id": world.organizer_role.id}, actor_id=None
    )
    message = await create_statement(world, first, slug="library", deadline="2026-03-01 13:00")
    assert "Signed" in await sign(world, message, world.reader, {"name": "Before Restart"})
    await first.stop()

    second: Booted = await booter(clock=clock)
    cog(second)
    assert "Signed" in await sign(world, current(fake, message), world.editor, {"name": "After Restart"})
    assert not [m for m in fake.messages_in(world.discussion) if "Final count" in m["content"]]
    clock.advance(hours=1, minutes=1)
    second.cog("Statements").wake_timer()
    final = await eventually(lambda: [m for m in fake.messages_in(world.discussion) if "Final count" in m["content"]])
    assert "**2**" in final[0]["content"]
    await eventually(lambda: current(fake, message)["components"][0]["components"][0].get("disabled"))
    await second.stop()

    third: Booted = await booter(clock=clock)  # no second announcement after another restart
    await third.cog("Statements").run_timer_once()
    await fake.roundtrip()
    assert len([m for m in fake.messages_in(world.discussion) if "Final count" in m["content"]]) == 1


async def test_deadline_passed_while_down(world: World, booter: Any) -> None:
    """A deadline that passes while the bot is stopped closes it at the next start; an open form is refused."""
    fake = world.fake
    clock = FakeClock(START)
    first: Booted = await booter(clock=clock)
    await first.bot.store.settings.set_many(
        world.guild.id, {"organizer_role_id": world.organizer_role.id}, actor_id=None
    )
    message = await create_statement(world, first, slug="library", deadline="2026-03-02")
    click = await fake.click(world.guild, world.reader, message, f"statements:sign:{sid(message)}")
    await click.wait_response()  # the form is open in the reader's client across the restart
    await first.stop()
    clock.advance(days=2)
    second: Booted = await booter(clock=clock)
    cog(second)
    final = await eventually(lambda: [m for m in fake.messages_in(world.discussion) if "Final count" in m["content"]])
    assert "**0**" in final[0]["content"]
    await eventually(lambda: current(fake, message)["components"][0]["components"][0].get("disabled"))
    submit = await fake.submit_modal(world.guild, world.reader, None, {"name": "Too Late"})
    assert "is closed" in await answer(submit)
    assert await second.bot.store.db.scalar("SELECT count(*) FROM signatures") == 0


async def test_bad_deadline_explains_format(running: Booted, world: World) -> None:
    """An unreadable deadline is answered with the expected format."""
    ix = await world.fake.slash(world.guild, world.organizer, "statement create", deadline="next friday")
    text = await answer(ix)
    assert "2026-12-31 18:00" in text and ix.ephemeral


async def test_autocomplete_lists_statements(running: Booted, world: World) -> None:
    """Commands find statements by slug or title as the organizer types."""
    await create_statement(world, running, slug="library", title="Save the library")
    await create_statement(world, running, slug="parks", title="Keep the parks")
    ix = await world.fake.autocomplete(world.guild, world.organizer, "statement close", "statement", "park")
    await ix.wait_response()
    assert [c["value"] for c in ix.choices or []] == ["parks"]


def test_cut_line_keeps_escapes_and_bold_whole() -> None:
    """Cut lines never end in half an escape pair and close the bold they cut into."""
    line = "• **" + "\\*" * 300 + "**, signed by " + "\\_" * 100
    for limit in range(20, 700, 7):
        cut = cut_line(line, limit)
        body = cut.removesuffix("**").removesuffix("…")
        assert len(cut) <= limit and cut.endswith(("…", "…**"))
        assert (len(body) - len(body.rstrip("\\"))) % 2 == 0, cut[-8:]
        assert re.sub(r"\\.", "", cut).count("**") % 2 == 0, cut[-8:]
    assert cut_line("• Ann", 10) == "• Ann"


async def test_longest_markdown_signer_does_not_freeze_message(running: Booted, world: World) -> None:
    """An organization entry at the form's limits, all markdown, still fits; later edits keep working."""
    fake = world.fake
    message = await create_statement(world, running)
    values = {"organization": "*" * 150, "name": "_" * 100, "role": "*" * 100, "place": "*" * 74 + "," + "_" * 75}
    assert "Signed" in await sign(world, message, world.reader, values, action="sign_org")
    await eventually(lambda: "**1**" in field(current(fake, message), "Signatures"))
    latest = field(current(fake, message), "Latest signers")
    assert latest.startswith("• **\\*\\*") and len(latest) <= 1024
    await sign(world, current(fake, message), world.editor, {"name": "Ed Editor"})
    await eventually(lambda: "**2**" in field(current(fake, message), "Signatures"))
    assert field(current(fake, message), "Latest signers").startswith("• Ed Editor")
    assert not [r for r in fake.requests_to("/messages/{message_id}", method="PATCH") if r.status == 400]


async def test_failed_edit_is_retried(running: Booted, world: World) -> None:
    """A message edit that fails with a server error is retried until the message shows the count."""
    fake = world.fake
    message = await create_statement(world, running)
    await sign(world, message, world.reader, {"name": "Rita"})
    await eventually(lambda: "**1**" in field(current(fake, message), "Signatures"))
    # 503: discord.py retries 500s itself (for ~25 s), so this is the error it hands to the bot.
    fake.fail_next("PATCH", rf"/channels/\d+/messages/{message['id']}$", 503, times=2)
    await sign(world, current(fake, message), world.editor, {"name": "Ed"})
    await eventually(lambda: "**2**" in field(current(fake, message), "Signatures"))
    edits = fake.requests_to("/messages/{message_id}", method="PATCH")
    assert [r.status for r in edits][-3:] == [503, 503, 200]


async def test_unreachable_message_reported_once_not_retried(running: Booted, world: World) -> None:
    """403 on the edit: one alert, no retry loop; the next change tries again and succeeds."""
    fake = world.fake
    statements = cog(running)
    message = await create_statement(world, running)
    await statements.refresher.wait_idle()
    fake.fail_next("PATCH", rf"/channels/\d+/messages/{message['id']}$", 403, code=50001, message="Missing Access")
    await sign(world, message, world.reader, {"name": "Rita"})
    await eventually(lambda: [m for m in fake.messages_in(world.alerts) if "statement" in m["content"]])
    await statements.refresher.wait_idle()
    assert "**0**" in field(current(fake, message), "Signatures")  # not retried
    await sign(world, current(fake, message), world.editor, {"name": "Ed"})
    await eventually(lambda: "**2**" in field(current(fake, message), "Signatures"))
    alerts = [m for m in fake.messages_in(world.alerts) if "statement" in m["content"]]
    assert len(alerts) == 1 and "no access" in alerts[0]["content"]


async def test_publish_failure_removes_posted_message(
    running: Booted, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If publishing fails after the post, the message (with live buttons) is deleted and the draft dropped."""
    fake = world.fake
    statements = cog(running)

    async def failing_publish(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("disk I/O error")

    monkeypatch.setattr(statements.service, "publish", failing_publish)
    ix = await fake.slash(world.guild, world.organizer, "statement create", channel=world.discussion)
    await ix.wait_response()
    submit = await fake.submit_modal(world.guild, world.organizer, None, {"title": "Doomed", "body": "Text."})
    text = await answer(submit)
    assert "couldn't publish" in text and "removed its message" in text and submit.ephemeral
    assert [m["embeds"][0]["title"] for m in fake.deleted_messages] == ["Doomed"]
    assert fake.messages_in(world.discussion) == []
    assert await running.bot.store.db.scalar("SELECT count(*) FROM statements") == 0


async def test_sign_ons_during_shutdown_are_asked_to_retry(running: Booted, world: World) -> None:
    """Once the cog is unloading, a click or a form gets a clear "try again" and nothing is recorded."""
    fake = world.fake
    message = await create_statement(world, running)
    statements = cog(running)
    click = await fake.click(world.guild, world.reader, message, f"statements:sign:{sid(message)}")
    assert (await click.wait_response())["type"] == 9
    statements._closing = True  # what cog_unload sets first
    submit = await fake.submit_modal(world.guild, world.reader, None, {"name": "Rita Reader"})
    assert "restarting" in await answer(submit) and submit.ephemeral
    click = await fake.click(world.guild, world.editor, message, f"statements:sign:{sid(message)}")
    assert "restarting" in await answer(click)
    assert await running.bot.store.db.scalar("SELECT count(*) FROM signatures") == 0
    statements._closing = False


async def test_sign_ons_are_answered_from_the_gateway_payload(running: Booted, world: World) -> None:
    """Sign clicks and sign forms skip discord.py's `interaction` event (a parsed message and a task
    per listener each: the sign-on hot path); other buttons still take it; answers stay private."""
    fake = world.fake
    message = await create_statement(world, running)
    seen: list[str] = []

    async def on_interaction(interaction: Any) -> None:
        seen.append(str((interaction.data or {}).get("custom_id")))

    running.bot.add_listener(on_interaction)
    try:
        click = await fake.click(world.guild, world.reader, message, f"statements:sign:{sid(message)}")
        assert (await click.wait_response())["type"] == 9
        submit = await fake.submit_modal(world.guild, world.reader, None, {"name": "Rita Reader"})
        assert "Signed **Save the library**" in await answer(submit) and submit.ephemeral
        click = await fake.click(world.guild, world.reader, message, f"statements:who:{sid(message)}")
        assert "Rita Reader" in await answer(click)
    finally:
        running.bot.remove_listener(on_interaction)
    assert seen == [f"statements:who:{sid(message)}"]


async def test_sigkill_amid_a_sign_on_burst_loses_no_answered_signature(world: World, tmp_path: Path) -> None:
    """`readersviews run` killed (SIGKILL, no clean-up) amid a burst of sign-ons: every member who was
    answered "Signed" has exactly one signature after the restart, and Sign still works."""
    fake = world.fake
    members = [world.guild.add_member(f"signer{i}") for i in range(400)]
    database = tmp_path / "readersviews.sqlite3"
    settings = {"guilds": {world.guild.id: {"organizer_role_id": world.organizer_role.id}}}
    processes = [await spawn(world, tmp_path, "-m", "bot", "--config", "{config}", "run", **settings)]
    tasks: list[asyncio.Future[None]] = []
    try:
        await fake.wait_for_ready(timeout=30)
        await fake.roundtrip()
        ix = await fake.slash(world.guild, world.organizer, "statement create", channel=world.discussion)
        assert (await ix.wait_response(timeout=30))["type"] == 9
        submit = await fake.submit_modal(world.guild, world.organizer, None, {"title": "Burst", "body": "We sign."})
        await submit.wait_original(timeout=30)
        message = fake.messages_in(world.discussion)[-1]
        signed: set[int] = set()

        async def sign_on(member: Member) -> None:
            click = await fake.click(world.guild, member, message, f"statements:sign:{sid(message)}")
            if (await click.wait_response(timeout=60))["type"] == 9:
                submit = await fake.submit_modal(world.guild, member, None, {"name": f"Signer {member.id}"})
                if str((await submit.wait_response(timeout=60))["data"]["content"]).startswith("Signed"):
                    signed.add(member.id)

        tasks = [asyncio.ensure_future(sign_on(member)) for member in members]
        await eventually(lambda: len(signed) >= 100, timeout=60)
        processes[0].kill()
        await processes[0].wait()
        answered = set(signed)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

        conn = sqlite3.connect(database)
        try:
            rows = conn.execute(
                "SELECT user_id, count(*) FROM signatures WHERE withdrawn_at IS NULL GROUP BY user_id"
            ).fetchall()
        finally:
            conn.close()
        assert answered <= {int(uid) for uid, _ in rows}
        assert all(n == 1 for _, n in rows)

        fake.gateway.ready.clear()
        processes.append(await spawn(world, tmp_path, "-m", "bot", "--config", "{config}", "run", **settings))
        await fake.wait_for_ready(timeout=30)
        await fake.roundtrip()
        late = next(m for m in members if m.id not in answered)
        click = await fake.click(world.guild, late, message, f"statements:sign:{sid(message)}")
        assert (await click.wait_response(timeout=30))["type"] == 9
    finally:
        for task in tasks:
            task.cancel()
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def test_sign_on_answers_skip_the_rest_hooks_and_are_still_counted(
    running: Booted, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sign-on answers go out on a session of their own, without the REST trace hooks (pacer, metrics:
    callbacks are not under the global limit), and are counted in the metrics once all the same."""
    fake = world.fake
    message = await create_statement(world, running)
    counted: list[str] = []
    count = metrics.count_discord_answer

    def recording(method: str, path: str, status: int) -> None:
        counted.append(path)
        count(method, path, status)

    monkeypatch.setattr(metrics, "count_discord_answer", recording)
    answered = metrics.REGISTRY.get_sample_value("readersviews_interactions_total", {"outcome": "answered"}) or 0
    assert "Signed" in await sign(world, message, world.reader, {"name": "Rita Reader"})
    click = await fake.click(world.guild, world.reader, message, f"statements:who:{sid(message)}")
    assert "Rita Reader" in await answer(click)
    by_hook = f"/api/v10/interactions/{click.id}/{click.token}/callback"  # what the REST hook sees
    # Counted once the bot has read each answer, which can be just after the fake got it.
    await eventually(lambda: len([path for path in counted if "/interactions/" in path]) == 3)
    assert [path for path in counted if "/interactions/" in path] == [CALLBACK_PATH, CALLBACK_PATH, by_hook]
    after = metrics.REGISTRY.get_sample_value("readersviews_interactions_total", {"outcome": "answered"})
    assert after == answered + 3  # the click on Sign, the form, the click on Who signed


async def test_an_answer_discord_refuses_goes_through_the_one_error_policy(
    running: Booted, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """A statement button whose answer Discord refuses (here a 400 on "Who signed?") is handled like
    every other failure (bot.errors): logged once with its traceback, and the member still hears
    that something went wrong, instead of a warning line and a click that shows nothing."""
    fake = world.fake
    message = await create_statement(world, running)
    fake.fail_next("POST", r"/interactions/\d+/[^/]+/callback$", 400, code=50035, message="Invalid Form Body")
    with caplog.at_level(logging.WARNING):
        click = await fake.click(world.guild, world.reader, message, f"statements:who:{sid(message)}")
        assert await answer(click) == UNEXPECTED
    failures = [r for r in caplog.records if r.levelno >= logging.WARNING and "statements:who" in r.getMessage()]
    assert len(failures) == 1 and failures[0].levelno == logging.ERROR
    assert failures[0].exc_info is not None and isinstance(failures[0].exc_info[1], discord.HTTPException)


async def test_late_sign_on_answers_are_counted_and_logged_once(
    running: Booted, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Answers Discord refuses as too late (10062, when a burst outruns the bot) are each counted in
    the metrics; the log says so once, not once each (a line per answer would add to the overload)."""
    fake = world.fake
    message = await create_statement(world, running)
    before = metrics.REGISTRY.get_sample_value("readersviews_interactions_total", {"outcome": "late"}) or 0
    fake.interaction_timeout = 0.0  # every answer arrives after Discord gave up
    try:
        with caplog.at_level(logging.WARNING, logger="bot.sign_ons"):
            for member in (world.reader, world.editor, world.organizer):
                click = await fake.click(world.guild, member, message, f"statements:sign:{sid(message)}")
                await click.wait_for(lambda ix: len(ix.callbacks) == 1)
            await eventually(
                lambda: (
                    metrics.REGISTRY.get_sample_value("readersviews_interactions_total", {"outcome": "late"})
                    == before + 3
                )
            )
    finally:
        fake.interaction_timeout = 3.0
    assert len([r for r in caplog.records if "too late" in r.getMessage() or "could not answer" in r.getMessage()]) == 1


async def test_sign_on_answers_wait_out_a_429_and_retry_a_server_error(running: Booted, world: World) -> None:
    """The hot path's own callback request (bot.signing.post_callback) answers Discord's errors as
    discord.py does: a 429 is waited out (`retry_after`) and sent again, a 5xx is tried again after a
    pause. It asks for Discord's default answer, 204 without a body (no `with_response`)."""
    fake = world.fake
    message = await create_statement(world, running)
    callback = r"/interactions/\d+/[^/]+/callback$"
    fake.fail_next("POST", callback, 429, retry_after=0.3)
    click = await fake.click(world.guild, world.reader, message, f"statements:sign:{sid(message)}")
    assert (await click.wait_response())["type"] == 9
    fake.fail_next("POST", callback, 500)
    submit = await fake.submit_modal(world.guild, world.reader, None, {"name": "Rita Reader"})
    assert "Signed" in await answer(submit)
    sent = [
        r
        for r in fake.requests_to("/callback", method="POST")
        if r.path.startswith((f"/interactions/{click.id}/", f"/interactions/{submit.id}/"))
    ]
    assert [r.status for r in sent] == [429, 204, 500, 204]
    assert sent[1].at - sent[0].at >= 0.3  # waited as told
    assert all("with_response" not in r.query for r in sent)
    assert (await running.bot.store.statements.counts(sid(message))).signed == 1


async def test_a_refused_statement_form_gives_the_organizer_their_text_back(running: Booted, world: World) -> None:
    """A statement form refused (a slug with spaces) answers why and gives back the title and text typed."""
    fake = world.fake
    ix = await fake.slash(world.guild, world.organizer, "statement create", channel=world.discussion)
    assert (await ix.wait_response())["type"] == 9
    body = "We, the undersigned, ask the council to keep the library open. " * 50
    submit = await fake.submit_modal(
        world.guild, world.organizer, None, {"title": "Save the library", "body": body, "slug": "Save It"}
    )
    assert "Slugs are lowercase" in await answer(submit)
    message = submit.original
    assert message is not None and message["attachments"], message
    kept = fake.attachment_bytes(message["attachments"][0]).decode()
    assert "Save the library" in kept and body in kept
    assert fake.messages_in(world.discussion) == []


async def test_a_create_killed_between_posting_and_publishing_is_finished(world: World, booter: Any) -> None:
    """The bot dies after posting a statement's message and before publishing it: after the restart, the
    timer publishes it (its Sign button works, its slug is its own); a draft whose message never got
    posted is dropped, and its slug is free again."""
    fake = world.fake
    clock = FakeClock(START)
    first: Booted = await booter(clock=clock)
    await first.bot.store.settings.set_many(
        world.guild.id, {"organizer_role_id": world.organizer_role.id}, actor_id=None
    )
    service = cog(first).service

    async def killed(*args: Any, **kwargs: Any) -> Any:
        raise asyncio.CancelledError  # as a SIGKILL: nothing after it runs, no clean-up

    service.publish = killed  # type: ignore[method-assign]
    ix = await fake.slash(world.guild, world.organizer, "statement create", channel=world.discussion)
    await ix.wait_response()
    await fake.submit_modal(world.guild, world.organizer, None, {"title": "Posted", "body": "Text.", "slug": "posted"})
    message = await eventually(lambda: (fake.messages_in(world.discussion) or [None])[-1])
    await service.create_draft(
        guild_id=world.guild.id, organizer_id=world.organizer.id, title="Never posted", body="Text.",
        channel_id=world.discussion.id, closes_at=None, slug="never",
    )  # fmt: skip
    await first.stop()

    second: Booted = await booter(clock=clock)
    clock.advance(minutes=20)
    await second.cog("Statements").run_timer_once()
    store = second.bot.store
    rows = await store.db.fetchall("SELECT slug, status, message_id FROM statements ORDER BY id")
    assert [(r["slug"], r["status"], r["message_id"]) for r in rows] == [("posted", "open", int(message["id"]))]
    assert "Signed" in await sign(world, current(fake, message), world.reader, {"name": "Rita Reader"})
    draft = await cog(second).service.create_draft(
        guild_id=world.guild.id, organizer_id=world.organizer.id, title="Again", body="Text.",
        channel_id=world.discussion.id, closes_at=None, slug="never",
    )  # fmt: skip
    assert draft.slug == "never"


async def test_a_draft_in_a_channel_gone_or_unreadable(
    world: World, booter: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Draft recovery: a draft whose channel was deleted is dropped (its message went with the channel)
    instead of being looked for at every timer for ever; one in a channel the bot can't read is tried
    again at each timer, logged once, and handled once it can be read."""
    fake = world.fake
    clock = FakeClock(START)
    booted: Booted = await booter(clock=clock)
    service = cog(booted).service
    gone = world.guild.add_text_channel("gone")
    hidden = world.guild.add_text_channel("hidden")
    for channel in (gone, hidden):
        await service.create_draft(
            guild_id=world.guild.id, organizer_id=world.organizer.id, title=channel.name, body="Text.",
            channel_id=channel.id, closes_at=None, slug=channel.name,
        )  # fmt: skip
    await fake.channel_delete(gone)
    fake.fail_next("GET", rf"/channels/{hidden.id}/messages", 403, code=50001, message="Missing Access", times=2)
    clock.advance(minutes=20)
    store = booted.bot.store
    with caplog.at_level(logging.WARNING, logger="bot.statement_views"):
        for _ in range(2):
            await booted.cog("Statements").run_timer_once()
    rows = await store.db.fetchall("SELECT slug FROM statements ORDER BY id")
    assert [r["slug"] for r in rows] == ["hidden"]
    assert len([r for r in caplog.records if "can't look for its message" in r.getMessage()]) == 1
    await booted.cog("Statements").run_timer_once()  # readable again: no message there, so dropped
    assert await store.db.fetchall("SELECT slug FROM statements") == []
