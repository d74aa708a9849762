"""What the operator sees first: the bot's health in one report (for /readersviews status and the CLI)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from bot import __version__
from bot.site.base import redact_text
from bot.store import Store

# Rows counted for one server: (table, SQL counting that server's rows).
GUILD_COUNTS = {
    "feeds": "SELECT count(*) FROM feeds WHERE guild_id = ?",
    "articles": "SELECT count(*) FROM articles a JOIN feeds f ON f.id = a.feed_id WHERE f.guild_id = ?",
    "contributions": "SELECT count(*) FROM contributions WHERE guild_id = ?",
    "statements": "SELECT count(*) FROM statements WHERE guild_id = ?",
    "signatures": "SELECT count(*) FROM signatures g JOIN statements s ON s.id = g.statement_id WHERE s.guild_id = ?",
    "audit_log": "SELECT count(*) FROM audit_log WHERE guild_id = ?",
}


@dataclass
class StatusReport:
    version: str
    uptime: timedelta | None
    latency_ms: float | None
    db_path: str
    schema_version: int
    counts: dict[str, int]
    outbox: dict[str, int]
    last_errors: list[str] = field(default_factory=list)
    shed: int = 0  # interactions skipped because Discord had already expired them (overload)
    process: str | None = None  # which shards and jobs this process runs (several processes, PostgreSQL)


async def collect_status(
    store: Store,
    *,
    guild_id: int,
    started_at: datetime | None,
    now: datetime,
    latency: float | None,
    recent: list[tuple[str, int | None, str]],
    shed: int = 0,
    process: str | None = None,
) -> StatusReport:
    """The report for one server's admins: its own rows and problems; the site backlog only as counts."""
    counts = {name: int((await store.db.fetchone(sql, (guild_id,)) or (0,))[0]) for name, sql in GUILD_COUNTS.items()}
    counts["outbox"] = int((await store.db.fetchone("SELECT count(*) FROM outbox") or (0,))[0])
    outbox = {
        row["state"]: int(row["n"])
        for row in await store.db.fetchall("SELECT state, count(*) AS n FROM outbox GROUP BY state")
    }
    # Notes of no particular server (the poller crashed, a site problem no server owns) show everywhere.
    errors = [f"{when} {text}" for when, gid, text in recent if gid in (guild_id, None)][-5:]
    for row in await store.db.fetchall(
        "SELECT url, last_error, last_poll_at FROM feeds WHERE last_error IS NOT NULL AND guild_id = ?"
        " ORDER BY last_poll_at DESC LIMIT 3",
        (guild_id,),
    ):
        errors.append(f"{row['last_poll_at']} feed {row['url']}: {row['last_error']}")
    for row in await store.db.fetchall(
        "SELECT o.id, o.kind, o.last_error, o.updated_at FROM outbox o"
        " WHERE o.state = 'dead' AND o.guild_id = ? ORDER BY o.updated_at DESC LIMIT 3",
        (guild_id,),
    ):
        errors.append(f"{row['updated_at']} outbox #{row['id']} ({row['kind']}): {row['last_error']}")
    latency_ms = None if latency is None or latency != latency or latency == float("inf") else latency * 1000
    return StatusReport(
        version=__version__,
        uptime=(now - started_at) if started_at else None,
        latency_ms=latency_ms,
        db_path=store.db.location,
        schema_version=await store.db.schema_version(),
        counts=counts,
        outbox=outbox,
        last_errors=errors,
        shed=shed,
        process=process,
    )


async def known_guilds(store: Store) -> list[int]:
    """Every server the database holds something for (settings, feeds, letters, statements)."""
    rows = await store.db.fetchall(
        "SELECT guild_id FROM guild_settings UNION SELECT guild_id FROM feeds"
        " UNION SELECT guild_id FROM contributions UNION SELECT guild_id FROM statements"
        " UNION SELECT guild_id FROM audit_log WHERE guild_id IS NOT NULL ORDER BY 1"
    )
    return [int(row[0]) for row in rows if row[0] is not None]


def report_as_dict(report: StatusReport) -> dict[str, object]:
    """The report as JSON-ready data (uptime in seconds, problems redacted as in the text form)."""
    data = asdict(report)
    data["uptime_seconds"] = report.uptime.total_seconds() if report.uptime is not None else None
    del data["uptime"]
    data["last_errors"] = [redact_text(line) for line in report.last_errors]
    return data


def format_uptime(delta: timedelta | None) -> str:
    if delta is None:
        return "not running"
    seconds = int(delta.total_seconds())
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    parts = [f"{days}d"] if days else []
    parts += [f"{hours}h"] if hours or days else []
    parts += [f"{minutes}m", f"{seconds}s"]
    return " ".join(parts)


def format_report(report: StatusReport) -> str:
    backlog = ", ".join(f"{state} {n}" for state, n in sorted(report.outbox.items())) or "empty"
    shown = ("feeds", "articles", "contributions", "statements", "signatures", "outbox", "audit_log")
    counts = ", ".join(f"{name} {report.counts.get(name, 0)}" for name in shown)
    latency = f"{report.latency_ms:.0f} ms" if report.latency_ms is not None else "n/a"
    lines = [
        f"**readersviews {report.version}** · up {format_uptime(report.uptime)} · gateway latency {latency}",
        f"Database: `{report.db_path}` (schema v{report.schema_version})",
        f"Rows: {counts}",
        f"Outbox: {backlog}",
    ]
    if report.process:
        lines.append(f"This process: {report.process}")
    if report.shed:
        lines.append(
            f"Over capacity: {report.shed} interaction(s) skipped since start because Discord had already "
            "expired them (their members saw 'This interaction failed')"
        )
    if report.last_errors:
        lines.append("Recent problems:")
        lines += [f"- {redact_text(line)}"[:300] for line in report.last_errors[-5:]]
    else:
        lines.append("Recent problems: none")
    return "\n".join(lines)


def describe_process(
    shard_count: int | None, shard_ids: Sequence[int] | None, jobs: Iterable[str] | None, guild_shard: int | None
) -> str | None:
    """ "shards 0, 1 of 4 (this server's: 1) · runs feeds, outbox": what an operator of several processes
    needs to know (None for the plain case: one unsharded process, which runs everything)."""
    parts = []
    if shard_count is not None:
        ids = list(shard_ids) if shard_ids is not None else list(range(shard_count))
        label = "shard" if len(ids) == 1 else "shards"
        here = f" (this server's: {guild_shard})" if guild_shard is not None else ""
        parts.append(f"{label} {', '.join(map(str, ids))} of {shard_count}{here}")
    if jobs is not None:
        held = sorted(jobs)
        parts.append(f"runs {', '.join(held)}" if held else "runs no background job (another process does)")
    return " · ".join(parts) or None
