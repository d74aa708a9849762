"""Logging set-up with secrets redacted from every record."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime

# Discord bot tokens have a recognisable shape; redact them even if we were never told the value.
_TOKEN_SHAPE = re.compile(r"[MNO][A-Za-z\d_-]{23,25}\.[A-Za-z\d_-]{6}\.[A-Za-z\d_-]{27,38}")


class RedactingFilter(logging.Filter):
    """Replace known secret values (and anything shaped like a bot token) with [redacted]."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s and len(s) >= 6]

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return _TOKEN_SHAPE.sub("[redacted]", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self.redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        return True


# The ids a record may carry (`log.info(..., extra={"guild_id": ...})`), copied into JSON lines.
ID_FIELDS = (
    "guild_id",
    "channel_id",
    "thread_id",
    "message_id",
    "user_id",
    "feed_id",
    "article_id",
    "letter_id",
    "statement_id",
    "outbox_id",
)


def ids(**values: object) -> dict[str, object]:
    """`extra=` for a log call: the ids involved, None ones left out."""
    return {key: value for key, value in values.items() if value is not None}


def entity_ids(entity: str, **values: object) -> dict[str, object]:
    """`extra=` for an outbox entity such as "letter:12" or "statement:3" (letter_id=12), plus `values`."""
    kind, _, number = entity.partition(":")
    found: dict[str, object] = {f"{kind}_id": int(number)} if number.isdigit() and f"{kind}_id" in ID_FIELDS else {}
    return {**found, **ids(**values)}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the ids involved and any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ID_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: an id given as a discord object or a Path still gives a line that parses.
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup_logging(level: str, secrets: Iterable[str] = (), fmt: str = "text") -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # discord.py's gateway chatter is noise at INFO.
    logging.getLogger("discord").setLevel(max(logging.getLevelName(level), logging.INFO))
    logging.getLogger("discord.gateway").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # The bot never joins voice: discord.py's warnings about missing voice libraries are noise.
    logging.getLogger("discord.client").addFilter(
        lambda record: "voice will NOT be supported" not in record.getMessage()
    )
