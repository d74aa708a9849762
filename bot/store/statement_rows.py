"""Statements' rows and requests as the store hands them out and takes them in (no SQL here)."""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import aiosqlite

from bot.clock import from_db

SignKind = Literal["individual", "organization"]
SignStatus = Literal[
    "created", "updated", "closed", "blocked", "no_organizations", "missing", "too_many", "taken", "gone"
]
ORGANIZATIONS_PER_MEMBER = 5
"""How many organizations one account may sign a statement for (besides its personal signature)."""


def signature_key(kind: SignKind, organization: str | None) -> str:
    """Which of a member's signatures this is: '' personal, 'org:<name>' per organization (case-folded)."""
    if kind != "organization":
        return ""
    return "org:" + " ".join(unicodedata.normalize("NFKC", organization or "").casefold().split())


@dataclass(frozen=True)
class StatementRow:
    id: int
    guild_id: int
    slug: str
    title: str
    body: str
    organizer_id: int
    channel_id: int | None
    message_id: int | None
    closes_at: datetime | None
    status: str
    allow_organizations: bool
    public_by_default: bool
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    message_changes: int
    """Changes not yet shown on the message; pass it to `clear_message_changes` after showing this state."""
    site_dirty: bool
    site_revision: int
    site_synced_at: datetime | None
    close_announced: bool

    @property
    def entity(self) -> str:
        return f"statement:{self.id}"

    def accepting(self, now: datetime) -> bool:
        """Open, and its deadline (if any) not yet reached."""
        return self.status == "open" and (self.closes_at is None or self.closes_at > now)

    @classmethod
    def from_row(cls, row: aiosqlite.Row) -> StatementRow:
        return cls(
            id=row["id"],
            guild_id=row["guild_id"],
            slug=row["slug"],
            title=row["title"],
            body=row["body"],
            organizer_id=row["organizer_id"],
            channel_id=row["channel_id"],
            message_id=row["message_id"],
            closes_at=from_db(row["closes_at"]),
            status=row["status"],
            allow_organizations=bool(row["allow_organizations"]),
            public_by_default=bool(row["public_by_default"]),
            created_at=_dt(row["created_at"]),
            updated_at=_dt(row["updated_at"]),
            closed_at=from_db(row["closed_at"]),
            message_changes=int(row["message_changes"]),
            site_dirty=bool(row["site_dirty"]),
            site_revision=int(row["site_revision"]),
            site_synced_at=from_db(row["site_synced_at"]),
            close_announced=bool(row["close_announced"]),
        )


@dataclass(frozen=True)
class SignatureRow:
    id: int
    statement_id: int
    user_id: int
    kind: SignKind
    name: str
    organization: str | None
    role: str | None
    city: str | None
    country: str | None
    public: bool
    created_at: datetime
    updated_at: datetime
    withdrawn_at: datetime | None
    hidden_at: datetime | None
    hidden_by: int | None
    flags: tuple[str, ...] = ()

    @classmethod
    def from_row(cls, row: aiosqlite.Row) -> SignatureRow:
        return cls(
            id=row["id"],
            statement_id=row["statement_id"],
            user_id=row["user_id"],
            kind=row["kind"],
            name=row["name"],
            organization=row["organization"],
            role=row["role"],
            city=row["city"],
            country=row["country"],
            public=bool(row["public"]),
            created_at=_dt(row["created_at"]),
            updated_at=_dt(row["updated_at"]),
            withdrawn_at=from_db(row["withdrawn_at"]),
            hidden_at=from_db(row["hidden_at"]),
            hidden_by=row["hidden_by"],
            flags=tuple(json.loads(row["flags"] or "[]")),
        )


@dataclass(frozen=True)
class SignatureInput:
    """A validated sign-on, ready to store."""

    statement_id: int
    user_id: int
    kind: SignKind
    name: str
    organization: str | None = None
    role: str | None = None
    city: str | None = None
    country: str | None = None
    public: bool = True
    flags: tuple[str, ...] = ()
    guild_id: int | None = None
    """The server the sign-on came from; a statement of another server is answered as missing."""
    replaces: int | None = None
    """The id of the member's organization signature this changes (its form named it); None: by key."""

    @property
    def key(self) -> str:
        return signature_key(self.kind, self.organization)


@dataclass(frozen=True)
class SignOutcome:
    status: SignStatus
    statement: StatementRow | None = None
    recorded: SignatureInput | None = None
    became_dirty: bool = False
    """This write made the statement's site copy stale (it was up to date before)."""


@dataclass
class Counts:
    signed: int = 0
    """Live signatures not hidden by a moderator."""
    public: int = 0
    hidden: int = 0
    organizations: int = 0
    """Of `signed`, those made on behalf of organizations."""
    latest: list[SignatureRow] = field(default_factory=list)


def _dt(text: str) -> datetime:
    moment = from_db(text)
    assert moment is not None
    return moment
