"""Library internals the bot relies on: each test fails loudly when an aiosqlite or discord.py upgrade changes one."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import aiosqlite
import discord
import httpx
import pytest

from bot.discord_internals import connection_state, gateway_parsers, logged_in, pending_ready_task
from bot.site.httpx_internals import set_read_body
from bot.store.aiosqlite_internals import on_its_thread, raw_connection
from tests.helpers import Booted


async def test_aiosqlite_runs_a_callable_on_its_thread_with_the_raw_connection(tmp_path: Path) -> None:
    conn = await aiosqlite.connect(tmp_path / "db.sqlite3")
    try:
        raw = raw_connection(conn)
        assert isinstance(raw, sqlite3.Connection)

        def work() -> tuple[int, int]:
            return threading.get_ident(), raw.execute("SELECT 41 + 1").fetchone()[0]

        thread, answer = await on_its_thread(conn, work)
        assert answer == 42 and thread != threading.get_ident()

        def fail() -> None:
            raise sqlite3.OperationalError("boom")

        with pytest.raises(sqlite3.OperationalError, match="boom"):
            await on_its_thread(conn, fail)
    finally:
        await conn.close()


async def test_discord_http_client_says_whether_it_logged_in(running: Booted) -> None:
    """`static_login` sets the session the pacer checks for; a fresh client has none."""
    assert not logged_in(discord.http.HTTPClient(asyncio.get_running_loop()))
    assert logged_in(running.bot.http)


async def test_discord_connection_state_has_the_parsers_and_ready_task_the_bot_uses(running: Booted) -> None:
    state = connection_state(running.bot)
    assert isinstance(state, discord.state.ConnectionState)
    parsers = gateway_parsers(running.bot)
    for event in ("INTERACTION_CREATE", "MESSAGE_CREATE", "MESSAGE_UPDATE", "MESSAGE_DELETE", "MESSAGE_DELETE_BULK"):
        assert callable(parsers[event]), event
    assert hasattr(state, "_ready_task")  # read with a default: a rename would silently skip the cancel
    ready = pending_ready_task(running.bot)
    assert ready is None or ready.done()


async def test_httpx_streamed_response_takes_a_body_read_by_the_caller() -> None:
    """`bot.site.base.send` reads a site's answer itself (decoded, up to a cap) and hands it on as read."""
    answer = b'{"id": 42}'
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=answer))
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.send(client.build_request("GET", "http://site.test/"), stream=True)
        body = b"".join([chunk async for chunk in response.aiter_bytes()])
        await response.aclose()
        set_read_body(response, body)
    assert response.content == answer and response.json() == {"id": 42} and response.text == answer.decode()
