"""Statements and their signatures: plain SQL over `statements`, `signatures`, `statement_blocks`.

Signatures are written in batches (`sign_batch`): one transaction checks every request against the
statement's state and blocks, then upserts all of them with one `executemany`. A member has one
personal signature and may also sign for up to `ORGANIZATIONS_PER_MEMBER` organizations, one
signature per organization name: `sign_key` tells them apart ('' personal, 'org:<name key>'), and
the partial unique index `signatures_live` (one live signature per user, statement and key) is the
conflict target, so two submits from the same account at once end as one row whatever the
interleaving. A form that changes one organization signature names it (`SignatureInput.replaces`),
so renaming the organization changes that row instead of adding one.

Hiding is per account: while an account has a hidden signature (live or withdrawn), a new one it
makes starts hidden (with the same `hidden_at`/`hidden_by`). Unhiding one signature also clears the
account's withdrawn hidden rows, but not its other live signatures (each is moderated on its own).

`statements.message_changes` counts changes not yet shown on the Discord message (0: up to date).
The refresher clears it only if it still holds the value read with the state it rendered, so a
change committed while an edit is in flight keeps the statement dirty across a restart.
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from itertools import groupby
from operator import itemgetter
from typing import Any

import aiosqlite

from bot import metrics
from bot.clock import Clock, from_db, to_db
from bot.store.database import Database
from bot.store.statement_rows import (
    ORGANIZATIONS_PER_MEMBER,
    Counts,
    SignatureInput,
    SignatureRow,
    SignOutcome,
    SignStatus,
    StatementRow,
    signature_key,
)
from bot.store.tenancy import only_guilds

_UPSERT = (
    "INSERT INTO signatures (statement_id, user_id, kind, name, organization, role, city, country, public,"
    " created_at, updated_at, flags, hidden_at, hidden_by, sign_key)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (statement_id, user_id, sign_key) WHERE withdrawn_at IS NULL DO UPDATE SET"
    " kind = excluded.kind, name = excluded.name, organization = excluded.organization,"
    " role = excluded.role, city = excluded.city, country = excluded.country, public = excluded.public,"
    " updated_at = excluded.updated_at, flags = excluded.flags"
)
# Changes one live signature by id: an organization signature renamed by its form, or one from
# before sign_key (which gets its proper key now).
_UPDATE_BY_ID = (
    "UPDATE signatures SET kind = ?, name = ?, organization = ?, role = ?, city = ?, country = ?, public = ?,"
    " updated_at = ?, flags = ?, sign_key = ? WHERE id = ? AND withdrawn_at IS NULL"
)


_SIGNATURE_COLUMNS = (
    "id", "statement_id", "user_id", "kind", "name", "organization", "role", "city", "country", "public",
    "created_at", "updated_at", "withdrawn_at", "hidden_at", "hidden_by", "flags",
)  # fmt: skip
# One row per requested (statement, user) pair whose statement exists; `{values}` is "(?, ?), ...".
_SIGN_CONTEXT = (
    "WITH req(sid, uid) AS (VALUES {values})"
    " SELECT req.sid AS req_sid, req.uid AS req_uid, st.*,"
    " EXISTS (SELECT 1 FROM statement_blocks b WHERE b.statement_id = req.sid AND b.user_id = req.uid) AS blocked, "
    + ", ".join(f"sig.{name} AS sig_{name}" for name in _SIGNATURE_COLUMNS)
    + " FROM req JOIN statements st ON st.id = req.sid LEFT JOIN signatures sig"
    " ON sig.statement_id = req.sid AND sig.user_id = req.uid AND sig.withdrawn_at IS NULL AND sig.sign_key = ''"
)


SignContextRows = dict[tuple[int, int], tuple["StatementRow | None", bool, "SignatureRow | None"]]


def sign_context_query(pairs: Sequence[tuple[int, int]]) -> tuple[str, list[int]]:
    """The read behind `StatementsRepo.sign_contexts` for up to 400 (statement id, user id) pairs."""
    # Typed: PostgreSQL takes untyped VALUES parameters for text (SQLite's BIGINT is INTEGER).
    values = ",".join(["(CAST(? AS BIGINT), CAST(? AS BIGINT))"] * len(pairs))
    return _SIGN_CONTEXT.format(values=values), [v for pair in pairs for v in pair]


def sign_contexts_on(conn: sqlite3.Connection, pairs: Sequence[tuple[int, int]]) -> SignContextRows:
    """`StatementsRepo.sign_contexts` on a plain sqlite3 connection (rows as `sqlite3.Row`), in the caller's thread."""
    wanted = list(dict.fromkeys(pairs))
    found: SignContextRows = {pair: (None, False, None) for pair in wanted}
    for start in range(0, len(wanted), 400):
        sql, params = sign_context_query(wanted[start : start + 400])
        _read_sign_contexts(conn.execute(sql, params).fetchall(), found)
    return found


def _read_sign_contexts(rows: Iterable[Any], found: SignContextRows) -> None:
    statements: dict[int, StatementRow] = {}
    for row in rows:
        statement = statements.get(row["id"])
        if statement is None:
            statement = statements[row["id"]] = StatementRow.from_row(row)
        signature = None
        if row["sig_id"] is not None:
            signature = SignatureRow.from_row(
                {name: row[f"sig_{name}"] for name in _SIGNATURE_COLUMNS}  # type: ignore[arg-type]
            )
        found[(row["req_sid"], row["req_uid"])] = (statement, bool(row["blocked"]), signature)


class StatementsRepo:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self._clock = clock

    # -- statements -----------------------------------------------------------------------------

    async def insert_draft(
        self,
        conn: aiosqlite.Connection,
        *,
        guild_id: int,
        slug: str,
        title: str,
        body: str,
        organizer_id: int,
        channel_id: int | None,
        closes_at: datetime | None,
        allow_organizations: bool,
        public_by_default: bool,
    ) -> int:
        now = to_db(self._clock.now())
        cursor = await conn.execute(
            "INSERT INTO statements (guild_id, slug, title, body, organizer_id, channel_id, closes_at, status,"
            " allow_organizations, public_by_default, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, 'draft', ?, ?, ?, ?)",
            (
                guild_id,
                slug,
                title,
                body,
                organizer_id,
                channel_id,
                to_db(closes_at),
                int(allow_organizations),
                int(public_by_default),
                now,
                now,
            ),
        )
        return int(cursor.lastrowid or 0)

    async def slugs_like(self, conn: aiosqlite.Connection, guild_id: int, base: str) -> set[str]:
        async with conn.execute(
            "SELECT slug FROM statements WHERE guild_id = ? AND (slug = ? OR slug LIKE ?)",
            (guild_id, base, f"{base}-%"),
        ) as cursor:
            return {row[0] for row in await cursor.fetchall()}

    async def get(self, statement_id: int, conn: aiosqlite.Connection | None = None) -> StatementRow | None:
        sql, params = "SELECT * FROM statements WHERE id = ?", (statement_id,)
        if conn is not None:
            async with conn.execute(sql, params) as cursor:
                row = await cursor.fetchone()
        else:
            row = await self.db.fetchone(sql, params)
        return StatementRow.from_row(row) if row else None

    async def by_slug(self, guild_id: int, slug: str) -> StatementRow | None:
        row = await self.db.fetchone("SELECT * FROM statements WHERE guild_id = ? AND slug = ?", (guild_id, slug))
        return StatementRow.from_row(row) if row else None

    async def all_with_slug(self, slug: str) -> list[StatementRow]:
        rows = await self.db.fetchall("SELECT * FROM statements WHERE slug = ? ORDER BY id", (slug,))
        return [StatementRow.from_row(row) for row in rows]

    async def search(self, guild_id: int, text: str, *, limit: int = 25) -> list[StatementRow]:
        """Statements of a server whose slug or title contains `text`, newest first."""
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = await self.db.fetchall(
            "SELECT * FROM statements WHERE guild_id = ? AND status != 'draft'"
            " AND (slug LIKE ? ESCAPE '\\' OR title LIKE ? ESCAPE '\\') ORDER BY id DESC LIMIT ?",
            (guild_id, pattern, pattern, limit),
        )
        return [StatementRow.from_row(row) for row in rows]

    async def update_fields(self, conn: aiosqlite.Connection, statement_id: int, **values: Any) -> None:
        allowed = {
            "title", "body", "message_id", "channel_id", "closes_at", "status", "closed_at", "message_changed",
            "site_dirty", "site_revision", "site_synced_at", "close_announced",
        }  # fmt: skip
        unknown = set(values) - allowed
        if unknown:
            raise KeyError(f"not a statement field: {', '.join(sorted(unknown))}")
        # message_changed=True counts one more change in message_changes (see the module doc).
        counter = []
        if "message_changed" in values:
            changed = values.pop("message_changed")
            counter = ["message_changes = message_changes + 1" if changed else "message_changes = 0"]
        values = {k: to_db(v) if isinstance(v, datetime) else v for k, v in values.items()}
        values["updated_at"] = to_db(self._clock.now())
        assignments = ", ".join([f"{key} = ?" for key in values] + counter)
        await conn.execute(f"UPDATE statements SET {assignments} WHERE id = ?", (*values.values(), statement_id))

    async def delete_draft(self, statement_id: int) -> bool:
        """Delete a statement that is still a draft; False if there is none (e.g. it was published)."""
        return await self.db.write("DELETE FROM statements WHERE id = ? AND status = 'draft'", (statement_id,)) > 0

    async def drafts_before(self, moment: datetime, guilds: frozenset[int] | None = None) -> list[StatementRow]:
        """Drafts made before `moment` (of the served servers): a crash stopped their publishing."""
        only, params = only_guilds(guilds)
        rows = await self.db.fetchall(
            f"SELECT * FROM statements WHERE status = 'draft' AND created_at <= ?{only} ORDER BY id",
            (to_db(moment), *params),
        )
        return [StatementRow.from_row(row) for row in rows]

    async def due_to_close(self, now: datetime, guilds: frozenset[int] | None = None) -> list[StatementRow]:
        """Open statements past their deadline; with `guilds`, only those servers' (the others aren't served)."""
        only, params = only_guilds(guilds)
        rows = await self.db.fetchall(
            "SELECT * FROM statements WHERE status = 'open' AND closes_at IS NOT NULL AND closes_at <= ?"
            f"{only} ORDER BY id",
            (to_db(now), *params),
        )
        return [StatementRow.from_row(row) for row in rows]

    async def next_close_at(self, guilds: frozenset[int] | None = None) -> datetime | None:
        only, params = only_guilds(guilds)
        return from_db(
            await self.db.scalar(
                f"SELECT min(closes_at) FROM statements WHERE status = 'open' AND closes_at IS NOT NULL{only}",
                params,
            )
        )

    async def site_dirty(self) -> list[StatementRow]:
        rows = await self.db.fetchall("SELECT * FROM statements WHERE site_dirty = 1 AND status != 'draft'")
        return [StatementRow.from_row(row) for row in rows]

    async def closed_unannounced(self) -> list[StatementRow]:
        rows = await self.db.fetchall("SELECT * FROM statements WHERE status = 'closed' AND close_announced = 0")
        return [StatementRow.from_row(row) for row in rows]

    async def with_message_changes(self) -> list[StatementRow]:
        rows = await self.db.fetchall(
            "SELECT * FROM statements WHERE message_changes > 0 AND message_id IS NOT NULL AND status != 'draft'"
        )
        return [StatementRow.from_row(row) for row in rows]

    async def clear_message_changes(self, statement_id: int, shown: int) -> bool:
        """The message shows the state read with `message_changes == shown`: clear unless changed since."""
        cleared = await self.db.write(
            "UPDATE statements SET message_changes = 0 WHERE id = ? AND message_changes = ?", (statement_id, shown)
        )
        return cleared > 0

    async def mark_announced(self, statement_id: int) -> None:
        await self.db.write("UPDATE statements SET close_announced = 1 WHERE id = ?", (statement_id,))

    # -- signatures -----------------------------------------------------------------------------

    async def sign_batch(self, requests: Sequence[SignatureInput]) -> list[SignOutcome]:
        """Check and store many sign-ons in one transaction; one outcome per request, in order."""
        now = self._clock.now()
        outcomes = await self.db.run_in_transaction(lambda conn: _sign_batch(conn, requests, now))
        metrics.SIGNATURES.inc(sum(outcome.recorded is not None for outcome in outcomes))
        return outcomes

    def sign_batch_on(self, conn: sqlite3.Connection, requests: Sequence[SignatureInput]) -> list[SignOutcome]:
        """`sign_batch` on a plain sqlite3 connection in the caller's thread (raises if the file is locked)."""
        now = self._clock.now()
        conn.execute("BEGIN IMMEDIATE")
        try:
            outcomes = _sign_batch(conn, requests, now)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        metrics.DB_WRITES.inc()
        metrics.SIGNATURES.inc(sum(outcome.recorded is not None for outcome in outcomes))
        return outcomes

    async def sign_contexts(
        self, pairs: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], tuple[StatementRow | None, bool, SignatureRow | None]]:
        """(statement, account blocked from it, its live personal signature) for many (statement id, user
        id) pairs: one hop to the DB thread per 400."""
        wanted = list(dict.fromkeys(pairs))
        found: dict[tuple[int, int], tuple[StatementRow | None, bool, SignatureRow | None]] = {
            pair: (None, False, None) for pair in wanted
        }
        for start in range(0, len(wanted), 400):
            chunk = wanted[start : start + 400]
            sql, params = sign_context_query(chunk)
            _read_sign_contexts(await self.db.fetchall(sql, params), found)
        return found

    async def live_signature(self, statement_id: int, user_id: int) -> SignatureRow | None:
        """The account's live personal signature."""
        row = await self.db.fetchone(
            "SELECT * FROM signatures WHERE statement_id = ? AND user_id = ? AND withdrawn_at IS NULL"
            " AND sign_key = ''",
            (statement_id, user_id),
        )
        return SignatureRow.from_row(row) if row else None

    async def live_signatures_of(
        self, statement_id: int, user_id: int, conn: aiosqlite.Connection | None = None
    ) -> list[SignatureRow]:
        """Every live signature of the account: the personal one first, then organizations in signing order."""
        sql = (
            "SELECT * FROM signatures WHERE statement_id = ? AND user_id = ? AND withdrawn_at IS NULL"
            " ORDER BY kind = 'organization', created_at, id"
        )
        if conn is not None:
            async with conn.execute(sql, (statement_id, user_id)) as cursor:
                rows = list(await cursor.fetchall())
        else:
            rows = await self.db.fetchall(sql, (statement_id, user_id))
        return [SignatureRow.from_row(row) for row in rows]

    async def withdraw(
        self, conn: aiosqlite.Connection, statement_id: int, user_id: int, signature_id: int | None = None
    ) -> SignatureRow | None:
        """Withdraw one live signature of the account: `signature_id`, or else every live one
        (callers pass no id only when the account has a single one)."""
        sql = (
            "UPDATE signatures SET withdrawn_at = ?, updated_at = ? WHERE statement_id = ? AND user_id = ?"
            " AND withdrawn_at IS NULL"
        )
        params: tuple[Any, ...] = (to_db(self._clock.now()), to_db(self._clock.now()), statement_id, user_id)
        if signature_id is not None:
            sql, params = sql + " AND id = ?", (*params, signature_id)
        async with conn.execute(sql + " RETURNING *", params) as cursor:
            row = await cursor.fetchone()
        return SignatureRow.from_row(row) if row else None

    async def set_hidden(
        self, conn: aiosqlite.Connection, signature_id: int, hidden_by: int | None, hidden: bool
    ) -> SignatureRow | None:
        """Hide one signature, or unhide it together with the account's withdrawn hidden rows (which
        would hide its next signature); the account's other live signatures keep their own state."""
        async with conn.execute(
            "UPDATE signatures SET hidden_at = ?, hidden_by = ? WHERE id = ? RETURNING *",
            (to_db(self._clock.now()) if hidden else None, hidden_by if hidden else None, signature_id),
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return None
        if not hidden:
            # Otherwise a withdrawn hidden row would hide the account's next signature again.
            await conn.execute(
                "UPDATE signatures SET hidden_at = NULL, hidden_by = NULL"
                " WHERE statement_id = ? AND user_id = ? AND hidden_at IS NOT NULL AND withdrawn_at IS NOT NULL",
                (row["statement_id"], row["user_id"]),
            )
        return SignatureRow.from_row(row)

    async def hide_live_of_user(
        self, conn: aiosqlite.Connection, statement_id: int, user_id: int, hidden_by: int
    ) -> int:
        cursor = await conn.execute(
            "UPDATE signatures SET hidden_at = coalesce(hidden_at, ?), hidden_by = coalesce(hidden_by, ?)"
            " WHERE statement_id = ? AND user_id = ? AND withdrawn_at IS NULL",
            (to_db(self._clock.now()), hidden_by, statement_id, user_id),
        )
        return cursor.rowcount

    async def set_blocked(
        self, conn: aiosqlite.Connection, statement_id: int, user_id: int, blocked_by: int, blocked: bool
    ) -> bool:
        """Block or unblock; False when nothing changed."""
        if blocked:
            cursor = await conn.execute(
                "INSERT OR IGNORE INTO statement_blocks (statement_id, user_id, blocked_by, created_at)"
                " VALUES (?, ?, ?, ?)",
                (statement_id, user_id, blocked_by, to_db(self._clock.now())),
            )
        else:
            cursor = await conn.execute(
                "DELETE FROM statement_blocks WHERE statement_id = ? AND user_id = ?", (statement_id, user_id)
            )
        return cursor.rowcount > 0

    async def signature(self, signature_id: int) -> SignatureRow | None:
        row = await self.db.fetchone("SELECT * FROM signatures WHERE id = ?", (signature_id,))
        return SignatureRow.from_row(row) if row else None

    async def counts(self, statement_id: int, *, latest: int = 0) -> Counts:
        """The counts and (with `latest`) the newest public signatures, in one read: the statement
        message never shows a signer its count leaves out (two reads could straddle a sign-on)."""
        rows = await self.db.fetchall(
            "SELECT c.n_signed, c.n_public, c.n_hidden, c.n_organizations, s.* FROM ("
            " SELECT count(*) FILTER (WHERE hidden_at IS NULL) AS n_signed,"
            " count(*) FILTER (WHERE hidden_at IS NULL AND public = 1) AS n_public,"
            " count(*) FILTER (WHERE hidden_at IS NOT NULL) AS n_hidden,"
            " count(*) FILTER (WHERE hidden_at IS NULL AND kind = 'organization') AS n_organizations"
            " FROM signatures WHERE statement_id = ? AND withdrawn_at IS NULL) c"
            " LEFT JOIN (SELECT * FROM signatures WHERE statement_id = ? AND withdrawn_at IS NULL"
            " AND hidden_at IS NULL AND public = 1 ORDER BY created_at DESC, id DESC LIMIT ?) s ON 1 = 1"
            " ORDER BY s.created_at DESC, s.id DESC",
            (statement_id, statement_id, latest),
        )
        if not rows:
            return Counts()
        first = rows[0]
        counts = Counts(
            signed=int(first["n_signed"] or 0),
            public=int(first["n_public"] or 0),
            hidden=int(first["n_hidden"] or 0),
            organizations=int(first["n_organizations"] or 0),
        )
        if latest:
            counts.latest = [SignatureRow.from_row(r) for r in rows if r["id"] is not None]
        return counts

    async def live_signatures(
        self, statement_id: int, *, public_only: bool = False, conn: aiosqlite.Connection | None = None
    ) -> list[SignatureRow]:
        """Live signatures in signing order; `public_only`: listed publicly and not hidden."""
        sql = "SELECT * FROM signatures WHERE statement_id = ? AND withdrawn_at IS NULL"
        if public_only:
            sql += " AND hidden_at IS NULL AND public = 1"
        sql += " ORDER BY created_at, id"
        if conn is not None:
            async with conn.execute(sql, (statement_id,)) as cursor:
                rows = list(await cursor.fetchall())
        else:
            rows = await self.db.fetchall(sql, (statement_id,))
        return [SignatureRow.from_row(row) for row in rows]


def _sign_batch(conn: sqlite3.Connection, requests: Sequence[SignatureInput], now: datetime) -> list[SignOutcome]:
    """The body of `StatementsRepo.sign_batch`, run on the database thread inside its transaction."""
    stamp = to_db(now)
    statement_ids = sorted({r.statement_id for r in requests})
    user_ids = sorted({r.user_id for r in requests})
    statements = _statements_by_id(conn, statement_ids)
    blocked = _pairs(
        conn, "SELECT statement_id, user_id FROM statement_blocks", statement_ids, user_ids, live_only=False
    )
    live = _live_keys(conn, statement_ids, user_ids)
    hidden = _hidden_accounts(conn, statement_ids, user_ids)
    outcomes: list[SignOutcome] = []
    writes: list[tuple[str, tuple[Any, ...]]] = []  # in order: a rename must land before a new row takes its old key
    touched: set[int] = set()
    for request in requests:
        statement = statements.get(request.statement_id)
        pair = (request.statement_id, request.user_id)
        if statement is None or statement.status == "draft":
            outcomes.append(SignOutcome("missing", statement))
            continue
        if request.guild_id is not None and statement.guild_id != request.guild_id:
            outcomes.append(SignOutcome("missing", None))
            continue
        if not statement.accepting(now):
            outcomes.append(SignOutcome("closed", statement))
            continue
        if pair in blocked:
            outcomes.append(SignOutcome("blocked", statement))
            continue
        if request.kind == "organization" and not statement.allow_organizations:
            outcomes.append(SignOutcome("no_organizations", statement))
            continue
        mine = live[pair]  # key -> (row id or None if written in this batch, key stored on the row)
        key = signature_key(request.kind, request.organization) if request.kind == "organization" else ""
        target = key
        if request.replaces is not None and request.kind == "organization":
            found = [k for k, (row_id, _) in mine.items() if row_id == request.replaces and k.startswith("org:")]
            if not found:
                outcomes.append(SignOutcome("gone", statement))
                continue
            target = found[0]
            if key != target and key in mine:
                outcomes.append(SignOutcome("taken", statement))
                continue
        elif key not in mine and key and sum(k.startswith("org:") for k in mine) >= ORGANIZATIONS_PER_MEMBER:
            outcomes.append(SignOutcome("too_many", statement))
            continue
        fields = (
            request.kind,
            request.name,
            request.organization,
            request.role,
            request.city,
            request.country,
            int(request.public),
        )
        flags = json.dumps(list(request.flags)) if request.flags else "[]"
        if target in mine:
            status: SignStatus = "updated"
            row_id, stored_key = mine.pop(target)
            if row_id is not None and (stored_key != key or target != key):
                writes.append((_UPDATE_BY_ID, (*fields, stamp, flags, key, row_id)))
            else:
                writes.append((_UPSERT, (*pair, *fields, stamp, stamp, flags, None, None, key)))
            mine[key] = (row_id, key)
        else:
            status = "created"
            # A new row of an account an organizer hid starts hidden (an update keeps its own).
            hidden_at, hidden_by = hidden.get(pair, (None, None))
            writes.append((_UPSERT, (*pair, *fields, stamp, stamp, flags, hidden_at, hidden_by, key)))
            mine[key] = (None, key)
        became_dirty = not statement.site_dirty and statement.id not in touched
        touched.add(statement.id)
        outcomes.append(SignOutcome(status, statement, request, became_dirty))
    if writes:
        for sql, run in groupby(writes, key=itemgetter(0)):
            conn.executemany(sql, [params for _, params in run])
        marks = ",".join("?" * len(touched))
        conn.execute(
            f"UPDATE statements SET message_changes = message_changes + 1, site_dirty = 1 WHERE id IN ({marks})",
            sorted(touched),
        )
    return outcomes


def _live_keys(
    conn: sqlite3.Connection, statement_ids: Sequence[int], user_ids: Sequence[int]
) -> defaultdict[tuple[int, int], dict[str, tuple[int | None, str]]]:
    """{(statement id, user id): {key: (row id, key stored on the row)}} of live signatures.

    The key is recomputed from the row (rows from before `sign_key` store a placeholder)."""
    found: defaultdict[tuple[int, int], dict[str, tuple[int | None, str]]] = defaultdict(dict)
    for start in range(0, len(user_ids), 900):
        chunk = user_ids[start : start + 900]
        sql = (
            "SELECT statement_id, user_id, id, kind, organization, sign_key FROM signatures"
            f" WHERE statement_id IN ({','.join('?' * len(statement_ids))})"
            f" AND user_id IN ({','.join('?' * len(chunk))}) AND withdrawn_at IS NULL"
        )
        for sid, uid, row_id, kind, organization, stored in conn.execute(sql, (*statement_ids, *chunk)).fetchall():
            key = signature_key(kind, organization) if stored.startswith("legacy:") else stored
            found[(sid, uid)][key] = (row_id, stored)
    return found


def _statements_by_id(conn: sqlite3.Connection, ids: Sequence[int]) -> dict[int, StatementRow]:
    marks = ",".join("?" * len(ids))
    rows = conn.execute(f"SELECT * FROM statements WHERE id IN ({marks})", ids).fetchall()
    return {row["id"]: StatementRow.from_row(row) for row in rows}


def _hidden_accounts(
    conn: sqlite3.Connection, statement_ids: Sequence[int], user_ids: Sequence[int]
) -> dict[tuple[int, int], tuple[str, int | None]]:
    """{(statement id, user id): (hidden_at, hidden_by)} of accounts with a hidden signature, live or withdrawn."""
    found: dict[tuple[int, int], tuple[str, int | None]] = {}
    for start in range(0, len(user_ids), 900):
        chunk = user_ids[start : start + 900]
        sql = (
            "SELECT statement_id, user_id, hidden_at, hidden_by FROM signatures"
            f" WHERE statement_id IN ({','.join('?' * len(statement_ids))})"
            f" AND user_id IN ({','.join('?' * len(chunk))}) AND hidden_at IS NOT NULL ORDER BY id"
        )
        rows = conn.execute(sql, (*statement_ids, *chunk)).fetchall()
        found.update(((int(row[0]), int(row[1])), (row[2], row[3])) for row in rows)
    return found


def _pairs(
    conn: sqlite3.Connection,
    select: str,
    statement_ids: Sequence[int],
    user_ids: Sequence[int],
    *,
    live_only: bool = True,
) -> set[tuple[int, int]]:
    found: set[tuple[int, int]] = set()
    # SQLite allows 32766 parameters; stay far below it.
    for start in range(0, len(user_ids), 900):
        chunk = user_ids[start : start + 900]
        sql = (
            f"{select} WHERE statement_id IN ({','.join('?' * len(statement_ids))})"
            f" AND user_id IN ({','.join('?' * len(chunk))})"
        )
        if live_only:
            sql += " AND withdrawn_at IS NULL"
        found.update((int(row[0]), int(row[1])) for row in conn.execute(sql, (*statement_ids, *chunk)).fetchall())
    return found
