"""Rate-limit buckets with Discord's headers, optionally enforced."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from typing import Any

MESSAGE_CREATE_ROUTE = "POST /channels/{channel_id}/messages"


@dataclasses.dataclass
class _Window:
    limit: int
    per: float
    reset_at: float = 0.0
    used: int = 0

    def hit(self, at: float) -> tuple[bool, float]:
        """Count one request; return (allowed, seconds until reset)."""
        if at >= self.reset_at:
            self.reset_at = at + self.per
            self.used = 0
        if self.used >= self.limit:
            return False, self.reset_at - at
        self.used += 1
        return True, self.reset_at - at


@dataclasses.dataclass
class Verdict:
    headers: dict[str, str]
    limited: bool = False
    retry_after: float = 0.0
    is_global: bool = False
    scope: str = "user"


class RateLimits:
    """Per-route buckets (keyed by route template + major parameter) and a global limit.

    Headers are always sent. Enforcement (429 answers) is off until :meth:`enable`. While off,
    buckets advertise a generous limit so the client never pre-emptively sleeps.
    """

    def __init__(self) -> None:
        self.enabled = False
        self.per_channel_messages: tuple[int, float] = (5, 5.0)
        self.default: tuple[int, float] = (50, 1.0)
        self.global_per_second: int = 50
        self._buckets: dict[str, _Window] = {}
        self._global = _Window(50, 1.0)

    def enable(
        self,
        per_channel_messages: tuple[int, float] = (5, 5.0),
        global_per_second: int = 50,
        default: tuple[int, float] = (50, 1.0),
    ) -> None:
        self.enabled = True
        self.per_channel_messages = per_channel_messages
        self.global_per_second = global_per_second
        self.default = default
        self._buckets.clear()
        self._global = _Window(global_per_second, 1.0)

    def disable(self) -> None:
        self.enabled = False
        self._buckets.clear()

    @staticmethod
    def bucket_hash(route: str) -> str:
        return hashlib.sha1(route.encode()).hexdigest()[:32]

    def check(self, route: str, major: str, *, global_applies: bool = True) -> Verdict:
        at = time.monotonic()
        if self.enabled:
            limit, per = self.per_channel_messages if route == MESSAGE_CREATE_ROUTE else self.default
        else:
            limit, per = (10_000, 1.0)
        key = f"{route}:{major}"
        win = self._buckets.get(key)
        if win is None or win.limit != limit:
            win = self._buckets[key] = _Window(limit, per)
        if self.enabled and global_applies:
            ok, reset_after = self._global.hit(at)
            if not ok:
                return Verdict(
                    headers={"X-RateLimit-Global": "true", "X-RateLimit-Scope": "global"},
                    limited=True,
                    retry_after=max(reset_after, 0.001),
                    is_global=True,
                    scope="global",
                )
        ok, reset_after = win.hit(at)
        remaining = max(win.limit - win.used, 0)
        headers = _headers(win.limit, remaining, reset_after, self.bucket_hash(route))
        if not ok and self.enabled:
            headers["X-RateLimit-Scope"] = "user"
            return Verdict(headers=headers, limited=True, retry_after=max(reset_after, 0.001))
        return Verdict(headers=headers)


def _headers(limit: int, remaining: int, reset_after: float, bucket: str) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
        "X-RateLimit-Reset-After": f"{reset_after:.3f}",
        "X-RateLimit-Bucket": bucket,
    }


def rate_limited_body(retry_after: float, is_global: bool) -> dict[str, Any]:
    return {"message": "You are being rate limited.", "retry_after": round(retry_after, 3), "global": is_global}
