"""The Bot subclass and the runtime that owns its resources (store, HTTP client, signals)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any

import aiohttp
import discord
import httpx
import yarl
from discord.ext import commands

from bot import __version__, claims, metrics
from bot.articles import plan_for
from bot.claims import JobClaims
from bot.clock import Clock, SystemClock
from bot.config import Config, Secrets
from bot.discord_internals import pending_ready_task
from bot.errors import on_app_command_error
from bot.letters_feature import Letters
from bot.logs import ids
from bot.netguard import AddressPolicy, guarded_client
from bot.outbox import DeliveredHook, IncidentHook, OutboxWorker
from bot.pacing import install_global_pacer
from bot.publisher import Publisher
from bot.shedding import Shedder
from bot.site import SiteAdapter, make_adapter
from bot.site.base import RemoteRef
from bot.store import Store
from bot.store.lease import Lease
from bot.store.outbox import OutboxRow, SiteIncident
from bot.store.postgres import PostgresDatabase
from bot.tenants import OPEN_WARNING, Tenants

log = logging.getLogger(__name__)

COMMAND_HASH_KEY = "command_hash"
DISCORD_API_BASE = "https://discord.com/api/v10"
DISCORD_GATEWAY = yarl.URL("wss://gateway.discord.gg/")


# What the bot needs in a server (README "Discord application setup" lists the same; a test keeps them equal).
INVITE_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    create_public_threads=True,
    manage_threads=True,
    embed_links=True,
    attach_files=True,
    read_message_history=True,
)


def invite_url(application_id: int | str) -> str:
    return (
        f"https://discord.com/oauth2/authorize?client_id={application_id}"
        f"&scope=bot+applications.commands&permissions={INVITE_PERMISSIONS.value}"
    )


def apply_endpoints(config: Config) -> None:
    """Point discord.py at a REST proxy / gateway override (or back at Discord).

    discord.py keeps these as class attributes, so they are process-wide by its design.
    """
    api = str(config.discord.api_base_url).rstrip("/") if config.discord.api_base_url else DISCORD_API_BASE
    discord.http.Route.BASE = api
    gateway = yarl.URL(config.discord.gateway_url) if config.discord.gateway_url else DISCORD_GATEWAY
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = gateway


def build_intents(config: Config) -> discord.Intents:
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.dm_messages = True
    intents.message_content = config.discord.message_content_intent
    intents.members = config.discord.members_intent
    return intents


def user_agent(config: Config) -> str:
    contact = f"; +{config.feeds.contact_url}" if config.feeds.contact_url else ""
    return f"readersviews/{__version__} (Discord bot{contact})"


@dataclass
class Health:
    """Recent problems, for /readersviews status: (when, server or None for operator-level, text)."""

    last_errors: list[tuple[str, int | None, str]] = field(default_factory=list)

    def note(self, when: str, text: str, guild_id: int | None = None) -> None:
        self.last_errors.append((when, guild_id, text))
        del self.last_errors[:-50]


def shard_options(config: Config) -> dict[str, Any]:
    """discord.py's shard options for a sharded bot (discord.shard_count), none otherwise."""
    settings = config.discord
    if settings.shard_count is None:
        return {}
    ids = list(settings.shard_ids) if settings.shard_ids is not None else None
    return {"shard_count": settings.shard_count, "shard_ids": ids}


class ReadersViewsBot(commands.Bot):
    def __init__(
        self,
        *,
        config: Config,
        secrets: Secrets,
        store: Store,
        http_client: httpx.AsyncClient,
        feed_client: httpx.AsyncClient,
        clock: Clock,
        site: SiteAdapter | None = None,
        force_sync: bool = False,
        sync_guild_id: int | None = None,
    ) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=build_intents(config),
            allowed_mentions=discord.AllowedMentions.none(),
            guild_ready_timeout=config.discord.guild_ready_timeout,
            help_command=None,
            # discord.py's default connector has no limit: a burst of interactions would open a new
            # connection (and TLS handshake) per request instead of reusing kept-alive ones.
            connector=aiohttp.TCPConnector(limit=config.discord.max_connections),
            **shard_options(config),
        )
        # discord.py learns the global limit (50 requests/s) only from a 429: pace every REST request.
        self.pacer = install_global_pacer(self.http)
        metrics.instrument_discord_http(self.http)  # REST requests, 429s, interaction answers
        self.add_listener(self._log_login, "on_ready")
        self.config = config
        self.secrets = secrets
        self.store = store
        self.http_client = http_client
        # Feed URLs are typed by server admins: fetched only through the address guard (bot.netguard).
        self.feed_client = feed_client
        self.clock = clock
        self.started_at = clock.now()
        self.health = Health()
        # Real time, not `clock`: Discord's 3 s answer window runs on the wall clock.
        self.shedder = Shedder()
        self.force_sync = force_sync
        self.sync_guild_id = sync_guild_id
        self.synced: bool = False
        self.tree.on_error = on_app_command_error  # type: ignore[method-assign]  # discord.py's documented hook
        # Servers not in discord.allowed_guild_ids: refused before any handler sees their events.
        self.tenants = Tenants(config.discord.allowed_guild_ids)
        self.tenants.install(self)
        self._shutdown_hooks: list[Callable[[], Awaitable[None]]] = []
        # Everything sent to the site goes through the outbox; cogs listen for deliveries.
        self.site = site or make_adapter(config.site, secrets, http_client, clock=clock)
        # Jobs that are not per server run in one process of those sharing the database (bot.claims).
        self.claims = JobClaims(store.db)
        self.delivery_listeners: list[DeliveredHook] = []
        self.incident_listeners: list[IncidentHook] = []
        self.outbox = OutboxWorker(
            store.outbox,
            self.site,
            clock,
            alert=self._outbox_alert,
            on_delivered=self._on_delivered,
            site_alert=self._site_alert,
            on_incident=self._on_incident,
            retention=timedelta(days=config.site.delivered_retention_days),
            served_guilds=None if self.tenants.open else self.tenants.allowed,
        )
        # One letters feature (service, review queue, recorder, notices) shared by the letters cogs.
        self.letters = Letters.build(self)
        # The article publisher: the Articles cog posts through it, ReadersViews waits on it for a thread
        # being recorded (no cog looks up another).
        self.publisher = Publisher(
            store,
            clock,
            self.alert,
            per_poll_cap=config.feeds.per_poll_cap,
            plan=partial(plan_for, settings=config.feeds),
        )
        # Queued in a process that does not deliver: the one that does is woken (bot.claims).
        self.outbox.on_notify = lambda: self.claims.wake(claims.OUTBOX)
        self.claims.on_wake(claims.OUTBOX, self.outbox.wake_up)

    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self.tenants.announce(self, guild)

    async def on_guild_available(self, guild: discord.Guild) -> None:
        await self.tenants.announce(self, guild)

    async def setup_hook(self) -> None:
        if self.tenants.open:
            log.warning("%s", OPEN_WARNING)
        else:
            log.info("serving %d server(s) listed in discord.allowed_guild_ids", len(self.tenants.allowed))
        for name in self.config.cogs:
            await self.load_extension(name)
            log.debug("loaded %s", name)
        await self.sync_commands_if_changed()
        if not self.sync_guild_id and not self.force_sync:
            # The outbox worker starts when this process holds the outbox job: at once, or on taking
            # it over from a process that ended (several processes share a PostgreSQL database).
            self.claims.on_claimed(lambda job: self.outbox.start() if job == claims.OUTBOX else None)
            self.on_shutdown(self.site.aclose)  # hooks run last-registered first: worker, then adapter
            self.on_shutdown(self.outbox.stop)
            self.on_shutdown(self.claims.stop)
            await self.claims.start()
            if self.claims.holds(claims.OUTBOX):
                self.outbox.start()
            if self.config.metrics.listen:
                self.on_shutdown(await metrics.start_server(self))

    async def _log_login(self) -> None:
        """Say who the bot is and where (on_ready also fires after a reconnect that needed a new session)."""
        user = self.user
        log.info("logged in as %s (id %s) in %d server(s)", user, user.id if user else None, len(self.guilds))

    async def _outbox_alert(self, row: OutboxRow, text: str) -> None:
        """A stuck site delivery: tell the server whose item it is, never the others (it names the item)."""
        guild_id = row.guild_id
        if guild_id is None or not await self.alert(guild_id, text):
            if guild_id is None:
                self.health.note(self.clock.now().isoformat(timespec="seconds"), text)
            log.warning("site alert (no alert channel for its server): %s", text)

    async def _site_alert(self, text: str) -> None:
        """A site-wide incident (or its end) names no item: every server's alert channel hears it."""
        told = 0
        for guild in list(self.guilds):
            told += int(await self.alert(guild.id, text))
        if not told:
            self.health.note(self.clock.now().isoformat(timespec="seconds"), text)
            log.warning("site alert (no alert channel anywhere): %s", text)

    async def _on_incident(self, incident: SiteIncident | None) -> None:
        for listener in list(self.incident_listeners):
            try:
                await listener(incident)
            except Exception:
                log.exception("site incident listener failed")

    async def _on_delivered(self, row: OutboxRow, ref: RemoteRef) -> None:
        for listener in list(self.delivery_listeners):
            try:
                await listener(row, ref)
            except Exception:
                log.exception("delivery listener failed for outbox #%s", row.id)

    def on_shutdown(self, hook: Callable[[], Awaitable[None]]) -> None:
        self._shutdown_hooks.append(hook)

    def command_payload(self) -> list[dict[str, Any]]:
        commands_ = [cmd.to_dict(self.tree) for cmd in self.tree.get_commands()]
        return sorted(commands_, key=lambda c: (c.get("type", 1), c["name"]))

    def command_hash(self) -> str:
        blob = json.dumps(self.command_payload(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    async def sync_commands_if_changed(self) -> bool:
        """Sync global commands only when the set differs from the last sync (rate limits are tight)."""
        digest = self.command_hash()
        if self.sync_guild_id is not None:
            guild = discord.Object(id=self.sync_guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)
            log.info("synced %d commands to guild %s", len(self.command_payload()), self.sync_guild_id)
            self.synced = True
            return True
        key = f"{COMMAND_HASH_KEY}:{self.application_id}"
        if not self.force_sync and await self.store.meta.get(key) == digest:
            log.info("application commands unchanged; not syncing")
            return False
        synced = await self.tree.sync()
        await self.store.meta.set(key, digest)
        log.info("synced %d application commands", len(synced))
        self.synced = True
        return True

    async def alert(self, guild_id: int | None, text: str) -> bool:
        """Tell a server's admins about a problem in the alert channel; False if there is none."""
        metrics.ALERTS.inc()
        self.health.note(self.clock.now().isoformat(timespec="seconds"), text, guild_id)
        if guild_id is None:
            log.warning("alert: %s", text)
            return False
        if not self.tenants.serves(guild_id):
            log.warning("alert for server %s, which is not in discord.allowed_guild_ids (not sent): %s", guild_id, text)
            return False
        channel_id = await self.store.settings.get(guild_id, "alert_channel_id")
        channel = self.get_channel(channel_id) if channel_id else None
        if not isinstance(channel, discord.abc.Messageable):
            log.warning("alert for guild %s (no alert channel set): %s", guild_id, text)
            return False
        try:
            await channel.send(f"⚠️ {text}"[:2000], allowed_mentions=discord.AllowedMentions.none())
        except discord.HTTPException as exc:
            log.warning("could not post alert to channel %s: %s; alert was: %s", channel_id, exc, text)
            return False
        log.info("alert raised in server %s: %s", guild_id, text, extra=ids(guild_id=guild_id, channel_id=channel_id))
        return True

    async def close(self) -> None:
        # A stop during `guild_ready_timeout` (READY received, GUILD_CREATEs still awaited): discord.py
        # never cancels its pending ready task, which then dispatches `ready` into a closed client
        # (AttributeError on its loop, a traceback at exit). Cancel it first; it swallows the cancel.
        ready_task = pending_ready_task(self)
        if ready_task is not None and not ready_task.done():
            ready_task.cancel()
            await asyncio.gather(ready_task, return_exceptions=True)
        for hook in reversed(self._shutdown_hooks):
            try:
                await hook()
            except Exception:
                log.exception("shutdown hook failed")
        self._shutdown_hooks.clear()
        await super().close()


class ShardedReadersViewsBot(ReadersViewsBot, commands.AutoShardedBot):  # type: ignore[misc]
    """The bot as discord.py's AutoShardedBot: one gateway connection per shard it runs.

    Each server's events (interactions, messages) arrive on the shard that owns it,
    (guild_id >> 22) % shard_count; a process runs `discord.shard_ids` (default: all of them).
    """


def bot_class(config: Config) -> type[ReadersViewsBot]:
    return ShardedReadersViewsBot if config.discord.sharded else ReadersViewsBot


class Runtime:
    """Owns everything the bot needs and closes it in the right order."""

    def __init__(
        self, config: Config, secrets: Secrets, store: Store, http_client: httpx.AsyncClient, bot: ReadersViewsBot
    ):
        self.config = config
        self.secrets = secrets
        self.store = store
        self.http_client = http_client
        self.bot = bot
        self.lease: Lease | None = None

    @classmethod
    async def create(
        cls,
        config: Config,
        secrets: Secrets,
        *,
        clock: Clock | None = None,
        force_sync: bool = False,
        sync_guild_id: int | None = None,
        lease: str | None = None,
    ) -> Runtime:
        """`lease`: the command ("run") that must be the only one using the database (see bot.store.lease)."""
        clock = clock or SystemClock()
        apply_endpoints(config)
        http_client = httpx.AsyncClient(
            headers={"User-Agent": user_agent(config)},
            timeout=httpx.Timeout(config.feeds.timeout_seconds),
            follow_redirects=False,
        )
        feed_client = guarded_client(
            AddressPolicy(config.feeds.allowed_networks),
            headers={"User-Agent": user_agent(config)},
            timeout=httpx.Timeout(config.feeds.timeout_seconds),
            follow_redirects=False,
        )
        try:
            # A missing site setting fails here, before anything is written.
            site = make_adapter(config.site, secrets, http_client, clock=clock)
            # PostgreSQL: no file to lock; the database's own guard is taken when it opens (below).
            held = Lease.acquire(config.database.path, lease) if lease and not config.database.is_postgres else None
        except BaseException:
            await http_client.aclose()
            raise
        try:
            seeds = {gid: seed.model_dump() for gid, seed in config.guilds.items()}
            password = secrets.database_password.get_secret_value() if secrets.database_password else None
            store = await Store.open(config.database.location, clock, seeds=seeds, password=password)
            if lease and isinstance(store.db, PostgresDatabase):
                try:
                    # One bot per database (or per shard), as the file lease is for SQLite.
                    shards = config.discord
                    if shards.shard_count is not None and lease == "run":
                        ids = shards.shard_ids if shards.shard_ids is not None else range(shards.shard_count)
                        await store.db.hold_guard(lease, list(ids), shards.shard_count)
                    else:
                        await store.db.hold_guard(lease)
                except BaseException:
                    await store.close()
                    raise
        except BaseException:
            await http_client.aclose()
            await feed_client.aclose()
            if held is not None:
                held.release()
            raise
        try:
            bot = bot_class(config)(
                config=config,
                secrets=secrets,
                store=store,
                http_client=http_client,
                feed_client=feed_client,
                clock=clock,
                site=site,
                force_sync=force_sync,
                sync_guild_id=sync_guild_id,
            )
        except BaseException:
            await http_client.aclose()
            await feed_client.aclose()
            await store.close()
            if held is not None:
                held.release()
            raise
        runtime = cls(config, secrets, store, http_client, bot)
        runtime.lease = held
        return runtime

    async def start(self, token: str) -> None:
        """Log in and run until the bot is closed."""
        try:
            await self.bot.start(token)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        if not self.bot.is_closed():
            await self.bot.close()
        await self.http_client.aclose()
        await self.bot.feed_client.aclose()
        await self.store.close()
        if self.lease is not None:
            self.lease.release()
            self.lease = None

    async def run_until_signalled(self, token: str) -> None:
        """`readersviews run`: SIGTERM/SIGINT close the bot cleanly (writes finish, then DB closes)."""
        loop = asyncio.get_running_loop()
        stop_requested = asyncio.Event()
        closing: set[asyncio.Task[None]] = set()

        def request_stop(signame: str) -> None:
            if not stop_requested.is_set():
                log.info("received %s; shutting down (send it again to exit at once)", signame)
                stop_requested.set()
                closing.add(loop.create_task(self.bot.close()))
                return
            # The operator gave up on a slow shutdown: honour it. SQLite's journal keeps the database
            # consistent; only work not yet committed is lost.
            log.warning("received %s again; second signal: exiting now without finishing the shutdown", signame)
            for handler in logging.getLogger().handlers:
                handler.flush()
            os._exit(1)

        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, request_stop, sig.name)
        await self.start(token)
        log.info("stopped cleanly")
