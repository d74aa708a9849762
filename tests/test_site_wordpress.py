"""Composing items for the site, and the WordPress adapter against the loopback fake WordPress."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from html.parser import HTMLParser

import httpx
import pytest

from bot.config import ConfigError, Secrets, SiteSettings, WordPressSettings
from bot.site import NoSiteAdapter, make_adapter
from bot.site.base import PermanentSiteError, SiteItem, TransientSiteError, parse_retry_after
from bot.site.compose import (
    Digest,
    Letter,
    Signatory,
    Statement,
    compose_digest,
    compose_letter,
    compose_statement,
    slugify,
)
from bot.site.webhook import WebhookAdapter
from bot.site.wordpress import WordPressAdapter
from tests.helpers import FakeClock
from tests.sitefake import WP_PASSWORD, WP_USER, FakeSite


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def adapter(site: FakeSite, http: httpx.AsyncClient, **settings) -> WordPressAdapter:
    values = {"url": site.wp_url, "username": WP_USER, "timeout": 5.0} | settings
    return WordPressAdapter(WordPressSettings(**values), WP_PASSWORD, http, clock=FakeClock())


def item(n: int = 1, **changes) -> SiteItem:
    base = compose_letter(Letter(id=n, text="Hello there.", byline="Ann", title=f"On bridges {n}"), disclaimer=None)
    return base.model_copy(update={"idempotency_key": f"letter:{n}:create:1", **changes})


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, list[tuple[str, str]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, [(name, value or "") for name, value in attrs]))


def markup(fragment: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """Every start tag with its attributes, as a browser would see them."""
    parser = _Tags()
    parser.feed(fragment)
    return parser.found


# -- compose -------------------------------------------------------------------------------------


def test_hostile_letter_html_is_stripped():
    """Script, event handlers and javascript: links in a letter never reach the site's HTML."""
    hostile = Letter(
        id=42,
        text="<script>alert(1)</script> **bold** <img src=x onerror=alert(2)> [click](javascript:alert(3))",
        byline='<b onmouseover="x()">Eve</b>',
        location="<iframe src=//evil>",
        article_title="Bridges <script>steal()</script>",
        article_link="javascript:alert(4)",
        in_reply_to_title="Earlier letter",
        in_reply_to_url="https://paper.example/letters/1",
    )
    result = compose_letter(hostile, disclaimer="Views are the writers' <own>.")
    tags = markup(result.html)
    assert {tag for tag, _ in tags} <= {"p", "strong", "em", "a"}
    attributes = {name: value for _, attrs in tags for name, value in attrs}
    assert set(attributes) <= {"class", "href", "rel"}
    assert all(value.startswith("https://") for _, attrs in tags for name, value in attrs if name == "href")
    assert "&lt;script&gt;alert(1)" in result.html  # what the member typed is shown, never run
    assert "<strong>bold</strong>" in result.html
    assert "&lt;b onmouseover" in result.html  # shown as text, not markup
    assert 'Replying to: <a href="https://paper.example/letters/1"' in result.html
    assert "In response to: Bridges" in result.html  # no anchor for a javascript: link
    assert '<p class="readersviews-disclaimer"><em>Views are the writers\' &lt;own&gt;.</em></p>' in result.html


def test_letter_item_has_byline_context_slug_and_metadata():
    """A letter: 'In response to' the article, byline with place, deterministic ASCII slug."""
    letter = Letter(
        id=7,
        text="Café culture matters.",
        byline="Zoë Ångström",
        location="Malmö",
        article_title="Über die Brücke: ça va?",
        article_link="https://paper.example/bridge",
    )
    first = compose_letter(letter, disclaimer="Own views.")
    assert first == compose_letter(letter, disclaimer="Own views.")
    assert first.entity == "letter:7" and first.kind == "letter"
    assert first.slug == "readers-view-7-re-uber-die-brucke-ca-va"
    assert first.slug.isascii()
    assert first.title == "Re: Über die Brücke: ça va?"
    # The publication's own article link is not marked as user content.
    assert 'In response to: <a href="https://paper.example/bridge">Über die Brücke' in first.html
    assert "— Zoë Ångström, Malmö" in first.html
    assert first.metadata["article"] == {"title": "Über die Brücke: ça va?", "link": "https://paper.example/bridge"}
    assert first.metadata["byline"] == "Zoë Ångström" and first.metadata["location"] == "Malmö"


def test_letter_titles_are_distinct_and_slugs_stable():
    """Two letters on one article get different titles (writer + first words); the slug ignores the text."""
    from bot.site.compose import templated_title

    def titled(letter_id: int, byline: str, text: str) -> SiteItem:
        title = templated_title(
            "{byline}: {first_words}", letter_id=letter_id, byline=byline, text=text, article="Bins"
        )
        return compose_letter(
            Letter(id=letter_id, text=text, byline=byline, title=title, article_title="Bins"), disclaimer=None
        )

    ann = titled(1, "Ann", "The council is wrong about the bins, and here is why it matters to us all.")
    bo = titled(2, "Bo", "Bins should be collected weekly.")
    assert ann.title == "Ann: The council is wrong about the bins, and…"
    assert bo.title == "Bo: Bins should be collected weekly."
    assert ann.slug == "readers-view-1-re-bins"
    edited = titled(1, "Ann", "Edited: the council is right after all.")
    assert edited.slug == ann.slug and edited.title != ann.title
    assert templated_title("{id} · {byline}", letter_id=9, byline="<Cy>", text="x", article=None) == "9 · <Cy>"


def test_members_links_are_ugc_mentions_are_names_everyone_is_text():
    """Member links keep rel="nofollow ugc"; roles show by name; @everyone stays plain text."""
    result = compose_letter(
        Letter(
            id=3,
            text="Ask <@&55> and <@77>, @everyone: https://elsewhere.example/x",
            byline="Ann",
            display_names={77: "Bo"},
            role_names={55: "Council desk"},
        ),
        disclaimer=None,
    )
    assert "Ask @Council desk and Bo, @everyone: " in result.html
    assert '<a href="https://elsewhere.example/x" rel="nofollow ugc">' in result.html
    assert "&lt;@" not in result.html and "55" not in result.html


def test_wordpress_blocks_wrap_each_top_level_element():
    """Paragraphs become paragraph blocks (class kept as className); lists and quotes HTML blocks."""
    from bot.site.compose import wordpress_blocks

    html = '<p class="readersviews-context">In <a href="https://p.example/a">A</a></p><p>One<br>two</p>'
    html += "<blockquote><p>q</p></blockquote><ul><li>x</li></ul>"
    assert wordpress_blocks(html) == (
        '<!-- wp:paragraph {"className":"readersviews-context"} -->\n'
        '<p class="readersviews-context">In <a href="https://p.example/a">A</a></p>\n'
        "<!-- /wp:paragraph -->\n\n"
        "<!-- wp:paragraph -->\n<p>One<br>two</p>\n<!-- /wp:paragraph -->\n\n"
        "<!-- wp:html -->\n<blockquote><p>q</p></blockquote>\n<!-- /wp:html -->\n\n"
        "<!-- wp:html -->\n<ul><li>x</li></ul>\n<!-- /wp:html -->"
    )


def test_slugify_is_ascii_and_bounded():
    assert slugify("  Hello, World! ") == "hello-world"
    assert slugify("日本語") == ""
    assert len(slugify("word " * 40)) <= 60 and not slugify("word " * 40).endswith("-")


def test_statement_lists_signatories_escaped():
    """A statement page: the body, then organizations and individuals as lists, every field escaped."""
    statement = Statement(
        id=3,
        title="Save the <library>",
        body="We ask the council to keep it open.",
        signatories=[
            Signatory(name="Friends of Books", city="Leeds", country="UK", kind="organization"),
            Signatory(name="<script>x</script>Bo", role="Teacher", organization="School & Co", city="York"),
        ],
    )
    result = compose_statement(statement)
    assert result.slug == "statement-3-save-the-library"
    assert '<h2 class="readersviews-signatories">Signatories (2)</h2>' in result.html
    assert "<li><strong>Friends of Books</strong> (Leeds, UK)</li>" in result.html
    assert "<li><strong>&lt;script&gt;x&lt;/script&gt;Bo</strong>, Teacher, School &amp; Co (York)</li>" in result.html
    assert "<script" not in result.html
    assert result.metadata["signatory_count"] == 2
    assert result.metadata["signatories"][1]["organization"] == "School & Co"


def test_digest_is_a_draft():
    digest = Digest(key="2026-01", title="Letters of January", letters=[Letter(id=1, text="One", byline="A")])
    result = compose_digest(digest, disclaimer="d")
    assert result.status == "draft" and result.entity == "digest:2026-01"
    assert "<h2>Letter from A</h2>" in result.html


# -- the adapter ----------------------------------------------------------------------------------


async def test_create_update_retract_roundtrip(site: FakeSite, http):
    """create -> post with status, categories and tags; update keeps the id; retract trashes it."""
    wp = adapter(site, http, post_status="publish", category_ids=(4,), tag_ids=(9,))
    ref = await wp.create(item())
    post = site.post_by_id(ref.remote_id or "")
    assert (post["status"], post["categories"], post["tags"]) == ("publish", [4], [9])
    assert ref.url == f"{site.base_url}/{item().slug}/"

    again = await wp.update(ref.remote_id, item(html="<p>edited</p>"))
    assert again.remote_id == ref.remote_id
    assert post["content"] == "<!-- wp:paragraph -->\n<p>edited</p>\n<!-- /wp:paragraph -->"
    assert post["status"] == "publish"  # an update does not touch the status

    await wp.retract(ref.remote_id, item())
    assert post["status"] == "trash"
    await wp.retract(ref.remote_id, item())  # 410 already trashed: fine
    await wp.retract("99999", item())  # 404 gone: fine


async def test_digest_is_sent_as_draft_and_statement_as_page(site: FakeSite, http):
    wp = adapter(site, http, post_status="publish", statement_type="pages")
    digest = compose_digest(Digest(key=1, title="Week", letters=[]), disclaimer=None)
    statement = compose_statement(Statement(id=1, title="Stmt", body="Body"))
    d = await wp.create(digest)
    s = await wp.create(statement)
    assert site.post_by_id(d.remote_id or "")["status"] == "draft"
    assert site.post_by_id(s.remote_id or "")["type"] == "pages"
    assert await wp.lookup(statement) == s


async def test_statement_post_says_open_or_final_with_the_total(site: FakeSite, http):
    """The WordPress post says whether the statement is open or closed (final), with the total next to the list."""
    wp = adapter(site, http, post_status="publish")
    signers = [Signatory(name="Ann"), Signatory(name="Friends", kind="organization")]
    deadline = datetime(2026, 12, 31, 18, 0, tzinfo=UTC)
    opened = compose_statement(Statement(id=7, title="S", body="B", signatories=signers, signature_count=3,
                                         closes_at=deadline))  # fmt: skip
    ref = await wp.create(opened)
    post = site.post_by_id(ref.remote_id or "")
    assert (
        '<p class="readersviews-statement-status"><strong>Open for signatures until 31 December 2026, 18:00 UTC.'
        " 3 signatures so far, 2 of them listed publicly.</strong></p>"
    ) in post["content"]
    closed = compose_statement(Statement(id=7, title="S", body="B", signatories=signers, signature_count=3,
                                         status="closed", closed_at=deadline))  # fmt: skip
    await wp.update(ref.remote_id, closed)
    assert (
        "Closed on 31 December 2026, 18:00 UTC. Final count: 3 signatures, 2 of them listed publicly."
        in (post["content"])
    )
    assert "Open for signatures" not in post["content"]
    alone = compose_statement(Statement(id=8, title="T", body="B", signatories=[Signatory(name="Ann")]))
    assert "Open for signatures. 1 signature so far.</strong>" in alone.html  # all listed: no "of them"


async def test_lookup_finds_renamed_slug_only_with_matching_title(site: FakeSite, http):
    """WordPress renamed our slug to slug-2 because a foreign post held it: lookup still finds ours."""
    wp = adapter(site, http)
    ours = item(5)
    foreign = ours.model_copy(update={"title": "Someone else's post"})
    await wp.create(foreign)
    assert (await wp.lookup(ours)).remote_id == str(min(site.posts))  # type: ignore[union-attr]
    site.reset()
    assert await wp.lookup(ours) is None
    other = await wp.create(foreign.model_copy(update={"slug": ours.slug + "-x"}))
    assert other.remote_id and await wp.lookup(ours) is None
    created = await wp.create(ours)
    await wp.create(ours.model_copy(update={"slug": "unrelated"}))
    assert await wp.lookup(ours) == created


async def test_errors_are_classified_with_fix_hints(site: FakeSite, http):
    """403 publish, 400 invalid, 404 on update are permanent with a hint; 5xx and 429 are transient."""
    wp = adapter(site, http)
    site.fail_next(1, 503, {"Retry-After": "7"})
    with pytest.raises(TransientSiteError) as transient:
        await wp.create(item())
    assert transient.value.retry_after == 7 and transient.value.outcome_unknown

    with pytest.raises(PermanentSiteError, match="no longer exists on WordPress"):
        await wp.update("4242", item())

    ref = await wp.create(item())
    assert ref.remote_id

    bad = WordPressAdapter(
        WordPressSettings(url=site.wp_url + "/blog", username=WP_USER), WP_PASSWORD, http, clock=FakeClock()
    )
    with pytest.raises(PermanentSiteError, match=r"check site.wordpress.url"):
        await bad.create(item())


async def test_redirect_is_permanent_and_names_the_new_url():
    """A 3xx is not success: it names where the site moved, so the setting can be fixed."""

    def moved(request: httpx.Request) -> httpx.Response:
        return httpx.Response(308, headers={"Location": "https://www.paper.example" + request.url.raw_path.decode()})

    async with httpx.AsyncClient(transport=httpx.MockTransport(moved)) as client:
        settings = WordPressSettings(url="http://paper.example", username=WP_USER)
        wp = WordPressAdapter(settings, WP_PASSWORD, client, clock=FakeClock())
        with pytest.raises(PermanentSiteError, match=r"set site\.wordpress\.url to https://www\.paper\.example;?"):
            await wp.create(item())
        with pytest.raises(PermanentSiteError, match="redirects"):
            await wp.lookup(item())


async def test_connection_refused_is_transient_and_certainly_not_applied(http):
    wp = WordPressAdapter(WordPressSettings(url="http://127.0.0.1:9", username="x"), "y", http, clock=FakeClock())
    with pytest.raises(TransientSiteError) as caught:
        await wp.create(item())
    assert not caught.value.outcome_unknown


async def test_check_verifies_credentials(site: FakeSite, http):
    """check() signs in (GET /users/me): a wrong password is named as the thing to fix."""
    assert "signed in as 'editor'" in await adapter(site, http).check()
    wrong = WordPressAdapter(WordPressSettings(url=site.wp_url, username=WP_USER), "nope", http, clock=FakeClock())
    with pytest.raises(PermanentSiteError, match="READERSVIEWS_WP_APP_PASSWORD"):
        await wrong.check()


def test_parse_retry_after_accepts_seconds_and_dates():
    now = FakeClock(datetime(2026, 1, 1, 12, 0, tzinfo=UTC)).now()
    assert parse_retry_after("30", now) == 30
    assert parse_retry_after("Thu, 01 Jan 2026 12:01:00 GMT", now) == 60
    assert parse_retry_after("soon", now) is None


async def test_make_adapter_picks_the_kind_and_names_missing_settings(http):
    assert isinstance(make_adapter(SiteSettings(), Secrets(), http), NoSiteAdapter)
    wp = SiteSettings(kind="wordpress", wordpress=WordPressSettings(url="https://paper.example", username="bot"))
    with pytest.raises(ConfigError, match="READERSVIEWS_WP_APP_PASSWORD"):
        make_adapter(wp, Secrets(), http)
    assert isinstance(make_adapter(wp, Secrets(wordpress_password="a b c"), http), WordPressAdapter)
    with pytest.raises(ConfigError, match=r"site\.webhook\.url"):
        make_adapter(SiteSettings(kind="webhook"), Secrets(webhook_secret="s"), http)
    hook = SiteSettings.model_validate({"kind": "webhook", "webhook": {"url": "https://x.example/hook"}})
    with pytest.raises(ConfigError, match="READERSVIEWS_WEBHOOK_SECRET"):
        make_adapter(hook, Secrets(), http)
    assert isinstance(make_adapter(hook, Secrets(webhook_secret="s"), http), WebhookAdapter)
