"""Untrusted text into Discord: feed HTML -> Discord markdown, and links and names shown safely.

Feed text is untrusted (`html_to_discord`, `article_title`, `article_post_body`), so markdown is
escaped and mentions are neutralised in what we post. The other boundary, members' markdown -> the
site's HTML, is bot.site_html.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

if TYPE_CHECKING:
    from bot.store.articles import ArticleRow

ZWSP = "\u200b"
ELLIPSIS = "…"
THREAD_TITLE_LIMIT = 100
MESSAGE_LIMIT = 2000
_MIN_SUMMARY = 20  # below this a summary stub is noise; post the link alone

_WHITESPACE = re.compile(r"\s+")
# C0 controls (except tab/newline) never belong in text; \x00-\x03 are also our placeholders.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_MARKDOWN_SPECIAL = re.compile(r"([\\*_~`|\[\]])")
# Quotes, headings, subtext and lists only take effect at the start of a line. The indent excludes
# newlines: `\s*` would rescan a run of blank lines from each of its lines (quadratic).
_LINE_START_MARKUP = re.compile(r"^([^\S\n]*)(>|#{1,3}\s|-#\s|-\s|\+\s)", re.M)
_LINE_START_NUMBER = re.compile(r"^([^\S\n]*\d+)([.)]\s)", re.M)
_BARE_URL = re.compile(r"https?://[^\s<>\[\]]+")
_MENTION_EVERYONE = re.compile(r"@(everyone|here)")
# <@1>, <@!1>, <@&1>, <#1>, <:emoji:1>, <a:emoji:1>, </cmd:1>, <t:1>, <id:customize>
_MENTION_ANGLE = re.compile(r"<(?=[@#:/]|a:|t:|id:)")


# --- feed HTML -> Discord markdown ----------------------------------------------------------


def escape_discord_text(text: str) -> str:
    """Escape Discord markdown in plain text and neutralise mentions, so it renders literally."""
    pieces: list[str] = []
    position = 0
    # URLs stay as they are: an escaped "_" inside one breaks Discord's link detection.
    for match in _BARE_URL.finditer(text):
        pieces.append(_MARKDOWN_SPECIAL.sub(r"\\\1", text[position : match.start()]))
        pieces.append(match.group())
        position = match.end()
    pieces.append(_MARKDOWN_SPECIAL.sub(r"\\\1", text[position:]))
    text = "".join(pieces)
    text = _LINE_START_MARKUP.sub(lambda m: m.group(1) + "\\" + m.group(2), text)
    text = _LINE_START_NUMBER.sub(lambda m: m.group(1) + "\\" + m.group(2), text)
    return neutralise_mentions(text)


def neutralise_mentions(text: str) -> str:
    """Break @everyone/@here and <@id>/<#id>/<:emoji:id> syntax with a zero-width space."""
    text = _MENTION_EVERYONE.sub("@" + ZWSP + r"\1", text)
    return _MENTION_ANGLE.sub("<" + ZWSP, text)


_SKIP_CONTENT = frozenset(
    {
        "script",
        "style",
        "iframe",
        "noscript",
        "template",
        "object",
        "embed",
        "svg",
        "math",
        "head",
        "title",
        "select",
        "textarea",
        "button",
        "form",
        "video",
        "audio",
        "canvas",
    }
)
_BLOCK = frozenset(
    {
        "p",
        "div",
        "section",
        "article",
        "header",
        "footer",
        "aside",
        "main",
        "nav",
        "figure",
        "figcaption",
        "table",
        "tr",
        "dl",
        "dt",
        "dd",
        "address",
        "details",
        "summary",
        "center",
        "hr",
    }
)
_INLINE_MARKERS = {
    "b": "**",
    "strong": "**",
    "i": "*",
    "em": "*",
    "cite": "*",
    "u": "__",
    "ins": "__",
    "s": "~~",
    "del": "~~",
    "strike": "~~",
}
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_VOID = frozenset({"br", "img", "hr", "input", "meta", "link", "wbr", "source", "track", "area", "col", "param"})
_INDENT = "\x01"  # survives line stripping; becomes two spaces at the end
_PRE_OPEN, _PRE_CLOSE = "\x02", "\x03"


RENDER_INPUT_LIMIT = 50_000  # characters of feed HTML rendered; the output is at most a few thousand
_MAX_SPANS = 8  # open inline spans (bold in italic in a link ...) that are rendered; deeper ones are plain
_MAX_LIST_INDENT = 4

# Elements whose content is dropped anyway (a subset of _SKIP_CONTENT): skipped to their end tag in one
# search rather than tokenized, so `<script>if (a<b)` can't open tags.
_RAW_TEXT = frozenset({"script", "style", "textarea", "title", "iframe", "noscript"})
# A start or end tag. Every character after the name is consumable (quotes run to their match or to
# the end), so the pattern always matches through to `>` or the end of the input: no backtracking,
# and an unclosed tag at the end swallows the rest, as in a browser.
_TAG = re.compile(r"""<(/?)([A-Za-z][^\s/>]*)((?:[^>"']++|"[^"]*+(?:"|\Z)|'[^']*+(?:'|\Z))*+)(?:>|\Z)""")
_ATTRIBUTE = re.compile(r"""([^\s"'>/=]+)(?:\s*=\s*(?:"([^"]*)"?|'([^']*)'?|([^\s>]*)))?""")


def _html_tokens(
    markup: str, attributes_of: frozenset[str] = frozenset({"a"})
) -> Iterator[tuple[str, str, dict[str, str | None]]]:
    """(kind, tag or text, attrs) for "start", "startend", "end" and "data": linear in the input.

    A small tokenizer instead of html.parser, which is quadratic on inputs such as `<a b='` repeated
    (30 kB took 4 s) and raises AssertionError on `<![`. Comments, doctypes and processing
    instructions are dropped; attributes are parsed only for the tags in `attributes_of` (links).
    """
    position, end = 0, len(markup)
    while position < end:
        lt = markup.find("<", position)
        if lt < 0:
            lt = end
        if lt > position:
            yield "data", html.unescape(markup[position:lt]), {}
        if lt >= end:
            return
        if markup.startswith("<!--", lt):
            close = markup.find("-->", lt + 2)
            position = end if close < 0 else close + 3
            continue
        tag = _TAG.match(markup, lt)
        if tag is None:
            if markup.startswith(("<!", "<?", "</"), lt):  # declaration, instruction or bogus comment
                close = markup.find(">", lt)
                position = end if close < 0 else close + 1
            else:  # a "<" that opens nothing ("a < b")
                yield "data", "<", {}
                position = lt + 1
            continue
        position = tag.end()
        closing, name, rest = tag.group(1), tag.group(2).lower(), tag.group(3)
        if closing:
            yield "end", name, {}
            continue
        attrs: dict[str, str | None] = {}
        if name in attributes_of:
            for attribute in _ATTRIBUTE.finditer(rest):
                value = next((v for v in attribute.group(2, 3, 4) if v is not None), None)
                attrs.setdefault(attribute.group(1).lower(), None if value is None else html.unescape(value))
        if rest.rstrip().endswith("/"):
            yield "startend", name, attrs
            continue
        yield "start", name, attrs
        if name in _RAW_TEXT:
            close_tag = re.compile(f"</{name}(?=[\\s/>]|\\Z)", re.I).search(markup, position)
            if close_tag is None:
                return
            position = close_tag.start()


html_tokens = _html_tokens


class _DiscordMarkdownWriter:
    """Stream HTML into Discord markdown; inline spans are captured so they can be re-wrapped.

    Linear in its input: at most `_MAX_SPANS` spans are open at once, so a character is re-joined at
    most that many times; only the outermost blockquote quotes (Discord has one level of quote).
    """

    def __init__(self) -> None:
        self.out: list[str] = []
        self.pre_blocks: list[str] = []
        self._spans: list[tuple[str, int, dict[str, str | None]]] = []
        self._skip: list[str] = []
        self._lists: list[list[int]] = []  # per open list: [ordered?, next number]
        self._pre_depth = 0
        self._code_depth = 0
        self._quote_depth = 0

    def feed(self, markup: str) -> None:
        for kind, value, attrs in _html_tokens(markup):
            if kind == "data":
                self.handle_data(value)
            elif kind == "start":
                self.handle_starttag(value, list(attrs.items()))
            elif kind == "startend":
                self.handle_startendtag(value, list(attrs.items()))
            else:
                self.handle_endtag(value)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skip:
            if tag == self._skip[-1] and tag not in _VOID:
                self._skip.append(tag)
            return
        if tag in _SKIP_CONTENT:
            self._skip.append(tag)
            return
        if self._pre_depth:
            if tag == "br":
                self.out.append("\n")
            if tag == "pre":
                self._pre_depth += 1
            return
        if tag == "br":
            self.out.append("\n")
        elif tag in _BLOCK:
            self.out.append("\n\n")
        elif tag in {"td", "th"}:
            self.out.append(" ")
        elif tag == "blockquote":
            self.out.append("\n\n")
            self._quote_depth += 1
            if self._quote_depth == 1:
                self._spans.append((tag, len(self.out), {}))
        elif tag in _HEADINGS:
            self.out.append("\n\n")
            self._open_span(tag, {})
        elif tag in {"ul", "ol"}:
            self.out.append("" if self._lists else "\n\n")
            self._lists.append([tag == "ol", 1])
        elif tag == "li":
            depth = min(max(len(self._lists) - 1, 0), _MAX_LIST_INDENT)
            bullet = "- "
            if self._lists and self._lists[-1][0]:
                bullet = f"{self._lists[-1][1]}. "
                self._lists[-1][1] += 1
            self.out.append("\n" + _INDENT * depth + bullet)
        elif tag == "pre":
            self._pre_depth = 1
            self._spans.append((tag, len(self.out), {}))
        elif tag in _INLINE_MARKERS or tag == "a":
            self._open_span(tag, dict(attrs))
        elif tag == "code" and self._open_span(tag, {}):
            self._code_depth += 1

    def _open_span(self, tag: str, attrs: dict[str, str | None]) -> bool:
        """Start capturing a span, unless `_MAX_SPANS` are open (its text then flows into the outer ones)."""
        if len(self._spans) >= _MAX_SPANS:
            return False
        self._spans.append((tag, len(self.out), attrs))
        return True

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._skip:
            if tag == self._skip[-1]:
                self._skip.pop()
            return
        if self._pre_depth and tag != "pre":
            return
        if tag == "pre":
            self._pre_depth = max(self._pre_depth - 1, 0)
            if self._pre_depth:
                return
        if tag in _BLOCK:
            self.out.append("\n\n")
        elif tag in {"ul", "ol"}:
            if self._lists:
                self._lists.pop()
            self.out.append("\n\n" if not self._lists else "\n")
        elif tag == "code":
            self._code_depth = max(self._code_depth - 1, 0)
        elif tag == "blockquote":
            self._quote_depth = max(self._quote_depth - 1, 0)
            if self._quote_depth:  # an inner quote ends: a paragraph break inside the outer one
                self.out.append("\n\n")
                return
        if any(span[0] == tag for span in self._spans):
            self._close_spans(tag)

    def _close_spans(self, tag: str) -> None:
        """Close the innermost open `tag` span, and the spans left open inside it (as browsers do)."""
        while self._spans:
            open_tag, start, attrs = self._spans.pop()
            if open_tag == "blockquote":
                self._quote_depth = 0
            inner = "".join(self.out[start:])
            del self.out[start:]
            self.out.append(self._wrap(open_tag, inner, attrs))
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        data = CONTROL_CHARACTERS.sub("", data)
        if self._pre_depth:
            self.out.append(data)
        elif self._code_depth:
            self.out.append(_WHITESPACE.sub(" ", data))
        else:
            self.out.append(escape_discord_text(_WHITESPACE.sub(" ", data)))

    def close(self) -> None:
        while self._spans:
            self._close_spans(self._spans[-1][0])

    # wrapping finished spans

    def _wrap(self, tag: str, inner: str, attrs: dict[str, str | None]) -> str:
        if tag == "pre":
            code = inner.strip("\n").replace("```", "``" + ZWSP + "`")
            self.pre_blocks.append(neutralise_mentions(code))
            return f"\n\n{_PRE_OPEN}{len(self.pre_blocks) - 1}{_PRE_CLOSE}\n\n"
        if tag == "code":
            return _keep_outer_space(inner, lambda text: _inline_code(neutralise_mentions(text)))
        if tag in _HEADINGS:
            text = _WHITESPACE.sub(" ", inner).strip()
            return f"\n\n**{text}**\n\n" if text else ""
        if tag == "blockquote":
            lines = [line.strip() for line in squeeze_lines(inner).split("\n")]
            quoted = "\n".join(f"> {line}" if line else ">" for line in lines)
            return f"\n\n{quoted}\n\n" if inner.strip() else ""
        if tag == "a":
            return _keep_outer_space(inner, lambda text: _masked_link(text, attrs.get("href")))
        marker = _INLINE_MARKERS[tag]
        return _keep_outer_space(inner, lambda text: f"{marker}{text}{marker}")


def _keep_outer_space(inner: str, wrap: Callable[[str], str]) -> str:
    """Wrap the non-space core of `inner`: Discord ignores "** bold **"."""
    core = inner.strip()
    if not core:
        return inner
    lead = inner[: len(inner) - len(inner.lstrip())]
    trail = inner[len(inner.rstrip()) :]
    return lead + wrap(core) + trail


def _inline_code(text: str) -> str:
    if "`" not in text:
        return f"`{text}`"
    return f"`` {text.replace('``', '`' + ZWSP + '`')} ``"


def _masked_link(text: str, href: str | None) -> str:
    """A feed's link: its text followed by the real URL, so a reader sees where it goes."""
    url = safe_url(href or "")
    if url is None:
        return text
    if "\n" in text:
        text = _WHITESPACE.sub(" ", text)
    if text.lower().startswith(("http://", "https://")):
        # A URL as the label: show the real target rather than a possibly different one.
        return f"<{url}>"
    # <url> keeps Discord from embedding every link in the summary.
    return f"{text} (<{url}>)"


# --- untrusted links and text in Discord markdown -------------------------------------------

_URL_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NETLOC = re.compile(r"(?:[A-Za-z0-9._~%!$&'*+,;=:-]*@)?(?:[A-Za-z0-9._~%-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]*)?")
# Kept as they are in a path, query or fragment; everything else (spaces, brackets, parentheses, angle
# brackets, quotes, backslashes, backticks, non-ASCII and invisible characters) is percent-encoded.
_URL_SAFE = "/%:@!$&'*+,;=-._~?"


def safe_url(url: str) -> str | None:
    """An http(s) URL that can't break out of Discord markdown (a masked link, the end of a post), or None.

    Characters that could close a link early or start markup are percent-encoded, a non-ASCII host is
    shown in its ASCII (punycode) form, and URLs with control characters or no host are refused.
    """
    url = url.strip()
    if not url or _URL_CONTROL.search(url):
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (reading it checks it)
    except ValueError:  # a broken IPv6 host ("http://[::1/x"), a port out of range
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    netloc = parts.netloc
    if not netloc.isascii():
        try:
            host = parts.hostname.encode("idna").decode("ascii")
        except UnicodeError:
            return None
        user = netloc.rpartition("@")[0]
        netloc = (quote(user, safe=_URL_SAFE) + "@" if user else "") + host + (f":{parts.port}" if parts.port else "")
    if not _NETLOC.fullmatch(netloc):
        return None
    text = f"{parts.scheme.lower()}://{netloc}{quote(parts.path, safe=_URL_SAFE)}"
    if parts.query or url.endswith("?"):
        text += "?" + quote(parts.query, safe=_URL_SAFE)
    if parts.fragment:
        text += "#" + quote(parts.fragment, safe=_URL_SAFE)
    return text


def masked_link(label: str, url: str | None) -> str:
    """The bot's own masked link `[label](url)`, or the label alone if the URL is not a safe http(s) URL.

    `label` must already be inert (see `inert_text`): the URL is checked here.
    """
    target = safe_url(url or "")
    return f"[{label}]({target})" if target else label


# [label](url), [label](<url>) and [label](url "title"): the forms Discord renders as a masked link.
_STRANGERS_MASKED_LINK = re.compile(r"""\[([^\[\]]*)\]\(\s*<?([^\s<>]*?)>?(?:\s+(?:"[^"]*"|'[^']*'))?\s*\)""")
_REVEAL_PASSES = 8


def reveal_links(markdown: str) -> str:
    """A stranger's markdown with each masked link shown as its label and then its real URL in plain text.

    `[click to verify](https://evil.example/login)` -> `click to verify (https://evil.example/login)`, so
    an editor sees where a link goes. Nested masks are unwrapped pass by pass; whatever is left of the
    syntax after that is broken with a zero-width space, so no masked link survives.
    """
    for _ in range(_REVEAL_PASSES):
        revealed = _STRANGERS_MASKED_LINK.sub(lambda m: f"{m.group(1)} ({m.group(2)})", markdown)
        if revealed == markdown:
            break
        markdown = revealed
    return markdown.replace("](", "]" + ZWSP + "(")


# "scheme:" before "//" (https://, steam://...): Discord links it; an escaped colon it does not.
_URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):(?=//)")


def inert_text(text: str) -> str:
    """Text from a stranger (a signer's name, a feed title in a card) that renders literally and links nowhere.

    Like `escape_discord_text`, but URLs are escaped too and their scheme is broken (`https\\://`), so
    bare URLs, `<https://...>` and `[x](https://...)` all show as plain text.
    """
    text = _MARKDOWN_SPECIAL.sub(r"\\\1", text)
    text = _LINE_START_MARKUP.sub(lambda m: m.group(1) + "\\" + m.group(2), text)
    text = _LINE_START_NUMBER.sub(lambda m: m.group(1) + "\\" + m.group(2), text)
    return neutralise_mentions(_URL_SCHEME.sub(r"\1\\:", text))


def squeeze_lines(text: str) -> str:
    lines = [line.strip(" \t") for line in text.split("\n")]
    squeezed = re.sub(r"\n{3,}", "\n\n", "\n".join(lines))
    return squeezed.strip("\n")


def html_to_discord(html_text: str, *, max_len: int) -> str:
    """Feed HTML -> Discord markdown (escaped, mention-safe), cut on a word boundary to `max_len`.

    Linear in the input, which is first cut to RENDER_INPUT_LIMIT characters; still, call it off the
    event loop for untrusted feeds (see bot.articles.plan_post_async).
    """
    writer = _DiscordMarkdownWriter()
    writer.feed(html_text[:RENDER_INPUT_LIMIT])
    writer.close()
    # Spaces collapse like a browser would; indentation and <pre> are placeholders until now.
    text = re.sub(r" {2,}", " ", squeeze_lines("".join(writer.out))).replace(_INDENT, "  ")

    def restore_pre(match: re.Match[str]) -> str:
        return "```\n" + writer.pre_blocks[int(match.group(1))] + "\n```"

    text = re.sub(f"{_PRE_OPEN}(\\d+){_PRE_CLOSE}", restore_pre, text)
    # Again on the whole text: the HTML parser may split "<@1>" across two text nodes.
    return _truncate_markdown(neutralise_mentions(text), max_len)


def _truncate_markdown(text: str, limit: int) -> str:
    """Truncate, then close a code fence the cut left open (so the rest does not render as code)."""
    cut = truncate_words(text, limit)
    if cut == text or cut.count("```") % 2 == 0:
        return cut
    closing = "\n```"
    return truncate_words(text, limit - len(closing)) + closing


def truncate_words(text: str, limit: int, ellipsis: str = ELLIPSIS) -> str:
    """Cut `text` to at most `limit` characters (ellipsis included), preferring a word boundary."""
    if len(text) <= limit:
        return text
    room = limit - len(ellipsis)
    if room <= 0:
        return ellipsis[:limit]
    cut = text[:room]
    if not text[room].isspace():
        boundary = max(cut.rfind(" "), cut.rfind("\n"), cut.rfind("\t"))
        # A single very long word is hard-cut rather than reduced to almost nothing.
        if boundary > 0 and boundary >= room // 2:
            cut = cut[:boundary]
    cut = cut.rstrip(" \t\n,;:-–—")
    # A trailing backslash would escape the ellipsis.
    while cut.endswith("\\"):
        cut = cut[:-1]
    return cut + ellipsis


_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]*_]*(?=\s)|\n\n")
_BOILERPLATE_START = "The post "
_BOILERPLATE_MIDDLE = " appeared first on "
_BOILERPLATE_LIMIT = 1200


def drop_feed_boilerplate(markdown: str) -> str:
    """Drop WordPress's closing "The post … appeared first on …" paragraph from a rendered summary."""
    head, _, last = markdown.rstrip().rpartition("\n\n")
    if len(last) > _BOILERPLATE_LIMIT or not last.startswith(_BOILERPLATE_START):
        return markdown
    if _BOILERPLATE_MIDDLE not in last:
        return markdown
    return head.rstrip()


def excerpt(markdown: str, limit: int) -> str:
    """At most `limit` characters, cut after the last whole sentence (or paragraph) if one ends in the
    second half, else on a word with an ellipsis; a code fence the cut left open is closed."""
    text = markdown.strip()
    if len(text) <= limit:
        return text
    window = text[: limit + 1]
    end = 0
    for match in _SENTENCE_END.finditer(window):
        if match.end() <= limit:
            end = match.end()
    if end >= limit // 2:
        cut = text[:end].rstrip()
        if cut.count("```") % 2 == 0:
            return cut
    return _truncate_markdown(text, limit)


def article_title(title: str) -> str:
    """A thread/forum post name: one line, ≤100 characters, never empty, mentions broken."""
    text = _WHITESPACE.sub(" ", CONTROL_CHARACTERS.sub("", title)).strip()
    if not text:
        return "Untitled article"
    return truncate_words(neutralise_mentions(text), THREAD_TITLE_LIMIT)


def article_post_body(summary_markdown: str, link: str, limit: int = MESSAGE_LIMIT) -> str:
    """Summary, blank line, link: the summary is shortened so the link always fits intact.

    Raises ValueError if the link alone cannot fit (such a link is unusable anyway).
    """
    link = link.strip()
    if len(link) > limit:
        raise ValueError(f"article link is {len(link)} characters, over the {limit}-character limit")
    summary = summary_markdown.strip()
    if not link:
        return _truncate_markdown(summary, limit)
    room = limit - len(link) - 2
    if not summary or room < _MIN_SUMMARY:
        return link
    return f"{_truncate_markdown(summary, room)}\n\n{link}"


ARCHIVE_HEADING = "**From the archives**"


def render_archive_reply(articles: list[ArticleRow]) -> str:
    """A short reply: a heading, then one line per earlier article (its link, and its discussion if any)."""
    lines = [ARCHIVE_HEADING]
    for article in articles:
        line = "- " + masked_link(inert_text(article_title(article.title)), article.link)
        if article.thread_id:
            line += f" · <#{article.thread_id}>"
        lines.append(line)
    return truncate_words("\n".join(lines), MESSAGE_LIMIT)
