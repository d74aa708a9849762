"""Fetch feeds (conditional GET, bounded size, redirects and time) and normalise their articles.

Pure service: no Discord, no database. Parsing is CPU-heavy (feedparser spends ~140 ms on a
50-item feed with full content), so the event loop should call `parse_feed_async`, and callers
should skip unchanged feeds by conditional GET before parsing at all.
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import html
import io
import logging
import re
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any, Literal

import feedparser
import httpx

from bot.netguard import NOT_ALLOWED, AddressNotAllowed

log = logging.getLogger(__name__)

FetchStatus = Literal["ok", "not_modified", "error"]

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_WHITESPACE = re.compile(r"\s+")
_HTML_START = re.compile(rb"^\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body)[\s>]", re.I | re.S)


class FeedParseError(ValueError):
    """The document is not a feed at all (an HTML page, or XML too broken to yield entries)."""


@dataclass(frozen=True)
class FeedFetchResult:
    """What one poll of a feed URL produced; `error` is a short sentence for admins."""

    status: FetchStatus
    http_status: int | None
    etag: str | None
    last_modified: str | None
    body: bytes | None
    final_url: str
    error: str | None
    elapsed: float
    content_type: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class Article:
    """One feed entry, normalised; `guid` is the dedupe key and must never change for an entry."""

    guid: str
    title: str
    link: str
    summary_html: str
    content_html: str | None
    published: datetime | None
    updated: datetime | None
    categories: list[str]
    author: str | None
    image_url: str | None
    content_hash: str


@dataclass
class ParsedFeed:
    title: str
    link: str | None
    articles: list[Article]
    bozo: bool
    bozo_reason: str | None
    problems: list[str] = field(default_factory=list)


def user_agent(version: str, contact_url: str | None = None) -> str:
    """The User-Agent the caller's httpx client should send, e.g. "readersviews/0.1 (+https://...)"."""
    agent = f"readersviews/{version}"
    if contact_url:
        agent += f" (+{contact_url})"
    return agent


def format_size(size: int) -> str:
    """Human size in decimal units: 5_000_000 -> "5 MB", 1500 -> "1.5 kB"."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"


def _format_seconds(seconds: float) -> str:
    return f"{seconds:.1f}".removesuffix(".0") + " s"


class _BodyTooLarge(Exception):
    pass


async def fetch_feed(
    client: httpx.AsyncClient,
    url: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    max_bytes: int = 5_000_000,
    timeout: float = 20.0,  # noqa: ASYNC109 - one deadline for the whole exchange, enforced with asyncio.timeout
    max_redirects: int = 5,
    monotonic: Callable[[], float] = time.monotonic,
) -> FeedFetchResult:
    """Conditional GET of a feed; never raises for network or HTTP problems (status "error").

    `timeout` bounds the whole exchange (all redirects and the body), not each read, so a
    server trickling bytes cannot hold a poll forever. The body is streamed and abandoned as
    soon as it passes `max_bytes`.
    """
    started = monotonic()
    state = _FetchState(url=url)

    def result(status: FetchStatus, **kwargs: Any) -> FeedFetchResult:
        return FeedFetchResult(
            status=status,
            http_status=kwargs.get("http_status", state.http_status),
            etag=kwargs.get("etag"),
            last_modified=kwargs.get("last_modified"),
            body=kwargs.get("body"),
            final_url=state.url,
            error=kwargs.get("error"),
            elapsed=monotonic() - started,
            content_type=kwargs.get("content_type"),
        )

    headers = {
        "Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.8, */*;q=0.5",
        "Accept-Encoding": ACCEPT_ENCODING,
    }
    # Validators stored before non-ASCII ones were dropped would make httpx raise on every poll.
    etag, last_modified = _validator(etag), _validator(last_modified)
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified

    try:
        async with asyncio.timeout(timeout):
            return await _fetch_following_redirects(
                client, state, headers, result, etag, last_modified, max_bytes, timeout, max_redirects
            )
    except TimeoutError:
        return result("error", error=f"timed out after {_format_seconds(timeout)}")
    except httpx.TimeoutException:
        return result("error", error=f"timed out after {_format_seconds(timeout)}")
    except _BodyTooLarge:
        return result("error", error=f"response larger than {format_size(max_bytes)} limit")
    except _BodyUndecodable as exc:
        return result("error", error=f"could not decode the response: {exc}")
    except AddressNotAllowed:
        return result("error", error=NOT_ALLOWED)
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        return result("error", error=f"invalid feed URL: {exc}")
    except httpx.ConnectError as exc:
        return result("error", error=f"could not connect: {exc or type(exc).__name__}")
    except httpx.HTTPError as exc:
        return result("error", error=f"network error: {exc or type(exc).__name__}")


@dataclass
class _FetchState:
    url: str
    http_status: int | None = None


async def _fetch_following_redirects(
    client: httpx.AsyncClient,
    state: _FetchState,
    headers: dict[str, str],
    result: Callable[..., FeedFetchResult],
    sent_etag: str | None,
    sent_last_modified: str | None,
    max_bytes: int,
    request_timeout: float,
    max_redirects: int,
) -> FeedFetchResult:
    seen = {state.url}
    redirects = 0
    while True:
        request = client.build_request("GET", state.url, headers=headers, timeout=request_timeout)
        response = await client.send(request, stream=True, follow_redirects=False)
        try:
            state.http_status = response.status_code
            if response.status_code in _REDIRECT_STATUSES:
                location = response.headers.get("Location")
                if not location:
                    return result("error", error=f"HTTP {response.status_code} redirect without a Location header")
                target = str(response.url.join(location))
                if not target.startswith(("http://", "https://")):
                    return result("error", error=f"redirected to a non-HTTP address: {target}")
                if target in seen:
                    return result("error", error=f"redirect loop: {state.url} redirects back to {target}")
                redirects += 1
                if redirects > max_redirects:
                    return result("error", error=f"too many redirects (max {max_redirects})")
                seen.add(target)
                state.url = target
                await _drain(response)
                continue

            response_etag = _validator(response.headers.get("ETag"))
            response_modified = _validator(response.headers.get("Last-Modified"))
            content_type = response.headers.get("Content-Type")
            if response.status_code == 304:
                await _drain(response)
                # A 304 need not repeat the validators; keep the ones we sent.
                return result(
                    "not_modified",
                    etag=response_etag or sent_etag,
                    last_modified=response_modified or sent_last_modified,
                    content_type=content_type,
                )
            if response.status_code >= 400 or response.status_code < 200:
                return result("error", error=f"HTTP {response.status_code}", content_type=content_type)

            body = await _read_limited(response, max_bytes)
            if _looks_like_html_page(body, content_type):
                return result("error", error="not a feed: got text/html page", content_type=content_type)
            return result(
                "ok", etag=response_etag, last_modified=response_modified, body=body, content_type=content_type
            )
        finally:
            await response.aclose()


def _validator(value: str | None) -> str | None:
    """An ETag or Last-Modified we can send back: HTTP headers are ASCII, so anything else is dropped."""
    if value is None or not value.isascii():
        return None
    return value


_DRAIN_LIMIT = 64 * 1024


async def _drain(response: httpx.Response) -> None:
    """Read what is left of a small body, so httpx puts the connection back in its pool.

    Closing a streamed response that was not read closes its connection: without this every
    304 (the common answer of a poll) costs a new TCP (and TLS) handshake.
    """
    declared = response.headers.get("Content-Length")
    if declared is not None and (not declared.isdigit() or int(declared) > _DRAIN_LIMIT):
        return
    received = 0
    async for chunk in response.aiter_raw():
        received += len(chunk)
        if received > _DRAIN_LIMIT:
            return


async def _read_limited(response: httpx.Response, max_bytes: int) -> bytes:
    """The body, decoded, refused as soon as any decoding layer passes `max_bytes`.

    httpx decodes each chunk's layers in one go (`gzip, gzip` turns 1.8 kB into gigabytes in one
    call), so the raw bytes are read and decoded here in steps of at most `_DECODE_STEP` bytes,
    yielding to the event loop every `_DECODE_SLICE` seconds. Memory stays near `max_bytes`.
    """
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise _BodyTooLarge
    if response.is_stream_consumed:  # read (and decoded) by the transport already, e.g. httpx.MockTransport
        if len(response.content) > max_bytes:
            raise _BodyTooLarge
        return response.content
    layers = _decoders(response.headers.get("Content-Encoding"), max_bytes)
    body = io.BytesIO()
    received = 0
    slice_started = time.perf_counter()
    async for chunk in response.aiter_raw():
        for piece in _decode(layers, chunk):
            received += len(piece)
            if received > max_bytes:
                raise _BodyTooLarge
            body.write(piece)
            if time.perf_counter() - slice_started > _DECODE_SLICE:
                await asyncio.sleep(0)
                slice_started = time.perf_counter()
    for layer in layers:
        if received and not layer.finished:
            raise _BodyUndecodable(f"the {layer.encoding} body was cut off")
    # getvalue() hands over BytesIO's own buffer (no second copy of the body).
    return body.getvalue()


_DECODE_STEP = 64 * 1024  # decoded bytes per zlib call: well under a millisecond of work
_DECODE_SLICE = 0.01  # seconds of decoding between yields to the event loop
_MAX_ENCODINGS = 3
ACCEPT_ENCODING = "gzip, deflate"  # what _Inflater decodes; br and zstd are not asked for, and refused


class _BodyUndecodable(Exception):
    pass


class _Inflater:
    """One gzip or deflate layer of a body, inflating at most `_DECODE_STEP` bytes per zlib call."""

    def __init__(self, encoding: str, max_bytes: int) -> None:
        self.encoding = encoding
        self.max_bytes = max_bytes
        self.produced = 0
        self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding in ("gzip", "x-gzip") else zlib.MAX_WBITS)
        self._first = True

    @property
    def finished(self) -> bool:
        return self._zlib.eof

    def pieces(self, data: bytes) -> Iterator[bytes]:
        while True:
            try:
                out = self._zlib.decompress(data, _DECODE_STEP)
            except zlib.error as exc:
                if self._first and self.encoding == "deflate":  # many servers send raw deflate, no zlib header
                    self._zlib, self._first = zlib.decompressobj(-zlib.MAX_WBITS), False
                    continue
                raise _BodyUndecodable(f"the {self.encoding} body is corrupt ({exc})") from None
            self._first = False
            # Intermediate layers count too: a layer may inflate into bytes the next one discards.
            self.produced += len(out)
            if self.produced > self.max_bytes:
                raise _BodyTooLarge
            if out:
                yield out
            data = self._zlib.unconsumed_tail
            if not data and len(out) < _DECODE_STEP:
                return


def _decoders(header: str | None, max_bytes: int) -> list[_Inflater]:
    """Decoders for a Content-Encoding header, outermost (the last one applied) first."""
    encodings = [name.strip().lower() for name in (header or "").split(",")]
    encodings = [name for name in encodings if name and name != "identity"]
    if len(encodings) > _MAX_ENCODINGS:
        raise _BodyUndecodable(f"too many content encodings ({len(encodings)})")
    for name in encodings:
        if name not in ("gzip", "x-gzip", "deflate"):
            raise _BodyUndecodable(f"unsupported content encoding {name[:20]!r}")
    return [_Inflater(name, max_bytes) for name in reversed(encodings)]


def _decode(layers: list[_Inflater], data: bytes) -> Iterator[bytes]:
    """`data` through every layer, lazily: each step's output is bounded, whatever the ratio."""
    if not layers:
        if data:
            yield data
        return
    for piece in layers[0].pieces(data):
        yield from _decode(layers[1:], piece)


def _looks_like_html_page(body: bytes, content_type: str | None) -> bool:
    # Only when both agree: some servers mislabel real feeds as text/html.
    if content_type is None or "html" not in content_type.lower():
        return False
    return bool(_HTML_START.match(body.removeprefix(b"\xef\xbb\xbf")[:1024]))


# --- parsing -------------------------------------------------------------------------------


def parse_feed(body: bytes, *, url: str, content_type: str | None = None) -> ParsedFeed:
    """Parse RSS/Atom bytes into normalised articles (in feed order); raise FeedParseError if not a feed.

    Feeds that are not well-formed but still yield entries are accepted (bozo=True).

    Pass the feed's configured URL, not a redirect target: feedparser resolves relative links
    *and relative guids* (``<guid>123</guid>``) against it, so a different `url` changes dedupe keys.
    Without `content_type` the XML declaration (or detection) decides the encoding.
    """
    response_headers = {"content-location": url, "content-type": content_type or "application/xml"}
    # BytesIO, not bytes: given bytes, feedparser first tries open(body) as a local file name.
    parsed = feedparser.parse(io.BytesIO(body), response_headers=response_headers)
    bozo = bool(parsed.get("bozo"))
    bozo_reason = _bozo_reason(parsed.get("bozo_exception")) if bozo else None
    entries = parsed.get("entries") or []
    version = parsed.get("version") or ""

    if not entries:
        _raise_if_not_a_feed(body, version, parsed.get("bozo_exception") if bozo else None, bozo_reason)

    if bozo and _is_cut_off(body, parsed.get("encoding")):
        # The lenient parser would read the cut item as a stub (a title, no link or text) and post it.
        raise FeedParseError("the feed was cut off before its end (incomplete XML), so none of it was used")

    meta = parsed.get("feed") or {}
    problems: list[str] = []
    if bozo:
        problems.append(f"feed has problems but was read leniently: {bozo_reason}")
    articles: list[Article] = []
    seen: dict[str, int] = {}
    for number, entry in enumerate(entries, start=1):
        article = _normalise_entry(entry, number, problems)
        if article is None:
            continue
        if article.guid in seen:
            problems.append(f"entry {number} repeats the id of entry {seen[article.guid]}; skipped")
            continue
        seen[article.guid] = number
        articles.append(article)

    return ParsedFeed(
        title=clean_title(meta.get("title", ""), html_type=_is_html(meta.get("title_detail"))),
        link=meta.get("link") or None,
        articles=articles,
        bozo=bozo,
        bozo_reason=bozo_reason,
        problems=problems,
    )


async def parse_feed_async(body: bytes, *, url: str, content_type: str | None = None) -> ParsedFeed:
    """`parse_feed` in a worker thread, so a large feed does not stall the event loop."""
    return await asyncio.to_thread(parse_feed, body, url=url, content_type=content_type)


def _raise_if_not_a_feed(body: bytes, version: str, error: object, reason: str | None) -> None:
    """Explain why a document without entries is not a feed; return quietly for a valid empty feed."""
    head = body.removeprefix(b"\xef\xbb\xbf")[:4096]
    if _HTML_START.match(head) or (not version and re.search(rb"<(?:html|body|div|p)[\s>]", head, re.I)):
        raise FeedParseError("not a feed: looks like an HTML page")
    if not body.strip():
        raise FeedParseError("not a feed: the response was empty")
    malformed = error is not None and not _is_encoding_note(error)
    if not version:
        if malformed:
            raise FeedParseError(f"not a feed: malformed XML ({reason})")
        raise FeedParseError("not a feed: no RSS or Atom elements found")
    if malformed:
        raise FeedParseError(f"not a feed: malformed XML with no entries ({reason})")


# The prolog (XML declaration, comments, processing instructions, doctype) and the root element's name.
_ROOT_ELEMENT = re.compile(
    r"(?:\s|<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^\[>]*(?:\[[^\]]*\][^>]*)?>)*<([^\s/>!?]+)", re.S | re.I
)
_ROOT_SEARCH_LIMIT = 64 * 1024


def _is_cut_off(body: bytes, encoding: str | None) -> bool:
    """Whether a (not well-formed) document ends before its root element is closed: a truncated download.

    Other bozo feeds (a wrong declared charset, an unescaped `&`, junk after the end) still close their
    root element and are read leniently as before. Without a recognisable root there is nothing to judge.
    """
    try:
        text = body.decode(encoding or "utf-8", errors="replace")
    except LookupError:
        text = body.decode("utf-8", errors="replace")
    root = _ROOT_ELEMENT.match(text.removeprefix("\ufeff")[:_ROOT_SEARCH_LIMIT])
    if root is None:
        return False
    closing = "</" + root.group(1)
    position = text.rfind(closing)
    while position >= 0:
        after = text[position + len(closing) : position + len(closing) + 64].lstrip()
        # `</rss` at the very end only lost its `>`: every item before it is whole (feedparser's corpus has such).
        if after.startswith(">") or (not after and not text[position + len(closing) :].strip()):
            return False
        position = text.rfind(closing, 0, position)
    return True


def _is_html(detail: Any) -> bool:
    return "html" in ((detail or {}).get("type") or "")


def _bozo_reason(exc: object) -> str | None:
    if exc is None:
        return None
    name = type(exc).__name__
    if name == "SAXParseException":
        line = getattr(exc, "getLineNumber", lambda: None)()
        message = getattr(exc, "getMessage", lambda: str(exc))()
        return f"not well-formed XML: {message}" + (f" at line {line}" if line else "")
    if name == "NonXMLContentType":
        return f"served with a non-XML content type ({exc})"
    return str(exc) or name


def _is_encoding_note(exc: object) -> bool:
    return type(exc).__name__ in {"CharacterEncodingOverride", "CharacterEncodingUnknown", "NonXMLContentType"}


def _normalise_entry(entry: Any, number: int, problems: list[str]) -> Article | None:
    title = clean_title(entry.get("title", ""), html_type=_is_html(entry.get("title_detail")))
    link = (entry.get("link") or "").strip()
    entry_id = (entry.get("id") or "").strip()
    # dict.get bypasses FeedParserDict's deprecated fallback from "updated" to "published".
    updated = _to_datetime(dict.get(entry, "updated_parsed"))
    published = _to_datetime(dict.get(entry, "published_parsed")) or updated

    if entry_id:
        guid = entry_id
    elif link:
        guid = link
    elif title:
        stamp = published.isoformat() if published else ""
        guid = "sha1:" + hashlib.sha1(f"{title}\n{stamp}".encode()).hexdigest()
        problems.append(f"entry {number} has no id or link; identified by a hash of its title and date")
    elif entry.get("summary"):  # valid RSS: an item needs only a title or a description
        stamp = published.isoformat() if published else ""
        text = str(entry["summary"])[:_TITLE_SOURCE_LIMIT]
        guid = "sha1:" + hashlib.sha1(f"\n{stamp}\n{text}".encode()).hexdigest()
        problems.append(f"entry {number} has no id, link or title; identified by a hash of its text and date")
    else:
        problems.append(f"entry {number} has no id, link, title or description; skipped")
        return None

    summary_html = entry.get("summary") or ""
    content_html = _content_html(entry)
    # The hash keeps the feed's own title (empty or not): a derived title must not count as an edit.
    content_hash = hashlib.sha256(f"{title}\n{summary_html}".encode()).hexdigest()
    if not title:
        problems.append(f"entry {number} has no title")
        title = first_words(summary_html or content_html or "")
    return Article(
        guid=guid,
        title=title,
        link=link,
        summary_html=summary_html,
        content_html=content_html,
        published=published,
        updated=updated,
        categories=_categories(entry),
        author=_author(entry),
        image_url=_image_url(entry) or first_image(content_html or summary_html),
        content_hash=content_hash,
    )


_TITLE_SOURCE_LIMIT = 20_000  # characters of a description read for a title: the first words are enough
FIRST_WORDS_LIMIT = 80
AUTHOR_LIMIT = 100


def first_words(html_text: str, limit: int = FIRST_WORDS_LIMIT) -> str:
    """A title for an item that has none: the first words of its text (up to `limit` characters)."""
    text = clean_title(html_text[:_TITLE_SOURCE_LIMIT], html_type=True)
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:-–—") + "…"


def _author(entry: Any) -> str | None:
    """The byline: `dc:creator` / `author` (feedparser maps both), or the first of `authors`."""
    name = entry.get("author") or ""
    if not name:
        for person in entry.get("authors") or []:
            if isinstance(person, dict) and person.get("name"):
                name = person["name"]
                break
    text = clean_title(str(name)[:1000], html_type=False)
    return text[:AUTHOR_LIMIT] or None


_IMG_SCAN_LIMIT = 50_000


def first_image(html_text: str | None) -> str | None:
    """The `src` of the first `<img>` in feed HTML (absolute http(s) only), read with the linear tokenizer."""
    if not html_text:
        return None
    lowered = html_text[:_IMG_SCAN_LIMIT].lower()
    start = lowered.find("<img")
    if start < 0:
        return None
    from bot.render import html_tokens  # render does not import this module

    # Only the first few candidates, each tokenized alone: a content's size must not matter.
    for _ in range(5):
        for kind, name, attrs in html_tokens(html_text[start : start + 4096], frozenset({"img"})):
            if kind in ("start", "startend") and name == "img":
                src = (attrs.get("src") or "").strip()
                if src.startswith(("https://", "http://")):
                    return src
            break
        start = lowered.find("<img", start + 4)
        if start < 0:
            break
    return None
    from bot.render import html_tokens  # render does not import this module

    for kind, name, attrs in html_tokens(html_text[:_IMG_SCAN_LIMIT], frozenset({"img"})):
        if kind in ("start", "startend") and name == "img":
            src = (attrs.get("src") or "").strip()
            if src.startswith(("https://", "http://")):
                return src
    return None


def _content_html(entry: Any) -> str | None:
    contents = entry.get("content") or []
    for content in contents:
        if "html" in (content.get("type") or "") and content.get("value"):
            return str(content["value"])
    for content in contents:
        if content.get("value"):
            return html.escape(str(content["value"]))
    return None


def _to_datetime(value: time.struct_time | None) -> datetime | None:
    if value is None:
        return None
    # feedparser's struct_time is already UTC. Dates like 0000-00-00 or year 10000 do not fit a
    # datetime: the entry is then treated as undated rather than failing the whole feed.
    try:
        return datetime.fromtimestamp(calendar.timegm(value), UTC)
    except (ValueError, OverflowError, OSError):
        return None


def _categories(entry: Any) -> list[str]:
    names: list[str] = []
    for tag in entry.get("tags") or []:
        name = _WHITESPACE.sub(" ", tag.get("term") or tag.get("label") or "").strip()
        if name and name not in names:
            names.append(name)
    return names


def _image_url(entry: Any) -> str | None:
    for thumbnail in entry.get("media_thumbnail") or []:
        if thumbnail.get("url"):
            return str(thumbnail["url"])
    for media in entry.get("media_content") or []:
        kind = media.get("medium") or media.get("type") or ""
        if media.get("url") and kind.startswith("image"):
            return str(media["url"])
    for enclosure in entry.get("enclosures") or []:
        if enclosure.get("href") and (enclosure.get("type") or "").startswith("image/"):
            return str(enclosure["href"])
    image = entry.get("image")
    if isinstance(image, dict) and image.get("href"):
        return str(image["href"])
    return None


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"script", "style"}:
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in {"script", "style"} and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def clean_title(value: str, *, html_type: bool) -> str:
    """Plain text for a title: tags stripped (HTML titles only), entities unescaped, whitespace collapsed."""
    if html_type:
        extractor = _TextExtractor()
        extractor.feed(value)
        extractor.close()
        value = "".join(extractor.parts)
    # Unescape again even for text titles: double-escaped titles ("&amp;amp;") are common.
    value = html.unescape(value)
    return _WHITESPACE.sub(" ", value).strip()
