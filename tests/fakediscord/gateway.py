"""The gateway websocket: HELLO, IDENTIFY/READY, heartbeats, RESUME with replay, dispatch."""

from __future__ import annotations

import asyncio
import logging
import secrets
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from . import perms as P
from .fastjson import dumps, loads

if TYPE_CHECKING:
    from .server import FakeDiscord

log = logging.getLogger("fakediscord.gateway")

# opcodes
DISPATCH, HEARTBEAT, IDENTIFY, PRESENCE, VOICE_STATE = 0, 1, 2, 3, 4
RESUME, RECONNECT, REQUEST_MEMBERS, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 6, 7, 8, 9, 10, 11


class Connection:
    """One websocket connection, with its compression context."""

    def __init__(self, ws: web.WebSocketResponse, compress: str | None, request: web.Request) -> None:
        self.ws = ws
        self.request = request
        self.compress = compress
        # Level 1: the stream is what Discord's is (one zlib stream, Z_SYNC_FLUSH per message); the
        # level only trades size for the fake's CPU, which bench bursts need for the bot.
        self._zlib = zlib.compressobj(1) if compress == "zlib-stream" else None
        self._zstd = _zstd_stream() if compress == "zstd-stream" else None
        self._lock = asyncio.Lock()
        self.heartbeat_waiters: list[asyncio.Future[None]] = []
        self.heartbeats = 0

    async def send(self, frame: dict[str, Any]) -> None:
        data = dumps(frame)
        async with self._lock:
            if self.ws.closed:
                raise ConnectionResetError("gateway connection closed")
            if self._zlib is not None:
                raw = self._zlib.compress(data) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
                await self.ws.send_bytes(raw)
            elif self._zstd is not None:
                await self.ws.send_bytes(self._zstd(data))
            else:
                await self.ws.send_str(data.decode())


def _zstd_stream() -> Callable[[bytes], bytes]:
    """One zstd stream per connection, flushed per message (what discord.py's zstd-stream expects).

    Only used when the client asks for it, i.e. when ``zstandard`` or ``compression.zstd`` (3.14)
    is importable; untested in this venv, which has neither.
    """
    try:
        import zstandard  # type: ignore[import-not-found]

        cobj = zstandard.ZstdCompressor().compressobj()
        flush_mode = zstandard.COMPRESSOBJ_FLUSH_BLOCK

        def compress(data: bytes) -> bytes:
            return bytes(cobj.compress(data) + cobj.flush(flush_mode))

        return compress
    except ImportError:
        from compression.zstd import ZstdCompressor  # type: ignore[import-not-found]

        comp = ZstdCompressor()

        def compress_std(data: bytes) -> bytes:
            return bytes(comp.compress(data, mode=ZstdCompressor.FLUSH_BLOCK))

        return compress_std


class Session:
    """A gateway session: survives connection drops, replays by sequence number on RESUME.

    `shard` is (shard id, shard count) from IDENTIFY; (0, 1) when the client does not shard.
    """

    def __init__(self, intents: int, shard: tuple[int, int] = (0, 1)) -> None:
        self.session_id = secrets.token_hex(16)
        self.intents = intents
        self.shard = shard
        self.seq = 0
        self.log: list[dict[str, Any]] = []
        self.conn: Connection | None = None

    def has(self, intent: int) -> bool:
        return bool(self.intents & intent)

    def owns(self, guild_id: int) -> bool:
        """Discord's rule: a guild's events go to shard (guild_id >> 22) % shard_count."""
        shard_id, count = self.shard
        return (guild_id >> 22) % count == shard_id


def shard_of(guild_id: int, count: int) -> int:
    return (guild_id >> 22) % count


def _event_guild(t: str, d: dict[str, Any]) -> int | None:
    """The guild an event belongs to (None: not a guild's, e.g. a DM, which goes to shard 0)."""
    if t in ("GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE") and d.get("id") is not None:
        return int(d["id"])
    if d.get("guild_id") is not None:
        return int(d["guild_id"])
    return None


class Gateway:
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.sessions: dict[int, Session] = {}  # by shard id
        self.identify_count = 0
        self.resume_count = 0
        self.invalid_sessions = 0
        self.ready = asyncio.Event()
        self.shards_ready: set[int] = set()  # shards that identified and got their guilds
        self._identified = asyncio.Event()
        self.resumed = asyncio.Event()
        self.connections: list[Connection] = []
        self.received: list[dict[str, Any]] = []

    @property
    def session(self) -> Session | None:
        """The session of the lowest shard connected (the only one for a client that does not shard)."""
        return self.sessions[min(self.sessions)] if self.sessions else None

    # --- websocket endpoint ---------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await ws.prepare(request)
        compress = request.query.get("compress")
        if compress not in (None, "zlib-stream", "zstd-stream"):
            await ws.close(code=4000, message=b"unsupported compression in fake")
            return ws
        if request.query.get("encoding", "json") != "json":
            await ws.close(code=4002, message=b"Error while decoding payload.")
            return ws
        conn = Connection(ws, compress, request)
        self.connections.append(conn)
        try:
            await conn.send(
                {
                    "op": HELLO,
                    "d": {"heartbeat_interval": self.fake.heartbeat_interval_ms, "_trace": ['["fake-gateway"]']},
                    "s": None,
                    "t": None,
                }
            )
            async for msg in ws:
                if msg.type == WSMsgType.TEXT or msg.type == WSMsgType.BINARY:
                    await self._on_frame(conn, loads(msg.data))
                elif msg.type == WSMsgType.ERROR:
                    break
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        except Exception:  # pragma: no cover - fake bug
            log.exception("gateway handler crashed")
            self.fake.errors.append("gateway handler crashed")
        finally:
            for session in self.sessions.values():
                if session.conn is conn:
                    session.conn = None
            if conn in self.connections:
                self.connections.remove(conn)
            for fut in conn.heartbeat_waiters:
                if not fut.done():
                    fut.cancel()
        return ws

    async def _on_frame(self, conn: Connection, frame: dict[str, Any]) -> None:
        op = frame.get("op")
        d = frame.get("d") or {}
        self.received.append(frame)
        if op == HEARTBEAT:
            conn.heartbeats += 1
            await conn.send({"op": HEARTBEAT_ACK, "d": None, "s": None, "t": None})
            waiters, conn.heartbeat_waiters = conn.heartbeat_waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)
        elif op == IDENTIFY:
            await self._identify(conn, d)
        elif op == RESUME:
            await self._resume(conn, d)
        elif op == REQUEST_MEMBERS:
            await self._request_members(conn, d)
        elif op in (PRESENCE, VOICE_STATE):
            pass
        else:
            log.warning("fake gateway: unknown op %s", op)
            await conn.ws.close(code=4001, message=b"Unknown opcode.")

    async def _identify(self, conn: Connection, d: dict[str, Any]) -> None:
        if d.get("token") != self.fake.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        if "intents" not in d:
            await conn.ws.close(code=4013, message=b"Invalid intent(s).")
            return
        intents = int(d["intents"])
        shard = d.get("shard", [0, 1])
        valid = (
            isinstance(shard, list)
            and len(shard) == 2
            and all(isinstance(n, int) for n in shard)
            and 0 <= shard[0] < shard[1]
        )
        others = [s for s in self.sessions.values() if s.shard[0] != (shard[0] if valid else None)]
        if not valid or any(s.shard[1] != shard[1] for s in others):
            # Discord closes with 4010 "Invalid shard" (a bad pair, or a count other shards don't use).
            await conn.ws.close(code=4010, message=b"Invalid shard.")
            return
        shard_id, count = shard
        self.identify_count += 1
        self.ready.clear()
        old = self.sessions.get(shard_id)
        if old is not None and old.conn is not None and old.conn is not conn:
            await old.conn.ws.close(code=4000)
        session = Session(intents, (shard_id, count))
        session.conn = conn
        self.sessions[shard_id] = session
        fake = self.fake
        guilds = [g for g in fake.guilds.values() if session.owns(g.id)]
        ready = {
            "v": 10,
            "user_settings": {},
            "user": {**fake.bot.payload(), "verified": True, "mfa_enabled": False, "email": None, "flags": 0},
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_id": session.session_id,
            "session_type": "normal",
            "resume_gateway_url": fake.gateway_url,
            "application": {"id": str(fake.application_id), "flags": fake.application_flags},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["fake"],
            "auth": {},
            "_trace": ['["fake-gateway"]'],
        }
        if "shard" in d:
            ready["shard"] = d["shard"]
        await self._send_dispatch(session, "READY", ready)
        include_members = session.has(P.GUILD_MEMBERS)
        for g in guilds:
            await self._send_dispatch(session, "GUILD_CREATE", g.payload(include_members=include_members))
        self.ready.set()
        self.shards_ready.add(shard_id)
        self._identified.set()
        self._identified = asyncio.Event()

    async def _resume(self, conn: Connection, d: dict[str, Any]) -> None:
        session = next((s for s in self.sessions.values() if s.session_id == d.get("session_id")), None)
        if (
            session is None
            or d.get("session_id") != session.session_id
            or d.get("token") != self.fake.token
            or self.fake.refuse_resume
        ):
            self.invalid_sessions += 1
            await conn.send({"op": INVALID_SESSION, "d": False, "s": None, "t": None})
            return
        if session.conn is not None and session.conn is not conn:
            try:
                await session.conn.ws.close(code=4000)
            except Exception:  # pragma: no cover
                pass
        session.conn = conn
        seq = int(d.get("seq") or 0)
        for frame in session.log:
            if frame["s"] > seq:
                await conn.send(frame)
        self.resume_count += 1
        await self._send_dispatch(session, "RESUMED", {"_trace": ['["fake-gateway"]']})
        self.resumed.set()

    async def _request_members(self, conn: Connection, d: dict[str, Any]) -> None:
        session = next((s for s in self.sessions.values() if s.conn is conn), None)
        if session is None:
            return
        gids = d.get("guild_id")
        if not isinstance(gids, list):
            gids = [gids]
        for gid in gids:
            guild = self.fake.guilds.get(int(gid))
            if guild is None:
                continue
            members = list(guild.members.values())
            ids = d.get("user_ids")
            if ids:
                wanted = {int(i) for i in (ids if isinstance(ids, list) else [ids])}
                members = [m for m in members if m.id in wanted]
            elif not session.has(P.GUILD_MEMBERS):
                await conn.ws.close(code=4014, message=b"Disallowed intent(s).")
                return
            q = d.get("query") or ""
            if q:
                members = [m for m in members if m.user.username.lower().startswith(q.lower())]
            limit = int(d.get("limit") or 0)
            if limit:
                members = members[:limit]
            chunk: dict[str, Any] = {
                "guild_id": str(guild.id),
                "members": [m.payload() for m in members],
                "chunk_index": 0,
                "chunk_count": 1,
            }
            if d.get("nonce") is not None:
                chunk["nonce"] = d["nonce"]
            if d.get("presences"):
                chunk["presences"] = []
            await self._send_dispatch(session, "GUILD_MEMBERS_CHUNK", chunk)

    # --- dispatch --------------------------------------------------------
    async def _send_dispatch(self, session: Session, t: str, d: dict[str, Any]) -> None:
        session.seq += 1
        frame = {"op": DISPATCH, "t": t, "s": session.seq, "d": d}
        session.log.append(frame)
        if session.conn is not None:
            try:
                await session.conn.send(frame)
            except ConnectionResetError:
                session.conn = None

    async def dispatch(self, t: str, d: dict[str, Any], *, intent: int | None = None) -> bool:
        """Send an event to the current session (buffered for RESUME if disconnected).

        Returns False when nothing is sent: no session yet, or the intent is missing.
        """
        guild_id = _event_guild(t, d)
        if guild_id is None:
            session = self.sessions.get(0)  # DMs and the like: shard 0
        else:
            session = next((s for s in self.sessions.values() if s.owns(guild_id)), None)
        if session is None:
            return False
        if intent is not None and not session.has(intent):
            return False
        await self._send_dispatch(session, t, d)
        return True

    async def wait_for_shards(self, shard_ids: set[int], timeout: float) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while not shard_ids <= {i for i in self.shards_ready if self.sessions.get(i) is not None}:
                await self._identified.wait()

    # --- control ---------------------------------------------------------
    async def drop(self, code: int = 4000, *, abrupt: bool = False) -> None:
        session = self.session
        conn = session.conn if session else None
        if conn is None:
            return
        session.conn = None  # type: ignore[union-attr]
        self.resumed.clear()
        if abrupt:
            transport = conn.request.transport
            if transport is not None:
                transport.close()
        else:
            await conn.ws.close(code=code, message=b"fake drop")

    async def send_op(self, op: int, d: Any = None) -> None:
        if self.session is None or self.session.conn is None:
            raise RuntimeError("no gateway connection")
        await self.session.conn.send({"op": op, "d": d, "s": None, "t": None})

    async def roundtrip(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Ask every shard's client for a heartbeat and wait for it: all earlier frames are then parsed."""
        connected = [s for s in self.sessions.values() if s.conn is not None]
        if not connected:
            raise RuntimeError("no gateway connection")
        for session in connected:
            await self._roundtrip(session, timeout)

    async def _roundtrip(self, session: Session, timeout: float) -> None:  # noqa: ASYNC109
        # Two requests, two answers awaited: at most one answer can be a periodic heartbeat sent by
        # the client's keep-alive thread, so at least one is a reply to ours, which the client only
        # sends after parsing every frame it received before.
        conn = session.conn
        assert conn is not None
        target = conn.heartbeats + 2
        await conn.send({"op": HEARTBEAT, "d": session.seq, "s": None, "t": None})
        await conn.send({"op": HEARTBEAT, "d": session.seq, "s": None, "t": None})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while conn.heartbeats < target:
            fut: asyncio.Future[None] = loop.create_future()
            conn.heartbeat_waiters.append(fut)
            await asyncio.wait_for(fut, max(deadline - loop.time(), 0.001))

    async def close_all(self) -> None:
        for conn in list(self.connections):
            try:
                await conn.ws.close(code=1001)
            except Exception:  # pragma: no cover
                pass
