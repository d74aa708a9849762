"""Feed fetching (against a loopback server) and parsing/normalisation of real-world feed shapes."""

from __future__ import annotations

import asyncio
import gzip
import html
import tracemalloc
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from bot.feeds import (
    FeedParseError,
    fetch_feed,
    format_size,
    parse_feed,
    parse_feed_async,
    user_agent,
)
from tests.feedserver import FeedServer, LoopWatch, gzip_of_zeros

FEED_URL = "https://news.example.org/feed/"

RSS_WITH_CONTENT = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"
     xmlns:content="http://purl.org/rss/1.0/modules/content/"
     xmlns:dc="http://purl.org/dc/elements/1.1/"
     xmlns:media="http://search.yahoo.com/mrss/">
<channel>
  <title>The Example Review</title>
  <link>https://news.example.org/</link>
  <item>
    <title>Rents rise   again &amp;amp; again</title>
    <link>https://news.example.org/2024/rents/</link>
    <guid isPermaLink="false">https://news.example.org/?p=101</guid>
    <pubDate>Tue, 02 Jan 2024 10:30:00 +0100</pubDate>
    <dc:creator>Ana Writer</dc:creator>
    <category>Housing</category>
    <category>Cities</category>
    <category>Housing</category>
    <description><![CDATA[<p>Short <b>summary</b>.</p>]]></description>
    <content:encoded><![CDATA[<p>Full text<script>alert(1)</script>
      with <a href="/about">a link</a>.</p>]]></content:encoded>
    <media:thumbnail url="https://news.example.org/img/rents.jpg" />
  </item>
  <item>
    <title>Second piece</title>
    <link>https://news.example.org/2024/second/</link>
    <guid>https://news.example.org/?p=102</guid>
    <description>Plain description</description>
    <enclosure url="https://news.example.org/img/second.png" type="image/png" length="10" />
  </item>
</channel>
</rss>
"""

ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title type="html">Campaign &lt;em&gt;news&lt;/em&gt;</title>
  <link href="https://campaign.example.net/"/>
  <id>urn:uuid:feed</id>
  <updated>2024-03-01T12:00:00Z</updated>
  <entry>
    <title type="html">&lt;b&gt;Sign&lt;/b&gt; the   statement</title>
    <id>tag:campaign.example.net,2024:1</id>
    <link rel="alternate" href="https://campaign.example.net/sign"/>
    <published>2024-03-01T09:00:00-05:00</published>
    <updated>2024-03-02T09:00:00Z</updated>
    <author><name>Organising Team</name></author>
    <category term="statements"/>
    <summary type="html">&lt;p&gt;Add your name.&lt;/p&gt;</summary>
    <content type="html">&lt;p&gt;The whole statement.&lt;/p&gt;</content>
  </entry>
</feed>
"""


def rss(items: str, *, declaration: str = '<?xml version="1.0" encoding="UTF-8"?>') -> str:
    return f'{declaration}<rss version="2.0"><channel><title>T</title><link>https://x.example/</link>{items}</channel></rss>'


@pytest.fixture
async def server() -> AsyncIterator[FeedServer]:
    async with FeedServer() as feed_server:
        yield feed_server


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(headers={"User-Agent": user_agent("0.1", "https://news.example.org/bot")}) as c:
        yield c


# --- parsing -------------------------------------------------------------------------------


def test_rss_with_content_encoded_is_normalised() -> None:
    """An RSS 2.0 item yields guid, clean title, UTC date, categories, author, image and full content."""
    feed = parse_feed(RSS_WITH_CONTENT, url=FEED_URL, content_type="application/rss+xml; charset=UTF-8")

    assert feed.title == "The Example Review"
    assert feed.link == "https://news.example.org/"
    assert not feed.bozo
    assert [a.guid for a in feed.articles] == ["https://news.example.org/?p=101", "https://news.example.org/?p=102"]
    first = feed.articles[0]
    assert first.title == "Rents rise again & again"
    assert first.link == "https://news.example.org/2024/rents/"
    assert first.published == datetime(2024, 1, 2, 9, 30, tzinfo=UTC)
    assert first.categories == ["Housing", "Cities"]
    assert first.author == "Ana Writer"
    assert first.image_url == "https://news.example.org/img/rents.jpg"
    assert "<b>summary</b>" in first.summary_html
    assert first.content_html is not None
    assert "Full text" in first.content_html
    assert "<script" not in first.content_html
    # Relative links in content are resolved against the feed URL.
    assert 'href="https://news.example.org/about"' in first.content_html
    second = feed.articles[1]
    assert second.content_html is None
    assert second.image_url == "https://news.example.org/img/second.png"
    assert second.published is None
    assert second.updated is None


def test_atom_entry_is_normalised() -> None:
    """Atom: id as guid, HTML title flattened to text, published converted to UTC, updated kept."""
    feed = parse_feed(ATOM, url="https://campaign.example.net/feed.atom", content_type="application/atom+xml")

    assert feed.title == "Campaign news"
    [entry] = feed.articles
    assert entry.guid == "tag:campaign.example.net,2024:1"
    assert entry.title == "Sign the statement"
    assert entry.link == "https://campaign.example.net/sign"
    assert entry.published == datetime(2024, 3, 1, 14, 0, tzinfo=UTC)
    assert entry.updated == datetime(2024, 3, 2, 9, 0, tzinfo=UTC)
    assert entry.author == "Organising Team"
    assert entry.categories == ["statements"]
    assert entry.summary_html == "<p>Add your name.</p>"
    assert entry.content_html == "<p>The whole statement.</p>"


def test_item_without_guid_falls_back_to_link() -> None:
    """An item with no guid is identified by its link, so re-polls dedupe."""
    body = rss("<item><title>No guid</title><link>https://x.example/a</link></item>").encode()
    [article] = parse_feed(body, url=FEED_URL).articles
    assert article.guid == "https://x.example/a"


@pytest.mark.parametrize("date", ["0000-00-00T00:00:00Z", "9999-12-31T23:59:59-01:00"])
def test_impossible_date_makes_the_item_undated(date: str) -> None:
    """A date no datetime can hold (year 0, year 10000) is dropped; the item and the feed are kept."""
    body = rss(f"<item><guid>a</guid><title>Dated oddly</title><pubDate>{date}</pubDate></item>").encode()
    [article] = parse_feed(body, url=FEED_URL).articles
    assert article.title == "Dated oddly" and article.published is None and article.updated is None


def test_item_without_guid_or_link_gets_stable_hash_and_a_problem_note() -> None:
    """Without id or link the guid is a hash of title and date: stable across polls, and reported."""
    body = rss("<item><title>Only a title</title><pubDate>Tue, 02 Jan 2024 10:30:00 GMT</pubDate></item>").encode()
    first = parse_feed(body, url=FEED_URL)
    second = parse_feed(body, url=FEED_URL)
    assert first.articles[0].guid == second.articles[0].guid
    assert first.articles[0].guid.startswith("sha1:")
    assert any("entry 1 has no id or link" in problem for problem in first.problems)


def test_empty_item_is_skipped_and_reported() -> None:
    """An item with nothing to identify it is skipped with a readable problem, others survive."""
    body = rss("<item><category>x</category></item><item><link>https://x.example/b</link></item>").encode()
    feed = parse_feed(body, url=FEED_URL)
    assert [a.link for a in feed.articles] == ["https://x.example/b"]
    assert "entry 1 has no id, link, title or description; skipped" in feed.problems


def test_item_with_only_a_description_is_kept_and_titled_from_its_first_words() -> None:
    """Valid RSS needs only a title or a description: a description-only item is an article, stably identified."""
    text = "<p>The council met on <b>Tuesday</b> and voted to reopen the harbour baths after two years of repairs.</p>"
    body = rss(f"<item><description>{html.escape(text)}</description></item>").encode()
    first, second = parse_feed(body, url=FEED_URL), parse_feed(body, url=FEED_URL)
    assert len(first.articles) == 1
    article = first.articles[0]
    assert article.guid == second.articles[0].guid and article.guid.startswith("sha1:")
    assert article.title.startswith("The council met on Tuesday and voted")
    assert len(article.title) <= 80 and article.title.endswith("…")
    assert article.content_hash == second.articles[0].content_hash


def test_byline_and_image_are_read_from_the_usual_places() -> None:
    """dc:creator is the byline; the image comes from an enclosure, media:content, or the first <img>."""
    ns = 'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:media="http://search.yahoo.com/mrss/"'
    items = (
        "<item><guid>a</guid><title>A</title><dc:creator>Jo Writer</dc:creator>"
        '<enclosure url="https://img.example/a.jpg" type="image/jpeg" length="1"/></item>'
        '<item><guid>b</guid><title>B</title><media:content url="https://img.example/b.png" medium="image"/></item>'
        "<item><guid>c</guid><title>C</title><description>"
        + html.escape(
            '<p>Text <img alt="x" src="https://img.example/c.webp"> <img src="https://img.example/2.png"></p>'
        )
        + "</description></item>"
        "<item><guid>d</guid><title>D</title><description>no picture</description></item>"
    )
    body = f'<?xml version="1.0"?><rss version="2.0" {ns}><channel><title>T</title>{items}</channel></rss>'
    articles = parse_feed(body.encode(), url=FEED_URL).articles
    assert articles[0].author == "Jo Writer"
    assert [a.image_url for a in articles] == [
        "https://img.example/a.jpg",
        "https://img.example/b.png",
        "https://img.example/c.webp",
        None,
    ]


def test_duplicate_guid_within_feed_is_kept_once() -> None:
    """The same guid twice in one document yields one article (the first), with a problem note."""
    item = "<item><title>{}</title><guid>same</guid><link>https://x.example/{}</link></item>"
    feed = parse_feed(rss(item.format("one", 1) + item.format("two", 2)).encode(), url=FEED_URL)
    assert [a.title for a in feed.articles] == ["one"]
    assert any("entry 2 repeats the id of entry 1" in problem for problem in feed.problems)


def test_content_hash_changes_when_title_or_summary_is_edited() -> None:
    """Edits to title or summary change content_hash; an identical re-poll does not."""
    base = "<item><guid>g</guid><title>{}</title><link>https://x.example/a</link><description>{}</description></item>"

    def hash_of(title: str, summary: str) -> str:
        return parse_feed(rss(base.format(title, summary)).encode(), url=FEED_URL).articles[0].content_hash

    original = hash_of("Title", "Summary")
    assert hash_of("Title", "Summary") == original
    assert hash_of("Title (corrected)", "Summary") != original
    assert hash_of("Title", "Summary, updated") != original


def test_title_with_markup_and_mentions_is_plain_text() -> None:
    """Titles lose tags and entities, keep literal characters, and collapse whitespace."""
    body = rss(
        "<item><guid>g</guid><title>&lt;i&gt;Rock&lt;/i&gt; &amp;amp;\n\t roll @everyone</title></item>"
    ).encode()
    assert parse_feed(body, url=FEED_URL).articles[0].title == "Rock & roll @everyone"


def test_malformed_xml_that_still_yields_items_is_tolerated() -> None:
    """A feed with broken markup but readable items is accepted and flagged bozo with a reason."""
    body = rss(
        "<item><title>Good one</title><link>https://x.example/1</link></item>"
        "<item><title>Broken <b>tag</title><link>https://x.example/2</link></item>"
    ).encode()
    feed = parse_feed(body, url=FEED_URL)
    assert feed.bozo
    assert feed.bozo_reason
    assert "not well-formed" in feed.bozo_reason
    assert feed.articles[0].title == "Good one"
    assert feed.problems[0].startswith("feed has problems but was read leniently")


def test_html_page_is_not_a_feed() -> None:
    """A site's HTML page (e.g. the feed URL now serves the home page) raises a clear error."""
    page = b"<!DOCTYPE html>\n<html><head><title>Home</title></head><body><p>Welcome</p></body></html>"
    with pytest.raises(FeedParseError, match="not a feed: looks like an HTML page"):
        parse_feed(page, url=FEED_URL, content_type="text/html; charset=utf-8")
    with pytest.raises(FeedParseError, match="looks like an HTML page"):
        parse_feed(page, url=FEED_URL)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<rss version='2.0'><channel><title>T</title></chan", "malformed XML with no entries"),
        (b"<?xml version='1.0'?><notafeed><a></b>", "not a feed: malformed XML"),
        (b"", "the response was empty"),
        (b'{"items": []}', "not a feed"),
    ],
)
def test_documents_without_entries_raise(body: bytes, message: str) -> None:
    """Broken XML, empty bodies and JSON all raise FeedParseError rather than 'no new articles'."""
    with pytest.raises(FeedParseError, match=message):
        parse_feed(body, url=FEED_URL, content_type="application/xml")


def test_valid_feed_with_no_items_is_empty_not_an_error() -> None:
    """A well-formed feed with no items is simply empty."""
    feed = parse_feed(rss("").encode(), url=FEED_URL)
    assert feed.articles == []
    assert not feed.bozo


def test_body_naming_a_local_file_is_not_read_from_disk(tmp_path: Path) -> None:
    """feedparser treats a bytes argument as a file name first; a hostile body must not read local files."""
    secret = tmp_path / "secret.xml"
    secret.write_bytes(rss("<item><title>local secret</title><link>https://x.example/s</link></item>").encode())
    with pytest.raises(FeedParseError):
        parse_feed(str(secret).encode(), url=FEED_URL)


def test_windows_1252_declared_feed_decodes() -> None:
    """Smart quotes, dashes and accents in a windows-1252 feed come out as the right characters."""
    title = "“Café” – naïve €5"
    body = rss(
        f"<item><title>{title}</title><link>https://x.example/1</link></item>",
        declaration='<?xml version="1.0" encoding="windows-1252"?>',
    ).encode("cp1252")
    feed = parse_feed(body, url=FEED_URL, content_type="application/rss+xml")
    assert feed.articles[0].title == title


def test_iso_8859_1_charset_from_http_header_decodes() -> None:
    """A charset given only in the Content-Type header is honoured."""
    body = rss(
        "<item><title>Größe und Café</title><link>https://x.example/1</link></item>",
        declaration='<?xml version="1.0"?>',
    ).encode("latin-1")
    feed = parse_feed(body, url=FEED_URL, content_type="application/rss+xml; charset=iso-8859-1")
    assert feed.articles[0].title == "Größe und Café"


def test_undeclared_legacy_encoding_is_still_readable() -> None:
    """A latin-1 feed served as text/xml without charset is detected, not garbled (bozo note only)."""
    body = rss(
        "<item><title>Café crème</title><link>https://x.example/1</link></item>", declaration='<?xml version="1.0"?>'
    ).encode("latin-1")
    feed = parse_feed(body, url=FEED_URL, content_type="text/xml")
    assert feed.articles[0].title == "Café crème"


async def test_parse_feed_async_matches_sync() -> None:
    """The threaded variant returns the same articles as the direct call."""
    feed = await parse_feed_async(RSS_WITH_CONTENT, url=FEED_URL, content_type="application/rss+xml")
    assert feed.articles == parse_feed(RSS_WITH_CONTENT, url=FEED_URL).articles


async def test_parse_feed_async_raises_parse_errors() -> None:
    with pytest.raises(FeedParseError):
        await parse_feed_async(b"<html><body><p>hi</p></body></html>", url=FEED_URL, content_type="text/html")


def test_user_agent_and_sizes_read_well() -> None:
    assert user_agent("0.1", "https://news.example.org/bot") == "readersviews/0.1 (+https://news.example.org/bot)"
    assert user_agent("0.1") == "readersviews/0.1"
    assert format_size(5_000_000) == "5 MB"
    assert format_size(1_500) == "1.5 kB"


# --- fetching ------------------------------------------------------------------------------


async def test_fetch_then_conditional_refetch_gets_304(server: FeedServer, client: httpx.AsyncClient) -> None:
    """First fetch returns body and validators; the second sends them back and gets not_modified."""
    server.set_feed("/feed", RSS_WITH_CONTENT, etag='"v1"', last_modified="Tue, 02 Jan 2024 10:00:00 GMT")

    first = await fetch_feed(client, server.url("/feed"))
    assert first.status == "ok"
    assert first.http_status == 200
    assert first.body == RSS_WITH_CONTENT
    assert first.etag == '"v1"'
    assert first.last_modified == "Tue, 02 Jan 2024 10:00:00 GMT"
    assert first.content_type is not None and first.content_type.startswith("application/rss+xml")
    assert first.error is None

    second = await fetch_feed(client, server.url("/feed"), etag=first.etag, last_modified=first.last_modified)
    assert second.status == "not_modified"
    assert second.http_status == 304
    assert second.body is None
    assert second.etag == '"v1"'

    request = server.requests_for("/feed")[1]
    assert request.header("If-None-Match") == '"v1"'
    assert request.header("If-Modified-Since") == "Tue, 02 Jan 2024 10:00:00 GMT"
    assert request.header("User-Agent") == "readersviews/0.1 (+https://news.example.org/bot)"
    assert server.count("/feed") == 2


async def test_non_ascii_validators_are_dropped() -> None:
    """A non-ASCII ETag / Last-Modified is not kept, and one stored earlier is not sent (httpx would raise)."""
    sent: list[httpx.Headers] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers)
        headers = [
            (b"ETag", '"caf\u00e9"'.encode("latin-1")),
            (b"Last-Modified", "Mon, 1 Jan \u00e9".encode("latin-1")),
        ]
        return httpx.Response(200, headers=headers, content=rss("").encode())

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as mock:
        first = await fetch_feed(mock, FEED_URL)
        assert first.ok and first.etag is None and first.last_modified is None
        again = await fetch_feed(mock, FEED_URL, etag='"caf\u00e9"', last_modified="Mon, 1 Jan \u00e9")
    assert again.ok
    assert "If-None-Match" not in sent[1] and "If-Modified-Since" not in sent[1]


async def test_changed_feed_is_fetched_again_despite_old_etag(server: FeedServer, client: httpx.AsyncClient) -> None:
    """When the server's ETag changes, the stale validator yields the new body."""
    server.set_feed("/feed", b"<rss/>", etag='"v2"')
    result = await fetch_feed(client, server.url("/feed"), etag='"v1"')
    assert result.status == "ok"
    assert result.etag == '"v2"'


async def test_if_modified_since_alone_gets_304(server: FeedServer, client: httpx.AsyncClient) -> None:
    server.set_feed("/feed", b"<rss/>", last_modified="Tue, 02 Jan 2024 10:00:00 GMT")
    result = await fetch_feed(client, server.url("/feed"), last_modified="Tue, 02 Jan 2024 10:00:00 GMT")
    assert result.status == "not_modified"
    assert result.last_modified == "Tue, 02 Jan 2024 10:00:00 GMT"


async def test_redirect_is_followed_and_final_url_reported(server: FeedServer, client: httpx.AsyncClient) -> None:
    server.set_redirect("/old", "/new", status=301)
    server.set_feed("/new", RSS_WITH_CONTENT)
    result = await fetch_feed(client, server.url("/old"))
    assert result.status == "ok"
    assert result.final_url == server.url("/new")
    assert result.body == RSS_WITH_CONTENT


async def test_redirect_loop_is_a_clear_error(server: FeedServer, client: httpx.AsyncClient) -> None:
    server.set_redirect("/a", "/b")
    server.set_redirect("/b", "/a")
    result = await fetch_feed(client, server.url("/a"))
    assert result.status == "error"
    assert result.error is not None and result.error.startswith("redirect loop")
    assert server.count() == 2


async def test_redirect_chain_longer_than_limit_stops(server: FeedServer, client: httpx.AsyncClient) -> None:
    for hop in range(10):
        server.set_redirect(f"/r{hop}", f"/r{hop + 1}")
    result = await fetch_feed(client, server.url("/r0"), max_redirects=5)
    assert result.status == "error"
    assert result.error == "too many redirects (max 5)"
    assert server.count() == 6


async def test_huge_streamed_response_is_cut_off_at_limit(server: FeedServer, client: httpx.AsyncClient) -> None:
    """A 50 MB chunked body is abandoned once past max_bytes, with a readable error."""
    server.set_stream("/huge", 50_000_000)
    result = await fetch_feed(client, server.url("/huge"), max_bytes=5_000_000)
    assert result.status == "error"
    assert result.error == "response larger than 5 MB limit"
    assert result.body is None


async def test_declared_oversize_content_length_is_refused_before_reading(
    server: FeedServer, client: httpx.AsyncClient
) -> None:
    server.set_stream("/huge", 50_000_000, declare_length=True)
    result = await fetch_feed(client, server.url("/huge"), max_bytes=1_000_000)
    assert result.error == "response larger than 1 MB limit"


async def test_body_at_the_limit_is_accepted(server: FeedServer, client: httpx.AsyncClient) -> None:
    server.set_stream("/exact", 100_000, chunk_size=4096)
    result = await fetch_feed(client, server.url("/exact"), max_bytes=100_000)
    assert result.status == "ok"
    assert result.body is not None and len(result.body) == 100_000


async def test_slow_server_times_out(server: FeedServer, client: httpx.AsyncClient) -> None:
    server.set_slow("/slow", delay=30)
    result = await fetch_feed(client, server.url("/slow"), timeout=0.5)
    assert result.status == "error"
    assert result.error == "timed out after 0.5 s"


async def test_trickling_server_hits_the_overall_deadline(server: FeedServer, client: httpx.AsyncClient) -> None:
    """A byte every 0.1 s never trips a per-read timeout, but the whole fetch is bounded."""
    server.set_trickle("/trickle", interval=0.1)
    result = await fetch_feed(client, server.url("/trickle"), timeout=0.5)
    assert result.status == "error"
    assert result.error == "timed out after 0.5 s"


async def test_503_is_reported_without_raising(server: FeedServer, client: httpx.AsyncClient) -> None:
    server.set_status("/down", 503, b"maintenance", headers={"Retry-After": "120"})
    result = await fetch_feed(client, server.url("/down"))
    assert result.status == "error"
    assert result.http_status == 503
    assert result.error == "HTTP 503"
    assert result.body is None


async def test_html_page_served_as_feed_is_an_error(server: FeedServer, client: httpx.AsyncClient) -> None:
    page = b"<!doctype html><html><body>Moved to our new site</body></html>"
    server.set_feed("/feed", page, content_type="text/html; charset=utf-8")
    result = await fetch_feed(client, server.url("/feed"))
    assert result.status == "error"
    assert result.error == "not a feed: got text/html page"


async def test_feed_mislabelled_as_html_is_still_fetched(server: FeedServer, client: httpx.AsyncClient) -> None:
    """Some servers send real RSS as text/html; the body decides, not the label."""
    server.set_feed("/feed", RSS_WITH_CONTENT, content_type="text/html")
    result = await fetch_feed(client, server.url("/feed"))
    assert result.status == "ok"


async def test_connection_refused_is_an_error_not_an_exception(client: httpx.AsyncClient) -> None:
    async with FeedServer() as gone:
        url = gone.url("/feed")
    result = await fetch_feed(client, url)
    assert result.status == "error"
    assert result.error is not None and result.error.startswith("could not connect")


async def test_invalid_url_is_an_error(client: httpx.AsyncClient) -> None:
    result = await fetch_feed(client, "ftp://example.org/feed")
    assert result.status == "error"
    assert result.error is not None and "invalid feed URL" in result.error


async def test_custom_handler_and_fetch_then_parse(server: FeedServer, client: httpx.AsyncClient) -> None:
    """A programmed handler sees the request; the fetched bytes and content type parse end to end."""

    async def handler(request: web.Request) -> web.StreamResponse:
        body = RSS_WITH_CONTENT.replace(b"Second piece", request.headers["User-Agent"].encode())
        return web.Response(body=body, content_type="application/rss+xml", charset="utf-8")

    server.set_handler("/dynamic", handler)
    fetched = await fetch_feed(client, server.url("/dynamic"))
    assert fetched.body is not None
    feed = await parse_feed_async(fetched.body, url=fetched.final_url, content_type=fetched.content_type)
    assert feed.articles[1].title.startswith("readersviews/0.1")


async def test_event_loop_keeps_running_during_fetches(server: FeedServer, client: httpx.AsyncClient) -> None:
    """Concurrent fetches of different feeds all complete (no shared state between calls)."""
    for n in range(4):
        server.set_feed(f"/f{n}", rss(f"<item><guid>{n}</guid><title>t{n}</title></item>").encode())
    results = await asyncio.gather(*(fetch_feed(client, server.url(f"/f{n}")) for n in range(4)))
    assert [r.status for r in results] == ["ok"] * 4
    titles = [parse_feed(r.body or b"", url=FEED_URL).articles[0].title for r in results]
    assert titles == ["t0", "t1", "t2", "t3"]


def test_relative_guid_is_resolved_against_the_given_url() -> None:
    """feedparser treats a permalink guid like "123" as a URL: the dedupe key depends on `url`.

    Callers must pass the configured feed URL (stable), never a redirect's final URL.
    """
    body = rss("<item><guid>123</guid><title>t</title></item><item><guid isPermaLink='false'>456</guid></item>")
    feed = parse_feed(body.encode(), url="https://x.example/feed/")
    assert [a.guid for a in feed.articles] == ["https://x.example/feed/123", "456"]
    assert parse_feed(body.encode(), url="https://x.example/feed/").articles == feed.articles


# --- untrusted bodies: compression bombs and cut-off documents -----------------------------


def layered(body: bytes, *encodings: str) -> bytes:
    """`body` encoded with each of `encodings` in turn (the order of a Content-Encoding header)."""
    for encoding in encodings:
        if encoding == "gzip":
            body = gzip.compress(body)
        elif encoding == "deflate":
            body = zlib.compress(body)
        elif encoding == "raw-deflate":
            packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
            body = packer.compress(body) + packer.flush()
    return body


@pytest.mark.parametrize(
    "encodings",
    [("gzip",), ("deflate",), ("raw-deflate",), ("gzip", "gzip"), ("deflate", "gzip"), ("identity",), ()],
)
async def test_compressed_feeds_are_decoded(server: FeedServer, client: httpx.AsyncClient, encodings: tuple) -> None:
    """gzip, deflate (zlib-wrapped or raw) and stacked encodings decode to the feed's bytes."""
    header = ", ".join("deflate" if e == "raw-deflate" else e for e in encodings)
    headers = {"Content-Encoding": header} if header else {}
    server.set_feed("/feed", layered(RSS_WITH_CONTENT, *encodings), headers=headers)
    result = await fetch_feed(client, server.url("/feed"))
    assert result.ok and result.body == RSS_WITH_CONTENT
    assert server.requests_for("/feed")[0].header("Accept-Encoding") == "gzip, deflate"


@pytest.mark.parametrize(
    ("body", "header", "error"),
    [
        (b"\x8b\x00brotli", "br", "unsupported content encoding 'br'"),
        (layered(RSS_WITH_CONTENT, *["gzip"] * 4), "gzip, gzip, gzip, gzip", "too many content encodings (4)"),
        (b"\x1f\x8bnot really gzip at all", "gzip", "the gzip body is corrupt"),
        (layered(RSS_WITH_CONTENT, "gzip")[:-30], "gzip", "the gzip body was cut off"),
    ],
)
async def test_undecodable_bodies_are_clear_errors(
    server: FeedServer, client: httpx.AsyncClient, body: bytes, header: str, error: str
) -> None:
    server.set_feed("/feed", body, headers={"Content-Encoding": header})
    result = await fetch_feed(client, server.url("/feed"))
    assert result.status == "error" and result.error is not None and error in result.error


@pytest.mark.parametrize("encoding", ["gzip", "gzip, gzip"])
async def test_compression_bomb_is_cut_off_within_the_cap(
    server: FeedServer, client: httpx.AsyncClient, encoding: str
) -> None:
    """256 MiB of zeros in a few kB: refused at the cap, with peak memory near the cap and the loop running."""
    bomb = gzip_of_zeros(256)
    if encoding == "gzip, gzip":
        bomb = gzip.compress(bomb)
    server.set_feed("/bomb", bomb, headers={"Content-Encoding": encoding})
    async with LoopWatch() as watch:
        tracemalloc.start()
        try:
            result = await fetch_feed(client, server.url("/bomb"), max_bytes=1_000_000)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert result.status == "error" and result.error == "response larger than 1 MB limit"
    assert peak < 1_000_000 + 2_000_000, f"peak {peak} bytes"
    assert watch.longest < 0.25, f"the event loop stalled for {watch.longest:.3f} s"


def test_document_cut_off_mid_item_is_a_failure_not_a_stub() -> None:
    """A feed that ends inside an item (a dropped connection, a crashed generator) is refused whole."""
    item = "<item><guid>g{0}</guid><title>Title {0}</title><link>https://x.example/{0}</link></item>"
    items = "".join(item.format(n) for n in range(3))
    complete = rss(items)
    for cut in ("<item><guid>g2</guid><tit", "<item><guid>g2</guid><title>Tit", "</item>", "<link>https://x.exa"):
        body = complete[: complete.rindex(cut) + len(cut)].encode()
        with pytest.raises(FeedParseError, match="cut off"):
            parse_feed(body, url=FEED_URL)
    cdata = rss("<item><guid>a</guid><title>A</title><description><![CDATA[<p>half a para")
    with pytest.raises(FeedParseError, match="cut off"):
        parse_feed(cdata.removesuffix("</channel></rss>").encode(), url=FEED_URL)
    assert len(parse_feed(complete.encode(), url=FEED_URL).articles) == 3


@pytest.mark.parametrize(
    "body",
    [
        # a wrong declared charset (the bytes are latin-1)
        rss("<item><guid>a</guid><title>Café</title></item>").encode("latin-1"),
        rss("<item><guid>a</guid><title>Fish & chips &nbsp;today</title></item>").encode(),  # unescaped & and entity
        (rss("<item><guid>a</guid><title>Junk after</title></item>") + "<p>powered by</p>").encode(),
        rss("<item><guid>a</guid><title>No final bracket</title></item>").removesuffix(">").encode(),
        ("<!-- a comment -->\n" + rss("<item><guid>a</guid><title>Broken <b>tag</title></item>")).encode(),
    ],
)
def test_benign_bozo_feeds_are_still_read(body: bytes) -> None:
    """Not well-formed but complete: read leniently as before, not taken for a cut-off document."""
    feed = parse_feed(body, url=FEED_URL, content_type="application/rss+xml")
    assert feed.bozo and [article.guid.rsplit("/", 1)[-1] for article in feed.articles] == ["a"]
