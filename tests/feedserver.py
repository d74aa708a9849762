"""A programmable loopback HTTP server that plays a publication's feed (or a misbehaving one).

    server = FeedServer()
    await server.start()
    server.set_feed("/feed.xml", body, etag='"v1"')
    url = server.url("/feed.xml")
    ...
    await server.stop()

Routes are set per path and can be replaced at any time; every request is logged with its
headers so tests can assert what the bot sent (conditional headers, User-Agent, counts).
"""

from __future__ import annotations

import asyncio
import struct
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Self

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

RSS_CONTENT_TYPE = "application/rss+xml; charset=utf-8"


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: Mapping[str, str]

    def header(self, name: str) -> str | None:
        """Header value by case-insensitive name."""
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return None


class FeedServer:
    """aiohttp server on 127.0.0.1 with per-path programmable responses and a request log."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._host = host
        self._port: int | None = None
        self._routes: dict[str, Handler] = {}
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self.requests: list[RecordedRequest] = []

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        # Wake slow handlers so shutdown does not wait for their sleeps.
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def url(self, path: str = "/") -> str:
        if self._port is None:
            raise RuntimeError("FeedServer.start() has not been awaited")
        if not path.startswith("/"):
            path = "/" + path
        return f"http://{self._host}:{self._port}{path}"

    # --- request log ---------------------------------------------------------------------

    def count(self, path: str | None = None) -> int:
        """Requests received, for one path or in total."""
        return len(self.requests_for(path)) if path is not None else len(self.requests)

    def requests_for(self, path: str) -> list[RecordedRequest]:
        return [request for request in self.requests if request.path == path]

    def clear_log(self) -> None:
        self.requests.clear()

    # --- programming routes --------------------------------------------------------------

    def set_handler(self, path: str, handler: Handler) -> None:
        """Answer `path` with an arbitrary aiohttp handler."""
        self._routes[path] = handler

    def remove(self, path: str) -> None:
        self._routes.pop(path, None)

    def set_feed(
        self,
        path: str,
        body: bytes | str,
        *,
        content_type: str = RSS_CONTENT_TYPE,
        etag: str | None = None,
        last_modified: str | None = None,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Serve fixed bytes; answer 304 when the request's validators match (If-None-Match wins)."""
        payload = body.encode() if isinstance(body, str) else body
        extra = dict(headers or {})

        async def handler(request: web.Request) -> web.StreamResponse:
            validators: dict[str, str] = {}
            if etag is not None:
                validators["ETag"] = etag
            if last_modified is not None:
                validators["Last-Modified"] = last_modified
            if _not_modified(request, etag, last_modified):
                return web.Response(status=304, headers={**extra, **validators})
            response = web.Response(status=status, body=payload, headers={**extra, **validators})
            response.headers["Content-Type"] = content_type
            return response

        self._routes[path] = handler

    def set_status(
        self, path: str, status: int, body: bytes = b"", *, headers: Mapping[str, str] | None = None
    ) -> None:
        """Answer every request with a fixed status, e.g. 503 with Retry-After."""

        async def handler(request: web.Request) -> web.StreamResponse:
            return web.Response(status=status, body=body, headers=dict(headers or {}))

        self._routes[path] = handler

    def set_redirect(self, path: str, location: str, *, status: int = 302) -> None:
        """Redirect `path` to `location` (a path on this server or an absolute URL)."""

        async def handler(request: web.Request) -> web.StreamResponse:
            return web.Response(status=status, headers={"Location": location})

        self._routes[path] = handler

    def set_stream(
        self,
        path: str,
        total_bytes: int,
        *,
        chunk_size: int = 64 * 1024,
        content_type: str = RSS_CONTENT_TYPE,
        declare_length: bool = False,
    ) -> None:
        """Stream `total_bytes` generated lazily from one reused chunk (nothing large is allocated).

        Without `declare_length` the response is chunked, so a client must count bytes itself.
        """
        chunk = b"<!-- padding -->" * (chunk_size // 16) or b" "

        async def handler(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": content_type})
            if declare_length:
                response.content_length = total_bytes
            else:
                response.enable_chunked_encoding()
            await response.prepare(request)
            sent = 0
            try:
                while sent < total_bytes:
                    piece = chunk if total_bytes - sent >= len(chunk) else chunk[: total_bytes - sent]
                    await response.write(piece)
                    sent += len(piece)
                await response.write_eof()
            except (ConnectionResetError, ConnectionError):
                pass  # the client gave up on the body, which is the point of this route
            return response

        self._routes[path] = handler

    def set_slow(self, path: str, delay: float, body: bytes = b"", *, content_type: str = RSS_CONTENT_TYPE) -> None:
        """Wait `delay` seconds (or until the server stops) before answering at all."""

        async def handler(request: web.Request) -> web.StreamResponse:
            await self._sleep(delay)
            return web.Response(body=body, headers={"Content-Type": content_type})

        self._routes[path] = handler

    def set_trickle(self, path: str, interval: float, *, content_type: str = RSS_CONTENT_TYPE) -> None:
        """Send headers at once, then one byte every `interval` seconds until the client leaves."""

        async def handler(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": content_type})
            response.enable_chunked_encoding()
            await response.prepare(request)
            try:
                while not self._stopping.is_set():
                    await response.write(b" ")
                    await self._sleep(interval)
            except (ConnectionResetError, ConnectionError):
                pass
            return response

        self._routes[path] = handler

    # --- internals -----------------------------------------------------------------------

    async def _sleep(self, delay: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), delay)
        except TimeoutError:
            pass

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query=request.query_string,
                headers=dict(request.headers),
            )
        )
        handler = self._routes.get(request.path)
        if handler is None:
            return web.Response(status=404, text=f"no route for {request.path}")
        return await handler(request)


def _not_modified(request: web.Request, etag: str | None, last_modified: str | None) -> bool:
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:
        if etag is None:
            return False
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return "*" in tags or etag.removeprefix("W/") in tags
    if_modified_since = request.headers.get("If-Modified-Since")
    if if_modified_since is not None and last_modified is not None:
        try:
            return parsedate_to_datetime(last_modified) <= parsedate_to_datetime(if_modified_since)
        except (TypeError, ValueError):
            return if_modified_since == last_modified
    return False


_MIB = 1 << 20


def gzip_of_zeros(mib: int) -> bytes:
    """A gzip stream of `mib` MiB of zero bytes (about 1 kB per MiB), without compressing them all.

    After a full flush deflate starts afresh, so every flushed MiB of zeros compresses to the same
    bytes: one segment is repeated and the trailer's CRC is computed. Gzip it again for a "gzip, gzip"
    body: 2 GiB of zeros become about 5 kB.
    """
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    zeros = bytes(_MIB)
    segment = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    end = deflate.flush()
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + segment * mib + end + struct.pack("<II", crc, (mib * _MIB) & 0xFFFFFFFF)


def quadratic_html(variant: int) -> str:
    """About 20 kB of nested quotes around many paragraphs: rendering this was cubic (three froze the bot 45 s)."""
    return "<blockquote>" * 500 + f"<p>paragraph {variant}</p>" * 500 + "</blockquote>" * 500


class LoopWatch:
    """`async with LoopWatch() as watch:` -> `watch.longest`, the longest the event loop went without
    running a ready callback (a 1 ms ticker's lateness) while inside the block."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.001)
            self.longest = max(self.longest, time.perf_counter() - started - 0.001)

    async def __aenter__(self) -> LoopWatch:
        self._task = asyncio.create_task(self._tick())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._task is not None
        await asyncio.sleep(0.005)  # let the ticker record a stall that has just ended
        self._task.cancel()
