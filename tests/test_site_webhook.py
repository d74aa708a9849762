"""The webhook adapter: documented signature, idempotency, error classes, and docs/webhook.md itself."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.config import WebhookSettings
from bot.site.base import PermanentSiteError, SiteItem, TransientSiteError
from bot.site.compose import Letter, Signatory, Statement, compose_letter, compose_statement
from bot.site.webhook import WebhookAdapter, sign, verify
from tests.helpers import FakeClock
from tests.sitefake import WEBHOOK_SECRET, FakeSite

DOCS = Path(__file__).resolve().parent.parent / "docs"


def hook(url: str, http: httpx.AsyncClient, secret: str = WEBHOOK_SECRET) -> WebhookAdapter:
    return WebhookAdapter(WebhookSettings(url=url, timeout=5), secret, http)


def letter(n: int = 1, key: str | None = None) -> SiteItem:
    item = compose_letter(
        Letter(id=n, text="Dear editor", byline="Ann", article_title="Bridges", article_link="https://p.example/b"),
        disclaimer="Own views.",
    )
    return item.model_copy(update={"idempotency_key": key or f"letter:{n}:create:1", "occurred_at": "2026-01-01"})


async def test_signature_follows_the_documented_algorithm(http):
    """sha256= hex HMAC-SHA256(secret, "<timestamp>.<raw body>"), Idempotency-Key = body id."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": "p-1", "url": "https://p.example/p-1"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        adapter = WebhookAdapter(WebhookSettings(url="https://p.example/hook"), "s3cret", client)
        ref = await adapter.create(letter())
    assert (ref.remote_id, ref.url) == ("p-1", "https://p.example/p-1")
    [request] = seen
    body = request.content
    timestamp = request.headers["X-Readersviews-Timestamp"]
    expected = hmac.new(b"s3cret", f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert request.headers["X-Readersviews-Signature"] == f"sha256={expected}"
    assert request.headers["Idempotency-Key"] == json.loads(body)["id"] == "letter:1:create:1"
    assert request.headers["X-Readersviews-Event"] == "letter.create"
    now = int(timestamp)
    assert verify("s3cret", timestamp, body, request.headers["X-Readersviews-Signature"], now=now)
    assert not verify("s3cret", timestamp, body + b" ", request.headers["X-Readersviews-Signature"], now=now)
    assert not verify("other", timestamp, body, request.headers["X-Readersviews-Signature"], now=now)
    assert not verify("s3cret", timestamp, body, request.headers["X-Readersviews-Signature"], now=now + 301)


async def test_receiver_accepts_ping_and_dedupes_retries(site: FakeSite, http):
    """check() pings; a create re-sent with the same key is one item on the receiver, same answer."""
    adapter = hook(site.webhook_url, http)
    assert "accepted a signed ping" in await adapter.check()
    first = await adapter.create(letter(1))
    again = await adapter.create(letter(1))
    assert first == again and first.remote_id
    assert site.stats()["webhook_created_entities"] == 1
    assert site.webhook_deliveries["letter:1:create:1"] == 2
    assert site.webhook_rejected == 0


async def test_wrong_secret_is_permanent_with_a_hint(site: FakeSite, http):
    with pytest.raises(PermanentSiteError, match="READERSVIEWS_WEBHOOK_SECRET"):
        await hook(site.webhook_url, http, secret="wrong").check()
    assert site.webhook_rejected == 1


async def test_error_classes(site: FakeSite, http):
    """5xx and 429 retry (429 with Retry-After); a missing URL is permanent; 410 on retract is done."""
    adapter = hook(site.webhook_url, http)
    site.fail_next(1, 503)
    with pytest.raises(TransientSiteError):
        await adapter.create(letter())
    site.fail_next(1, 429, {"Retry-After": "30"})
    with pytest.raises(TransientSiteError) as limited:
        await adapter.create(letter())
    assert limited.value.retry_after == 30 and not limited.value.outcome_unknown
    with pytest.raises(PermanentSiteError, match=r"check site\.webhook\.url") as missing:
        await hook(site.base_url + "/nothing-here?token=t0ps3cret", http).create(letter())
    assert "t0ps3cret" not in str(missing.value)  # the message may reach Discord and the logs
    site.fail_next(1, 410)
    await adapter.retract("wh-1", letter(key="letter:1:retract:1"))


def _check(schema: dict[str, Any], value: Any, where: str = "$") -> None:
    """Enough of JSON Schema for our own schema: type, enum, required, properties, items."""
    types = {"object": dict, "array": list, "string": str, "integer": int, "null": type(None), "boolean": bool}
    wanted = schema.get("type")
    if wanted is not None:
        names = wanted if isinstance(wanted, list) else [wanted]
        assert any(isinstance(value, types[name]) for name in names), f"{where}: {value!r} is not {names}"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if isinstance(value, dict):
        for key in schema.get("required", []):
            assert key in value, f"{where}: missing {key}"
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            assert set(value) <= set(properties), f"{where}: unexpected {set(value) - set(properties)}"
        for key, sub in properties.items():
            if key in value:
                _check(sub, value[key], f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for index, element in enumerate(value):
            _check(schema["items"], element, f"{where}[{index}]")


def test_bodies_match_the_published_schema():
    schema = json.loads((DOCS / "webhook.schema.json").read_text())
    adapter = WebhookAdapter(WebhookSettings(url="https://p.example/hook"), "s", clock=FakeClock())
    statement = compose_statement(
        Statement(
            id=2,
            title="S",
            body="B",
            signatories=[Signatory(name="N", city="C", kind="organization")],
            status="closed",
            signature_count=3,
            closed_at=datetime(2026, 1, 1, tzinfo=UTC),
        )
    ).model_copy(update={"idempotency_key": "statement:2:update:5"})
    assert statement.metadata["final"] is True and statement.metadata["signature_count"] == 3
    bodies = [
        adapter.body_for("create", letter(), None),
        adapter.body_for("update", statement, "wh-9"),
        adapter.body_for("retract", letter(key="letter:1:retract:2"), "wh-1"),
        adapter.envelope("ping", "ping:1", None, "2026-01-01T00:00:00+00:00", {"message": "hi"}),
    ]
    for body in bodies:
        _check(schema, json.loads(json.dumps(body)))


async def test_the_documented_python_receiver_works(http, monkeypatch):
    """The stdlib receiver in docs/webhook.md verifies our signature, rejects a bad one, dedupes by key."""
    text = (DOCS / "webhook.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S)
    assert code is not None
    monkeypatch.setenv("READERSVIEWS_WEBHOOK_SECRET", "docs-secret")
    namespace: dict[str, Any] = {"__name__": "docs_receiver"}
    exec(compile(code.group(1), "docs/webhook.md", "exec"), namespace)
    published: list[dict[str, Any]] = []
    namespace["publish"] = lambda event: published.append(event) or {"id": event["entity"], "url": None}

    from http.server import HTTPServer

    server = HTTPServer(("127.0.0.1", 0), namespace["Receiver"])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        adapter = hook(url, http, secret="docs-secret")
        ref = await adapter.create(letter(5))
        assert await adapter.create(letter(5)) == ref  # the retry: same answer, not published again
        assert ref.remote_id == "letter:5" and len(published) == 1
        with pytest.raises(PermanentSiteError):
            await hook(url, http, secret="not-the-secret").create(letter(6))
        assert len(published) == 1
    finally:
        server.shutdown()
        server.server_close()


def test_verify_rejects_a_non_ascii_signature():
    """A garbled signature header is a bad signature, not a crash in the receiver."""
    assert not verify("k", "1700000000", b"{}", "sha256=caf\u00e9", now=1700000000)


def test_sign_is_stable():
    assert sign("k", 1700000000, b"{}") == "sha256=" + hmac.new(b"k", b"1700000000.{}", hashlib.sha256).hexdigest()


async def test_a_huge_answer_is_not_read_into_memory() -> None:
    """A receiver answering 2xx with a gzip bomb (64 MiB of zeros in a few kB): the bot stops reading at
    its cap and retries later (the same idempotency key), instead of holding it all in memory."""
    from tests.feedserver import gzip_of_zeros

    bomb = gzip_of_zeros(64)
    read: list[int] = []

    class Trickle(httpx.AsyncByteStream):
        async def __aiter__(self) -> Any:
            for start in range(0, len(bomb), 1024):
                read.append(start)
                yield bomb[start : start + 1024]

    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        return httpx.Response(200, headers=headers, stream=Trickle())

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        adapter = WebhookAdapter(WebhookSettings(url="https://p.example/hook"), "s3cret", client)
        with pytest.raises(TransientSiteError, match="answered more than") as huge:
            await adapter.create(letter())
    assert huge.value.outcome_unknown
    assert len(read) < len(bomb) // 1024  # it stopped reading
