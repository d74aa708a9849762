"""What the operator sees first: the bot's health in one report (for /readersviews status and the CLI)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot import __version__
from bot.store import Store


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


async def collect_status(
    store: Store,
    *,
    started_at: datetime | None,
    now: datetime,
    latency: float | None,
    recent: list[tuple[str, str]],
    shed: int = 0,
) -> StatusReport:
    counts = await store.db.table_counts()
    outbox = {
        row["state"]: int(row["n"])
        for row in await store.db.fetchall("SELECT state, count(*) AS n FROM outbox GROUP BY state")
    }
    errors = [f"{when} {text}" for when, text in recent[-5:]]
    for row in await store.db.fetchall(
        "SELECT url, last_error, last_poll_at FROM feeds WHERE last_error IS NOT NULL"
        " ORDER BY last_poll_at DESC LIMIT 3"
    ):
        errors.append(f"{row['last_poll_at']} feed {row['url']}: {row['last_error']}")
    for row in await store.db.fetchall(
        "SELECT id, kind, last_error, updated_at FROM outbox WHERE state = 'dead' ORDER BY updated_at DESC LIMIT 3"
    ):
        errors.append(f"{row['updated_at']} outbox #{row['id']} ({row['kind']}): {row['last_error']}")
    latency_ms = None if latency is None or latency != latency or latency == float("inf") else latency * 1000
    return StatusReport(
        version=__version__,
        uptime=(now - started_at) if started_at else None,
        latency_ms=latency_ms,
        db_path=str(store.db.path),
        schema_version=await store.db.schema_version(),
        counts=counts,
        outbox=outbox,
        last_errors=errors,
        shed=shed,
    )


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
    if report.shed:
        lines.append(
            f"Over capacity: {report.shed} interaction(s) skipped since start because Discord had already "
            "expired them (their members saw 'This interaction failed')"
        )
    if report.last_errors:
        lines.append("Recent problems:")
        lines += [f"- {line}"[:300] for line in report.last_errors[-5:]]
    else:
        lines.append("Recent problems: none")
    return "\n".join(lines)
