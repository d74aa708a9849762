"""The baseline for bench/signons.py: a bare discord.py client that answers the same clicks and forms.

No database, no DynamicItem, no checks: a click is answered with the same sign form readersviews
shows, a form submission with a one-line ephemeral message. Its cost per interaction is the floor
discord.py itself sets on this machine; bench/signons.py prints readersviews' figures beside it.

    python bench/_barebot.py CONFIG   # the bench's config (endpoints) and DISCORD_TOKEN
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import discord  # noqa: E402

from bot.app import apply_endpoints  # noqa: E402
from bot.config import load_config  # noqa: E402
from bot.tuning import SWITCH_INTERVAL  # noqa: E402


class BareBot(discord.Client):
    def __init__(self) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        intents.guild_messages = True
        intents.dm_messages = True
        super().__init__(intents=intents, connector=aiohttp.TCPConnector(limit=64))
        self.forms: dict[str, discord.ui.Modal] = {}

    def form(self, custom_id: str) -> discord.ui.Modal:
        form = self.forms.get(custom_id)
        if form is None:
            from bot.statement_views import _FixedModal

            form = _FixedModal(title="Sign the statement", custom_id=custom_id.replace(":sign:", ":signform:"))
            for field in ("name", "role", "organization", "place"):
                form.add_item(
                    discord.ui.Label(text=field, component=discord.ui.TextInput(custom_id=field, required=False))
                )
            form.stop()
            self.forms[custom_id] = form
        return form

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        data = interaction.data or {}
        custom_id = str(data.get("custom_id", ""))
        if interaction.type is discord.InteractionType.component:
            await interaction.response.send_modal(self.form(custom_id))
        elif interaction.type is discord.InteractionType.modal_submit:
            await interaction.response.send_message(
                "Signed **Bench statement**.", ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
            )


async def main() -> None:
    sys.setswitchinterval(SWITCH_INTERVAL)  # as `readersviews run` sets it (bot/tuning.py)
    apply_endpoints(load_config(Path(sys.argv[1]), required=True))
    client = BareBot()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(client.close()))
    async with client:
        await client.start(os.environ["DISCORD_TOKEN"])


if __name__ == "__main__":
    asyncio.run(main())
