"""Snowflake ids and timestamps shaped like Discord's."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time

DISCORD_EPOCH_MS = 1420070400000


class SnowflakeGenerator:
    """Timestamp-based ids: (ms since 2015) << 22 | worker << 17 | process << 12 | increment."""

    def __init__(self, worker: int = 1, process: int = 0) -> None:
        self._worker = worker & 0x1F
        self._process = process & 0x1F
        self._counter = itertools.count()
        self._lock = threading.Lock()
        self._last = 0

    def next(self, at: dt.datetime | None = None) -> int:
        with self._lock:
            ms = int(time.time() * 1000) if at is None else int(at.timestamp() * 1000)
            inc = next(self._counter) & 0xFFF
            value = ((ms - DISCORD_EPOCH_MS) << 22) | (self._worker << 17) | (self._process << 12) | inc
            if at is None and value <= self._last:
                # keep ids strictly increasing for ids generated "now"
                value = self._last + 1
            if at is None:
                self._last = value
            return value


def snowflake_time(snowflake: int) -> dt.datetime:
    ms = (int(snowflake) >> 22) + DISCORD_EPOCH_MS
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


def iso(when: dt.datetime | None = None) -> str:
    """Discord's timestamp format, e.g. ``2024-05-01T12:34:56.789000+00:00``."""
    when = when or dt.datetime.now(dt.UTC)
    return when.astimezone(dt.UTC).isoformat(timespec="microseconds")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
