"""Members' Discord markdown -> safe HTML for the site (`discord_to_html`), and as plain text.

Everything is escaped first, converted, then sanitised again with nh3 so a conversion bug cannot
emit script. The other boundary, feed HTML -> Discord markdown, is bot.render.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from datetime import UTC, datetime

import nh3

from bot.render import CONTROL_CHARACTERS, squeeze_lines

ALLOWED_TAGS = frozenset({"p", "br", "strong", "em", "u", "s", "code", "pre", "blockquote", "a", "ul", "ol", "li"})
LINK_REL = "nofollow ugc"

_FENCE = re.compile(r"```(?:([A-Za-z0-9_+.#-]{1,20})\n)?\n?(.*?)```", re.S)
_TOKEN = re.compile(
    r"""
      (?P<escape>\\(?P<escaped>[\\*_~`|>#\-\[\]()<:@]))
    | (?P<code>(?P<ticks>``?)(?P<code_text>.+?)(?P=ticks))
    | \[(?P<link_text>[^\[\]\n]+)\]\(\s*<?(?P<link_url>[^\s()<>]+)>?\s*\)
    | <(?P<angle_url>https?://[^\s<>]+)>
    | (?P<url>https?://[^\s<>]+)
    | <@!?(?P<user>\d{1,20})>
    | <@&(?P<role>\d{1,20})>
    | <\#(?P<channel>\d{1,20})>
    | <a?:(?P<emoji>\w{1,32}):\d{1,20}>
    | </(?P<command>[\w -]{1,100}):\d{1,20}>
    | <t:(?P<timestamp>-?\d{1,13})(?::[tTdDfFsSR])?>
    """,
    re.X,
)
_PLACEHOLDER = re.compile("\x00(\\d+)\x00")
_EMPHASIS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\*\*\*(?=\S)(.+?)(?<=\S)\*\*\*", re.S), r"<strong><em>\1</em></strong>"),
    (re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*", re.S), r"<strong>\1</strong>"),
    (re.compile(r"__(?=\S)(.+?)(?<=\S)__", re.S), r"<u>\1</u>"),
    (re.compile(r"\*(?=\S)(.+?)(?<=\S)\*", re.S), r"<em>\1</em>"),
    (re.compile(r"(?<![A-Za-z0-9_])_(?=\S)(.+?)(?<=\S)_(?![A-Za-z0-9_])", re.S), r"<em>\1</em>"),
    (re.compile(r"~~(?=\S)(.+?)(?<=\S)~~", re.S), r"<s>\1</s>"),
    (re.compile(r"\|\|(.+?)\|\|", re.S), r"\1"),  # spoilers: the site shows the text
]
_TRAILING_URL_PUNCTUATION = ".,:;!?'\""
_LIST_ITEM = re.compile(r"^\s*(?:[-*]|(?P<number>\d{1,9})[.)])\s+(?P<text>.*)$")
_HEADING = re.compile(r"^(#{1,3})\s+(?P<text>.*)$")
_SUBTEXT = re.compile(r"^-#\s+(?P<text>.*)$")


class _InlineRenderer:
    def __init__(
        self,
        display_names: Mapping[int, str],
        role_names: Mapping[int, str],
        channel_names: Mapping[int, str],
    ) -> None:
        self.display_names = display_names
        self.role_names = role_names
        self.channel_names = channel_names
        self.stash: list[str] = []

    def store(self, fragment: str) -> str:
        self.stash.append(fragment)
        return f"\x00{len(self.stash) - 1}\x00"

    def render(self, text: str, *, links: bool = True) -> str:
        tokenised = _TOKEN.sub(lambda match: self._token(match, links=links), text)
        escaped = html.escape(tokenised, quote=False)
        for pattern, replacement in _EMPHASIS:
            escaped = pattern.sub(replacement, escaped)
        return self.restore(escaped)

    def restore(self, text: str) -> str:
        # Placeholders may nest (link text holding a mention), so resolve until none remain.
        for _ in range(4):
            if "\x00" not in text:
                break
            text = _PLACEHOLDER.sub(lambda m: self.stash[int(m.group(1))], text)
        return text

    def _token(self, match: re.Match[str], *, links: bool) -> str:
        kind = match.lastgroup
        groups = match.groupdict()
        if groups["escape"] is not None:
            return self.store(html.escape(groups["escaped"]))
        if groups["code"] is not None:
            return self.store(f"<code>{html.escape(groups['code_text'].strip())}</code>")
        if groups["link_text"] is not None:
            label = self.render(groups["link_text"], links=False)
            if not links:
                return self.store(label)
            return self.store(_anchor(groups["link_url"], label) or label)
        if groups["angle_url"] is not None or groups["url"] is not None:
            url = groups["angle_url"] or groups["url"]
            url, trailing = _split_trailing_punctuation(url)
            if not links:
                return self.store(html.escape(url)) + html.escape(trailing)
            return self.store(_anchor(url, html.escape(url)) or html.escape(url)) + trailing
        if groups["user"] is not None:
            return self.store(html.escape(self.display_names.get(int(groups["user"]), "a member")))
        if groups["role"] is not None:
            name = self.role_names.get(int(groups["role"]))
            return self.store(html.escape(f"@{name}") if name else "")
        if groups["channel"] is not None:
            name = self.channel_names.get(int(groups["channel"]))
            return self.store(html.escape(f"#{name}") if name else "")
        if groups["emoji"] is not None:
            return ""
        if groups["command"] is not None:
            return self.store(html.escape(f"/{groups['command']}"))
        if groups["timestamp"] is not None:
            return self.store(_format_timestamp(int(groups["timestamp"])))
        raise AssertionError(f"unhandled token {kind}")  # pragma: no cover


def _anchor(url: str, label_html: str) -> str | None:
    if not re.match(r"https?://[^\s/]", url, re.I):
        return None
    return f'<a href="{html.escape(url, quote=True)}">{label_html}</a>'


def _split_trailing_punctuation(url: str) -> tuple[str, str]:
    trailing = ""
    while url and (url[-1] in _TRAILING_URL_PUNCTUATION or (url[-1] == ")" and url.count("(") < url.count(")"))):
        trailing = url[-1] + trailing
        url = url[:-1]
    return url, trailing


def _format_timestamp(seconds: int) -> str:
    try:
        moment = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return ""
    return f"{moment.day} {moment:%B %Y, %H:%M} UTC"


def discord_to_html(
    markdown: str,
    *,
    display_names: Mapping[int, str] | None = None,
    channel_names: Mapping[int, str] | None = None,
    role_names: Mapping[int, str] | None = None,
) -> str:
    """A member's Discord message -> HTML safe to publish (only ALLOWED_TAGS; http(s) links with rel)."""
    renderer = _InlineRenderer(display_names or {}, role_names or {}, channel_names or {})
    text = CONTROL_CHARACTERS.sub("", markdown.replace("\r\n", "\n").replace("\r", "\n"))

    def stash_fence(match: re.Match[str]) -> str:
        code = match.group(2).strip("\n")
        block = renderer.store(f"<pre><code>{html.escape(code)}</code></pre>")
        return f"\n{block}\n"

    text = _FENCE.sub(stash_fence, text)
    lines = text.split("\n")
    # ">>> " quotes everything after it.
    for index, line in enumerate(lines):
        if line.startswith(">>> ") or line == ">>>":
            rest = [line[4:], *lines[index + 1 :]]
            lines = lines[:index] + ["> " + item for item in rest]
            break
    body = _render_blocks(lines, renderer, allow_quotes=True)
    return sanitise_html(renderer.restore(body))


def _render_blocks(lines: list[str], renderer: _InlineRenderer, *, allow_quotes: bool) -> str:
    parts: list[str] = []
    paragraph: list[str] = []
    items: list[str] = []
    list_ordered = False
    quote: list[str] = []

    def flush_paragraph() -> None:
        if paragraph:
            parts.append("<p>" + "<br>".join(renderer.render(line) for line in paragraph) + "</p>")
            paragraph.clear()

    def flush_list() -> None:
        if items:
            tag = "ol" if list_ordered else "ul"
            parts.append(f"<{tag}>" + "".join(f"<li>{item}</li>" for item in items) + f"</{tag}>")
            items.clear()

    def flush_quote() -> None:
        if quote:
            parts.append("<blockquote>" + _render_blocks(quote, renderer, allow_quotes=False) + "</blockquote>")
            quote.clear()

    for line in lines:
        stripped = line.strip()
        if allow_quotes and (line.startswith("> ") or line == ">"):
            flush_paragraph()
            flush_list()
            quote.append(line[2:])
            continue
        flush_quote()
        if not stripped:
            flush_paragraph()
            flush_list()
            continue
        if _PLACEHOLDER.fullmatch(stripped):
            flush_paragraph()
            flush_list()
            parts.append(stripped)
            continue
        heading = _HEADING.match(stripped)
        if heading:
            flush_paragraph()
            flush_list()
            parts.append(f"<p><strong>{renderer.render(heading.group('text'))}</strong></p>")
            continue
        subtext = _SUBTEXT.match(stripped)
        if subtext:
            flush_paragraph()
            flush_list()
            parts.append(f"<p>{renderer.render(subtext.group('text'))}</p>")
            continue
        item = _LIST_ITEM.match(line)
        if item:
            flush_paragraph()
            ordered = item.group("number") is not None
            if items and ordered != list_ordered:
                flush_list()
            list_ordered = ordered
            items.append(renderer.render(item.group("text")))
            continue
        flush_list()
        paragraph.append(stripped)
    flush_paragraph()
    flush_list()
    flush_quote()
    return "".join(parts)


def sanitise_html(fragment: str) -> str:
    """The last line of defence: only ALLOWED_TAGS, only a[href] with http(s), rel="nofollow ugc"."""
    return nh3.clean(
        fragment,
        tags=set(ALLOWED_TAGS),
        clean_content_tags={"script", "style"},
        attributes={"a": {"href"}},
        link_rel=LINK_REL,
        url_schemes={"http", "https"},
    )


def plain_text(
    markdown: str,
    *,
    display_names: Mapping[int, str] | None = None,
    channel_names: Mapping[int, str] | None = None,
    role_names: Mapping[int, str] | None = None,
) -> str:
    """A member's message as plain text (mentions resolved, markup removed) for screening and audit."""
    fragment = discord_to_html(
        markdown, display_names=display_names, channel_names=channel_names, role_names=role_names
    )
    fragment = re.sub(r"<br>|</li>", "\n", fragment)
    fragment = re.sub(r"</p>|</pre>|</blockquote>|</ul>|</ol>", "\n\n", fragment)
    text = html.unescape(nh3.clean(fragment, tags=set()))
    return squeeze_lines(text)
