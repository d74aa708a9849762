"""Fast copies and JSON for the fake's payloads (orjson when installed; it is a bot dependency)."""

from __future__ import annotations

import copy
import json
from typing import Any, TypeVar

try:
    import orjson
except ImportError:  # pragma: no cover - orjson ships with the bot
    orjson = None  # type: ignore[assignment]

T = TypeVar("T")


def clone(value: T) -> T:
    """A deep copy of a JSON-like payload: an orjson round trip is ~10x faster than deepcopy."""
    if orjson is not None:
        try:
            copied: T = orjson.loads(orjson.dumps(value))
            return copied
        except TypeError:  # not plain JSON (tuples of objects, non-str keys): copy it the slow way
            pass
    return copy.deepcopy(value)


def dumps(value: Any) -> bytes:
    if orjson is not None:
        try:
            return orjson.dumps(value)
        except TypeError:
            pass
    return json.dumps(value, separators=(",", ":")).encode()


def loads(data: bytes | str) -> Any:
    """Parse JSON (orjson when installed)."""
    if orjson is not None:
        return orjson.loads(data)
    return json.loads(data)
