"""The one place that uses httpx's private internals (tests/test_internals.py fails loudly if they change).

- `Response._content`: what `aread()` sets. `bot.site.base.send` reads an answer itself, decoded and
  up to a cap, and hands it on as an ordinary read response (`.content`, `.text`, `.json()`).
"""

from __future__ import annotations

import httpx


def set_read_body(response: httpx.Response, body: bytes) -> None:
    """Make a streamed response whose (decoded) body the caller read itself behave as read."""
    response._content = body
