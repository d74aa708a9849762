"""The WordPress adapter and the outbox against a real WordPress (scripts/wordpress-local.sh).

Settings come from READERSVIEWS_TEST_WP_URL / _USER / _PASSWORD, or from the env file the script
writes (${WP_LOCAL_DIR:-/tmp/readersviews-wp}/env); without either the tests are skipped.
"""

from __future__ import annotations

import os
import random
import shlex
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bot.clock import SystemClock
from bot.config import WordPressSettings
from bot.outbox import OutboxWorker
from bot.site.base import PermanentSiteError, SiteItem
from bot.site.compose import Letter, Statement, compose_letter, compose_statement
from bot.site.wordpress import WordPressAdapter
from bot.store.database import Database
from bot.store.outbox import OutboxRepo

pytestmark = pytest.mark.wordpress

SKIP_REASON = "real WordPress not running: start it with `bash scripts/wordpress-local.sh up` (see README)"


def wordpress_settings() -> tuple[str, str, str] | None:
    env = os.environ
    url, user, password = (env.get(f"READERSVIEWS_TEST_WP_{name}") for name in ("URL", "USER", "PASSWORD"))
    if url and user and password:
        return url, user, password
    env_file = Path(env.get("WP_LOCAL_DIR") or "/tmp/readersviews-wp") / "env"
    try:
        lines = env_file.read_text().splitlines()
    except OSError:
        return None
    values: dict[str, str] = {}
    for line in lines:
        parts = shlex.split(line, comments=True)
        if len(parts) == 1 and "=" in parts[0]:
            key, _, value = parts[0].partition("=")
            values[key] = value
    if all(values.get(key) for key in ("WP_URL", "WP_USER", "WP_APP_PASSWORD")):
        return values["WP_URL"], values["WP_USER"], values["WP_APP_PASSWORD"]
    return None


@pytest.fixture
async def real() -> AsyncIterator[tuple[WordPressSettings, str, httpx.AsyncClient]]:
    found = wordpress_settings()
    if found is None:
        pytest.skip(SKIP_REASON)
    url, user, password = found
    async with httpx.AsyncClient() as client:
        try:
            await client.get(url.rstrip("/") + "/wp-json/", timeout=5)
        except httpx.TransportError:
            pytest.skip(SKIP_REASON)
        settings = WordPressSettings(url=url, username=user, post_status="pending", timeout=20)
        yield settings, password, client
        # Leave the instance tidy: delete (not trash) what these tests made.
        auth = (user, password)
        for collection in ("posts", "pages"):
            response = await client.get(
                f"{url.rstrip('/')}/wp-json/wp/v2/{collection}",
                params={"search": RUN, "status": "any", "per_page": "100", "context": "edit"},
                auth=auth,
            )
            trashed = await client.get(
                f"{url.rstrip('/')}/wp-json/wp/v2/{collection}",
                params={"search": RUN, "status": "trash", "per_page": "100", "context": "edit"},
                auth=auth,
            )
            for post in response.json() + trashed.json():
                await client.delete(
                    f"{url.rstrip('/')}/wp-json/wp/v2/{collection}/{post['id']}", params={"force": "true"}, auth=auth
                )


RUN = f"rvtest{random.randrange(10**8, 10**9)}"


def letter(n: int, title: str, text: str = "Dear editor, bridges matter.") -> SiteItem:
    item = compose_letter(Letter(id=n, text=text, byline="Ann Reader", title=f"{title} {RUN}"), disclaimer="Own views.")
    return item.model_copy(update={"idempotency_key": f"letter:{n}:create:{RUN}"})


async def fetch(
    settings: WordPressSettings, password: str, client: httpx.AsyncClient, post_id: str, kind: str = "posts"
):
    response = await client.get(
        f"{str(settings.url).rstrip('/')}/wp-json/wp/v2/{kind}/{post_id}",
        params={"context": "edit"},
        auth=(settings.username or "", password),
    )
    return response.status_code, response.json()


def entity_id() -> int:
    return random.randrange(10**6, 10**7)


async def test_create_update_retract(real):
    """A letter becomes a pending post, an edit updates the same post, a retraction trashes it."""
    settings, password, client = real
    wp = WordPressAdapter(settings, password, client)
    item = letter(entity_id(), "Bridges")
    ref = await wp.create(item)
    assert ref.remote_id and ref.url
    status, post = await fetch(settings, password, client, ref.remote_id)
    assert status == 200 and post["status"] == "pending" and post["slug"] == item.slug
    assert "bridges matter" in post["content"]["raw"] and "readersviews-disclaimer" in post["content"]["raw"]

    edited = letter(int(item.entity.split(":")[1]), "Bridges", text="Dear editor, **tunnels** too.")
    assert (await wp.update(ref.remote_id, edited)).remote_id == ref.remote_id
    _, post = await fetch(settings, password, client, ref.remote_id)
    assert "<strong>tunnels</strong>" in post["content"]["raw"]

    await wp.retract(ref.remote_id, item)
    _, post = await fetch(settings, password, client, ref.remote_id)
    assert post["status"] == "trash"
    await wp.retract(ref.remote_id, item)  # already trashed (410) counts as done


async def test_letters_are_block_markup_the_editor_parses(real):
    """Posts arrive as paragraph blocks (block_version 1), not one Classic block; own links keep no rel."""
    settings, password, client = real
    wp = WordPressAdapter(settings, password, client)
    item = compose_letter(
        Letter(
            id=entity_id(),
            text="First paragraph.\n\nSecond, see https://elsewhere.example/x",
            byline="Ann Reader",
            title=f"Blocks {RUN}",
            article_title="Bridges",
            article_link="https://paper.example/bridges",
        ),
        disclaimer="Own views.",
    ).model_copy(update={"idempotency_key": f"blocks:{RUN}"})
    ref = await wp.create(item)
    _, post = await fetch(settings, password, client, ref.remote_id or "")
    raw = post["content"]["raw"]
    assert post["content"]["block_version"] == 1
    assert raw.startswith('<!-- wp:paragraph {"className":"readersviews-context"} -->')
    assert raw.count("<!-- wp:paragraph") == 5 and raw.count("<!-- /wp:paragraph -->") == 5
    assert '<a href="https://paper.example/bridges">Bridges</a>' in raw
    assert 'rel="nofollow ugc"' in raw  # the member's own link
    assert "<!--" not in post["content"]["rendered"]


async def test_status_of_a_pending_post_until_published_and_trashed(real):
    """fetch_status: pending (no public link), then publish (the permalink), trash, and deleted."""
    settings, password, client = real
    wp = WordPressAdapter(settings, password, client)
    ref = await wp.create(letter(entity_id(), "Status"))
    pending = await wp.fetch_status(ref.remote_id or "")
    assert (pending.status, pending.remote_id) == ("pending", ref.remote_id)
    anonymous = await client.get(pending.url or "", follow_redirects=True)
    assert anonymous.status_code == 404  # the ?p= link of a pending post is no page for readers

    auth = (settings.username or "", password)
    base = f"{str(settings.url).rstrip('/')}/wp-json/wp/v2/posts/{ref.remote_id}"
    assert (await client.post(base, json={"status": "publish"}, auth=auth)).status_code == 200
    published = await wp.fetch_status(ref.remote_id or "")
    assert published.status == "publish"
    assert (await client.get(published.url or "", follow_redirects=True)).status_code == 200

    assert (await client.delete(base, auth=auth)).status_code == 200
    assert (await wp.fetch_status(ref.remote_id or "")).status == "trash"
    assert (await client.delete(base, params={"force": "true"}, auth=auth)).status_code == 200
    assert (await wp.fetch_status(ref.remote_id or "")).status == "deleted"


async def test_colliding_titles_get_distinct_posts(real):
    """Two letters with the same title: two posts, each found again by its own lookup."""
    settings, password, client = real
    wp = WordPressAdapter(settings.model_copy(update={"post_status": "publish"}), password, client)
    first, second = letter(entity_id(), "Same title"), letter(entity_id(), "Same title")
    a, b = await wp.create(first), await wp.create(second)
    assert a.remote_id != b.remote_id
    assert await wp.lookup(first) == a and await wp.lookup(second) == b


async def test_retry_after_unknown_outcome_does_not_duplicate(real, tmp_path: Path):
    """The post was created but the bot died before recording it: the restart finds it by slug.

    Real WordPress would have renamed a second create to slug-2, which is why lookup comes first.
    """
    settings, password, client = real
    clock = SystemClock()
    db = await Database.open(tmp_path / "db.sqlite3")
    repo = OutboxRepo(db, clock)
    item = letter(entity_id(), "Unknown outcome")
    async with db.transaction() as conn:
        row_id = await repo.enqueue_item(conn, "create", item, revision=RUN)
    [claimed] = await repo.claim_due()
    wp = WordPressAdapter(settings, password, client)
    created = await wp.create(item.model_copy(update={"idempotency_key": claimed.idempotency_key}))
    # "kill -9" here; at restart:
    assert await repo.recover() == 1
    worker = OutboxWorker(repo, wp, clock)
    assert await worker.run_once() == 1
    row = await repo.get(row_id)
    assert row is not None and row.state == "done" and row.remote_id == created.remote_id

    response = await client.get(
        f"{str(settings.url).rstrip('/')}/wp-json/wp/v2/posts",
        params={"search": item.title, "status": "any", "context": "edit"},
        auth=(settings.username or "", password),
    )
    assert [post["id"] for post in response.json()] == [int(created.remote_id or 0)]
    await db.close()


async def test_statement_is_a_page(real):
    settings, password, client = real
    wp = WordPressAdapter(settings.model_copy(update={"statement_type": "pages"}), password, client)
    statement = compose_statement(Statement(id=entity_id(), title=f"Keep the library {RUN}", body="We ask."))
    ref = await wp.create(statement)
    status, page = await fetch(settings, password, client, ref.remote_id or "", kind="pages")
    assert status == 200 and page["type"] == "page"
    assert await wp.lookup(statement) == ref


async def test_check_accepts_good_and_names_wrong_password(real):
    """check() signs in; a wrong application password is reported as the thing to fix."""
    settings, password, client = real
    assert "signed in as" in await WordPressAdapter(settings, password, client).check()
    with pytest.raises(PermanentSiteError, match="READERSVIEWS_WP_APP_PASSWORD"):
        await WordPressAdapter(settings, "wrong password here", client).check()
    with pytest.raises(PermanentSiteError, match="READERSVIEWS_WP_APP_PASSWORD") as refused:
        await WordPressAdapter(settings, "wrong password here", client).create(letter(entity_id(), "Nope"))
    assert refused.value.site_wide  # the outbox makes it one incident, not a dead letter per item
