"""Generic signed JSON webhook (see docs/webhook.md for the receiver's side).

Every event is one POST of a JSON body:

    {"event": "letter.create", "id": <idempotency key>, "entity": "letter:42",
     "occurred_at": "...", "data": {...}}

with headers X-Readersviews-Timestamp (unix seconds), X-Readersviews-Signature
("sha256=" + hex HMAC-SHA256(secret, f"{timestamp}.{body}")) and Idempotency-Key (= "id").
A retry re-sends the same key; the receiver must treat a key it has seen as already done and answer
2xx again (with the same {"id", "url"} if it has them). That is why `lookup` returns None here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

import httpx

from bot.clock import Clock, SystemClock, to_db
from bot.config import WebhookSettings
from bot.site.base import (
    PermanentSiteError,
    RemoteRef,
    SiteItem,
    TransientSiteError,
    parse_retry_after,
    redact_text,
    redact_url,
    send,
    short,
)

SIGNATURE_HEADER = "X-Readersviews-Signature"
TIMESTAMP_HEADER = "X-Readersviews-Timestamp"
EVENT_HEADER = "X-Readersviews-Event"
IDEMPOTENCY_HEADER = "Idempotency-Key"


def sign(secret: str | bytes, timestamp: int | str, body: bytes) -> str:
    """The signature header value: "sha256=" + hex HMAC-SHA256(secret, "<timestamp>.<body>")."""
    key = secret.encode() if isinstance(secret, str) else secret
    mac = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: str | bytes, timestamp: str, body: bytes, signature: str, *, now: float, tolerance: float = 300
) -> bool:
    """What a receiver does: constant-time compare, and reject stale or future timestamps."""
    try:
        moment = int(timestamp)
    except ValueError:
        return False
    if abs(now - moment) > tolerance:
        return False
    if not signature.isascii():  # compare_digest raises TypeError on non-ASCII text
        return False
    return hmac.compare_digest(sign(secret, moment, body), signature)


class WebhookAdapter:
    name = "webhook"

    def __init__(
        self,
        settings: WebhookSettings,
        secret: str,
        client: httpx.AsyncClient | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        if settings.url is None:
            raise ValueError("WebhookAdapter needs site.webhook.url")
        if not secret:
            raise ValueError("WebhookAdapter needs a secret")
        self._url = str(settings.url)
        self._secret = secret.encode()
        self._timeout = settings.timeout
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(follow_redirects=False)
        self._clock = clock or SystemClock()

    async def create(self, item: SiteItem) -> RemoteRef:
        return await self._deliver("create", item, remote_id=None)

    async def update(self, remote_id: str | None, item: SiteItem) -> RemoteRef:
        ref = await self._deliver("update", item, remote_id=remote_id)
        return RemoteRef(ref.remote_id or remote_id, ref.url)

    async def retract(self, remote_id: str | None, item: SiteItem) -> None:
        try:
            await self._deliver("retract", item, remote_id=remote_id)
        except PermanentSiteError as exc:
            if exc.status == 410:  # the receiver says it is already gone
                return
            raise

    async def lookup(self, item: SiteItem) -> RemoteRef | None:
        # The receiver dedupes by Idempotency-Key: re-sending the create is the lookup.
        return None

    async def check(self) -> str:
        key = f"ping:{uuid.uuid4()}"
        body = self.envelope("ping", key, None, to_db(self._clock.now()), {"message": "readersviews check"})
        await self._post(body, key, what="ping")
        return f"webhook {redact_url(self._url)}: the receiver accepted a signed ping"

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    # -- plumbing -------------------------------------------------------------------------------

    @staticmethod
    def envelope(
        event: str, key: str, entity: str | None, occurred_at: str | None, data: dict[str, Any]
    ) -> dict[str, Any]:
        return {"event": event, "id": key, "entity": entity, "occurred_at": occurred_at, "data": data}

    def body_for(self, action: str, item: SiteItem, remote_id: str | None) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": item.kind, "remote_id": remote_id}
        if action != "retract":
            data.update(
                slug=item.slug,
                title=item.title,
                html=item.html,
                status=item.status,
                metadata=item.metadata,
            )
        occurred = item.occurred_at or to_db(self._clock.now())
        return self.envelope(f"{item.kind}.{action}", item.idempotency_key, item.entity, occurred, data)

    async def _deliver(self, action: str, item: SiteItem, *, remote_id: str | None) -> RemoteRef:
        if not item.idempotency_key:
            raise ValueError("a webhook delivery needs item.idempotency_key")
        body = self.body_for(action, item, remote_id)
        answer = await self._post(body, item.idempotency_key, what=f"{item.kind}.{action} {item.entity}")
        rid = answer.get("id")
        url = answer.get("url")
        # Optional: a receiver that holds items for its editors may say so ("pending" or "draft").
        status = answer.get("status")
        return RemoteRef(
            str(rid) if rid not in (None, "") else None,
            url if isinstance(url, str) else None,
            status if status in ("pending", "draft", "publish") else None,
        )

    async def _post(self, body: dict[str, Any], key: str, *, what: str) -> dict[str, Any]:
        raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        timestamp = int(self._clock.now().timestamp())
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self._secret, timestamp, raw),
            IDEMPOTENCY_HEADER: key,
            EVENT_HEADER: body["event"],
        }
        response = await send(
            self._client,
            "POST",
            self._url,
            seconds=self._timeout,
            what="the webhook receiver",
            content=raw,
            headers=headers,
        )
        status = response.status_code
        if 200 <= status < 300:
            try:
                answer = response.json() if response.content.strip() else {}
            except ValueError:
                answer = {}
            return answer if isinstance(answer, dict) else {}
        said = f"{status}: {short(redact_text(response.text), 160)}" if response.text.strip() else str(status)
        if status in (408, 409, 425, 429) or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), self._clock.now())
            raise TransientSiteError(
                f"the webhook receiver answered {said} to {what}",
                retry_after=retry_after,
                outcome_unknown=status >= 500,
            )
        if status in (401, 403):
            raise PermanentSiteError(
                f"the webhook receiver refused the signature ({said}): check that READERSVIEWS_WEBHOOK_SECRET "
                "matches the receiver's secret and that both clocks are right",
                status=status,
                site_wide=True,
            )
        if status in (404, 405):
            raise PermanentSiteError(
                f"no webhook receiver at {redact_url(self._url)} ({said}): check site.webhook.url",
                status=status,
                site_wide=True,
            )
        if status == 410:
            raise PermanentSiteError(f"the webhook receiver says {what} is gone ({said})", status=status)
        raise PermanentSiteError(
            f"the webhook receiver rejected {what} ({said}): see docs/webhook.md for the body it should accept",
            status=status,
        )
