"""Time to ready and idle RSS of `readersviews run` against the fake Discord, vs a bare discord.py client.

Targets (issue 3): ready < 2 s; idle RSS < 80 MB. Both processes start the same way (a fresh
interpreter), so the ratio shows what readersviews adds on top of discord.py itself.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakediscord import FakeDiscord  # noqa: E402
from tests.helpers import make_config  # noqa: E402

BARE = """
import discord, sys, yarl
discord.http.Route.BASE = sys.argv[1]
discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(sys.argv[2])
client = discord.Client(intents=discord.Intents.default(), guild_ready_timeout=0.1)
client.run(sys.argv[3], log_handler=None)
"""


async def measure(fake: FakeDiscord, argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    identifies = fake.identify_count
    start = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        while fake.identify_count == identifies:  # noqa: ASYNC110 - polling another process's progress
            await asyncio.sleep(0.005)
        await fake.wait_for_ready(timeout=30)
        await fake.roundtrip()
        ready = time.perf_counter() - start
        await asyncio.sleep(2.0)  # idle
        rss = psutil.Process(process.pid).memory_info().rss / 1e6
    finally:
        process.terminate()
        await process.wait()
    return ready, rss


async def main() -> None:
    fake = FakeDiscord()
    await fake.start()
    guild = fake.add_guild("Bench")
    guild.add_text_channel("alerts")
    guild.add_forum_channel("articles", tags=["News"])
    with tempfile.TemporaryDirectory() as tmp:
        config = make_config(fake, Path(tmp))
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
        env = {**os.environ, "DISCORD_TOKEN": fake.token, "PYTHONPATH": str(ROOT)}
        bot_cmd = [sys.executable, "-m", "bot", "--config", str(path), "run"]
        bare_cmd = [sys.executable, "-c", BARE, fake.api_base, fake.gateway_url, fake.token]
        results: dict[str, list[tuple[float, float]]] = {"bot": [], "bare": []}
        for _ in range(3):
            results["bare"].append(await measure(fake, bare_cmd, env))
            results["bot"].append(await measure(fake, bot_cmd, env))
    await fake.stop()
    bot_ready = min(r[0] for r in results["bot"])
    bare_ready = min(r[0] for r in results["bare"])
    bot_rss = min(r[1] for r in results["bot"])
    bare_rss = min(r[1] for r in results["bare"])
    print(f"readersviews run: ready in {bot_ready:.2f} s (incl. migrations, command sync), idle RSS {bot_rss:.0f} MB")
    print(f"bare discord.py:  ready in {bare_ready:.2f} s, idle RSS {bare_rss:.0f} MB")
    print(
        f"ratio ready {bot_ready / bare_ready:.2f}, RSS {bot_rss / bare_rss:.2f}  (targets: ready < 2 s, RSS < 80 MB)"
    )


if __name__ == "__main__":
    asyncio.run(main())
