"""Exports of a statement's signatures (CSV or JSON), for organizers and the CLI."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from datetime import UTC
from typing import TYPE_CHECKING, Any, Literal

from bot.clock import to_db
from bot.statement_rules import with_read_flags
from bot.store.statement_rows import SignatureRow, StatementRow
from bot.store.statements import StatementsRepo

if TYPE_CHECKING:
    from bot.store import Store

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# A formula right after a separator inside a cell: spreadsheets in locales that split on ";" (or
# on "," / tab when opening a file) make it a cell of its own, and run it.
_FORMULA_AFTER_SEPARATOR = re.compile(r"([;,\t][ \t]*)(?=[=+\-@])")

EXPORT_COLUMNS = ("name", "role", "organization", "city", "country", "kind", "public", "signed_at")
ORGANIZER_COLUMNS = ("discord_user_id", "hidden", "flags")


def neutralise_formula(value: str) -> str:
    """Spreadsheets run cells starting with = + - @ TAB CR as formulas: prefix an apostrophe, at
    the start and after every separator (`Bob;=1+2` is two cells where `;` separates)."""
    value = _FORMULA_AFTER_SEPARATOR.sub(r"\1'", value)
    return "'" + value if value.startswith(_FORMULA_START) else value


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
