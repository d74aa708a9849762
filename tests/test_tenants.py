"""Every server is a separate tenant, and members act at the same time.

A second server ("The Daily") shares the bot with The Weekly. Custom_ids are untrusted (a modified
client sends whatever it likes), so the forged interactions below rewrite a form's or a button's id
to point at The Weekly's objects, exactly as such a client would, and check that nothing changes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.config import WebhookSettings
from bot.site.webhook import WebhookAdapter
from tests.fakediscord import EPHEMERAL, FakeDiscord, perms
from tests.fakediscord.world import Member
from tests.helpers import (
    LONG_ENOUGH,
    Booted,
    FakeClock,
    Harness,
    World,
    answer,
    button_id,
    create_statement,
    eventually,
    letter,
    make_article,
    sid,
    sign,
)
from tests.sitefake import WEBHOOK_SECRET, FakeSite

STATEMENT_TEXT = "We, the undersigned, ask the council to keep the library open."


@pytest.fixture
async def daily(running: Booted, world: World) -> World:
    """A second server with its own staff and settings; its reader is also a member of The Weekly."""
    fake = world.fake
    guild = fake.add_guild("The Daily")
    editor_role = guild.add_role("Editor")
    organizer_role = guild.add_role("Organizer")
    admins = guild.add_role("Admins", permissions=perms.MANAGE_GUILD)
    server = World(
        fake=fake,
        guild=guild,
        admin=guild.add_member("mallory-admin", roles=[admins]),
        organizer=guild.add_member("oscar-organizer", roles=[organizer_role]),
        editor=guild.add_member("eve-editor", roles=[editor_role]),
        reader=guild.add_member(world.reader.user.username, user=world.reader.user),
        editor_role=editor_role,
        organizer_role=organizer_role,
        alerts=guild.add_text_channel("alerts"),
        review=guild.add_text_channel("review"),
        forum=guild.add_forum_channel("articles", tags=["News"]),
        discussion=guild.add_text_channel("discussion"),
        locked=guild.add_text_channel("announcements"),
    )
    await fake.settle()
    await running.bot.store.settings.set_many(
        guild.id,
        {
            "alert_channel_id": server.alerts.id,
            "review_channel_id": server.review.id,
            "editor_role_id": editor_role.id,
            "organizer_role_id": organizer_role.id,
        },
        actor_id=None,
    )
    running.cog("Statements").refresher.interval = 0.05
    return server


async def refused(ix: Any, words: str) -> None:
    response = await ix.wait_response()
    text = await answer(ix)
    assert words in text, text
    if response["type"] == 4:
        assert response["data"]["flags"] & EPHEMERAL


def forge_form(fake: FakeDiscord, member: Member, custom_id: str) -> None:
    """A modified client submits the form it was shown under another custom_id."""
    modal, _ = fake.modals[member.id]
    modal["custom_id"] = custom_id


def forge_button(fake: FakeDiscord, message: dict[str, Any], new: str) -> None:
    """A modified client clicks a button whose custom_id it rewrote: the message's first button gets
    `new`. Click right after, with no await in between: the bot may edit the message (a statement's
    count), which puts its own buttons back."""
    stored = fake.find_message(message["id"])
    assert stored is not None
    stored["components"][0]["components"][0]["custom_id"] = new


# -- statements ---------------------------------------------------------------------------------------


async def test_statement_edit_form_cannot_rewrite_another_servers_statement(
    running: Booted, world: World, daily: World
) -> None:
    """Daily's organizer edits their own statement, with the form's id pointed at the Weekly's: refused."""
    fake = world.fake
    theirs = await create_statement(world, running, title="Save the library")
    ours = await create_statement(daily, running, title="Fix the roads")
    ix = await fake.slash(daily.guild, daily.organizer, "statement edit", statement="fix-the-roads")
    assert (await ix.wait_response())["type"] == 9
    forge_form(fake, daily.organizer, f"statements:editform:{sid(theirs)}")
    submit = await fake.submit_modal(daily.guild, daily.organizer, None, {"title": "Hacked", "body": "Hacked body"})
    await refused(submit, "no longer exists")

    statement = await running.bot.store.db.fetchone(
        "SELECT title, body, site_dirty FROM statements WHERE id = ?", (sid(theirs),)
    )
    assert statement is not None and (statement[0], statement[1]) == ("Save the library", STATEMENT_TEXT)
    assert not [m for m in fake.messages_in(world.discussion) if "was edited" in m["content"]]
    assert sid(ours) != sid(theirs)


async def test_statement_create_form_cannot_post_in_another_servers_channel(
    running: Booted, world: World, daily: World
) -> None:
    """The channel id in the create form's custom_id must be a channel of the form's own server."""
    fake = world.fake
    ix = await fake.slash(daily.guild, daily.organizer, "statement create", channel=daily.discussion)
    assert (await ix.wait_response())["type"] == 9
    forge_form(fake, daily.organizer, f"statements:createform:{world.discussion.id}:0:1:1")
    submit = await fake.submit_modal(daily.guild, daily.organizer, None, {"title": "Spam", "body": "Spam"})
    await refused(submit, "can't find that channel in this server")
    assert fake.messages_in(world.discussion) == []
    assert await running.bot.store.db.scalar("SELECT count(*) FROM statements") == 0


async def test_sign_form_and_buttons_cannot_reach_another_servers_statement(
    running: Booted, world: World, daily: World
) -> None:
    """Sign, withdraw and "who signed" with a Weekly statement's id, from the Daily: answered as missing."""
    fake = world.fake
    theirs = await create_statement(world, running, title="Save the library")
    ours = await create_statement(daily, running, title="Fix the roads")
    assert "Signed" in await sign(world, theirs, world.reader, {"name": "Rita Weekly"})
    their_id, our_id = sid(theirs), sid(ours)

    click = await fake.click(daily.guild, daily.editor, ours, f"statements:sign:{our_id}")
    assert (await click.wait_response())["type"] == 9
    forge_form(fake, daily.editor, f"statements:signform:{their_id}:individual")
    await refused(await fake.submit_modal(daily.guild, daily.editor, None, {"name": "Fake Name"}), "no longer exists")

    for action in ("sign", "withdraw", "who"):
        forge_button(fake, ours, f"statements:{action}:{their_id}")
        forged = await fake.click(daily.guild, daily.reader, ours, f"statements:{action}:{their_id}")
        await refused(forged, "no longer exists")

    rows = await running.bot.store.db.fetchall(
        "SELECT name, withdrawn_at FROM signatures WHERE statement_id = ?", (their_id,)
    )
    assert [(r[0], r[1]) for r in rows] == [("Rita Weekly", None)]


async def test_signature_choice_buttons_cannot_reach_another_servers_statement(
    running: Booted, world: World, daily: World
) -> None:
    """The private "which signature?" buttons (change, sign for another organization, withdraw one)
    carry a statement id too: pointed at a Weekly statement from the Daily, they are refused."""
    fake = world.fake
    theirs = await create_statement(world, running, title="Save the library")
    ours = await create_statement(daily, running, title="Fix the roads")
    assert "Signed" in await sign(world, theirs, world.reader, {"name": "Rita Weekly"})
    their_id = sid(theirs)
    signature = await running.bot.store.db.fetchone("SELECT id FROM signatures WHERE statement_id = ?", (their_id,))
    assert signature is not None

    for forged_id in (
        f"statements:unsign:{their_id}:{signature[0]}",
        f"statements:orgnew:{their_id}:0",
        f"statements:orgedit:{their_id}:{signature[0]}",
    ):
        forge_button(fake, ours, forged_id)
        await refused(await fake.click(daily.guild, daily.reader, ours, forged_id), "no longer exists")

    rows = await running.bot.store.db.fetchall(
        "SELECT name, withdrawn_at FROM signatures WHERE statement_id = ?", (their_id,)
    )
    assert [(r[0], r[1]) for r in rows] == [("Rita Weekly", None)]


async def test_statement_commands_and_autocomplete_see_only_their_server(
    running: Booted, world: World, daily: World
) -> None:
    """A slug of another server is unknown; autocomplete lists only this server's, and nothing to non-organizers."""
    fake = world.fake
    await create_statement(world, running, title="Save the library")
    await create_statement(daily, running, title="Fix the roads")
    ix = await fake.slash(daily.guild, daily.organizer, "statement close", statement="save-the-library")
    await refused(ix, "No statement")
    assert await running.bot.store.db.scalar("SELECT status FROM statements WHERE slug = 'save-the-library'") == "open"

    ac = await fake.autocomplete(daily.guild, daily.organizer, "statement close", "statement", "")
    await ac.wait_response()
    assert [c["value"] for c in ac.choices or []] == ["fix-the-roads"]
    ac = await fake.autocomplete(daily.guild, daily.reader, "statement export", "statement", "")
    await ac.wait_response()
    assert ac.choices == []


# -- feeds --------------------------------------------------------------------------------------------


async def test_feed_commands_and_autocomplete_see_only_their_server(
    running: Booted, world: World, daily: World
) -> None:
    """A Weekly feed's number is unknown to the Daily's admin; autocomplete is for admins and this server."""
    fake = world.fake
    db = running.bot.store.db
    feed_id = await db.write(
        "INSERT INTO feeds (guild_id, url, channel_id, channel_kind, created_at) VALUES (?, ?, ?, 'forum', ?)",
        (world.guild.id, "https://weekly.example/feed", world.forum.id, "2026-01-01T00:00:00+00:00"),
    )
    for command in ("feed pause", "feed resume", "feed diagnose", "feed remove"):
        ix = await fake.slash(daily.guild, daily.admin, command, feed=feed_id)
        await refused(ix, f"There is no feed #{feed_id} in this server")
    assert await db.scalar("SELECT enabled FROM feeds WHERE id = ?", (feed_id,)) == 1

    ac = await fake.autocomplete(daily.guild, daily.admin, "feed pause", "feed", "")
    await ac.wait_response()
    assert ac.choices == []
    ac = await fake.autocomplete(world.guild, world.reader, "feed pause", "feed", "")
    await ac.wait_response()
    assert ac.choices == []
    ac = await fake.autocomplete(world.guild, world.admin, "feed pause", "feed", "")
    await ac.wait_response()
    assert [c["value"] for c in ac.choices or []] == [feed_id]


# -- letters ------------------------------------------------------------------------------------------


async def submitted_letter(running: Booted, world: World) -> tuple[int, dict[str, Any]]:
    """A Weekly reader's letter in the Weekly's queue: (its id, its card)."""
    fake = world.fake
    thread, _ = await make_article(running, world)
    message = await fake.message_create(thread, world.reader, LONG_ENOUGH)
    await fake.settle()
    await running.cog("ReadersViews").recorder.flush()
    ix = await fake.context_menu(world.guild, world.reader, "Submit as letter", message)
    assert (await ix.wait_response())["type"] == 9
    done = await fake.submit_modal(world.guild, world.reader, None, {"byline": "Rita", "consent": "yes"})
    assert "is with the editors" in await answer(done)
    letter = await running.bot.store.contributions.by_message(int(message["id"]))
    assert letter is not None
    card = await eventually(lambda: [m for m in fake.messages_in(world.review) if m.get("embeds")])
    return letter.id, card[-1]


async def test_letter_forms_cannot_reach_another_servers_letter(running: Booted, world: World, daily: World) -> None:
    """Edit and reject forms pointed at a Weekly letter, from the Daily's editor: refused, the letter unchanged."""
    fake = world.fake
    letter_id, _ = await submitted_letter(running, world)
    before = await running.bot.store.contributions.get(letter_id)
    assert before is not None
    # The Daily's editor needs a form of their own to forge: their own server's letter's Edit button.
    daily_thread = daily.guild.add_text_channel("daily-letters")
    await fake.settle()
    ix = await fake.slash(daily.guild, daily.reader, "letter submit", in_channel=daily_thread)
    assert (await ix.wait_response())["type"] == 9
    done = await fake.submit_modal(
        daily.guild, daily.reader, None, {"text": LONG_ENOUGH, "byline": "R", "consent": "yes"}
    )
    assert "is with the editors" in await answer(done)
    card = (await eventually(lambda: [m for m in fake.messages_in(daily.review) if m.get("embeds")]))[-1]
    own_id = int(card["embeds"][0]["title"].split("#")[1].split()[0])

    for action, form, values in (
        ("edit", f"letters:editmodal:{letter_id}:{before.version}", {"text": "Rewritten by another server"}),
        ("reject", f"letters:rejectmodal:{letter_id}:{before.version}", {"reason": "no"}),
    ):
        click = await fake.click(daily.guild, daily.editor, card, button_id(card, action, own_id))
        assert (await click.wait_response())["type"] == 9
        forge_form(fake, daily.editor, form)
        await refused(await fake.submit_modal(daily.guild, daily.editor, None, values), "no longer exists")
    after = await running.bot.store.contributions.get(letter_id)
    assert after is not None and (after.state, after.content, after.version) == (
        "submitted",
        LONG_ENOUGH,
        before.version,
    )


async def test_write_and_byline_forms_cannot_reach_another_servers_objects(
    running: Booted, world: World, daily: World
) -> None:
    """A write form naming a Weekly article, and a byline form naming a Weekly letter, from the Daily: refused."""
    fake = world.fake
    thread, article_id = await make_article(running, world)
    ix = await fake.slash(daily.guild, daily.reader, "letter submit")
    assert (await ix.wait_response())["type"] == 9
    forge_form(fake, daily.reader, f"letters:write:{article_id}")
    done = await fake.submit_modal(
        daily.guild, daily.reader, None, {"text": LONG_ENOUGH, "byline": "R", "consent": "yes"}
    )
    await refused(done, "I don't know that article in this server")

    # The reader's own reply in the Weekly, submitted through a form opened in the Daily.
    message = await fake.message_create(thread, world.reader, LONG_ENOUGH)
    await fake.settle()
    await running.cog("ReadersViews").recorder.flush()
    letter = await running.bot.store.contributions.by_message(int(message["id"]))
    assert letter is not None
    ix = await fake.slash(daily.guild, daily.reader, "letter submit")
    assert (await ix.wait_response())["type"] == 9
    forge_form(fake, daily.reader, f"letters:byline:{letter.id}")
    done = await fake.submit_modal(daily.guild, daily.reader, None, {"text": "x", "byline": "R", "consent": "yes"})
    await refused(done, "no longer exists")
    assert await running.bot.store.db.scalar("SELECT count(*) FROM contributions WHERE state = 'submitted'") == 0

    ix = await fake.slash(daily.guild, daily.reader, "letter withdraw", letter=letter.id)
    await refused(ix, "no longer exists")


async def test_consent_button_from_another_server_is_refused(running: Booted, world: World, daily: World) -> None:
    """A nomination's Agree, forged onto a Daily message by its writer: refused; the nomination stands."""
    fake = world.fake
    thread, _ = await make_article(running, world)
    message = await fake.message_create(thread, world.reader, LONG_ENOUGH)
    await fake.settle()
    ix = await fake.context_menu(world.guild, world.editor, "Nominate as reader's view", message)
    assert "I asked" in await answer(ix)
    letter = await running.bot.store.contributions.by_message(int(message["id"]))
    assert letter is not None and letter.state == "nominated"
    ours = await create_statement(daily, running, title="Fix the roads")
    forge_button(fake, ours, f"letters:consent:{letter.id}:decline")
    forged = await fake.click(daily.guild, daily.reader, ours, f"letters:consent:{letter.id}:decline")
    await refused(forged, "no longer exists")
    again = await running.bot.store.contributions.get(letter.id)
    assert again is not None and again.state == "nominated"


# -- forms of several members at once ---------------------------------------------------------------


async def test_two_members_writing_letters_at_once_both_arrive(running: Booted, world: World) -> None:
    """Two members open /letter submit, then both send: each letter is recorded and each writer thanked."""
    fake = world.fake
    for member in (world.reader, world.editor):
        ix = await fake.slash(world.guild, member, "letter submit")
        assert (await ix.wait_response())["type"] == 9
    texts = {world.reader.id: LONG_ENOUGH + "Rita.", world.editor.id: LONG_ENOUGH + "Ed."}
    for count, member in enumerate((world.reader, world.editor), start=1):
        values = {"text": texts[member.id], "byline": member.user.username, "consent": "yes"}
        done = await fake.submit_modal(world.guild, member, None, values)
        assert "is with the editors" in await answer(done)
        await eventually(lambda n=count: len(fake.messages_in(world.review)) == n)  # the first is handled in full
        await fake.settle()
    rows = await running.bot.store.db.fetchall("SELECT author_id, content FROM contributions WHERE state = 'submitted'")
    assert {r[0]: r[1] for r in rows} == texts


async def test_two_editors_editing_one_letter_are_both_answered(running: Booted, world: World) -> None:
    """Two editors press Edit on one card: the first edit is saved, the second is told it came too late."""
    fake = world.fake
    second = world.guild.add_member("eddie-editor", roles=[world.editor_role])
    await fake.settle()
    letter_id, card = await submitted_letter(running, world)
    for editor in (world.editor, second):
        click = await fake.click(world.guild, editor, card, button_id(card, "edit", letter_id))
        assert (await click.wait_response())["type"] == 9
    first = await fake.submit_modal(world.guild, world.editor, None, {"text": LONG_ENOUGH + "(first edit)"})
    await first.wait_response()
    late = await fake.submit_modal(world.guild, second, None, {"text": LONG_ENOUGH + "(second edit)"})
    assert "changed while you were looking" in await answer(late)
    letter = await running.bot.store.contributions.get(letter_id)
    assert letter is not None and letter.content == LONG_ENOUGH + "(first edit)"


async def test_letter_form_opened_before_a_restart_is_received_after_it(world: World, booter: Any) -> None:
    """A member opens /letter submit, the bot restarts, the member sends: the letter arrives."""
    fake = world.fake
    first: Booted = await booter()
    await first.bot.store.settings.set_many(world.guild.id, {"review_channel_id": world.review.id}, actor_id=None)
    ix = await fake.slash(world.guild, world.reader, "letter submit")
    assert (await ix.wait_response())["type"] == 9
    await first.stop()
    second: Booted = await booter()
    done = await fake.submit_modal(
        world.guild, world.reader, None, {"text": LONG_ENOUGH, "byline": "Rita", "consent": "yes"}
    )
    assert "is with the editors" in await answer(done)
    assert await second.bot.store.db.scalar("SELECT count(*) FROM contributions WHERE state = 'submitted'") == 1


# -- the allow-list -----------------------------------------------------------------------------------


@pytest.fixture
def stranger(world: World) -> World:
    """A server the operator never enabled, with a system channel and a would-be admin."""
    fake = world.fake
    guild = fake.add_guild("Somebody Else")
    general = guild.add_text_channel("general")
    guild.system_channel_id = general.id
    admins = guild.add_role("Admins", permissions=perms.MANAGE_GUILD)
    admin = guild.add_member("sam-admin", roles=[admins])
    organizer_role = guild.add_role("Organizer")
    return World(fake, guild, admin, admin, guild.add_member("ora", roles=[organizer_role]),
                 guild.add_member("reg-reader"), organizer_role, organizer_role, general, general,
                 guild.add_forum_channel("articles"), general, general)  # fmt: skip


async def test_server_not_on_the_allow_list_is_told_once_and_refused(
    world: World, stranger: World, booter: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Outside discord.allowed_guild_ids: one notice (not repeated after a restart), then a refusal for everything."""
    fake = world.fake
    allowed = {
        "discord": {"allowed_guild_ids": [world.guild.id]},
        "letters": {"record_channel_ids": [stranger.alerts.id]},
    }
    first: Booted = await booter(**allowed)
    notices = await eventually(lambda: fake.messages_in(stranger.alerts))
    assert "hasn't enabled it here" in notices[0]["content"] and str(stranger.guild.id) in notices[0]["content"]
    assert fake.messages_in(world.alerts) == [] and fake.messages_in(world.discussion) == []
    await first.stop()
    second: Booted = await booter(**allowed)
    await fake.settle()
    assert len(fake.messages_in(stranger.alerts)) == 1

    setup = await fake.slash(stranger.guild, stranger.admin, "readersviews setup", alert_channel=stranger.alerts)
    await refused(setup, "isn't enabled in this server")
    assert await second.bot.store.settings.get(stranger.guild.id, "alert_channel_id") is None
    create = await fake.slash(stranger.guild, stranger.admin, "statement create")
    await refused(create, "isn't enabled in this server")
    ac = await fake.autocomplete(stranger.guild, stranger.admin, "feed pause", "feed", "")
    assert (await ac.wait_response())["type"] == 8 and ac.choices == []
    writer = await fake.slash(stranger.guild, stranger.reader, "letter submit")
    await refused(writer, "isn't enabled in this server")
    assert await second.bot.store.db.scalar("SELECT count(*) FROM statements") == 0
    await fake.message_create(stranger.alerts, stranger.reader, "a reply the bot must not read")
    await fake.settle()
    await second.cog("ReadersViews").recorder.flush()
    assert await second.bot.store.db.scalar("SELECT count(*) FROM contributions") == 0

    # The servers on the list are served as before.
    ok = await fake.slash(world.guild, world.admin, "readersviews setup", alert_channel=world.alerts)
    assert "Saved" in await answer(ok)
    assert not any("allowed_guild_ids is empty" in r.getMessage() for r in caplog.records)


async def test_feeds_of_a_server_not_on_the_allow_list_are_not_fetched(
    world: World, stranger: World, booter: Any
) -> None:
    """A feed left from before the list (same URL as a served one) is never fetched, and alerts stay home."""
    booted: Booted = await booter(discord={"allowed_guild_ids": [world.guild.id]})
    db = booted.bot.store.db
    ids = {}
    for server in (world.guild, stranger.guild):
        ids[server.id] = await db.write(
            "INSERT INTO feeds (guild_id, url, channel_id, channel_kind, created_at, next_poll_at)"
            " VALUES (?, ?, ?, 'forum', ?, ?)",
            (server.id, "http://127.0.0.1:9/feed.xml", world.forum.id, *["2026-01-01T00:00:00+00:00"] * 2),
        )
    await booted.cog("Articles").run_cycle()
    polled = {gid: await db.scalar("SELECT last_poll_at FROM feeds WHERE id = ?", (fid,)) for gid, fid in ids.items()}
    assert polled[world.guild.id] is not None and polled[stranger.guild.id] is None
    # The unserved feed stays "due" for ever; it must not make the poller wake every second.
    assert await booted.cog("Articles").next_poll_delay() > 1.0  # 1.0 is the floor: "due now"
    assert not await booted.bot.alert(stranger.guild.id, "feed trouble")
    assert [m for m in world.fake.messages_in(stranger.alerts) if "feed trouble" in m["content"]] == []


async def test_deadlines_of_a_server_not_on_the_allow_list_are_left_alone(
    world: World, stranger: World, booter: Any
) -> None:
    """A statement left from before the list is not closed by its deadline, and its timer doesn't spin."""
    booted: Booted = await booter(discord={"allowed_guild_ids": [world.guild.id]})
    db = booted.bot.store.db
    past = "2026-01-01T00:00:00+00:00"
    for n, server in enumerate((world.guild, stranger.guild), start=1):
        await db.write(
            "INSERT INTO statements (id, guild_id, slug, title, body, organizer_id, created_at, updated_at,"
            " status, closes_at) VALUES (?, ?, ?, 'S', 'b', 1, ?, ?, 'open', ?)",
            (n, server.id, f"s{n}", past, past, past),
        )
    statements = booted.cog("Statements")
    await statements.run_timer_once()
    status = {
        gid: await db.scalar("SELECT status FROM statements WHERE guild_id = ?", (gid,))
        for gid in (world.guild.id, stranger.guild.id)
    }
    assert status == {world.guild.id: "closed", stranger.guild.id: "open"}
    assert await statements.service.next_timer_at() is None  # the unserved deadline never counts as due


async def test_empty_allow_list_serves_every_server_and_warns(
    world: World, stranger: World, booter: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Without a list every server is served, as before, and the start-up log says how to restrict it."""
    caplog.set_level("WARNING")
    await booter()
    assert any("allowed_guild_ids is empty" in r.getMessage() for r in caplog.records)
    fake = world.fake
    setup = await fake.slash(stranger.guild, stranger.admin, "readersviews setup", alert_channel=stranger.alerts)
    assert "Saved" in await answer(setup)
    assert fake.messages_in(stranger.alerts) == []


def test_check_warns_while_the_allow_list_is_empty(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """`readersviews check` warns (without failing) until discord.allowed_guild_ids names the servers."""
    from bot.__main__ import main

    config = tmp_path / "c.yaml"
    config.write_text(f"database: {{path: {tmp_path / 'db.sqlite3'}}}\n")
    env_token = {"DISCORD_TOKEN": "x.y.z"}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env_token.items():
            patch.setenv(key, value)
        assert main(["--config", str(config), "check"]) == 0
        out = capsys.readouterr().out
        assert "warn discord.allowed_guild_ids is empty" in out and "untick Public Bot" in out
        config.write_text(config.read_text() + "discord: {allowed_guild_ids: [1234]}\n")
        assert main(["--config", str(config), "check"]) == 0
        assert "allowed_guild_ids" not in capsys.readouterr().out


# -- limits under concurrency ---------------------------------------------------------------------------


async def _letters_service(tmp_path: Any, **settings: Any) -> tuple[Any, Any]:
    from datetime import UTC, datetime

    from bot.config import LetterSettings
    from bot.letters import LetterService
    from bot.store import Store

    clock = FakeClock(datetime(2026, 3, 10, 12, 0, tzinfo=UTC))
    store = await Store.open(tmp_path / "limits.sqlite3", clock)
    return store, LetterService(store, clock, LetterSettings(**settings), disclaimer=None)


async def test_daily_limit_holds_for_concurrent_submits(tmp_path: Any) -> None:
    """Twelve letters sent at once by one member against a limit of five: five arrive, seven are refused."""
    from bot.letter_states import LetterError

    store, service = await _letters_service(tmp_path, submissions_per_day=5)
    try:

        async def write(n: int) -> Any:
            return await service.write_letter(
                guild_id=1, channel_id=2, author_id=7, author_name="Rita", article_id=None,
                text=f"{LONG_ENOUGH} ({n})", byline="Rita", location=None, consent=True, author_created_at=None,
            )  # fmt: skip

        results = await asyncio.gather(*(write(n) for n in range(12)), return_exceptions=True)
        refused = [r for r in results if isinstance(r, LetterError)]
        assert len(refused) == 7 and "accepts 5 a day" in str(refused[0])
        assert await store.db.scalar("SELECT count(*) FROM contributions WHERE state = 'submitted'") == 5
    finally:
        await store.close()


async def test_new_accounts_letters_waiting_for_review_are_capped_per_server(tmp_path: Any) -> None:
    """At most `new_account_queue_cap` letters of new accounts wait per server; older accounts are not held up."""
    from datetime import timedelta

    from bot.letter_states import LetterError

    store, service = await _letters_service(tmp_path, new_account_queue_cap=3, new_account_days=7)
    try:
        young = service.clock.now() - timedelta(days=2)
        old = service.clock.now() - timedelta(days=400)

        async def write(author: int, created: Any, guild: int = 1) -> Any:
            return await service.write_letter(
                guild_id=guild, channel_id=2, author_id=author, author_name=f"m{author}", article_id=None,
                text=f"{LONG_ENOUGH} from {author}", byline="M", location=None, consent=True,
                author_created_at=created,
            )  # fmt: skip

        results = await asyncio.gather(*(write(100 + n, young) for n in range(8)), return_exceptions=True)
        refused = [r for r in results if isinstance(r, LetterError)]
        assert len(refused) == 5 and "less than 7 days old" in str(refused[0])
        assert "try again" in str(refused[0])
        await write(200, old)  # an established account is not capped
        await write(300, young, guild=2)  # nor is another server's queue shared
        with pytest.raises(LetterError, match="less than 7 days old"):
            await service.check_rate(1, 400, young)  # and the form says so before anything is typed
        await store.db.write(
            "UPDATE contributions SET state = 'approved' WHERE id = (SELECT min(id) FROM contributions"
            " WHERE guild_id = 1 AND state = 'submitted' AND new_account = 1)"
        )
        await write(401, young)  # once editors act, there is room again
    finally:
        await store.close()


# -- secrets ------------------------------------------------------------------------------------------


def test_redact_text_removes_credentials_a_site_quotes_back() -> None:
    """Authorization headers, Basic and Bearer tokens and URL credentials go; ordinary words stay."""
    from bot.site.base import redact_text

    token = "YWRtaW46c2VjcmV0IHBhc3M="
    for text in (
        f"Authorization: Basic {token}",
        f'{{"data": {{"headers": {{"authorization": ["Basic {token}"]}}}}}}',
        "headers: {'Authorization': 'Bearer abcdefghijklmnop123'}",
        f"your credentials Basic {token} are wrong",
        "fetch https://ann:hunter22@paper.example/feed?key=abc failed",
    ):
        cleaned = redact_text(text)
        assert token not in cleaned and "abcdefghijklmnop123" not in cleaned and "hunter22" not in cleaned, cleaned
        assert "key=abc" not in cleaned and ("[redacted]" in cleaned or "***" in cleaned), cleaned
    assert redact_text("Basic authentication is required") == "Basic authentication is required"


async def test_site_error_quoting_our_credentials_is_stored_and_logged_redacted(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A WordPress that echoes the request's Authorization header (and the password) in its error body:
    the outbox's stored error, its log and its alert hold neither."""
    import httpx

    from bot.config import WordPressSettings
    from bot.site.wordpress import WordPressAdapter
    from bot.store.database import Database
    from tests.sitefake import WP_PASSWORD, WP_USER

    def echo(request: httpx.Request) -> httpx.Response:
        header = request.headers["Authorization"]
        body = {
            "code": "rest_cannot_create",
            "message": f"Sorry, {WP_USER}:{WP_PASSWORD} may not. You sent Authorization: {header}",
            "data": {"status": 403, "params": {"headers": f"authorization={header}"}},
        }
        return httpx.Response(403, json=body)

    caplog.set_level("INFO")
    db = await Database.open(tmp_path / "db.sqlite3")
    clock = FakeClock()
    try:
        async with httpx.AsyncClient(transport=httpx.MockTransport(echo)) as client:
            settings = WordPressSettings(url="https://paper.example", username=WP_USER)
            h = Harness(db, clock, WordPressAdapter(settings, WP_PASSWORD, client, clock=clock))
            row_id = await h.enqueue("create", letter(1))
            await h.worker.run_once()
        row = await h.row(row_id)
        encoded = httpx.BasicAuth(WP_USER, WP_PASSWORD)._auth_header.split()[1]
        shown = [row.last_error or "", *h.alerts, *(r.getMessage() for r in caplog.records)]
        assert row.state == "dead" and "rest_cannot_create" in (row.last_error or "")
        for text in shown:
            assert WP_PASSWORD not in text and encoded not in text, text
    finally:
        await db.close()


async def test_feed_credentials_and_query_are_never_shown(
    world: World, booter: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A feed URL with user, password and a key: /feed list, /feed diagnose, the alert and the logs show none."""
    caplog.set_level("INFO")
    booted: Booted = await booter(feeds={"alert_after_failures": 1})
    await booted.bot.store.settings.set_many(world.guild.id, {"alert_channel_id": world.alerts.id}, actor_id=None)
    secret_url = "http://ann:hunter22@127.0.0.1:9/feed.xml?key=s3cr3tkey"
    feed_id = await booted.bot.store.db.write(
        "INSERT INTO feeds (guild_id, url, channel_id, channel_kind, created_at) VALUES (?, ?, ?, 'forum', ?)",
        (world.guild.id, secret_url, world.forum.id, "2026-01-01T00:00:00+00:00"),
    )
    await booted.cog("Articles").run_cycle()
    fake = world.fake
    alerts = await eventually(lambda: fake.messages_in(world.alerts))
    listed = await answer(await fake.slash(world.guild, world.admin, "feed list"))
    diagnosed = await answer(await fake.slash(world.guild, world.admin, "feed diagnose", feed=feed_id))
    ac = await fake.autocomplete(world.guild, world.admin, "feed pause", "feed", "key=s3")
    await ac.wait_response()
    assert ac.choices == []  # the hidden query can't be probed by typing it
    assert "127.0.0.1:9/feed.xml" in listed and "127.0.0.1:9/feed.xml" in diagnosed
    for text in [alerts[0]["content"], listed, diagnosed, *(r.getMessage() for r in caplog.records)]:
        assert "hunter22" not in text and "s3cr3tkey" not in text and "ann:" not in text, text


async def test_site_deliveries_of_a_server_not_on_the_allow_list_are_held(
    world: World, stranger: World, booter: Any, site: FakeSite
) -> None:
    """The running bot delivers its servers' items; another server's wait untouched, with no alert anywhere."""
    booted: Booted = await booter(discord={"allowed_guild_ids": [world.guild.id]})
    bot = booted.bot
    bot.outbox.adapter = WebhookAdapter(WebhookSettings.model_validate({"url": site.webhook_url}), WEBHOOK_SECRET)
    async with bot.store.db.transaction() as conn:
        ours = await bot.store.outbox.enqueue_item(conn, "create", letter(1), revision=1, guild_id=world.guild.id)
        theirs = await bot.store.outbox.enqueue_item(conn, "create", letter(2), revision=1, guild_id=stranger.guild.id)
    bot.outbox.notify()
    await eventually(lambda: _state(bot, ours, "done"))
    await bot.outbox.run_once()
    held = await bot.store.outbox.get(theirs)
    assert (held.state, held.attempts, held.last_error) == ("pending", 0, None)
    assert [e["entity"] for e in site.webhook_events] == ["letter:1"]
    for channel in (stranger.alerts, world.alerts):
        assert not [m for m in world.fake.messages_in(channel) if "Site mirroring" in m["content"]]


async def _state(bot: Any, row_id: int, state: str) -> bool:
    row = await bot.store.outbox.get(row_id)
    return row is not None and row.state == state


async def test_statement_cannot_be_posted_where_the_organizer_may_not_post(running: Booted, world: World) -> None:
    """An organizer points the create form (or `repost channel:`) at a staff-only channel the bot can post in:
    refused, nothing posted there (the bot's permissions are not the member's)."""
    fake = world.fake
    staff = world.guild.add_text_channel(
        "staff-only",
        overwrites=[
            perms.overwrite(world.guild.id, deny=perms.VIEW_CHANNEL),
            perms.overwrite(fake.bot.id, allow=perms.VIEW_CHANNEL | perms.SEND_MESSAGES, member=True),
        ],
    )
    await fake.settle()
    ix = await fake.slash(world.guild, world.organizer, "statement create", channel=world.discussion)
    assert (await ix.wait_response())["type"] == 9
    forge_form(fake, world.organizer, f"statements:createform:{staff.id}:0:1:1")
    submit = await fake.submit_modal(world.guild, world.organizer, None, {"title": "Spam", "body": STATEMENT_TEXT})
    await refused(submit, "can't post in")
    assert fake.messages_in(staff) == []
    assert await running.bot.store.db.scalar("SELECT count(*) FROM statements") == 0

    await create_statement(world, running, title="Save the library")
    moved = await fake.slash(
        world.guild, world.organizer, "statement repost", statement="save-the-library", channel=staff
    )
    await refused(moved, "can't post in")
    assert fake.messages_in(staff) == []


async def test_who_signed_a_statement_in_a_channel_the_member_cannot_see_is_refused(
    running: Booted, world: World
) -> None:
    """A staff-only statement's "Who signed" (a forged button on a public statement) doesn't show a
    member who can't see its channel the title and the names signed there; sign for an organization neither."""
    fake = world.fake
    staff = world.guild.add_text_channel(
        "staff-room",
        overwrites=[
            perms.overwrite(world.guild.id, deny=perms.VIEW_CHANNEL),
            perms.overwrite(world.organizer_role.id, allow=perms.VIEW_CHANNEL | perms.SEND_MESSAGES),
            perms.overwrite(
                fake.bot.id, allow=perms.VIEW_CHANNEL | perms.SEND_MESSAGES | perms.EMBED_LINKS, member=True
            ),
        ],
    )
    await fake.settle()
    ix = await fake.slash(world.guild, world.organizer, "statement create", channel=staff)
    assert (await ix.wait_response())["type"] == 9
    submit = await fake.submit_modal(
        world.guild, world.organizer, None, {"title": "Pay rise for the newsroom", "body": STATEMENT_TEXT}
    )
    assert "Published" in await answer(submit)
    hidden = fake.messages_in(staff)[-1]
    assert "Signed" in await sign(world, hidden, world.organizer, {"name": "Olu Staffer"})
    public = await create_statement(world, running, title="Save the library")
    public_id = sid(public)  # before its buttons are forged
    for action in ("who", "sign_org", "sign"):
        forged_id = f"statements:{action}:{sid(hidden)}"
        forge_button(fake, public, forged_id)
        forged = await fake.click(world.guild, world.reader, public, forged_id)
        await refused(forged, "no longer exists")
        assert "Olu Staffer" not in await answer(forged) and "Pay rise" not in await answer(forged)
    # The sign form too (its title would be in the answer): the hot path hands it to discord.py's, which
    # has the member's permissions.
    forge_button(fake, public, f"statements:sign:{public_id}")
    click = await fake.click(world.guild, world.reader, public, f"statements:sign:{public_id}")
    assert (await click.wait_response())["type"] == 9
    forge_form(fake, world.reader, f"statements:signform:{sid(hidden)}:individual")
    forged = await fake.submit_modal(world.guild, world.reader, None, {"name": "Rita Reader"})
    await refused(forged, "no longer exists")
    assert "Pay rise" not in await answer(forged)
    signed = await running.bot.store.db.fetchall(
        "SELECT user_id FROM signatures WHERE statement_id = ?", (sid(hidden),)
    )
    assert [row[0] for row in signed] == [world.organizer.id]


async def test_the_old_message_of_a_moved_statement_still_takes_signatures(running: Booted, world: World) -> None:
    """A statement reposted elsewhere whose old message could not be removed: its Sign button still
    works for members who can see the statement's new channel (the click comes from the old one)."""
    fake = world.fake
    old = await create_statement(world, running, title="Save the library", slug="library")
    campaign = world.guild.add_text_channel("campaign")
    await fake.settle()
    moved = await fake.slash(world.guild, world.organizer, "statement repost", statement="library", channel=campaign)
    fake.fail_next("DELETE", r"/channels/\d+/messages/\d+$", 403, code=50013)
    await answer(moved)
    assert fake.find_message(old["id"]) is not None and fake.messages_in(campaign)
    assert "Signed" in await sign(world, old, world.reader, {"name": "Rita Reader"})
    signed = await running.bot.store.db.fetchall("SELECT user_id FROM signatures WHERE statement_id = ?", [sid(old)])
    assert [row[0] for row in signed] == [world.reader.id]
