"""Statement sign-ons: the rules, with no Discord in sight.

- A statement is created as a draft, posted by the cog, then published: status open and the site
  create enqueued in one transaction.
- Sign-ons go through `SignatureWriter`: each submit waits for its commit, so an answer "signed"
  always means "on disk". With nothing queued it commits at once on a connection used in the event
  loop's thread (`LoopConnection`: no hop to aiosqlite's thread, which costs more than the write);
  otherwise it joins a group commit, one transaction per batch (aiosqlite manages ~4.5k commits/s).
- A click on Sign reads the statement, the block list and the account's live signature through
  `SignContextReader`: directly on that connection (WAL readers never wait), else as a group read
  where clicks that arrive while a read is in flight share the next hop to the DB thread.
- The site copy is refreshed at most every `site_update_minutes`: a signature only marks the
  statement `site_dirty`; `flush_site_updates` (run by the cog's timer) composes the public list
  from the DB and enqueues one update with key `statement:<id>:update:<revision>`. Closing enqueues
  a final update at once. The outbox stores the composed item as its payload (the worker has no
  hook to rebuild it at delivery), so the payload is built inside the transaction that enqueues it.
- Deadlines are DB-driven: `next_timer_at` tells the cog's timer when to wake; `close_due`
  closes what is due (also after a restart).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import re
import sqlite3
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Literal

from bot.clock import Clock, to_db
from bot.concurrency import Batcher
from bot.concurrency import Debouncer as Debouncer  # moved; cogs.statements imports it from here
from bot.errors import UserFacingError
from bot.logs import ids
from bot.render import escape_discord_text
from bot.site.compose import Signatory, Statement, compose_statement, slugify
from bot.store.statements import (
    ORGANIZATIONS_PER_MEMBER,
    Counts,
    SignatureInput,
    SignatureRow,
    SignKind,
    SignOutcome,
    StatementRow,
    StatementsRepo,
    sign_contexts_on,
    signature_key,
)

if TYPE_CHECKING:
    from bot.store import Store
    from bot.store.database import Database

log = logging.getLogger(__name__)

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
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# A formula right after a separator inside a cell: spreadsheets in locales that split on ";" (or
# on "," / tab when opening a file) make it a cell of its own, and run it.
_FORMULA_AFTER_SEPARATOR = re.compile(r"([;,\t][ \t]*)(?=[=+\-@])")

EXPORT_COLUMNS = ("name", "role", "organization", "city", "country", "kind", "public", "signed_at")
ORGANIZER_COLUMNS = ("discord_user_id", "hidden", "flags")


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


def neutralise_formula(value: str) -> str:
    """Spreadsheets run cells starting with = + - @ TAB CR as formulas: prefix an apostrophe, at
    the start and after every separator (`Bob;=1+2` is two cells where `;` separates)."""
    value = _FORMULA_AFTER_SEPARATOR.sub(r"\1'", value)
    return "'" + value if value.startswith(_FORMULA_START) else value


# -- the service ----------------------------------------------------------------------------------


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


class LoopConnection:
    """A plain sqlite3 connection to the database file for the sign-on hot path, used only in the
    event loop's thread, and only for one short transaction or read at a time.

    Why: every call through aiosqlite is a hop to its thread and back, and that hop costs several
    times the query (`python bench/signons.py --hops`: ~140 µs of CPU per read through the thread,
    ~26-36 µs directly). In WAL mode a reader never waits for the writer, and a writer that finds
    the file locked is told so at once (`busy_timeout = 0`): the caller then takes the aiosqlite
    path, which waits, so the event loop never does. Checkpoints are left to the main connection.
    Without a database file (`:memory:`, URIs: no reading connection either) there is none.
    """

    def __init__(self, db: Database) -> None:
        self._path = db.path if db.reader is not None else None
        self._conn: sqlite3.Connection | None = None

    def get(self) -> sqlite3.Connection | None:
        if self._conn is None and self._path is not None:
            conn = sqlite3.connect(self._path, isolation_level=None)
            conn.row_factory = sqlite3.Row
            for pragma in ("busy_timeout = 0", "synchronous = NORMAL", "foreign_keys = ON", "wal_autocheckpoint = 0"):
                conn.execute(f"PRAGMA {pragma}")
            self._conn = conn
        return self._conn

    def reset(self, exc: sqlite3.Error) -> None:
        """After an error other than "locked": start over with a fresh connection next time."""
        log.info("sign-on connection: %s; reconnecting on the next sign-on", exc)
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def is_locked(exc: sqlite3.Error) -> bool:
    """SQLite answered "busy" or "locked": another connection is writing."""
    return getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class SignatureWriter(Batcher[SignatureInput, SignOutcome]):
    """Writes sign-ons: committed before `write` returns, so an answer "signed" means "on disk".

    While nothing waits in the group commit, sign-ons are committed on the `LoopConnection`, in the
    event loop's thread: those that arrive in the same turn of the loop (a burst's gateway frames
    come several at a time) are collected and written together in one short transaction, at the end
    of that turn. If the file is locked (another writer), they join the group commit instead:
    submits queue up and one flusher writes everything queued in one transaction through aiosqlite.
    Going direct only while that queue is empty keeps sign-ons in arrival order.
    """

    def __init__(self, repo: StatementsRepo, *, max_batch: int = 500, direct: LoopConnection | None = None) -> None:
        super().__init__(repo.sign_batch, name="statement-signature-writer", max_batch=max_batch)
        self._repo = repo
        self._direct = direct
        self._turn: list[tuple[SignatureInput, asyncio.Future[SignOutcome]]] = []
        self.direct_writes = 0
        self.direct_batches = 0

    async def write(self, request: SignatureInput) -> SignOutcome:
        if self._direct is None or not (self._turn or self._group_idle()):
            return await self.submit(request)
        future: asyncio.Future[SignOutcome] = asyncio.get_running_loop().create_future()
        self._turn.append((request, future))
        if len(self._turn) == 1:
            asyncio.get_running_loop().call_soon(self._write_turn)
        return await asyncio.shield(future)

    def _group_idle(self) -> bool:
        """Nothing waits in the group commit, and no batch of it is being written."""
        return not self._queue and (self._worker is None or self._worker.done())

    def _write_turn(self) -> None:
        """Commit the sign-ons collected in this turn of the loop (those the file refuses take the queue)."""
        batch, self._turn = self._turn, []
        if not batch:
            return
        assert self._direct is not None
        conn = self._direct.get()
        outcomes: list[SignOutcome] | None = None
        if conn is not None:
            try:
                outcomes = self._repo.sign_batch_on(conn, [request for request, _ in batch])
            except sqlite3.Error as exc:
                if not is_locked(exc):
                    self._direct.reset(exc)
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
        if outcomes is None:  # in the queue at once, in order, before any later sign-on can go direct
            for request, future in batch:
                self._enqueue(request, future)
            return
        self.direct_writes += len(batch)
        self.direct_batches += 1
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)

    async def drain(self) -> None:
        self._write_turn()
        await super().drain()


SignContext = tuple[StatementRow | None, bool, SignatureRow | None]


class SignContextReader(Batcher[tuple[int, int], SignContext]):
    """The read behind a click on Sign: the statement, the block list and the account's live signature.

    On a database file it is one indexed read on the `LoopConnection`, in the event loop's thread:
    in WAL mode a reader never waits for the writer and sees every committed change. Should that
    read fail (the file busy during recovery, say), or without a file, the click takes the group
    read: lookups queued while one is in flight share the next hop to aiosqlite's reading thread.
    Each read starts after its click arrived, so it sees every change committed before.
    """

    def __init__(self, repo: StatementsRepo, *, max_batch: int = 400, direct: LoopConnection | None = None) -> None:
        async def read(pairs: list[tuple[int, int]]) -> list[SignContext]:
            found = await repo.sign_contexts(pairs)
            return [found[pair] for pair in pairs]

        super().__init__(read, name="statement-sign-context-reader", max_batch=max_batch)
        self._direct = direct
        self.direct_reads = 0

    async def get(self, statement_id: int, user_id: int) -> SignContext:
        pair = (statement_id, user_id)
        conn = self._direct.get() if self._direct is not None else None
        if conn is not None:
            try:
                context = sign_contexts_on(conn, [pair])[pair]
            except sqlite3.Error as exc:
                if not is_locked(exc):
                    assert self._direct is not None
                    self._direct.reset(exc)
            else:
                self.direct_reads += 1
                return context
        return await self.submit(pair)


class StatementService:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        site_update_minutes: int = 10,
        on_enqueued: Callable[[], None] | None = None,
        on_changed: Callable[[int], None] | None = None,
        on_schedule: Callable[[], None] | None = None,
        max_batch: int = 500,
        served_guilds: frozenset[int] | None = None,
    ) -> None:
        self.store = store
        # With discord.allowed_guild_ids set, deadlines of other servers' statements are not acted on.
        self.served_guilds = served_guilds
        self.repo = store.statements
        self.clock = clock
        self.site_update_interval = timedelta(minutes=site_update_minutes)
        self._on_enqueued = on_enqueued or (lambda: None)
        # Called with a statement id when its Discord message or timers need a look.
        self._on_changed = on_changed or (lambda _id: None)
        # Called when a deadline or an owed site update may have moved (the timer recomputes).
        self._on_schedule = on_schedule or (lambda: None)
        self.direct = LoopConnection(self.repo.db)
        self.writer = SignatureWriter(self.repo, max_batch=max_batch, direct=self.direct)
        self.reader = SignContextReader(self.repo, direct=self.direct)

    # -- lifecycle of a statement ---------------------------------------------------------------

    async def create_draft(
        self,
        *,
        guild_id: int,
        organizer_id: int,
        title: str,
        body: str,
        channel_id: int,
        closes_at: datetime | None,
        allow_organizations: bool = True,
        public_by_default: bool = True,
        slug: str | None = None,
    ) -> StatementRow:
        """Store a statement not yet visible anywhere; `publish` once its message is posted."""
        clean_title = clean_text(title, limit=TITLE_MAX, what="a title", required=True)
        assert clean_title is not None
        clean_body = (body or "").strip()
        if not clean_body:
            raise StatementError("Please give the statement's text.")
        if len(clean_body) > BODY_MAX:
            raise StatementError(f"The text can be at most {BODY_MAX} characters (it has {len(clean_body)}).")
        if closes_at is not None and closes_at <= self.clock.now():
            raise StatementError("The deadline is already past; choose a later one.")
        wanted = slugify(slug or clean_title, SLUG_MAX) or "statement"
        if slug is not None and slugify(slug, SLUG_MAX) != slug:
            raise StatementError(f"Slugs are lowercase ASCII letters, digits and hyphens, e.g. `{wanted}`.")
        async with self.repo.db.transaction() as conn:
            taken = await self.repo.slugs_like(conn, guild_id, wanted)
            if slug is not None and slug in taken:
                raise StatementError(f"The slug `{slug}` is already used in this server; choose another.")
            final, n = wanted, 2
            while final in taken:
                final, n = f"{wanted[: SLUG_MAX - 4]}-{n}", n + 1
            statement_id = await self.repo.insert_draft(
                conn,
                guild_id=guild_id,
                slug=final,
                title=clean_title,
                body=clean_body,
                organizer_id=organizer_id,
                channel_id=channel_id,
                closes_at=closes_at,
                allow_organizations=allow_organizations,
                public_by_default=public_by_default,
            )
            statement = await self.repo.get(statement_id, conn)
        assert statement is not None
        return statement

    async def publish(self, statement_id: int, *, channel_id: int, message_id: int, actor_id: int) -> StatementRow:
        """The statement's message is posted: open it and enqueue the site create, together."""
        now = self.clock.now()
        async with self.repo.db.transaction() as conn:
            await self.repo.update_fields(
                conn, statement_id, status="open", channel_id=channel_id, message_id=message_id, site_synced_at=now
            )
            statement = await self.repo.get(statement_id, conn)
            assert statement is not None
            item = compose_statement(_site_statement(statement, []))
            await self.store.outbox.enqueue_item(conn, "create", item, revision=1)
            await self.store.audit.record(
                "statement.create",
                guild_id=statement.guild_id,
                actor_id=actor_id,
                entity=statement.entity,
                detail={"slug": statement.slug, "closes_at": to_db(statement.closes_at)},
                conn=conn,
            )
        self._on_enqueued()
        self._on_changed(statement_id)
        self._on_schedule()
        return statement

    async def reposted(self, statement_id: int, *, channel_id: int, message_id: int, actor_id: int) -> StatementRow:
        """The statement's message was posted again (the old one was deleted): record where it is now.

        The message is marked for a refresh too, so a signature made while it was being posted shows."""
        async with self.repo.db.transaction() as conn:
            before = await self.repo.get(statement_id, conn)
            if before is None or before.status == "draft":
                raise StatementError("That statement no longer exists.")
            await self.repo.update_fields(
                conn, statement_id, channel_id=channel_id, message_id=message_id, message_changed=True
            )
            await self.store.audit.record(
                "statement.repost",
                guild_id=before.guild_id,
                actor_id=actor_id,
                entity=before.entity,
                detail={
                    "old_channel_id": before.channel_id,
                    "old_message_id": before.message_id,
                    "channel_id": channel_id,
                    "message_id": message_id,
                },
                conn=conn,
            )
            statement = await self.repo.get(statement_id, conn)
        assert statement is not None
        self._on_changed(statement_id)
        return statement

    async def discard_draft(self, statement_id: int) -> bool:
        """Drop an unpublished statement; False if it is no longer a draft."""
        return await self.repo.delete_draft(statement_id)

    async def get(self, statement_id: int, *, guild_id: int | None = None) -> StatementRow:
        """The statement; with `guild_id`, only if it belongs to that server (another's is as if missing)."""
        statement = await self.repo.get(statement_id)
        if statement is None or statement.status == "draft" or not in_guild(statement, guild_id):
            raise StatementError("That statement no longer exists.")
        return statement

    async def find(self, guild_id: int, slug: str) -> StatementRow:
        """The statement a command names (by slug, as autocomplete fills it in)."""
        statement = await self.repo.by_slug(guild_id, slug.strip())
        if statement is None or statement.status == "draft":
            matches = await self.repo.search(guild_id, slug.strip(), limit=2)
            if len(matches) == 1:
                return matches[0]
            raise StatementError(f"No statement `{slug}` in this server: pick one from the list as you type.")
        return statement

    async def edit(
        self, statement_id: int, *, actor_id: int, title: str | None, body: str, guild_id: int | None = None
    ) -> StatementRow:
        statement = await self.get(statement_id, guild_id=guild_id)
        clean_title = clean_text(title, limit=TITLE_MAX, what="a title") or statement.title
        clean_body = (body or "").strip()
        if not clean_body:
            raise StatementError("Please give the statement's text.")
        if len(clean_body) > BODY_MAX:
            raise StatementError(f"The text can be at most {BODY_MAX} characters (it has {len(clean_body)}).")
        async with self.repo.db.transaction() as conn:
            await self.repo.update_fields(
                conn, statement_id, title=clean_title, body=clean_body, message_changed=True, site_dirty=1
            )
            await self.store.audit.record(
                "statement.edit",
                guild_id=statement.guild_id,
                actor_id=actor_id,
                entity=statement.entity,
                detail={"old_title": statement.title, "old_body": statement.body},
                conn=conn,
            )
            updated = await self.repo.get(statement_id, conn)
        assert updated is not None
        self._on_changed(statement_id)
        self._on_schedule()
        return updated

    async def close(self, statement_id: int, *, actor_id: int | None, reason: str = "organizer") -> StatementRow | None:
        """Close (None if it was not open); the final site update is enqueued at once."""
        now = self.clock.now()
        async with self.repo.db.transaction() as conn:
            statement = await self.repo.get(statement_id, conn)
            if statement is None or statement.status != "open":
                return None
            await self.repo.update_fields(
                conn, statement_id, status="closed", closed_at=now, message_changed=True, close_announced=0
            )
            closed = await self.repo.get(statement_id, conn)
            assert closed is not None
            await self._enqueue_site_update(conn, closed)
            await self.store.audit.record(
                "statement.close",
                guild_id=statement.guild_id,
                actor_id=actor_id,
                entity=statement.entity,
                detail={"reason": reason},
                conn=conn,
            )
        self._on_enqueued()
        self._on_changed(statement_id)
        log.info(
            "statement %s (%s) closed (%s)",
            statement_id,
            closed.slug,
            reason,
            extra=ids(guild_id=closed.guild_id, statement_id=statement_id),
        )
        return closed

    async def reopen(
        self, statement_id: int, *, actor_id: int, closes_at: datetime | None
    ) -> tuple[StatementRow, bool]:
        """Open again; returns (statement, whether a past deadline was removed)."""
        statement = await self.get(statement_id)
        if statement.status == "open" and statement.accepting(self.clock.now()):
            raise StatementError(f"{bold_title(statement)} is already open.")
        dropped = False
        if closes_at is None and statement.closes_at is not None and statement.closes_at <= self.clock.now():
            dropped = True
        new_deadline = closes_at if closes_at is not None else (None if dropped else statement.closes_at)
        async with self.repo.db.transaction() as conn:
            await self.repo.update_fields(
                conn,
                statement_id,
                status="open",
                closed_at=None,
                closes_at=new_deadline,
                message_changed=True,
                site_dirty=1,
                close_announced=0,
            )
            await self.store.audit.record(
                "statement.reopen",
                guild_id=statement.guild_id,
                actor_id=actor_id,
                entity=statement.entity,
                detail={"closes_at": to_db(new_deadline)},
                conn=conn,
            )
            reopened = await self.repo.get(statement_id, conn)
        assert reopened is not None
        self._on_changed(statement_id)
        self._on_schedule()
        return reopened, dropped

    # -- signing --------------------------------------------------------------------------------

    async def check_can_sign(self, statement_id: int, user_id: int, kind: SignKind) -> StatementRow:
        """Before showing the form: refuse early what the submit would refuse anyway."""
        statement = await self.get(statement_id)
        self._refuse(SignOutcome("closed", statement) if not statement.accepting(self.clock.now()) else None)
        if await self.repo.is_blocked(statement_id, user_id):
            self._refuse(SignOutcome("blocked", statement))
        if kind == "organization" and not statement.allow_organizations:
            self._refuse(SignOutcome("no_organizations", statement))
        return statement

    async def prepare_sign(
        self, statement_id: int, user_id: int, kind: SignKind, *, guild_id: int | None = None
    ) -> tuple[StatementRow, SignatureRow | None]:
        """`check_can_sign` and `my_signature` together, in one group read (the click on Sign)."""
        statement, blocked, current = await self.reader.get(statement_id, user_id)
        if statement is None or statement.status == "draft" or not in_guild(statement, guild_id):
            raise StatementError("That statement no longer exists.")
        self._refuse(SignOutcome("closed", statement) if not statement.accepting(self.clock.now()) else None)
        if blocked:
            self._refuse(SignOutcome("blocked", statement))
        if kind == "organization" and not statement.allow_organizations:
            self._refuse(SignOutcome("no_organizations", statement))
        return statement, current

    def validate(self, request: SignRequest) -> SignatureInput:
        name = clean_text(request.name, limit=NAME_MAX, what="your name", required=True)
        assert name is not None
        organization = clean_text(
            request.organization,
            limit=ORGANIZATION_MAX,
            what="the organization's name",
            required=request.kind == "organization",
        )
        return SignatureInput(
            statement_id=request.statement_id,
            user_id=request.user_id,
            kind=request.kind,
            name=name,
            organization=organization,
            role=clean_text(request.role, limit=ROLE_MAX, what="the role"),
            city=clean_text(request.city, limit=PLACE_MAX, what="the city"),
            country=clean_text(request.country, limit=PLACE_MAX, what="the country"),
            public=request.public,
            flags=screening_flags(name, organization, request.account_created_at, self.clock.now()),
            guild_id=request.guild_id,
            replaces=request.replaces if request.kind == "organization" else None,
        )

    async def sign(self, request: SignRequest) -> SignOutcome:
        """Record (or update) a signature; raises StatementError with the reason when refused."""
        outcome = await self.writer.write(self.validate(request))
        self._refuse(outcome)
        self._on_changed(request.statement_id)
        if outcome.became_dirty:
            self._on_schedule()
        return outcome

    @staticmethod
    def _refuse(outcome: SignOutcome | None) -> None:
        if outcome is None or outcome.status in ("created", "updated"):
            return
        title = bold_title(outcome.statement) if outcome.statement else "This statement"
        if outcome.status == "missing":
            raise StatementError("That statement no longer exists.")
        if outcome.status == "closed":
            raise StatementError(f"{title} is closed: it no longer takes signatures.")
        if outcome.status == "blocked":
            raise StatementError(f"You can't sign {title}: the organizers have blocked your account from it.")
        if outcome.status == "too_many":
            raise StatementError(
                f"You have signed {title} for {ORGANIZATIONS_PER_MEMBER} organizations, the most one account may; "
                "withdraw one to sign for another. Nothing was changed."
            )
        if outcome.status == "taken":
            raise StatementError(
                f"You have already signed {title} for an organization of that name: change that signature "
                "instead (Sign for an organization). Nothing was changed."
            )
        if outcome.status == "gone":
            raise StatementError(
                "The signature this form was changing has been withdrawn meanwhile; nothing was changed. "
                "Use Sign for an organization to sign again."
            )
        raise StatementError(f"{title} takes signatures from individuals only, not on behalf of organizations.")

    async def withdraw(
        self, statement_id: int, user_id: int, signature_id: int | None = None, *, guild_id: int | None = None
    ) -> SignatureRow | None:
        """Withdraw one of the account's live signatures (None if it has none); refused once the statement closed.

        Without `signature_id`, an account with several live signatures (personal and for organizations)
        gets `SeveralSignatures` listing them, and nothing changes. `guild_id`: the server asking; a
        statement of any other server is answered as missing."""
        now = self.clock.now()
        async with self.repo.db.transaction() as conn:
            # Checked in the transaction, as sign_batch does: a close or the deadline cannot slip in between.
            statement = await self.repo.get(statement_id, conn)
            if statement is None or statement.status == "draft" or not in_guild(statement, guild_id):
                raise StatementError("That statement no longer exists.")
            if not statement.accepting(now):
                raise StatementError(f"{bold_title(statement)} is closed: its list of signatures is final.")
            if signature_id is None:
                mine = await self.repo.live_signatures_of(statement_id, user_id, conn)
                if len(mine) > 1:
                    raise SeveralSignatures(mine)
            withdrawn = await self.repo.withdraw(conn, statement_id, user_id, signature_id)
            if withdrawn is not None:
                await self.repo.update_fields(conn, statement_id, message_changed=True, site_dirty=1)
        if withdrawn is not None:
            self._on_changed(statement_id)
            self._on_schedule()
        return withdrawn

    async def my_signature(self, statement_id: int, user_id: int) -> SignatureRow | None:
        """The account's live personal signature."""
        return await self.repo.live_signature(statement_id, user_id)

    async def my_signatures(self, statement_id: int, user_id: int) -> list[SignatureRow]:
        """All the account's live signatures: personal first, then organizations in signing order."""
        return await self.repo.live_signatures_of(statement_id, user_id)

    # -- moderation -----------------------------------------------------------------------------

    async def hide(self, statement_id: int, signature_id: int, *, actor_id: int, hidden: bool = True) -> SignatureRow:
        statement = await self.get(statement_id)
        signature = await self.repo.signature(signature_id)
        if signature is None or signature.statement_id != statement_id:
            raise StatementError(
                f"No signature #{signature_id} on {bold_title(statement)} (see `/statement signatures`)."
            )
        async with self.repo.db.transaction() as conn:
            changed = await self.repo.set_hidden(conn, signature_id, actor_id, hidden)
            await self.repo.update_fields(conn, statement_id, message_changed=True, site_dirty=1)
            await self.store.audit.record(
                "statement.signature.hide" if hidden else "statement.signature.unhide",
                guild_id=statement.guild_id,
                actor_id=actor_id,
                entity=statement.entity,
                detail={"signature_id": signature_id, "user_id": signature.user_id, "name": signature.name},
                conn=conn,
            )
        assert changed is not None
        self._on_changed(statement_id)
        self._on_schedule()
        return changed

    async def block(self, statement_id: int, user_id: int, *, actor_id: int, blocked: bool = True) -> tuple[bool, int]:
        """Block (and hide the live signature of) an account; returns (changed, signatures hidden)."""
        statement = await self.get(statement_id)
        async with self.repo.db.transaction() as conn:
            changed = await self.repo.set_blocked(conn, statement_id, user_id, actor_id, blocked)
            hidden = await self.repo.hide_live_of_user(conn, statement_id, user_id, actor_id) if blocked else 0
            if hidden:
                await self.repo.update_fields(conn, statement_id, message_changed=True, site_dirty=1)
            await self.store.audit.record(
                "statement.block" if blocked else "statement.unblock",
                guild_id=statement.guild_id,
                actor_id=actor_id,
                entity=statement.entity,
                detail={"user_id": user_id, "signatures_hidden": hidden},
                conn=conn,
            )
        if hidden:
            self._on_changed(statement_id)
            self._on_schedule()
        return changed, hidden

    async def signatures_for_organizers(self, statement_id: int) -> list[SignatureRow]:
        return with_read_flags(await self.repo.live_signatures(statement_id))

    # -- what Discord shows ---------------------------------------------------------------------

    async def snapshot(self, statement_id: int, *, latest: int = 10) -> Snapshot:
        statement = await self.get(statement_id)
        return Snapshot(statement, await self.repo.counts(statement_id, latest=latest))

    async def public_signers(self, statement_id: int) -> list[SignatureRow]:
        return await self.repo.live_signatures(statement_id, public_only=True)

    async def counts(self, statement_id: int, *, latest: int = 0) -> Counts:
        return await self.repo.counts(statement_id, latest=latest)

    async def search(self, guild_id: int, text: str, *, limit: int = 25) -> list[StatementRow]:
        """Published statements of a server whose slug or title contains `text` (autocomplete)."""
        return await self.repo.search(guild_id, text, limit=limit)

    async def current(self, statement_id: int) -> StatementRow | None:
        """The stored row as is (drafts included), for the message refresher."""
        return await self.repo.get(statement_id)

    async def with_message_changes(self) -> list[StatementRow]:
        """Statements whose message does not show their latest changes yet."""
        return await self.repo.with_message_changes()

    async def message_shown(self, statement: StatementRow) -> bool:
        """The message now shows `statement` as read: forget its changes unless more came since."""
        return await self.repo.clear_message_changes(statement.id, statement.message_changes)

    async def closed_unannounced(self) -> list[StatementRow]:
        return await self.repo.closed_unannounced()

    async def mark_announced(self, statement_id: int) -> None:
        await self.repo.mark_announced(statement_id)

    # -- timers: deadlines and site updates -----------------------------------------------------

    async def close_due(self) -> list[StatementRow]:
        """Close every open statement whose deadline has passed."""
        closed = []
        for statement in await self.repo.due_to_close(self.clock.now(), self.served_guilds):
            done = await self.close(statement.id, actor_id=None, reason="deadline")
            if done is not None:
                log.info("statement %s (%s) closed at its deadline", statement.id, statement.slug)
                closed.append(done)
        return closed

    def _site_due_at(self, statement: StatementRow) -> datetime:
        origin = statement.site_synced_at or statement.created_at
        return origin + self.site_update_interval

    async def flush_site_updates(self) -> int:
        """Enqueue a site update for each statement whose copy is stale and whose throttle allows."""
        now = self.clock.now()
        enqueued = 0
        for candidate in await self.repo.site_dirty():
            if self._site_due_at(candidate) > now:
                continue
            async with self.repo.db.transaction() as conn:
                statement = await self.repo.get(candidate.id, conn)
                if statement is None or not statement.site_dirty:
                    continue
                await self._enqueue_site_update(conn, statement)
            enqueued += 1
        if enqueued:
            self._on_enqueued()
        return enqueued

    async def next_timer_at(self) -> datetime | None:
        """The earliest deadline or owed site update (None: nothing scheduled)."""
        moments = [moment for moment in [await self.repo.next_close_at(self.served_guilds)] if moment is not None]
        moments += [self._site_due_at(s) for s in await self.repo.site_dirty()]
        return min(moments, default=None)

    async def _enqueue_site_update(self, conn: Any, statement: StatementRow) -> None:
        live = await self.repo.live_signatures(statement.id, conn=conn)
        counted = [s for s in live if s.hidden_at is None]
        signers = [s for s in counted if s.public]
        item = compose_statement(_site_statement(statement, signers, total=len(counted)))
        revision = statement.site_revision + 1
        await self.store.outbox.enqueue_item(conn, "update", item, revision=revision)
        await self.repo.update_fields(
            conn, statement.id, site_revision=revision, site_dirty=0, site_synced_at=self.clock.now()
        )

    # -- export ---------------------------------------------------------------------------------

    async def export(
        self,
        statement: StatementRow,
        *,
        fmt: Literal["csv", "json"],
        include_discord_ids: bool,
        bom: bool = False,
        actor_id: int | None = None,
    ) -> bytes:
        data = await build_export(self.repo, statement, fmt=fmt, include_discord_ids=include_discord_ids, bom=bom)
        await self.store.audit.record(
            "statement.export",
            guild_id=statement.guild_id,
            actor_id=actor_id,
            entity=statement.entity,
            detail={"format": fmt, "organizer_columns": include_discord_ids},
        )
        return data

    async def aclose(self) -> None:
        await self.writer.drain()
        self.direct.close()


def _site_statement(statement: StatementRow, signers: Sequence[SignatureRow], *, total: int = 0) -> Statement:
    """The site's copy: `signers` the public list, `total` every counted signature (private ones too)."""
    return Statement(
        id=statement.id,
        title=statement.title,
        body=statement.body,
        slug=statement.slug,
        closes_at=statement.closes_at,
        status="closed" if statement.status == "closed" else "open",
        signature_count=max(total, len(signers)),
        closed_at=statement.closed_at if statement.status == "closed" else None,
        signatories=[
            Signatory(
                name=s.name, role=s.role, organization=s.organization, city=s.city, country=s.country, kind=s.kind
            )
            for s in signers
        ],
    )


def export_rows(signatures: Sequence[SignatureRow], *, include_discord_ids: bool) -> list[dict[str, Any]]:
    rows = []
    for s in signatures:
        row: dict[str, Any] = {
            "name": s.name,
            "role": s.role or "",
            "organization": s.organization or "",
            "city": s.city or "",
            "country": s.country or "",
            "kind": s.kind,
            "public": s.public,
            "signed_at": s.created_at.astimezone(UTC).isoformat(timespec="seconds"),
        }
        if include_discord_ids:
            row["discord_user_id"] = str(s.user_id)
            row["hidden"] = s.hidden_at is not None
            row["flags"] = list(s.flags)
        rows.append(row)
    return rows


async def build_export(
    repo: StatementsRepo,
    statement: StatementRow,
    *,
    fmt: Literal["csv", "json"],
    include_discord_ids: bool,
    bom: bool = False,
) -> bytes:
    """Organizers' export: every live signature (+ id, hidden, flags); otherwise the public list."""
    if include_discord_ids:
        signatures = with_read_flags(await repo.live_signatures(statement.id))
    else:
        signatures = await repo.live_signatures(statement.id, public_only=True)
    rows = export_rows(signatures, include_discord_ids=include_discord_ids)
    if fmt == "json":
        document = {
            "statement": {
                "slug": statement.slug,
                "title": statement.title,
                "status": statement.status,
                "closes_at": to_db(statement.closes_at),
                "count": len(rows),
            },
            "signatures": rows,
        }
        return json.dumps(document, ensure_ascii=False, indent=2).encode("utf-8")
    if fmt != "csv":
        raise ValueError(f"unknown export format {fmt!r}")
    columns = EXPORT_COLUMNS + (ORGANIZER_COLUMNS if include_discord_ids else ())
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        cells = []
        for column in columns:
            value = row[column]
            if isinstance(value, bool):
                cells.append("yes" if value else "no")
            elif isinstance(value, list):
                cells.append(neutralise_formula(";".join(value)))
            else:
                cells.append(neutralise_formula(str(value)))
        writer.writerow(cells)
    text = buffer.getvalue()
    return (("\ufeff" if bom else "") + text).encode("utf-8")


async def export_statement(
    store: Store,
    slug: str,
    *,
    fmt: str,
    guild_id: int | None,
    include_discord_ids: bool,
    bom: bool,
) -> bytes:
    """The CLI's `readersviews export statement SLUG`: LookupError with a readable message if unclear."""
    repo = store.statements
    found = [s for s in await repo.all_with_slug(slug) if s.status != "draft"]
    if guild_id is not None:
        found = [s for s in found if s.guild_id == guild_id]
    if not found:
        where = f" in server {guild_id}" if guild_id is not None else ""
        raise LookupError(f"no statement with slug {slug!r}{where}")
    if len(found) > 1:
        guilds = ", ".join(str(s.guild_id) for s in found)
        raise LookupError(f"slug {slug!r} is used in several servers ({guilds}); choose one with --guild ID")
    if fmt not in ("csv", "json"):
        raise LookupError(f"unknown format {fmt!r}: use csv or json")
    statement = found[0]
    data = await build_export(repo, statement, fmt=fmt, include_discord_ids=include_discord_ids, bom=bom)  # type: ignore[arg-type]
    await store.audit.record(
        "statement.export",
        guild_id=statement.guild_id,
        actor_id=None,
        entity=statement.entity,
        detail={"format": fmt, "organizer_columns": include_discord_ids, "via": "cli"},
    )
    return data
