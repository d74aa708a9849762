"""Letters and what the site says: pending posts, status checks, durable notices, declines, incidents.

The real bot against the loopback fake Discord and the fake WordPress (tests/sitefake.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from bot.config import WordPressSettings
from bot.letter_notices import NoticeSender
from bot.site.wordpress import WordPressAdapter
from tests.helpers import LONG_ENOUGH, Booted, Paper, World, card_has, eventually, make_article, state_is
from tests.sitefake import WP_PASSWORD, WP_USER, FakeSite


def use_wordpress(booted: Booted, fake_site: FakeSite, status: str = "pending") -> None:
    settings = WordPressSettings(url=fake_site.wp_url, username=WP_USER, post_status=status)  # type: ignore[arg-type]
    booted.bot.outbox.adapter = WordPressAdapter(settings, WP_PASSWORD)


@pytest.fixture
async def paper(running: Booted, world: World, site: FakeSite) -> Paper:
    use_wordpress(running, site)
    thread, article_id = await make_article(running, world)
    return Paper(running, world, thread, article_id, site)


def texts(paper: Paper, channel: Any) -> list[str]:
    return [m["content"] for m in paper.fake.messages_in(channel)]


async def approved_and_delivered(paper: Paper, text: str = LONG_ENOUGH) -> Any:
    letter = await paper.submit(paper.world.reader, await paper.post(paper.world.reader, text))
    await paper.click(paper.world.editor, letter.id, "approve")
    return await eventually(lambda: state_is(paper, letter.id, "published"))


async def test_pending_post_is_sent_to_editors_then_announced_when_published(paper: Paper) -> None:
    """post_status pending: nobody is told "published" or given the ?p= link until an editor publishes it."""
    assert paper.site is not None
    letter = await approved_and_delivered(paper)
    assert letter.remote_status == "pending" and "?p=" in (letter.remote_url or "")
    dm = paper.fake.dm_channel(paper.world.reader.user)
    await eventually(lambda: any("sent to the site's editors" in t for t in texts(paper, dm)))
    await eventually(lambda: any("sent to the site's editors" in t for t in texts(paper, paper.thread)))
    card = await eventually(lambda: card_has(paper, letter.id, "sent to the site's editors"))
    everything = texts(paper, dm) + texts(paper, paper.thread) + [str(card["embeds"])]
    assert not any("published" in t for t in texts(paper, dm) + texts(paper, paper.thread))
    assert not any("?p=" in t for t in everything)
    mine = await paper.fake.slash(paper.world.guild, paper.world.reader, "letter mine")
    listing = (await mine.wait_response())["data"]["content"]
    assert "sent to the site's editors" in listing and "?p=" not in listing

    # An editor publishes it in wp-admin; the next status check announces it with the public link.
    post = paper.site.post_by_id(letter.remote_id)
    paper.site.set_status(letter.remote_id, "publish")
    changed = await paper.booted.cog("Editorial").status_checks.run_once()
    assert [c.id for c in changed] == [letter.id]
    public = f"{paper.site.base_url}/{post['slug']}/"
    await eventually(lambda: any("was published" in t and public in t for t in texts(paper, dm)))
    await eventually(lambda: any("was published" in t and public in t for t in texts(paper, paper.thread)))
    await eventually(lambda: card_has(paper, letter.id, public))
    assert any(f"/wp/v2/posts/{letter.remote_id}?context=edit" in path for _, path in paper.site.requests)

    # Nothing more on the next check, and no second announcement.
    assert await paper.booted.cog("Editorial").status_checks.run_once() == []
    await paper.booted.cog("Editorial").notices.run_once()
    assert sum("was published" in t for t in texts(paper, paper.thread)) == 1
    assert sum("was published" in t for t in texts(paper, dm)) == 1


async def test_trashed_by_the_site_tells_the_writer(paper: Paper) -> None:
    """A pending letter an editor trashes on the site: the writer hears so, once; checks stop."""
    assert paper.site is not None
    letter = await approved_and_delivered(paper)
    paper.site.set_status(letter.remote_id, "trash")
    checks = paper.booted.cog("Editorial").status_checks
    assert [c.id for c in await checks.run_once()] == [letter.id]
    dm = paper.fake.dm_channel(paper.world.reader.user)
    await eventually(lambda: any("decided not to publish" in t for t in texts(paper, dm)))
    requests = len(paper.site.requests)
    assert await checks.run_once() == []
    assert len(paper.site.requests) == requests
    assert not any("was published" in t for t in texts(paper, paper.thread))


async def test_publish_status_is_announced_at_once(running: Booted, world: World, site: FakeSite) -> None:
    """post_status publish: the first answer is public, so the link goes out at once (no check needed)."""
    use_wordpress(running, site, "publish")
    thread, article_id = await make_article(running, world)
    paper = Paper(running, world, thread, article_id, site)
    letter = await approved_and_delivered(paper)
    assert letter.remote_status == "publish" and "?p=" not in (letter.remote_url or "")
    await eventually(lambda: any("was published" in t and letter.remote_url in t for t in texts(paper, thread)))


async def test_announcements_survive_a_crash_after_the_sites_answer(paper: Paper) -> None:
    """The site answered, then the bot died before announcing: at the next start both go out, once."""
    cog = paper.booted.cog("Editorial")
    await cog.notices.stop()  # "the process died" right after the delivery was recorded
    letter = await approved_and_delivered(paper)
    await paper.fake.settle()
    dm = paper.fake.dm_channel(paper.world.reader.user)
    assert not any("sent to the site's editors" in t for t in texts(paper, paper.thread))
    assert await paper.bot.store.notices.for_letter(letter.id) == [
        ("sent_for_review", "writer", False),
        ("sent_for_review", "thread", False),
    ]

    # A crash after Discord took the DM but before it was marked sent: the resend reuses the nonce.
    repo = paper.bot.store.notices
    real_mark_sent = repo.mark_sent
    crashed = False

    async def crash_once(notice_id: int, note: str | None = None) -> None:
        nonlocal crashed
        if not crashed:
            crashed = True
            raise RuntimeError("killed")
        await real_mark_sent(notice_id, note)

    repo.mark_sent = crash_once  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        await NoticeSender(paper.bot, cog.queue).run_once()
    repo.mark_sent = real_mark_sent  # type: ignore[method-assign]

    async def all_sent() -> bool:
        return all(sent for _, _, sent in await repo.for_letter(letter.id))

    cog.notices.start()  # the restart
    await eventually(all_sent)
    await paper.fake.settle()
    assert sum("sent to the site's editors" in t for t in texts(paper, dm)) == 1
    assert sum("sent to the site's editors" in t for t in texts(paper, paper.thread)) == 1


async def test_nominating_editor_is_told_when_the_writer_declines(paper: Paper) -> None:
    """Decline on a nomination: the editor who asked gets a DM saying so."""
    message = await paper.post(paper.world.reader, LONG_ENOUGH)
    ix = await paper.fake.context_menu(paper.world.guild, paper.world.editor, "Nominate as reader's view", message)
    await ix.wait_response()
    ask = await eventually(lambda: [m for m in paper.fake.messages_in(paper.thread) if m.get("components")])
    button = f"letters:consent:{(await paper.letter(message)).id}:decline"
    declined = await paper.fake.click(paper.world.guild, paper.world.reader, ask[-1], button)
    await declined.wait_response()
    dm = paper.fake.dm_channel(paper.world.editor.user)
    told = await eventually(lambda: [t for t in texts(paper, dm) if "declined your request" in t])
    assert len(told) == 1 and f"letter #{(await paper.letter(message)).id}" in told[0]


async def test_card_says_waiting_for_the_site_during_an_incident(paper: Paper) -> None:
    """Credentials refused: an approved letter's card says it waits for the site; one alert, no dead letter."""
    assert paper.site is not None
    paper.site.wp_password = "rotated on the site"
    letter = await paper.submit(paper.world.reader, await paper.post(paper.world.reader, LONG_ENOUGH))
    await paper.click(paper.world.editor, letter.id, "approve")
    await eventually(lambda: card_has(paper, letter.id, "waiting for the site"))
    alerts = await eventually(lambda: [t for t in texts(paper, paper.world.alerts) if "Site mirroring is paused" in t])
    assert len(alerts) == 1 and "READERSVIEWS_WP_APP_PASSWORD" in alerts[0]
    backlog = await paper.bot.store.outbox.backlog()
    assert backlog["dead"] == 0 and backlog["pending"] == 1
    assert (await paper.get(letter.id)).state == "approved"
    ix = await paper.fake.slash(paper.world.guild, paper.world.admin, "readersviews outbox")
    assert "Deliveries are paused" in (await ix.wait_response())["data"]["content"]

    # The password is fixed on the site; an admin's retry (or `outbox retry --all`) checks at once.
    paper.site.wp_password = WP_PASSWORD
    [row] = await paper.bot.store.outbox.for_entity(f"letter:{letter.id}")
    ix = await paper.fake.slash(paper.world.guild, paper.world.admin, "readersviews outbox", retry=row.id)
    await ix.wait_response()
    await eventually(lambda: state_is(paper, letter.id, "published"))
    notes = await eventually(lambda: [t for t in texts(paper, paper.world.alerts) if "Site mirroring resumed" in t])
    assert len(notes) == 1
    await eventually(lambda: card_has(paper, letter.id, "sent to the site's editors"))
    assert len([t for t in texts(paper, paper.world.alerts) if "Site mirroring is paused" in t]) == 1


async def test_the_site_post_has_its_own_title_blocks_and_names(paper: Paper) -> None:
    """On WordPress: "<byline>: <first words>", paragraph blocks, mentions as names, the article link without rel."""
    assert paper.site is not None
    world = paper.world
    text = f"Thanks <@&{world.editor_role.id}> and <@{world.editor.id}>, @everyone should read this. " + LONG_ENOUGH
    letter = await approved_and_delivered(paper, text)
    post = paper.site.post_by_id(letter.remote_id)
    assert post["title"] == "Rita R.: Thanks @Editor and ed-editor, @everyone should read this…"
    content = post["content"]
    assert content.startswith('<!-- wp:paragraph {"className":"readersviews-context"} -->')
    assert "<p>Thanks @Editor and ed-editor, @everyone should read this." in content
    assert f'<a href="https://paper.example/{paper.thread.id}">' in content
    assert "&lt;@" not in content and str(world.editor.id) not in content
