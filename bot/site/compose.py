"""Turn letters, digests and statements into `SiteItem`s: safe HTML, ASCII slugs, webhook metadata.

Pure functions; everything a member or organizer wrote is escaped (member markdown goes through
`site_html.discord_to_html`), and the whole fragment passes nh3 once more at the end.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import nh3

from bot.site.base import SiteItem

SLUG_WORDS_MAX = 60
TITLE_MAX = 200

_ALLOWED_TAGS = {"p", "br", "strong", "em", "u", "s", "code", "pre", "blockquote", "a", "ul", "ol", "li", "h2", "h3"}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# A title is plain text in the webhook payload, but WordPress stores and shows a post title as
# HTML, and both adapters send the same `SiteItem.title`. Angle brackets are how plain text turns
# into markup there, so titles carry look-alikes instead: the same text to read, inert as HTML.
_TITLE_BRACKETS = str.maketrans({"<": "\u2039", ">": "\u203a"})


@dataclass(frozen=True)
class Letter:
    """An approved reader's letter, as the site should show it."""

    id: int
    text: str
    """The member's Discord markdown."""
    byline: str
    location: str | None = None
    title: str | None = None
    article_title: str | None = None
    article_link: str | None = None
    in_reply_to_title: str | None = None
    in_reply_to_url: str | None = None
    display_names: Mapping[int, str] = field(default_factory=dict)
    channel_names: Mapping[int, str] = field(default_factory=dict)
    submitted_at: datetime | None = None
    role_names: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Digest:
    """Several letters in one post (always a draft for an editor to finish)."""

    key: str | int
    title: str
    letters: Sequence[Letter]
    intro: str | None = None


@dataclass(frozen=True)
class Signatory:
    name: str
    role: str | None = None
    organization: str | None = None
    city: str | None = None
    country: str | None = None
    kind: Literal["individual", "organization"] = "individual"


@dataclass(frozen=True)
class Statement:
    id: int
    title: str
    body: str
    """Organizer's Discord markdown."""
    signatories: Sequence[Signatory] = ()
    """Public signatories only, in the order to show them."""
    slug: str | None = None
    closes_at: datetime | None = None
    status: Literal["open", "closed"] = "open"
    """Closed: no more signatures; the list sent is final (unless an organizer reopens it)."""
    signature_count: int | None = None
    """Every counted signature, public and private (None: only the public list is known)."""
    closed_at: datetime | None = None


def slugify(text: str, max_len: int = SLUG_WORDS_MAX) -> str:
    """ASCII, lowercase, hyphen-separated; accents folded ("Café" -> "cafe"); may be empty."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9]+", "-", folded).strip("-")
    if len(slug) > max_len:
        slug = slug[:max_len].rsplit("-", 1)[0] if "-" in slug[:max_len] else slug[:max_len]
    return slug.strip("-")


def clean_line(text: str | None, limit: int = TITLE_MAX) -> str:
    """One line of plain text: controls removed, whitespace collapsed, at most `limit` chars."""
    line = " ".join(_CONTROL.sub("", text or "").split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def site_title(text: str | None) -> str:
    """A title for the site: one clean line, safe both as plain text and as WordPress's title HTML."""
    return clean_line(text).translate(_TITLE_BRACKETS)


def letter_title(letter: Letter) -> str:
    if letter.title and clean_line(letter.title):
        return site_title(letter.title)
    return _standard_title(letter)


def _standard_title(letter: Letter) -> str:
    """ "Re: <article>" (or "Letter from <byline>"): the slug's words, stable across edits and titles."""
    if letter.article_title and clean_line(letter.article_title):
        return site_title(f"Re: {clean_line(letter.article_title)}")
    return site_title(f"Letter from {clean_line(letter.byline) or 'a reader'}")


def letter_slug(letter_id: int, title: str) -> str:
    words = slugify(title)
    return f"readers-view-{letter_id}-{words}" if words else f"readers-view-{letter_id}"


FIRST_WORDS = 8
FIRST_WORDS_CHARS = 60


def first_words(text: str, *, words: int = FIRST_WORDS, chars: int = FIRST_WORDS_CHARS) -> str:
    """The opening words of plain text, cut at a word, with "…" when there is more."""
    all_words = text.split()
    picked: list[str] = []
    for word in all_words[:words]:
        if picked and len(" ".join([*picked, word])) > chars:
            break
        picked.append(word[:chars])
    opening = " ".join(picked)
    if len(picked) < len(all_words) or any(len(word) > chars for word in all_words[: len(picked)]):
        return opening.rstrip(".,;:!?-—–") + "…"
    return opening


def templated_title(template: str, *, letter_id: int, byline: str, text: str, article: str | None) -> str:
    """A letter's title from `letters.title_template` ({byline}, {first_words}, {article}, {id})."""
    values = {
        "byline": clean_line(byline) or "A reader",
        "first_words": first_words(clean_line(text, 10_000)),
        "article": clean_line(article) or "",
        "id": str(letter_id),
    }
    try:
        title = template.format(**values)
    except (KeyError, IndexError, ValueError):
        title = "{byline}: {first_words}".format(**values)
    return clean_line(title).strip(" :—–-") or values["byline"]


def compose_letter(letter: Letter, *, disclaimer: str | None) -> SiteItem:
    title = letter_title(letter)
    parts = [_context(letter), _letter_body(letter), _byline(letter), _disclaimer(disclaimer)]
    return SiteItem(
        kind="letter",
        entity=f"letter:{letter.id}",
        # The slug comes from the standard title, not the (editable) shown one: a retried create is
        # looked up by slug, and the letter's text, hence a templated title, may change on edit.
        slug=letter_slug(letter.id, _standard_title(letter)),
        title=title,
        html=_finish("".join(parts)),
        metadata=_letter_metadata(letter),
    )


def compose_digest(digest: Digest, *, disclaimer: str | None) -> SiteItem:
    title = site_title(digest.title) or "Readers' views"
    parts = []
    if digest.intro:
        parts.append(_markdown(digest.intro))
    for letter in digest.letters:
        parts.append(f"<h2>{_e(letter_title(letter))}</h2>")
        parts += [_context(letter), _letter_body(letter), _byline(letter)]
    parts.append(_disclaimer(disclaimer))
    key = str(digest.key)
    words = slugify(f"{key} {title}")
    return SiteItem(
        kind="digest",
        entity=f"digest:{key}",
        slug=f"readers-views-digest-{words}" if words else "readers-views-digest",
        title=title,
        html=_finish("".join(parts)),
        status="draft",
        metadata={"letters": [_letter_metadata(letter) | {"title": letter_title(letter)} for letter in digest.letters]},
    )


def compose_statement(statement: Statement, *, disclaimer: str | None = None) -> SiteItem:
    title = site_title(statement.title) or f"Statement {statement.id}"
    words = slugify(statement.slug or title)
    parts = [
        _markdown(statement.body),
        _statement_status_html(statement),
        _signatories_html(statement.signatories),
        _disclaimer(disclaimer),
    ]
    total = statement.signature_count if statement.signature_count is not None else len(statement.signatories)
    return SiteItem(
        kind="statement",
        entity=f"statement:{statement.id}",
        slug=f"statement-{statement.id}-{words}" if words else f"statement-{statement.id}",
        title=title,
        html=_finish("".join(parts)),
        metadata={
            "signatory_count": len(statement.signatories),
            "signatories": [_signatory_metadata(s) for s in statement.signatories],
            "closes_at": statement.closes_at.isoformat() if statement.closes_at else None,
            "status": statement.status,
            "signature_count": total,
            "final": statement.status == "closed",
            "closed_at": statement.closed_at.isoformat() if statement.closed_at else None,
        },
    )


# -- pieces ---------------------------------------------------------------------------------------


def _e(text: str | None) -> str:
    return html.escape(clean_line(text, 10_000), quote=True)


def _link(url: str | None, label: str) -> str:
    """An anchor for http(s) URLs; anything else (javascript:, data:) is shown as text only."""
    label_html = _e(label)
    if url and re.match(r"^https?://[^\s\"'<>]+$", url.strip(), re.I):
        return f'<a href="{html.escape(url.strip(), quote=True)}">{label_html}</a>'
    return label_html


def _markdown(
    text: str,
    display_names: Mapping[int, str] | None = None,
    channel_names: Mapping[int, str] | None = None,
    role_names: Mapping[int, str] | None = None,
) -> str:
    from bot.site_html import discord_to_html

    return discord_to_html(
        text, display_names=display_names or {}, channel_names=channel_names or {}, role_names=role_names or {}
    )


def _letter_body(letter: Letter) -> str:
    return _markdown(letter.text, letter.display_names, letter.channel_names, letter.role_names)


def _context(letter: Letter) -> str:
    lines = []
    if letter.article_title or letter.article_link:
        label = clean_line(letter.article_title) or (letter.article_link or "")
        lines.append(f'<p class="readersviews-context">In response to: {_link(letter.article_link, label)}</p>')
    if letter.in_reply_to_title or letter.in_reply_to_url:
        label = clean_line(letter.in_reply_to_title) or "an earlier letter"
        lines.append(f'<p class="readersviews-context">Replying to: {_link(letter.in_reply_to_url, label)}</p>')
    return "".join(lines)


def _byline(letter: Letter) -> str:
    who = _e(letter.byline) or "A reader"
    where = f", {_e(letter.location)}" if clean_line(letter.location) else ""
    return f'<p class="readersviews-byline">— {who}{where}</p>'


def _disclaimer(text: str | None) -> str:
    if not text or not clean_line(text):
        return ""
    return f'<p class="readersviews-disclaimer"><em>{_e(text)}</em></p>'


def _when(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return f"{moment.day} {moment:%B %Y, %H:%M} UTC"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _statement_status_html(statement: Statement) -> str:
    """Open or closed (final), and the total count next to how many of those are listed below."""
    listed = len(statement.signatories)
    total = statement.signature_count if statement.signature_count is not None else listed
    if statement.status == "closed":
        state = "Closed" + (f" on {_when(statement.closed_at)}" if statement.closed_at else "")
        state += f". Final count: {_plural(total, 'signature')}"
    else:
        state = "Open for signatures" + (f" until {_when(statement.closes_at)}" if statement.closes_at else "")
        state += f". {_plural(total, 'signature')} so far"
    if total != listed:
        state += f", {listed} of them listed publicly"
    return f'<p class="readersviews-statement-status"><strong>{_e(state)}.</strong></p>'


def _signatory_line(s: Signatory) -> str:
    details = [clean_line(part) for part in (s.role, s.organization) if clean_line(part)]
    place = [clean_line(part) for part in (s.city, s.country) if clean_line(part)]
    line = f"<strong>{_e(s.name)}</strong>"
    if details:
        line += ", " + ", ".join(_e(part) for part in details)
    if place:
        line += " (" + ", ".join(_e(part) for part in place) + ")"
    return f"<li>{line}</li>"


def _signatories_html(signatories: Sequence[Signatory]) -> str:
    if not signatories:
        return ""
    organizations = [s for s in signatories if s.kind == "organization"]
    individuals = [s for s in signatories if s.kind != "organization"]
    parts = [f'<h2 class="readersviews-signatories">Signatories ({len(signatories)})</h2>']
    for heading, group in (("Organizations", organizations), ("Individuals", individuals)):
        if not group:
            continue
        if organizations and individuals:
            parts.append(f"<h3>{heading}</h3>")
        parts.append('<ul class="readersviews-signatories">' + "".join(_signatory_line(s) for s in group) + "</ul>")
    return "".join(parts)


def _letter_metadata(letter: Letter) -> dict[str, Any]:
    return {
        "byline": clean_line(letter.byline),
        "location": clean_line(letter.location) or None,
        "article": {"title": clean_line(letter.article_title), "link": letter.article_link}
        if letter.article_title or letter.article_link
        else None,
        "in_reply_to": {"title": clean_line(letter.in_reply_to_title), "url": letter.in_reply_to_url}
        if letter.in_reply_to_title or letter.in_reply_to_url
        else None,
        "submitted_at": letter.submitted_at.isoformat() if letter.submitted_at else None,
    }


def _signatory_metadata(s: Signatory) -> dict[str, Any]:
    return {
        "name": clean_line(s.name),
        "role": clean_line(s.role) or None,
        "organization": clean_line(s.organization) or None,
        "city": clean_line(s.city) or None,
        "country": clean_line(s.country) or None,
        "kind": s.kind,
    }


def _finish(fragment: str) -> str:
    """Last line of defence over the whole fragment (render already sanitised the members' parts).

    Links keep the rel they were given: members' links carry "nofollow ugc" from `render`, while
    the publication's own links (the article a letter answers, an earlier letter) carry none.
    """
    return nh3.clean(
        fragment,
        tags=_ALLOWED_TAGS,
        clean_content_tags={"script", "style"},
        attributes={"a": {"href", "rel"}, "p": {"class"}, "ul": {"class"}, "h2": {"class"}},
        link_rel=None,
        url_schemes={"http", "https"},
    )


_TAG_TOKEN = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]*)\b[^>]*?(/?)>")
_VOID = {"br", "hr", "img", "wbr"}
_CLASS_ATTR = re.compile(r'^<p class="([a-z0-9 _-]+)">')


def wordpress_blocks(fragment: str) -> str:
    """Finished HTML as WordPress block markup: paragraphs as paragraph blocks, the rest as HTML blocks.

    Without block comments the block editor opens a post as one "Classic" block. `fragment` is
    `_finish` output (tags well formed, `<` in text escaped), so top-level elements are found by
    counting tags.
    """
    blocks: list[str] = []
    depth = 0
    start = 0
    for match in _TAG_TOKEN.finditer(fragment):
        closing, name, self_closing = match.group(1), match.group(2).lower(), match.group(3)
        if name in _VOID or self_closing:
            if depth == 0:
                blocks.append(fragment[match.start() : match.end()])
                start = match.end()
            continue
        if not closing:
            if depth == 0:
                loose = fragment[start : match.start()]
                if loose.strip():
                    blocks.append(f"<p>{loose.strip()}</p>")
                start = match.start()
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                blocks.append(fragment[start : match.end()])
                start = match.end()
    tail = fragment[start:]
    if tail.strip():
        blocks.append(f"<p>{tail.strip()}</p>")
    return "\n\n".join(_block(block) for block in blocks)


def _block(element: str) -> str:
    if element.startswith("<p>") or element.startswith("<p "):
        found = _CLASS_ATTR.match(element)
        attrs = f' {{"className":"{found.group(1)}"}}' if found else ""
        if element.startswith("<p>") or found:
            return f"<!-- wp:paragraph{attrs} -->\n{element}\n<!-- /wp:paragraph -->"
    return f"<!-- wp:html -->\n{element}\n<!-- /wp:html -->"
