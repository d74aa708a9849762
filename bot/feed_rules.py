"""A feed's own choices, kept in `feeds.settings` (JSON): filters and post formats. No Discord, no database.

Filters are admins' input run against untrusted feed text: regular expressions use the `regex`
package with a time limit per match and a cap on pattern and text size, and every evaluation runs
in a worker thread (`filter_out_async`), never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import regex

from bot.render import html_tokens

log = logging.getLogger(__name__)

Action = Literal["include", "exclude"]
Field = Literal["category", "author", "keyword", "regex"]
ACTIONS: tuple[Action, ...] = ("include", "exclude")
FIELDS: tuple[Field, ...] = ("category", "author", "keyword", "regex")

MAX_RULES = 25
MAX_VALUE = 200  # characters of a rule's value (a pattern included)
TEXT_LIMIT = 10_000  # characters of title + summary text a keyword or pattern is matched against
REGEX_TIMEOUT = 0.05  # seconds per pattern per article; a pattern that runs longer does not match


class RuleProblem(ValueError):
    """A rule can't be saved: the message is for the admin."""


@dataclass(frozen=True)
class Rule:
    action: Action
    field: Field
    value: str

    def describe(self) -> str:
        what = {"category": "category", "author": "author", "keyword": "keyword", "regex": "pattern"}[self.field]
        return f"{self.action} {what} “{self.value}”"

    def to_json(self) -> dict[str, str]:
        return {"action": self.action, "field": self.field, "value": self.value}


def make_rule(action: str, field: str, value: str) -> Rule:
    """A checked rule, or RuleProblem naming what is wrong (a pattern is compiled here)."""
    value = value.strip()
    if action not in ACTIONS:
        raise RuleProblem(f"`action` must be one of {', '.join(ACTIONS)}.")
    if field not in FIELDS:
        raise RuleProblem(f"`field` must be one of {', '.join(FIELDS)}.")
    if not value:
        raise RuleProblem("`value` is empty.")
    if len(value) > MAX_VALUE:
        raise RuleProblem(f"`value` is {len(value)} characters; at most {MAX_VALUE}.")
    if field == "regex":
        try:
            regex.compile(value, regex.IGNORECASE | regex.V0)
        except regex.error as exc:
            raise RuleProblem(f"`value` is not a valid regular expression: {exc}") from None
    return Rule(cast(Action, action), cast(Field, field), value)


def rules_of(settings: dict[str, Any]) -> list[Rule]:
    """The filter rules stored in a feed's settings (entries that no longer check out are skipped)."""
    rules = []
    for raw in settings.get("filters") or []:
        try:
            rules.append(make_rule(str(raw.get("action")), str(raw.get("field")), str(raw.get("value") or "")))
        except (RuleProblem, AttributeError):
            log.warning("skipping an unreadable filter rule: %r", raw)
    return rules


@dataclass(frozen=True)
class FilterInput:
    """What rules look at: title, summary HTML, categories, author."""

    title: str
    summary_html: str
    categories: Sequence[str]
    author: str | None


def text_of(html_text: str, limit: int = TEXT_LIMIT) -> str:
    """Feed HTML as plain text (script and style dropped), with the linear tokenizer."""
    parts: list[str] = []
    size = 0
    skipping = 0
    for kind, value, _ in html_tokens(html_text[: limit * 4]):
        if kind == "start" and value in ("script", "style"):
            skipping += 1
        elif kind == "end" and value in ("script", "style") and skipping:
            skipping -= 1
        elif kind == "data" and not skipping:
            parts.append(value)
            size += len(value)
            if size >= limit:
                break
        elif kind in ("start", "startend", "end"):
            parts.append(" ")
    return " ".join("".join(parts).split())[:limit]


def _matches(rule: Rule, item: FilterInput, text: str) -> bool:
    value = rule.value.casefold()
    if rule.field == "category":
        return any(category.strip().casefold() == value for category in item.categories)
    if rule.field == "author":
        return (item.author or "").strip().casefold() == value
    if rule.field == "keyword":
        return value in text.casefold()
    try:
        return (
            regex.search(rule.value, text, regex.IGNORECASE | regex.V0, timeout=REGEX_TIMEOUT, concurrent=True)
            is not None
        )
    except TimeoutError:
        log.warning("filter pattern %r ran over %s s on an article; taken as no match", rule.value, REGEX_TIMEOUT)
        return False


def filter_out(rules: Sequence[Rule], item: FilterInput) -> str | None:
    """Why the rules drop an item ("filtered out by rule 2 (exclude category “Sport”)"), or None to keep it.

    An item is dropped if it matches any exclude rule, or if there are include rules and it matches none.
    """
    if not rules:
        return None
    text = ""
    if any(rule.field in ("keyword", "regex") for rule in rules):
        text = f"{item.title}\n{text_of(item.summary_html)}"[:TEXT_LIMIT]
    includes: list[int] = []
    included = False
    for number, rule in enumerate(rules, start=1):
        if rule.action == "include":
            includes.append(number)
            if not included and _matches(rule, item, text):
                included = True
        elif _matches(rule, item, text):
            return f"filtered out by rule {number} ({rule.describe()})"
    if includes and not included:
        if len(includes) == 1:
            return f"filtered out by rule {includes[0]} ({rules[includes[0] - 1].describe()}): it does not match"
        return f"filtered out by rules {', '.join(map(str, includes))}: it matches none of these include rules"
    return None


async def filter_out_async(rules: Sequence[Rule], items: Sequence[FilterInput]) -> list[str | None]:
    """`filter_out` for many items in a worker thread (patterns must not run on the event loop)."""
    if not rules:
        return [None] * len(items)
    return await asyncio.to_thread(lambda: [filter_out(rules, item) for item in items])


# --- formats ---------------------------------------------------------------------------------

# Template fields and Discord's limit for each (message 2,000; embed title 256, description 4,096,
# footer 2,048; thread title 100).
FORMAT_LIMITS: dict[str, int] = {
    "content": 2000,
    "embed_title": 256,
    "embed_description": 4096,
    "embed_footer": 2048,
    "forum_title": 100,
}
FORMAT_FIELDS = tuple(FORMAT_LIMITS)
PLACEHOLDERS = ("title", "link", "summary", "author", "categories", "published", "image", "feed")


def check_format(field: str, template: str) -> str:
    """A template checked against Discord's limit for its field, or RuleProblem naming the field."""
    if field not in FORMAT_LIMITS:
        raise RuleProblem(f"`field` must be one of {', '.join(FORMAT_FIELDS)}.")
    template = template.replace("\\n", "\n")  # slash-command options are one line: `\n` starts a new one
    if not template.strip():
        raise RuleProblem(f"The {field} template is empty (`/feed format reset` goes back to the default).")
    limit = FORMAT_LIMITS[field]
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise RuleProblem(
            f"The {field} template can't be read ({exc}); write a literal brace as {{{{ or }}}}."
        ) from None
    literal = 0
    for text, name, spec, conversion in parts:
        literal += len(text)
        if name is None:
            continue
        if name not in PLACEHOLDERS:
            raise RuleProblem(
                f"The {field} template has an unknown placeholder {{{name[:40]}}}; "
                f"known ones: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}."
            )
        if spec or conversion:
            raise RuleProblem(f"The {field} template: write placeholders plainly, as {{{name}}}.")
    if literal > limit // 2:
        raise RuleProblem(
            f"The {field} template has {literal} characters of its own text; Discord allows {limit} in a {field}, "
            f"so keep it under {limit // 2} to leave room for the article."
        )
    return template


def formats_of(settings: dict[str, Any]) -> dict[str, str]:
    """The feed's custom templates (fields without one use the default look)."""
    formats = settings.get("formats") or {}
    return {k: str(v) for k, v in formats.items() if k in FORMAT_LIMITS and isinstance(v, str) and v.strip()}


def render_format(template: str, values: dict[str, str], limit: int) -> str:
    """Fill a checked template in one pass (values are not re-read as templates), cut to `limit`."""
    from bot.render import truncate_words

    parts = list(string.Formatter().parse(template))

    def fill(vals: dict[str, str]) -> str:
        return "".join(text + (vals.get(name, "") if name is not None else "") for text, name, _, _ in parts).strip()

    out = fill(values)
    if len(out) > limit and values.get("summary"):  # shorten the summary first, so the rest (the link) stays whole
        uses = sum(1 for _, name, _, _ in parts if name == "summary")
        room = (limit - len(fill({**values, "summary": ""}))) // max(1, uses)
        out = fill({**values, "summary": truncate_words(values["summary"], room) if room >= 20 else ""})
    return truncate_words(out, limit)


__all__ = [
    "ACTIONS",
    "FIELDS",
    "FORMAT_FIELDS",
    "FORMAT_LIMITS",
    "MAX_RULES",
    "PLACEHOLDERS",
    "FilterInput",
    "Rule",
    "RuleProblem",
    "check_format",
    "filter_out",
    "filter_out_async",
    "formats_of",
    "make_rule",
    "render_format",
    "rules_of",
    "text_of",
]
