"""What every site adapter offers, the item it publishes, and the two kinds of failure.

An adapter turns a `SiteItem` into something on the site (a WordPress post, a webhook event).
The outbox worker decides *when* to call it and what to do when it fails; the adapter only
reports *how* it failed:

- `TransientSiteError`: try again later (5xx, timeouts, connection errors, 429 with Retry-After).
- `PermanentSiteError`: retrying will not help until a person fixes something; the message is one
  sentence that says what to fix.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.site.httpx_internals import set_read_body

ItemKind = Literal["letter", "digest", "statement"]
PostStatus = Literal["pending", "draft", "publish"]
Action = Literal["create", "update", "retract"]

MAX_ANSWER_BYTES = 16 << 20  # a site's answer, decoded: a post with thousands of signers is a few MiB
_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


class SiteError(Exception):
    """A failure talking to the site, phrased for the operator."""


class TransientSiteError(SiteError):
    """Worth retrying later; `retry_after` (seconds) when the site said how long to wait."""

    def __init__(self, message: str, *, retry_after: float | None = None, outcome_unknown: bool = True) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        # False only when the site certainly did not apply the request (e.g. 429, connect refused).
        self.outcome_unknown = outcome_unknown


class PermanentSiteError(SiteError):
    """Retrying will not help until someone fixes what the message says."""

    def __init__(
        self, message: str, *, status: int | None = None, code: str | None = None, site_wide: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        # True when every item would fail the same way (credentials refused, wrong URL): the outbox
        # treats it as one incident and lets items wait, instead of giving up on each of them.
        self.site_wide = site_wide


@dataclass(frozen=True, slots=True)
class RemoteRef:
    """Where an item lives on the site; both None when nothing leaves the bot (site.kind none)."""

    remote_id: str | None
    url: str | None = None
    status: str | None = None
    """The post's status on the site when it said so (WordPress: pending, draft, publish, ...)."""


class SiteItem(BaseModel):
    """One thing to publish on the site, already rendered to safe HTML.

    `idempotency_key` and `occurred_at` are the outbox envelope: the worker fills them in from the
    outbox row before calling the adapter, so every retry carries the same values.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ItemKind
    entity: str = Field(min_length=3, max_length=100)
    """Stable key of the thing in the bot, e.g. "letter:42"."""
    slug: str = Field(default="", max_length=190)
    """ASCII slug, deterministic per entity (lookup after an unknown outcome relies on it)."""
    title: str = ""
    html: str = ""
    status: PostStatus | None = None
    """Overrides the configured post status (digests are always drafts)."""
    metadata: dict[str, Any] = {}
    """Structured data the webhook sends as-is (byline, article, signatories, ...)."""
    idempotency_key: str = ""
    occurred_at: str | None = None

    @field_validator("slug")
    @classmethod
    def _ascii_slug(cls, value: str) -> str:
        if value and not _SLUG.match(value):
            raise ValueError("slug must be lowercase ASCII letters, digits and single hyphens")
        return value


@runtime_checkable
class SiteAdapter(Protocol):
    """The site, as the outbox worker sees it."""

    name: str

    async def create(self, item: SiteItem) -> RemoteRef:
        """Publish a new item; the idempotency key is `item.idempotency_key`."""
        ...

    async def update(self, remote_id: str | None, item: SiteItem) -> RemoteRef:
        """Replace title and body of an item created earlier."""
        ...

    async def retract(self, remote_id: str | None, item: SiteItem) -> None:
        """Take an item down (WordPress: move to trash). Already gone counts as done."""
        ...

    async def lookup(self, item: SiteItem) -> RemoteRef | None:
        """Find an item whose create had an unknown outcome, or None if it is not on the site.

        Adapters whose receiver dedupes by idempotency key (the webhook) return None: re-sending
        the create with the same key is safe there.
        """
        ...

    async def check(self) -> str:
        """Verify settings and credentials; a one-line description, or PermanentSiteError.

        The outbox also uses it as the probe that ends a site-wide incident.
        """
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class StatusAdapter(Protocol):
    """An adapter that can tell where a post stands on the site (WordPress; not the webhook)."""

    async def fetch_status(self, remote_id: str, kind: str = "letter") -> RemoteRef:
        """The post's current status and link; status "deleted" if the site no longer has it."""
        ...


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def redact_url(url: str) -> str:
    """The URL without credentials or query string (they may hold secrets), for messages and logs."""
    try:
        parts = urlsplit(str(url))
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = ("***@" if "@" in parts.netloc else "") + host + port
    return urlunsplit((parts.scheme, netloc, parts.path, "***" if parts.query else "", ""))


# A credential header quoted back by a site (`Authorization: Basic ...`, or as JSON `"authorization":
# "Basic ..."`), and an auth scheme's token anywhere in text. Basic tokens are base64 (length a
# multiple of 4), which keeps words such as "Basic authentication" readable.
_CREDENTIAL_HEADER = re.compile(
    r"(?i)\b((?:proxy-)?authorization|cookie|x-api-key|x-wp-nonce)(\\?[\"']?\s*[:=]\s*\[?\s*\\?[\"']?)"
    r"[^\"'\\\r\n,;}\]]*"
)
_SCHEME_TOKEN = re.compile(r"(?i)\b(basic|bearer)(\s+)([A-Za-z0-9+/._~-]+=*)")


def _scheme_token(match: re.Match[str]) -> str:
    scheme, space, token = match.groups()
    if scheme.lower() == "basic" and (len(token) % 4 or len(token) < 8):
        return match.group(0)
    if scheme.lower() == "bearer" and len(token) < 12:
        return match.group(0)
    return f"{scheme}{space}[redacted]"


def redact_text(text: str) -> str:
    """`text` with every URL in it passed through `redact_url`, and credentials a site quoted back
    (authorization headers, Basic and Bearer tokens) replaced by [redacted]: for anything stored,
    logged or shown."""
    text = _URL_IN_TEXT.sub(_redact_match, text)
    text = _CREDENTIAL_HEADER.sub(lambda match: f"{match.group(1)}{match.group(2)}[redacted]", text)
    return _SCHEME_TOKEN.sub(_scheme_token, text)


_TRAILING_PUNCTUATION = ".,;:!?)]}"


def _redact_match(match: re.Match[str]) -> str:
    """A URL found in prose: punctuation after it ("at http://host:8080: refused") is not part of it."""
    url = match.group(0)
    core = url.rstrip(_TRAILING_PUNCTUATION)
    return redact_url(core) + url[len(core) :]


def short(text: str, limit: int = 200) -> str:
    """One line of at most `limit` characters, for error messages."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    seconds: float,
    what: str,
    **kwargs: Any,
) -> httpx.Response:
    """One HTTP request with a hard deadline; transport failures become TransientSiteError.

    httpx timeouts are per phase (connect, read, ...), so a server that trickles bytes could hold
    a request for ever; the outer deadline makes a hanging site cost at most ~2x `seconds`.
    """
    try:
        async with asyncio.timeout(seconds * 2):
            sending = {k: kwargs.pop(k) for k in ("auth", "follow_redirects") if k in kwargs}
            request = client.build_request(method, url, timeout=seconds, **kwargs)
            response = await client.send(request, stream=True, **sending)
            try:  # read up to a cap: a site's answer (gzip: decoded) could otherwise fill the memory
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_ANSWER_BYTES:
                        raise TransientSiteError(
                            f"{what} answered more than {MAX_ANSWER_BYTES >> 20} MiB (HTTP {response.status_code}),"
                            " so I stopped reading it"
                        )
            finally:
                await response.aclose()
            set_read_body(response, bytes(body))
            return response
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        raise TransientSiteError(
            f"cannot connect to {what} at {redact_url(url)}"
            f" ({type(exc).__name__}: {redact_text(short(str(exc), 120)) or 'no detail'})",
            outcome_unknown=False,
        ) from None
    except httpx.PoolTimeout:
        raise TransientSiteError(
            f"no free HTTP connection for {what} within {seconds:g}s", outcome_unknown=False
        ) from None
    except (httpx.TimeoutException, TimeoutError):
        raise TransientSiteError(f"{what} did not answer within {seconds:g}s ({method} {redact_url(url)})") from None
    except httpx.TransportError as exc:
        raise TransientSiteError(
            f"connection to {what} failed mid-request"
            f" ({type(exc).__name__}: {redact_text(short(str(exc), 120)) or 'no detail'})"
        ) from None
