"""Statements' rules that need no database: limits, input cleaning, deadlines, screening flags, requests."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from bot.errors import UserFacingError
from bot.render import escape_discord_text
from bot.store.statement_rows import Counts, SignatureRow, SignKind, StatementRow, signature_key

TITLE_MAX = 200
BODY_MAX = 4000
NAME_MAX = 100
ROLE_MAX = 100
ORGANIZATION_MAX = 150
PLACE_MAX = 100
NEW_ACCOUNT_DAYS = 7
SLUG_MAX = 60
DEADLINE_FORMATS = "`2026-12-31`, `2026-12-31 18:00` (UTC) or `2026-12-31T18:00+02:00`"

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
_LINK = re.compile(
    r"(https?://|www\.|discord\.gg/|discord(?:app)?\.com/invite|\b[a-z0-9-]+\.(?:com|net|org|io|gg|xyz|ru|info|biz|ly|me|co)\b)",
    re.I,
)


class StatementError(UserFacingError):
    """A refusal or bad input, phrased for the member who caused it."""


class SeveralSignatures(StatementError):
    """Withdraw without saying which, from an account with several live signatures: ask which."""

    def __init__(self, signatures: Sequence[SignatureRow]) -> None:
        super().__init__("You have several signatures on this statement: choose the one to withdraw.")
        self.signatures = list(signatures)


def bold_title(statement: StatementRow) -> str:
    """The title for a Discord answer: bold, its own markdown and mentions escaped."""
    return f"**{escape_discord_text(statement.title)}**"


# -- input cleaning -------------------------------------------------------------------------------


def clean_text(value: str | None, *, limit: int, what: str, required: bool = False) -> str | None:
    """One line: controls and zero-width characters removed, whitespace collapsed; too long is refused."""
    spaced = re.sub(r"[\t\n\r\v\f]", " ", unicodedata.normalize("NFC", value or ""))
    line = " ".join(_CONTROL.sub("", spaced).split())
    if not line:
        if required:
            raise StatementError(f"Please give {what}.")
        return None
    if len(line) > limit:
        raise StatementError(f"{what[0].upper()}{what[1:]} can be at most {limit} characters (yours has {len(line)}).")
    return line


def split_place(value: str | None) -> tuple[str | None, str | None]:
    """'Leeds, UK' -> ('Leeds', 'UK'); 'Leeds' -> ('Leeds', None)."""
    text = clean_text(value, limit=PLACE_MAX * 2 + 2, what="the place") or ""
    if not text:
        return None, None
    city, sep, country = text.rpartition(",")
    if not sep:
        return clean_text(text, limit=PLACE_MAX, what="the city"), None
    return (
        clean_text(city, limit=PLACE_MAX, what="the city"),
        clean_text(country, limit=PLACE_MAX, what="the country"),
    )


def parse_deadline(text: str | None, now: datetime) -> datetime | None:
    """ISO date/time, read as UTC unless it names an offset; a bare date means the end of that day."""
    if text is None or not text.strip():
        return None
    raw = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
            moment = datetime.combine(datetime.fromisoformat(raw).date(), time(23, 59), tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise StatementError(f"I couldn't read the deadline {raw!r}: use {DEADLINE_FORMATS}.") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    if moment <= now:
        raise StatementError(
            f"The deadline {moment:%Y-%m-%d %H:%M} UTC is already past; choose a later one ({DEADLINE_FORMATS})."
        )
    return moment


def screening_flags(
    name: str, organization: str | None, account_created_at: datetime | None, now: datetime
) -> tuple[str, ...]:
    """Flags for organizers (never shown publicly): links in names, brand-new accounts."""
    flags = []
    if _LINK.search(name) or (organization and _LINK.search(organization)):
        flags.append("link_in_name")
    if account_created_at is not None and now - account_created_at < timedelta(days=NEW_ACCOUNT_DAYS):
        flags.append("new_account")
    return tuple(flags)


def name_key(name: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def with_read_flags(signatures: Sequence[SignatureRow]) -> list[SignatureRow]:
    """Add `repeated_name` to signatures whose name was given by more than one account, and
    `repeated_organization` to organizations signed for by more than one account (one member's
    personal and organization signatures under the same name are not a repeat)."""
    names = Counter(key for key, _user in {(name_key(s.name), s.user_id) for s in signatures})
    organizations = Counter(
        key for key, _user in {(signature_key(s.kind, s.organization), s.user_id) for s in signatures} if key
    )
    out = []
    for s in signatures:
        added = []
        if names[name_key(s.name)] > 1 and "repeated_name" not in s.flags:
            added.append("repeated_name")
        if organizations[signature_key(s.kind, s.organization)] > 1 and "repeated_organization" not in s.flags:
            added.append("repeated_organization")
        if added:
            s = SignatureRow(**{**s.__dict__, "flags": (*s.flags, *added)})
        out.append(s)
    return out


def in_guild(statement: StatementRow, guild_id: int | None) -> bool:
    """Whether a server may act on `statement` (None: no server given, as for the CLI and timers)."""
    return guild_id is None or statement.guild_id == guild_id


@dataclass(frozen=True)
class SignRequest:
    statement_id: int
    user_id: int
    kind: SignKind
    name: str | None
    role: str | None = None
    organization: str | None = None
    city: str | None = None
    country: str | None = None
    public: bool = True
    account_created_at: datetime | None = None
    guild_id: int | None = None
    """The server the form came from: a statement of any other server is answered as missing."""
    replaces: int | None = None
    """The organization signature (id) the member's form changes; None: a new one, or the one of that name."""


@dataclass(frozen=True)
class Snapshot:
    """What the statement's Discord message shows."""

    statement: StatementRow
    counts: Counts
