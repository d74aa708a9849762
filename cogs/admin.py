"""/readersviews status | setup | settings: the operator's and admins' first stop."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.checks import admin_only
from bot.errors import UserFacingError
from bot.site.base import redact_text
from bot.status import collect_status, describe_process, format_report
from bot.store.settings import SETTINGS, setup_option

if TYPE_CHECKING:
    from bot.app import ReadersViewsBot


def describe_value(kind: str, value: Any) -> str:
    if value is None:
        return "not set"
    if kind == "channel":
        return f"<#{value}>"
    if kind == "role":
        return f"<@&{value}>"
    return str(value)


def unusable_role_reason(role: discord.Role, what: str) -> str | None:
    """Why `role` cannot be the editor/organizer role (every member or a bot would have it), else None."""
    if role.is_default():
        return f"@everyone can't be the {what} role: every member would pass. Pick a role only {what}s have."
    if role.managed:
        return (
            f"{role.mention} is managed by a bot or integration, so it can't be the {what} role. "
            f"Create a role for {what}s and pick that one."
        )
    return None


class Admin(commands.Cog):
    group = app_commands.Group(
        name="readersviews",
        description="Set up and inspect readersviews in this server",
        guild_only=True,
        default_permissions=discord.Permissions(manage_guild=True),
    )

    def __init__(self, bot: ReadersViewsBot) -> None:
        self.bot = bot

    @group.command(name="status", description="Version, uptime, database and backlog: the operator's first stop")
    @admin_only()
    async def status(self, interaction: discord.Interaction) -> None:
        """Show the bot's health."""
        assert interaction.guild is not None
        report = await collect_status(
            self.bot.store,
            guild_id=interaction.guild.id,
            started_at=self.bot.started_at,
            now=self.bot.clock.now(),
            latency=self.bot.latency,
            recent=self.bot.health.last_errors,
            shed=self.bot.shedder.shed,
            process=describe_process(
                self.bot.config.discord.shard_count,
                self.bot.config.discord.shard_ids,
                self.bot.claims.held if self.bot.store.db.dialect == "postgres" else None,
                interaction.guild.shard_id if self.bot.config.discord.sharded else None,
            ),
        )
        await interaction.response.send_message(format_report(report), ephemeral=True)

    @group.command(name="setup", description="Choose the channels and roles readersviews uses here")
    @app_commands.describe(
        alert_channel="Where I report problems (feeds failing, site down)",
        review_channel="Where editors review submitted letters",
        editor_role="Members who review and publish letters",
        organizer_role="Members who create and moderate statements",
    )
    @admin_only()
    async def setup(
        self,
        interaction: discord.Interaction,
        alert_channel: discord.TextChannel | None = None,
        review_channel: discord.TextChannel | None = None,
        editor_role: discord.Role | None = None,
        organizer_role: discord.Role | None = None,
    ) -> None:
        """Store per-server settings chosen in Discord."""
        assert interaction.guild is not None
        for what, role in (("editor", editor_role), ("organizer", organizer_role)):
            refusal = unusable_role_reason(role, what) if role is not None else None
            if refusal:
                raise UserFacingError(refusal + " Nothing was saved.")
        chosen: dict[str, Any] = {}
        for key, value in (
            ("alert_channel_id", alert_channel),
            ("review_channel_id", review_channel),
            ("editor_role_id", editor_role),
            ("organizer_role_id", organizer_role),
        ):
            if value is not None:
                chosen[key] = value.id
        if not chosen:
            raise UserFacingError(
                "Nothing to change: pick at least one option, e.g. `/readersviews setup alert_channel:#mod-log`. "
                "`/readersviews settings` shows the current choices."
            )
        problems = []
        me = interaction.guild.me
        for channel in (alert_channel, review_channel):
            if channel is not None and me is not None:
                perms = channel.permissions_for(me)
                if not (perms.view_channel and perms.send_messages and perms.embed_links):
                    problems.append(f"I can't post in {channel.mention} yet (need View, Send Messages, Embed Links).")
        await self.bot.store.settings.set_many(interaction.guild.id, chosen, actor_id=interaction.user.id)
        changed = "\n".join(
            f"- {SETTINGS[key].label}: {describe_value(SETTINGS[key].kind, value)}" for key, value in chosen.items()
        )
        text = f"Saved:\n{changed}"
        if problems:
            text += "\n\nHeads-up:\n" + "\n".join(f"- {p}" for p in problems)
        await interaction.response.send_message(text, ephemeral=True)

    @group.command(name="outbox", description="Deliveries to the site: backlog, dead letters, retry")
    @app_commands.describe(retry="Deliver this dead or waiting item again now (its number, from this list)")
    @admin_only()
    async def outbox(self, interaction: discord.Interaction, retry: int | None = None) -> None:
        """Show what is waiting for the site and what failed for good (and retry one)."""
        assert interaction.guild is not None
        guild_id = interaction.guild.id
        repo = self.bot.store.outbox
        lines = []
        if retry is not None:
            # Only this server's items: another server's number is answered like a missing one.
            item = await repo.get(retry)
            if item is not None and item.guild_id == guild_id and await repo.retry(retry):
                await self.bot.outbox.incidents.probe_now()  # if the site was paused, look again now
                self.bot.outbox.notify()
                lines.append(f"#{retry} will be delivered again now.")
            else:
                lines.append(f"There is no waiting or dead item #{retry}.")
        backlog = await repo.backlog()
        lines.append(
            f"**Site: {self.bot.config.site.kind}** (all servers) · waiting {backlog.get('pending', 0)}, "
            f"sending {backlog.get('inflight', 0)}, delivered {backlog.get('done', 0)}, dead {backlog.get('dead', 0)}"
        )
        incident = await self.bot.outbox.incidents.get()
        if incident is not None and incident.open:
            since = discord.utils.format_dt(incident.started_at, "R")
            lines.append(
                f"⏸️ Deliveries are paused since {since}: {redact_text(incident.reason)}"[:400]
                + f"\nItems wait; the next check of the site is {discord.utils.format_dt(incident.next_probe_at, 'R')}."
            )
        dead = await repo.for_guild(guild_id, ("dead",), limit=10)
        for row in dead:
            lines.append(f"- #{row.id} {row.kind} {row.entity}: {redact_text(row.last_error or 'unknown error')}"[:300])
        if dead:
            lines.append("Fix the cause (see each error), then `/readersviews outbox retry:<number>`.")
        waiting = await repo.for_guild(guild_id, ("pending",), limit=5)
        for row in waiting:
            when = discord.utils.format_dt(row.next_attempt_at, "R")
            error = f" — last error: {redact_text(row.last_error)}" if row.last_error else ""
            lines.append(f"- #{row.id} {row.kind} {row.entity}: next try {when}{error}"[:300])
        lines.append("The counts cover every server; items listed are this server's (all: `readersviews outbox`).")
        await interaction.response.send_message("\n".join(lines)[:2000], ephemeral=True)

    @group.command(name="settings", description="Show this server's readersviews settings")
    @admin_only()
    async def settings(self, interaction: discord.Interaction) -> None:
        """List every per-server setting with how to change it."""
        assert interaction.guild is not None
        values = await self.bot.store.settings.get_all(interaction.guild.id)
        lines = ["**readersviews settings**"]
        for key, spec in SETTINGS.items():
            value = describe_value(spec.kind, values.get(key))
            lines.append(f"- {spec.label}: {value} — {spec.help} (`/readersviews setup {setup_option(key)}:`)")
        await interaction.response.send_message("\n".join(lines), ephemeral=True)


async def setup(bot: ReadersViewsBot) -> None:
    await bot.add_cog(Admin(bot))
