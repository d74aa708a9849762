"""A loopback "site" for tests and benchmarks: a WordPress REST API and a webhook receiver in one.

    site = FakeSite()
    await site.start()
    site.wp_url            # http://127.0.0.1:PORT  (REST under /wp-json/wp/v2)
    site.webhook_url       # http://127.0.0.1:PORT/webhook
    site.fail_next(3, 503)
    site.reset_after_apply()          # apply the next POST, then drop the connection
    site.copies("readers-view-1-x")   # how many live posts came from that slug
    await site.stop()

It imitates what real WordPress does (checked against one): Basic auth with an application
password (spaces ignored; a wrong one is silently an anonymous visitor), WP error bodies
{"code", "message", "data": {"status"}}, duplicate slugs renamed slug-2, slug-3 (pending too),
DELETE moves to the trash (slug + "__trashed", second DELETE 410), status=any excluding trash.

The webhook receiver verifies the documented signature and timestamp, dedupes by
Idempotency-Key and answers {"id", "url"}.

Run as a separate process (benchmarks): `python tests/sitefake.py [--port N]` prints
"READY <url>"; /_fake/stats, /_fake/reset and /_fake/faults control it over HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

WP_USER = "editor"
WP_PASSWORD = "abcd EFGH 1234 ijkl MNOP 5678"
WEBHOOK_SECRET = "webhook-test-secret"


@dataclass
class Fault:
    kind: str  # status | reset_after | reset_before | hang | stall | pass
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    path: str | None = None  # substring of the path it applies to
    method: str | None = None

    def matches(self, request: web.Request) -> bool:
        if self.path is not None and self.path not in request.path:
            return False
        return self.method is None or self.method == request.method


def _wp_error(status: int, code: str, message: str, **data: Any) -> web.Response:
    return web.json_response({"code": code, "message": message, "data": {"status": status, **data}}, status=status)


def _slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "post"


class FakeSite:
    def __init__(
        self,
        *,
        wp_user: str = WP_USER,
        wp_password: str = WP_PASSWORD,
        webhook_secret: str = WEBHOOK_SECRET,
        tolerance: float | None = 300.0,
        seed: int = 0,
    ) -> None:
        self.wp_user = wp_user
        self.wp_password = wp_password
        self.webhook_secret = webhook_secret
        self.tolerance = tolerance
        self._rng = random.Random(seed)
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self._stalled = asyncio.Event()  # a request is held by a `stall_after` fault
        self._request_seen = asyncio.Event()
        self.base_url = ""
        self.reset()

    def reset(self) -> None:
        """Forget all content, counters and faults."""
        self.posts: dict[int, dict[str, Any]] = {}
        self._by_slug: dict[tuple[str, str], set[int]] = {}  # (type, slug) -> post ids
        self._next_id = 100
        self.requests: list[tuple[str, str]] = []
        self.faults: list[Fault] = []
        self.random_failure: tuple[float, int] | None = None
        self.webhook_answers: dict[str, dict[str, Any]] = {}
        self.webhook_events: list[dict[str, Any]] = []  # unique (first delivery of each key)
        self.webhook_deliveries: Counter[str] = Counter()  # every delivery, by key
        self.webhook_rejected = 0
        self.webhook_remote: dict[str, str] = {}  # entity -> remote id
        self.applied = 0  # requests that changed something

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application(middlewares=[self._faults_middleware])
        app.router.add_route("*", "/_fake/{action}", self._control)
        app.router.add_post("/webhook", self._webhook)
        app.router.add_get("/wp-json/wp/v2/users/me", self._users_me)
        app.router.add_route("*", r"/wp-json/wp/v2/{type:posts|pages}", self._collection)
        app.router.add_route("*", r"/wp-json/wp/v2/{type:posts|pages}/{id:\d+}", self._single)
        app.router.add_route("*", "/{tail:.*}", self._no_route)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
        bound = sockets[0].getsockname()[1]
        self.base_url = f"http://{host}:{bound}"
        return self.base_url

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def wp_url(self) -> str:
        return self.base_url

    @property
    def webhook_url(self) -> str:
        return self.base_url + "/webhook"

    async def wait_for_requests(self, count: int = 1) -> None:
        """Until at least `count` requests (excluding /_fake) have arrived."""
        while len(self.requests) < count:
            self._request_seen.clear()
            await self._request_seen.wait()

    # -- fault injection ------------------------------------------------------------------------

    def fail_next(
        self,
        n: int = 1,
        status: int = 503,
        headers: dict[str, str] | None = None,
        *,
        path: str | None = None,
        method: str | None = None,
    ) -> None:
        """The next `n` matching requests are answered `status` without being applied."""
        for _ in range(n):
            self.faults.append(Fault("status", status, dict(headers or {}), path=path, method=method))

    def reset_after_apply(self, n: int = 1, *, path: str | None = None, method: str | None = "POST") -> None:
        """Apply the next request, then drop the connection: the client cannot know it worked."""
        for _ in range(n):
            self.faults.append(Fault("reset_after", path=path, method=method))

    def reset_before_apply(self, n: int = 1, *, path: str | None = None, method: str | None = None) -> None:
        for _ in range(n):
            self.faults.append(Fault("reset_before", path=path, method=method))

    def hang_next(self, n: int = 1, seconds: float = 60.0, *, path: str | None = None) -> None:
        """Sit on the next request for `seconds` (longer than the client's timeout), then apply it."""
        for _ in range(n):
            self.faults.append(Fault("hang", seconds=seconds, path=path))

    def stall_after(self, n: int, *, path: str | None = None, method: str | None = "POST") -> None:
        """Serve `n` matching requests normally, then sit on the next one without answering or applying
        it, until the site stops (a site gone silent mid-request: the client cannot know the outcome)."""
        for _ in range(n):
            self.faults.append(Fault("pass", path=path, method=method))
        self.faults.append(Fault("stall", path=path, method=method))

    async def wait_for_stall(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Until a request is held by `stall_after`."""
        await asyncio.wait_for(self._stalled.wait(), timeout)

    def fail_randomly(self, ratio: float, status: int = 503) -> None:
        """Answer `status` to that share of requests (seeded, so runs repeat)."""
        self.random_failure = (ratio, status) if ratio > 0 else None

    # -- what is on the "site" ------------------------------------------------------------------

    def live_posts(self, type_: str | None = None) -> list[dict[str, Any]]:
        return [
            post
            for post in self.posts.values()
            if post["status"] != "trash" and (type_ is None or post["type"] == type_)
        ]

    def copies(self, slug: str) -> int:
        """How many live posts were created asking for `slug` (more than 1 is a duplicate)."""
        return sum(1 for post in self.live_posts() if post["requested_slug"] == slug)

    def post_by_id(self, remote_id: str | int) -> dict[str, Any]:
        return self.posts[int(remote_id)]

    def set_status(self, remote_id: str | int, status: str) -> None:
        """What an editor does in wp-admin: publish a pending post, move one to the trash..."""
        self.posts[int(remote_id)]["status"] = status

    def stats(self) -> dict[str, Any]:
        by_slug = Counter(post["requested_slug"] for post in self.live_posts())
        by_entity = Counter(event["entity"] for event in self.webhook_events if event["event"].endswith(".create"))
        return {
            "requests": len(self.requests),
            "applied": self.applied,
            "live_posts": len(self.live_posts()),
            "unique_posts": len(by_slug),
            "duplicate_posts": sum(count - 1 for count in by_slug.values()),
            "webhook_unique_events": len(self.webhook_events),
            "webhook_deliveries": sum(self.webhook_deliveries.values()),
            "webhook_created_entities": len(by_entity),
            "webhook_duplicate_creates": sum(count - 1 for count in by_entity.values()),
            "webhook_rejected": self.webhook_rejected,
        }

    # -- plumbing -------------------------------------------------------------------------------

    @web.middleware
    async def _faults_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/_fake/"):
            return await handler(request)
        self.requests.append((request.method, request.path_qs))
        self._request_seen.set()
        fault = next((f for f in self.faults if f.matches(request)), None)
        if fault is not None:
            self.faults.remove(fault)
        elif self.random_failure and self._rng.random() < self.random_failure[0]:
            fault = Fault("status", self.random_failure[1])
        if fault is None or fault.kind == "pass":
            return await handler(request)
        if fault.kind == "stall":
            self._stalled.set()
            await self._closing.wait()
            _drop_connection(request)
            return web.Response(status=500, text="(never seen: the connection is gone)")
        if fault.kind == "status":
            if fault.status == 429 or request.path.startswith("/wp-json"):
                return web.json_response(
                    {"code": "fake_fault", "message": f"injected {fault.status}", "data": {"status": fault.status}},
                    status=fault.status,
                    headers=fault.headers,
                )
            return web.Response(status=fault.status, text=f"injected {fault.status}", headers=fault.headers)
        if fault.kind == "hang":
            try:
                await asyncio.wait_for(self._closing.wait(), timeout=fault.seconds)
            except TimeoutError:
                pass
            return await handler(request)
        if fault.kind == "reset_after":
            await handler(request)
        _drop_connection(request)
        return web.Response(status=500, text="(never seen: the connection is gone)")

    async def _control(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        if action == "stats":
            return web.json_response(self.stats())
        if action == "reset":
            self.reset()
            return web.json_response({"ok": True})
        if action == "faults":
            spec = await request.json()
            if "fail_ratio" in spec:
                self.fail_randomly(float(spec["fail_ratio"]), int(spec.get("status", 503)))
            if "fail_next" in spec:
                self.fail_next(int(spec["fail_next"]), int(spec.get("status", 503)))
            return web.json_response({"ok": True})
        return web.json_response({"error": "unknown control action"}, status=404)

    async def _no_route(self, request: web.Request) -> web.Response:
        return _wp_error(404, "rest_no_route", "No route was found matching the URL and request method.")

    # -- WordPress ------------------------------------------------------------------------------

    def _authenticated(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        # Application passwords are compared without their spaces.
        return user == self.wp_user and password.replace(" ", "") == self.wp_password.replace(" ", "")

    async def _users_me(self, request: web.Request) -> web.Response:
        if not self._authenticated(request):
            return _wp_error(401, "rest_not_logged_in", "You are not currently logged in.")
        caps = {cap: True for cap in ("edit_posts", "publish_posts", "delete_posts", "edit_pages", "publish_pages")}
        caps["delete_pages"] = True
        return web.json_response(
            {"id": 1, "name": self.wp_user, "slug": self.wp_user, "roles": ["editor"], "capabilities": caps}
        )

    def _unique_slug(self, slug: str, type_: str, exclude: int | None = None) -> str:
        def taken(candidate: str) -> bool:
            return any(pid != exclude for pid in self._by_slug.get((type_, candidate), ()))

        if not taken(slug):
            return slug
        n = 2
        while taken(f"{slug}-{n}"):
            n += 1
        return f"{slug}-{n}"

    def _set_slug(self, post: dict[str, Any], slug: str) -> None:
        old = self._by_slug.get((post["type"], post.get("slug", "")))
        if old is not None:
            old.discard(post["id"])
        post["slug"] = slug
        self._by_slug.setdefault((post["type"], slug), set()).add(post["id"])

    def _render(self, post: dict[str, Any], edit: bool) -> dict[str, Any]:
        link = f"{self.base_url}/{post['slug']}/" if post["status"] == "publish" else f"{self.base_url}/?p={post['id']}"
        body = {
            "id": post["id"],
            "type": post["type"].rstrip("s"),
            "slug": post["slug"],
            "status": post["status"],
            "link": link,
            "title": {"rendered": post["title"]},
            "content": {"rendered": post["content"]},
            "categories": post["categories"],
            "tags": post["tags"],
        }
        if edit:
            body["title"]["raw"] = post["title"]
            body["content"]["raw"] = post["content"]
        return body

    async def _collection(self, request: web.Request) -> web.Response:
        type_ = request.match_info["type"]
        if request.method == "POST":
            if not self._authenticated(request):
                return _wp_error(401, "rest_cannot_create", "Sorry, you are not allowed to create posts as this user.")
            try:
                data = await request.json()
            except json.JSONDecodeError:
                return _wp_error(400, "rest_invalid_json", "Invalid JSON body passed.")
            status = data.get("status", "draft")
            if status not in ("publish", "pending", "draft", "private", "future"):
                return _wp_error(400, "rest_invalid_param", "Invalid parameter(s): status", params={"status": "bad"})
            requested = data.get("slug") or _slugify(str(data.get("title", "")))
            post_id = self._next_id
            self._next_id += 1
            post = {
                "id": post_id,
                "type": type_,
                "requested_slug": requested,
                "slug": "",
                "title": str(data.get("title", "")),
                "content": str(data.get("content", "")),
                "status": status,
                "categories": list(data.get("categories", [])),
                "tags": list(data.get("tags", [])),
            }
            self._set_slug(post, self._unique_slug(requested, type_))
            self.posts[post_id] = post
            self.applied += 1
            return web.json_response(self._render(post, True), status=201)
        if request.method != "GET":
            return _wp_error(404, "rest_no_route", "No route was found matching the URL and request method.")
        query = request.query
        statuses = query.get("status", "publish").split(",")
        edit = query.get("context") == "edit"
        if (statuses != ["publish"] or edit) and not self._authenticated(request):
            if edit:
                return _wp_error(
                    401, "rest_forbidden_context", "Sorry, you are not allowed to edit posts in this post type."
                )
            return _wp_error(
                400, "rest_invalid_param", "Invalid parameter(s): status", params={"status": "Status is forbidden."}
            )
        if query.get("slug"):
            ids = {pid for slug in query["slug"].split(",") for pid in self._by_slug.get((type_, slug), ())}
            candidates = [self.posts[pid] for pid in ids]
        else:
            candidates = list(self.posts.values())
        found = [
            post
            for post in candidates
            if post["type"] == type_
            and (post["status"] in statuses or ("any" in statuses and post["status"] != "trash"))
        ]
        found.sort(key=lambda p: p["id"], reverse=query.get("order", "desc") == "desc")
        per_page = int(query.get("per_page", "10"))
        return web.json_response([self._render(post, edit) for post in found[:per_page]])

    async def _single(self, request: web.Request) -> web.Response:
        type_ = request.match_info["type"]
        post = self.posts.get(int(request.match_info["id"]))
        if post is not None and post["type"] != type_:
            post = None
        authed = self._authenticated(request)
        if request.method == "GET":
            if post is None or (post["status"] != "publish" and not authed):
                return _wp_error(404, "rest_post_invalid_id", "Invalid post ID.")
            return web.json_response(self._render(post, authed))
        if request.method in ("POST", "PUT", "PATCH"):
            if not authed:
                return _wp_error(401, "rest_cannot_edit", "Sorry, you are not allowed to edit this post.")
            if post is None:
                return _wp_error(404, "rest_post_invalid_id", "Invalid post ID.")
            data = await request.json()
            for key in ("title", "content", "status"):
                if key in data:
                    post[key] = str(data[key])
            if "slug" in data:
                self._set_slug(post, self._unique_slug(str(data["slug"]), type_, exclude=post["id"]))
            self.applied += 1
            return web.json_response(self._render(post, True))
        if request.method == "DELETE":
            if not authed:
                return _wp_error(401, "rest_cannot_delete", "Sorry, you are not allowed to delete this post.")
            if post is None:
                return _wp_error(404, "rest_post_invalid_id", "Invalid post ID.")
            if request.query.get("force") in ("true", "1"):
                self._set_slug(post, "")
                del self.posts[post["id"]]
                self.applied += 1
                return web.json_response({"deleted": True, "previous": self._render(post, True)})
            if post["status"] == "trash":
                return _wp_error(410, "rest_already_trashed", "The post has already been deleted.")
            post["status"] = "trash"
            self._set_slug(post, post["slug"] + "__trashed")
            self.applied += 1
            return web.json_response(self._render(post, True))
        return _wp_error(404, "rest_no_route", "No route was found matching the URL and request method.")

    # -- webhook receiver (the algorithm docs/webhook.md documents, written independently) ------

    async def _webhook(self, request: web.Request) -> web.Response:
        body = await request.read()
        timestamp = request.headers.get("X-Readersviews-Timestamp", "")
        signature = request.headers.get("X-Readersviews-Signature", "")
        key = request.headers.get("Idempotency-Key", "")
        expected = (
            "sha256="
            + hmac.new(self.webhook_secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        )
        fresh = timestamp.isdigit() and (self.tolerance is None or abs(time.time() - int(timestamp)) <= self.tolerance)
        if not fresh or not hmac.compare_digest(expected, signature):
            self.webhook_rejected += 1
            return web.json_response({"error": "bad signature or stale timestamp"}, status=401)
        event = json.loads(body)
        if not key or event.get("id") != key:
            return web.json_response({"error": "Idempotency-Key must equal the body's id"}, status=400)
        self.webhook_deliveries[key] += 1
        if key in self.webhook_answers:
            return web.json_response(self.webhook_answers[key])
        self.webhook_events.append(event)
        self.applied += 1
        entity = event.get("entity") or ""
        if event["event"] == "ping":
            answer: dict[str, Any] = {"ok": True}
        else:
            remote = self.webhook_remote.setdefault(entity, f"wh-{len(self.webhook_remote) + 1}")
            answer = {"id": remote, "url": f"{self.base_url}/letters/{remote}"}
            if event["event"].endswith(".retract"):
                answer = {}
        self.webhook_answers[key] = answer
        return web.json_response(answer)


def _drop_connection(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


async def _serve(port: int, ratio: float) -> None:
    site = FakeSite(tolerance=None)
    if ratio:
        site.fail_randomly(ratio)
    url = await site.start(port=port)
    print(f"READY {url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await site.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="loopback fake WordPress + webhook receiver")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--fail-ratio", type=float, default=0.0)
    args = parser.parse_args()
    try:
        asyncio.run(_serve(args.port, args.fail_ratio))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
