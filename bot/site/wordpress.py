"""WordPress REST adapter: Basic auth with an application password, posts (or pages).

Facts this relies on (checked against a real WordPress):
- A wrong application password (or user name) is silently treated as an anonymous visitor: creates
  answer 401 rest_cannot_create, a status=any lookup 400 "Status is forbidden", and GET /users/me
  (what `check()` asks) 401 rest_not_logged_in.
- A duplicate slug is silently renamed `slug-2`, `slug-3`... (through REST, pending posts too). So a
  create whose outcome is unknown is looked up by slug (any status) before creating again.
- DELETE without `force` moves the post to the trash; a second DELETE answers 410.
"""

from __future__ import annotations

import html
import logging
import re
from typing import Any

import httpx

from bot.clock import Clock, SystemClock
from bot.config import WordPressSettings
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
from bot.site.compose import wordpress_blocks

log = logging.getLogger(__name__)

_TAGS = re.compile(r"<[^>]+>")


class WordPressAdapter:
    name = "wordpress"

    def __init__(
        self,
        settings: WordPressSettings,
        password: str,
        client: httpx.AsyncClient | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        if settings.url is None or not settings.username:
            raise ValueError("WordPressAdapter needs site.wordpress.url and site.wordpress.username")
        self._settings = settings
        self._base = str(settings.url).rstrip("/")
        self._api = f"{self._base}/wp-json/wp/v2"
        self._auth = httpx.BasicAuth(settings.username, password)
        self._password = password
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(follow_redirects=False)
        self._timeout = settings.timeout
        self._clock = clock or SystemClock()

    # -- the protocol ---------------------------------------------------------------------------

    async def create(self, item: SiteItem) -> RemoteRef:
        body: dict[str, Any] = {
            "title": item.title,
            "content": wordpress_blocks(item.html),
            "status": item.status or self._settings.post_status,
        }
        if item.slug:
            body["slug"] = item.slug
        if self._collection(item) == "posts":
            if self._settings.category_ids:
                body["categories"] = list(self._settings.category_ids)
            if self._settings.tag_ids:
                body["tags"] = list(self._settings.tag_ids)
        data = await self._call("POST", f"/{self._collection(item)}", item=item, json=body)
        return self._ref(data)

    async def update(self, remote_id: str | None, item: SiteItem) -> RemoteRef:
        if not remote_id:
            # Created while site mirroring was off (or on another site kind): find it or create it.
            found = await self.lookup(item)
            if found is None:
                return await self.create(item)
            remote_id = found.remote_id or ""
        # Status, slug, categories and tags are left alone: an editor may have changed them on the site.
        body = {"title": item.title, "content": wordpress_blocks(item.html)}
        data = await self._call("POST", f"/{self._collection(item)}/{_post_id(remote_id)}", item=item, json=body)
        return self._ref(data)

    async def retract(self, remote_id: str | None, item: SiteItem) -> None:
        if not remote_id:
            return
        try:
            await self._call("DELETE", f"/{self._collection(item)}/{_post_id(remote_id)}", item=item)
        except PermanentSiteError as exc:
            # Already trashed (410) or deleted on the site (404): what we wanted.
            if exc.status in (404, 410):
                log.info("retract %s: post %s already gone (%s)", item.entity, remote_id, exc.code)
                return
            raise

    async def lookup(self, item: SiteItem) -> RemoteRef | None:
        if not item.slug:
            return None
        # Our slugs carry the entity id, so a collision means a retried create of the same item
        # (same slug as sent) or a published post WordPress renamed: then the title must match too.
        slugs = [item.slug] + [f"{item.slug}-{n}" for n in range(2, 6)]
        params = {
            "slug": ",".join(slugs),
            "status": "any",
            "context": "edit",
            "per_page": "20",
            "orderby": "id",
            "order": "asc",
        }
        data = await self._call("GET", f"/{self._collection(item)}", item=item, params=params)
        if not isinstance(data, list):
            raise TransientSiteError("WordPress answered a slug lookup with something other than a list")
        wanted = _plain(item.title)
        exact = [post for post in data if post.get("slug") == item.slug]
        renamed = [post for post in data if post.get("slug") != item.slug and _plain(_raw(post.get("title"))) == wanted]
        candidates = exact + renamed
        return self._ref(candidates[0]) if candidates else None

    async def fetch_status(self, remote_id: str, kind: str = "letter") -> RemoteRef:
        """Where a post stands now (status "deleted" when it is gone for good), e.g. once an editor publishes it.

        `context=edit` because a pending post is invisible to the public API; its `link` becomes the
        public permalink only once the status is `publish`.
        """
        collection = self._settings.statement_type if kind == "statement" else "posts"
        try:
            data = await self._call(
                "GET", f"/{collection}/{_post_id(remote_id)}", item=None, params={"context": "edit"}
            )
        except PermanentSiteError as exc:
            if exc.status in (404, 410) and not exc.site_wide:
                return RemoteRef(remote_id, None, "deleted")
            raise
        return self._ref(data)

    async def check(self) -> str:
        data = await self._call("GET", "/users/me", item=None, params={"context": "edit"})
        if not isinstance(data, dict):
            raise PermanentSiteError(
                f"WordPress at {redact_url(self._base)} answered /users/me with something unexpected"
            )
        name = data.get("slug") or data.get("name") or self._settings.username
        caps = data.get("capabilities") or {}
        roles = ", ".join(data.get("roles") or []) or "no role"
        needed = ["edit_posts", "delete_posts"]
        if self._settings.post_status == "publish":
            needed.append("publish_posts")
        if self._settings.statement_type == "pages":
            needed += ["edit_pages", "delete_pages"]
            if self._settings.post_status == "publish":
                needed.append("publish_pages")
        missing = [cap for cap in needed if not caps.get(cap)]
        if caps and missing:
            raise PermanentSiteError(
                f"WordPress user '{name}' ({roles}) lacks {', '.join(missing)}: give it the Editor role, "
                "or set site.wordpress.post_status to pending / statement_type to posts"
            )
        return (
            f"WordPress {redact_url(self._base)}: signed in as '{name}' ({roles}); letters become "
            f"{self._settings.post_status} posts, statements {self._settings.statement_type}"
        )

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    # -- plumbing -------------------------------------------------------------------------------

    def _collection(self, item: SiteItem) -> str:
        return self._settings.statement_type if item.kind == "statement" else "posts"

    def _ref(self, data: Any) -> RemoteRef:
        if not isinstance(data, dict) or "id" not in data:
            raise TransientSiteError("WordPress answered without a post id")
        link = data.get("link")
        status = data.get("status")
        return RemoteRef(
            str(data["id"]), link if isinstance(link, str) else None, status if isinstance(status, str) else None
        )

    async def _call(self, method: str, path: str, *, item: SiteItem | None, **kwargs: Any) -> Any:
        url = self._api + path
        response = await send(
            self._client, method, url, seconds=self._timeout, what="WordPress", auth=self._auth, **kwargs
        )
        if response.status_code >= 400:
            raise self._error(response, method, path, item)
        if 300 <= response.status_code < 400:
            raise self._redirect_error(response, method, path)
        try:
            return response.json()
        except ValueError:
            # A proxy page or a PHP notice in front of the JSON: the request may have been applied.
            raise TransientSiteError(
                f"WordPress answered {method} {path} with {response.status_code} but not JSON: "
                f"{short(self._scrub(response.text), 120)!r}"
            ) from None

    def _redirect_error(self, response: httpx.Response, method: str, path: str) -> PermanentSiteError:
        """A redirect (http -> https, a new domain, www.) is the configured URL being wrong, not a hiccup.

        It is not followed: httpx would turn a redirected POST into a GET, and drop the credentials
        on a change of host.
        """
        status = response.status_code
        location = response.headers.get("Location")
        if not location:
            return PermanentSiteError(
                f"WordPress answered {method} {path} with a {status} redirect without a Location: check "
                "site.wordpress.url",
                status=status,
            )
        target = str(response.url.join(location))
        root = target.split("/wp-json", 1)[0] if "/wp-json" in target else None
        fix = f"set site.wordpress.url to {root}" if root else "check site.wordpress.url"
        return PermanentSiteError(
            f"the site redirects {method} {path} ({status}) to {short(target, 200)}; {fix}", status=status
        )

    def _scrub(self, text: str) -> str:
        """Text from the site, without our credentials should it quote them back (header or password)."""
        if self._password and len(self._password) >= 6:
            text = text.replace(self._password, "[redacted]")
        return redact_text(text)

    def _error(self, response: httpx.Response, method: str, path: str, item: SiteItem | None) -> Exception:
        status = response.status_code
        code, message, params = "", "", ""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            code = str(body.get("code") or "")
            message = _plain(str(body.get("message") or ""))
            detail = (body.get("data") or {}).get("params") if isinstance(body.get("data"), dict) else None
            if isinstance(detail, dict):
                params = "; ".join(f"{key}: {_plain(str(value))}" for key, value in detail.items())
        else:
            message = short(response.text, 120)
        message, params = self._scrub(message), self._scrub(params)
        label = f"{status} {code}".strip()
        said = f"{label}: {short(message, 160)}" if message else label
        what = f"{item.kind} {item.entity}" if item else "the request"

        if status == 429 or status == 408 or status == 409 or status == 425 or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), self._clock.now())
            return TransientSiteError(
                f"WordPress answered {said} to {method} {path}",
                retry_after=retry_after,
                outcome_unknown=status >= 500,
            )
        user = self._settings.username
        if status == 400 and "forbidden" in params.lower() and "status" in params.lower():
            # A lookup (status=any) by a request WordPress took for anonymous: a wrong password.
            status = 401
        if status == 401:
            return PermanentSiteError(
                f"WordPress refused the credentials ({label}): check site.wordpress.username and "
                "READERSVIEWS_WP_APP_PASSWORD (an application password from Users → Profile, not the "
                "login password)",
                status=status,
                code=code,
                site_wide=True,
            )
        if status == 403 and code == "rest_cannot_publish":
            return PermanentSiteError(
                f"WordPress user '{user}' may not publish ({label}): set site.wordpress.post_status to "
                "pending, or give the user the Editor role",
                status=status,
                code=code,
                site_wide=True,
            )
        if status == 403:
            return PermanentSiteError(
                f"WordPress user '{user}' is not allowed to do this to {what} ({said}): give the user the "
                "Editor role (pages and other users' posts need it)",
                status=status,
                code=code,
            )
        if status == 404 and code in ("rest_post_invalid_id", "rest_page_invalid_id"):
            return PermanentSiteError(
                f"{what} no longer exists on WordPress ({label}): it was deleted on the site",
                status=status,
                code=code,
            )
        if status == 404:
            return PermanentSiteError(
                f"no WordPress REST API at {self._api}{path} ({said}): check site.wordpress.url "
                "(the site root, without /wp-json)",
                status=status,
                code=code,
                site_wide=True,
            )
        if status == 410:
            return PermanentSiteError(f"{what} is already in the WordPress trash ({label})", status=status, code=code)
        hint = f" ({params})" if params else ""
        return PermanentSiteError(
            f"WordPress rejected {what} ({said}){hint}: check site.wordpress.category_ids / tag_ids and the item",
            status=status,
            code=code,
        )


def _post_id(remote_id: str) -> int:
    try:
        return int(remote_id)
    except ValueError:
        raise PermanentSiteError(f"'{remote_id}' is not a WordPress post id") from None


def _raw(title: Any) -> str:
    if isinstance(title, dict):
        return str(title.get("raw") or title.get("rendered") or "")
    return str(title or "")


def _plain(text: str) -> str:
    """Compare titles the way WordPress may have stored them (entities, tags, whitespace)."""
    return " ".join(html.unescape(_TAGS.sub("", text)).split())
