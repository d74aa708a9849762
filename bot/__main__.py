"""Command line: `readersviews run | check | migrate | sync-commands | outbox | export`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Coroutine, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import discord
from discord.ext import commands

from bot import __version__, tuning
from bot.clock import SystemClock
from bot.config import Config, ConfigError, Secrets, load, resolve_config_path
from bot.logs import setup_logging
from bot.site.base import redact_text, redact_url
from bot.store import Store, StoreError, latest_version
from bot.store.database import Database
from bot.store.lease import Lease
from bot.store.postgres import PostgresDatabase
from bot.tenants import OPEN_WARNING

log = logging.getLogger("readersviews")


class CliError(Exception):
    """One line for the operator; exit code 1."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="readersviews",
        description="A Discord bot for a publication's readers' discussion, letters and statement sign-ons.",
        epilog="Secrets come from the environment: DISCORD_TOKEN, READERSVIEWS_WP_APP_PASSWORD, "
        "READERSVIEWS_WEBHOOK_SECRET. The config file is --config, else $READERSVIEWS_CONFIG, "
        "else config/config.yaml if present, else built-in defaults.",
    )
    parser.add_argument("--version", action="version", version=f"readersviews {__version__}")
    parser.add_argument("--config", metavar="PATH", help="YAML config file (see config/example.yaml)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parser.set_defaults(config=None)

    sub.add_parser("run", help="start the bot (default)", description="Start the bot; SIGTERM/SIGINT stop it cleanly.")
    sub.add_parser("check", help="validate config, token, database and site; exit 1 on problems")
    migrate = sub.add_parser("migrate", help="apply database migrations and exit")
    migrate.add_argument(
        "--copy-from",
        metavar="SQLITE_FILE",
        type=Path,
        help="copy this SQLite database into the (empty) PostgreSQL database of database.url, then migrate",
    )
    status = sub.add_parser(
        "status",
        help="what /readersviews status shows, for every server, read from the database (no Discord)",
    )
    status.add_argument("--json", action="store_true", help="one JSON document instead of text")
    status.add_argument("--guild", type=int, metavar="ID", help="one server only")
    sub.add_parser(
        "health",
        help="ask the running bot's /healthz (metrics.listen); exit 0 if healthy (for container health checks)",
    )
    sync = sub.add_parser("sync-commands", help="force a sync of the slash commands with Discord")
    sync.add_argument("--guild", type=int, metavar="ID", help="sync to one server only (instant, for testing)")

    outbox = sub.add_parser("outbox", help="inspect and repair deliveries to the site")
    outbox_sub = outbox.add_subparsers(dest="outbox_command", metavar="ACTION", required=True)
    listing = outbox_sub.add_parser("list", help="list outbox items (default: not yet delivered)")
    listing.add_argument("--all", action="store_true", help="include delivered items")
    retry = outbox_sub.add_parser("retry", help="deliver a dead or waiting item again now")
    retry.add_argument("id", type=int, nargs="?")
    retry.add_argument(
        "--all", action="store_true", help="every dead or waiting item, and check the site at once (after a fix)"
    )
    drop = outbox_sub.add_parser("drop", help="give up on an item (it will not be delivered)")
    drop.add_argument("id", type=int)

    export = sub.add_parser("export", help="export data")
    export_sub = export.add_subparsers(dest="export_command", metavar="WHAT", required=True)
    statement = export_sub.add_parser(
        "statement",
        help="a statement's signatures as CSV or JSON (organizers' list; --public for the public one)",
        description="Export a statement's signatures. By default this is the organizers' list: every live "
        "signature, private and hidden ones included, with Discord user ids and screening flags. "
        "Use --public for the list as the site shows it.",
    )
    statement.add_argument("slug", help="the statement's slug, as /statement commands show it")
    statement.add_argument(
        "--public",
        action="store_true",
        help="only signers listed publicly and not hidden by a moderator, without Discord ids",
    )
    statement.add_argument("--format", choices=("csv", "json"), default="csv")
    statement.add_argument("--guild", type=int, metavar="ID", help="the server, when several have this slug")
    statement.add_argument("--output", "-o", metavar="FILE", help="write here instead of standard output")
    statement.add_argument("--bom", action="store_true", help="start CSV with a UTF-8 BOM (for Excel)")
    _accept_config_anywhere(parser)
    return parser


def _accept_config_anywhere(parser: argparse.ArgumentParser) -> None:
    """`--config` after the subcommand too (`readersviews run --config x.yaml`), as operators type it.

    SUPPRESS as the default: a subcommand without it leaves the top-level value alone.
    """
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                child.add_argument(
                    "--config", metavar="PATH", default=argparse.SUPPRESS, help="YAML config file (as before COMMAND)"
                )
                _accept_config_anywhere(child)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command or "run"
    try:
        config = load(args.config)
        secrets = Secrets.from_env()
        setup_logging(config.logging.level, _secret_values(secrets), config.logging.format)
        if command == "run":
            path, _ = resolve_config_path(args.config)
            database = config.database.url or str(config.database.path.absolute())
            without_file = None if path.exists() else (path.absolute(), database)
            return asyncio.run(cmd_run(config, secrets, no_config=without_file))
        if command == "check":
            return asyncio.run(cmd_check(config, secrets))
        if command == "migrate":
            if args.copy_from is not None:
                if not config.database.is_postgres:
                    raise CliError("--copy-from copies into PostgreSQL: set database.url in the config first")
                if not args.copy_from.is_file():
                    raise CliError(f"no SQLite database at {args.copy_from}")
                return asyncio.run(cmd_copy_from(config, args.copy_from.absolute()))
            return asyncio.run(cmd_migrate(config))
        if command == "sync-commands":
            return asyncio.run(cmd_sync(config, secrets, args.guild))
        if command == "outbox":
            return asyncio.run(cmd_outbox(config, args))
        if command == "export":
            return asyncio.run(cmd_export(config, args))
        if command == "status":
            return asyncio.run(cmd_status(config, args))
        if command == "health":
            return cmd_health(config)
    except (ConfigError, StoreError, CliError) as exc:
        print(f"readersviews: error: {exc}", file=sys.stderr)
        return 1
    except (sqlite3.Error, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # e.g. locked for longer than the busy timeout, or PostgreSQL went away: one line, not a traceback
        log.debug("database error", exc_info=True)
        print(f"readersviews: error: database problem: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unhandled command {command}")


def _secret_values(secrets: Secrets) -> list[str]:
    return [
        s.get_secret_value()
        for s in (secrets.discord_token, secrets.wordpress_password, secrets.webhook_secret, secrets.database_password)
        if s
    ]


def _token(secrets: Secrets) -> str:
    if secrets.discord_token is None:
        raise CliError(
            "DISCORD_TOKEN is not set: create a bot at https://discord.com/developers/applications, "
            "copy its token and run `DISCORD_TOKEN=... readersviews run`"
        )
    return secrets.discord_token.get_secret_value()


async def cmd_run(config: Config, secrets: Secrets, *, no_config: tuple[Path, str] | None = None) -> int:
    """Start the bot; `no_config`: (the config path looked for, the default database) when there was no file."""
    from bot.app import Runtime

    token = _token(secrets)
    if no_config is not None:
        log.info(
            "no config file at %s: using the built-in defaults (config/example.yaml lists them); database %s",
            *no_config,
        )
    tuning.apply_at_start()  # measured tunings, with their figures: bot/tuning.py
    # The lease (one bot per database) is taken after the config is checked, before the database opens;
    # a bad site setting fails here too, before any waiting for Discord.
    runtime = await Runtime.create(config, secrets, lease="run")
    try:
        connected = await _until_signalled(_wait_for_discord(config, token))
    except BaseException:
        await runtime.aclose()
        raise
    if not connected:
        # Stopped (systemd, Ctrl-C) while the network was still down: nothing was started yet.
        await runtime.aclose()
        log.info("stopped before connecting to Discord")
        return 0
    runtime.bot.add_listener(tuning.freeze_gc_once, "on_ready")
    try:
        await runtime.run_until_signalled(token)
    except discord.LoginFailure:
        raise CliError(
            "Discord rejected DISCORD_TOKEN (401): copy the bot token again from the developer portal"
        ) from None
    except discord.PrivilegedIntentsRequired:
        raise CliError(
            "Discord refused the Message Content intent: enable it under Bot > Privileged Gateway Intents "
            "in the developer portal, or set discord.message_content_intent: false"
        ) from None
    except (commands.ExtensionError, discord.HTTPException, aiohttp.ClientError, OSError) as exc:
        raise CliError(_start_failure(config, exc)) from None
    return 0


async def _until_signalled(work: Coroutine[Any, Any, None]) -> bool:
    """Run `work`; SIGTERM or SIGINT meanwhile cancels it. True if it finished, False if stopped."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    signalled: list[str] = []

    def stop(name: str) -> None:
        signalled.append(name)
        task.cancel()

    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop, sig.name)
    try:
        await task
    except asyncio.CancelledError:
        if not signalled:
            raise  # cancelled from outside, not by a signal
        log.info("received %s", signalled[0])
        return False
    finally:
        for sig in signals:
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)
    return True


async def _wait_for_discord(config: Config, token: str) -> None:
    """Retry with back-off while Discord can't be reached (network not up yet); a rejected token is final."""
    from bot.app import DISCORD_API_BASE
    from bot.boot import DiscordUnreachable, wait_for_discord

    api = str(config.discord.api_base_url) if config.discord.api_base_url else DISCORD_API_BASE
    try:
        await wait_for_discord(api, token, config.discord.connect_timeout_seconds)
    except discord.LoginFailure:
        raise CliError(
            "Discord rejected DISCORD_TOKEN (401): copy the bot token again from the developer portal"
        ) from None
    except DiscordUnreachable as exc:
        raise CliError(
            f"{_start_failure(config, exc.last)}; gave up after {exc.waited:.0f} s and {exc.attempts} attempt(s) "
            "(discord.connect_timeout_seconds)"
        ) from None


def _start_failure(config: Config, exc: BaseException) -> str:
    """One line for what stopped the bot from starting (a cog that does not load, Discord unreachable)."""
    if isinstance(exc, commands.ExtensionError):
        # discord.py's message already names the cog and, for a failed import, the original error.
        detail = " ".join(str(exc).split()).rstrip(".")
        return f"cannot load cog '{exc.name}': {detail}; check `cogs:` in the config"
    where = str(config.discord.api_base_url) if config.discord.api_base_url else "Discord (discord.com)"
    if isinstance(exc, discord.HTTPException):
        problem = f"HTTP {exc.status} {exc.text or exc.response.reason}".strip()
    else:
        problem = f"{type(exc).__name__}: {exc}"
    return f"cannot reach {redact_url(where)}: {redact_text(problem)} (network, proxy or discord.api_base_url)"


async def cmd_check(config: Config, secrets: Secrets) -> int:
    """Report every check, then exit 1 if any failed."""
    results: list[tuple[bool | None, str]] = []
    if not config.discord.allowed_guild_ids:
        results.append((None, OPEN_WARNING))
    results.append(
        (True, "DISCORD_TOKEN: set")
        if secrets.discord_token
        else (False, "DISCORD_TOKEN: not set (export DISCORD_TOKEN=... before `readersviews run`)")
    )
    path = config.database.path
    if not config.database.is_postgres and not path.exists():
        parent = next((p for p in (path.parent, *path.parent.parents) if p.exists()), Path("."))
        if os.access(parent, os.W_OK):
            results.append((True, f"database: {path} will be created at start (schema v{latest_version()})"))
        else:
            results.append((False, f"database: cannot create {path}: {parent} is not writable"))
        return _report(await _with_site(config, secrets, results))
    try:
        db = await Database.open(config.database.location, migrate=False, password=_database_password())
    except StoreError as exc:
        results.append((False, f"database: {exc}"))
    else:
        try:
            version, latest = await db.schema_version(), latest_version()
            pending = latest - version
            where = f"{db.location} ({await db.server_version()})" if db.dialect == "postgres" else db.location
            if pending:
                results.append(
                    (True, f"database: {where} at schema v{version}; {pending} migration(s) to apply at start")
                )
            else:
                results.append((True, f"database: {where} at schema v{version} (up to date)"))
        finally:
            await db.close()
    return _report(await _with_site(config, secrets, results))


async def _with_site(
    config: Config, secrets: Secrets, results: list[tuple[bool | None, str]]
) -> list[tuple[bool | None, str]]:
    """`results` plus the site's check, headed by the config's verdict: valid only if every part is."""
    site = await _check_site(config, secrets)
    config_problems = [(ok, line) for ok, line in site if line.startswith("config: ")]
    return (config_problems or [(True, "config: valid")]) + results + [r for r in site if r not in config_problems]


def _report(results: list[tuple[bool | None, str]]) -> int:
    """Print each result: ok, FAIL, or warn (None: works, but the operator should look)."""
    for ok, line in results:
        print(f"{'warn' if ok is None else 'ok  ' if ok else 'FAIL'} {line}")
    failed = sum(1 for ok, _ in results if ok is False)
    warned = sum(1 for ok, _ in results if ok is None)
    print(f"{len(results) - failed - warned} ok, {failed} failed" + (f", {warned} warning(s)" if warned else ""))
    return 1 if failed else 0


async def _check_site(config: Config, secrets: Secrets) -> list[tuple[bool, str]]:
    if config.site.kind == "none":
        return [(True, "site: none (nothing is mirrored)")]
    try:
        import httpx

        from bot.site import make_adapter
        from bot.site.base import SiteError
    except ImportError:  # pragma: no cover - the site package ships with the bot
        return [(False, "site: adapters unavailable")]
    async with httpx.AsyncClient() as client:
        try:
            adapter = make_adapter(config.site, secrets, client)
        except (ValueError, ConfigError) as exc:
            return [(False, f"config: site ({config.site.kind}) is not complete: {redact_text(str(exc))}")]
        try:
            detail = await adapter.check()
        except SiteError as exc:
            return [(False, f"site ({config.site.kind}): {redact_text(str(exc))}")]
        finally:
            await adapter.aclose()
    return [(True, f"site ({config.site.kind}): {redact_text(detail)}")]


@contextlib.asynccontextmanager
async def _migrating(config: Config, lease_on: Path | None, what: str) -> AsyncIterator[Database]:
    """The configured database, opened for a schema change: no bot runs on it meanwhile (the file's
    lease for SQLite, also for a SQLite file being copied; the guard for PostgreSQL)."""
    lease = Lease.acquire(lease_on, what) if lease_on is not None else None
    try:
        db = await Database.open(config.database.location, migrate=False, password=_database_password())
        try:
            if isinstance(db, PostgresDatabase):
                await db.hold_guard("migrate")  # not under a running bot (as the file lease for SQLite)
            yield db
        finally:
            await db.close()
    finally:
        if lease is not None:
            lease.release()


async def cmd_migrate(config: Config) -> int:
    created = not config.database.is_postgres and not config.database.path.exists()
    async with _migrating(config, None if config.database.is_postgres else config.database.path, "migrate") as db:
        applied = await db.migrate()
        version = await db.schema_version()
    if created:
        print(f"no database at {config.database.path} yet: created it")
    print(f"applied {', '.join(applied)}" if applied else "nothing to apply")
    print(f"database {_database_name(config)} is at schema v{version}")
    return 0


async def cmd_copy_from(config: Config, source: Path) -> int:
    """`migrate --copy-from FILE` (an existing file, absolute): into the empty PostgreSQL database (bot.store.copy)."""
    from bot.store.copy import copy_from_sqlite

    # No bot may write to the file while it is copied: take its lease as `run` would.
    async with _migrating(config, source, "migrate --copy-from") as db:
        assert isinstance(db, PostgresDatabase)
        copied = await copy_from_sqlite(source, db)
        version = await db.schema_version()
    width = max(map(len, copied), default=0)
    for table, count in copied.items():
        print(f"{table:<{width}}  {count} row(s), same as in {source.name}")
    print(f"copied {sum(copied.values())} row(s) of {len(copied)} table(s) into {_database_name(config)}")
    print(f"database {_database_name(config)} is at schema v{version}")
    return 0


async def cmd_sync(config: Config, secrets: Secrets, guild_id: int | None) -> int:
    from bot.app import Runtime

    token = _token(secrets)
    _require_database(config)
    runtime = await Runtime.create(config, secrets, force_sync=True, sync_guild_id=guild_id)
    try:
        await runtime.bot.login(token)  # login runs setup_hook, which syncs
    except discord.LoginFailure:
        raise CliError("Discord rejected DISCORD_TOKEN (401)") from None
    except (commands.ExtensionError, discord.HTTPException, aiohttp.ClientError, OSError) as exc:
        raise CliError(_start_failure(config, exc)) from None
    finally:
        await runtime.aclose()
    where = f"server {guild_id}" if guild_id else "all servers (global commands may take a minute to appear)"
    print(f"synced {len(runtime.bot.command_payload())} commands to {where}")
    return 0


async def cmd_outbox(config: Config, args: argparse.Namespace) -> int:
    from bot.store.outbox import OutboxRepo

    _require_database(config)
    store = await _open_store(config)
    try:
        repo = OutboxRepo(store.db, store.clock)
        if args.outbox_command == "list":
            states = ("pending", "inflight", "dead", "done") if args.all else ("pending", "inflight", "dead")
            rows = await repo.list(states)
            if not rows:
                print("outbox is empty" if args.all else "nothing waiting: every item was delivered")
            for row in rows:
                error = f"  last error: {redact_text(row.last_error)}" if row.last_error else ""
                print(f"#{row.id} {row.state:<8} {row.kind:<18} {row.entity:<16} attempts {row.attempts}{error}")
        elif args.outbox_command == "retry" and args.all:
            from bot.store.outbox import SiteIncidentRepo

            count = await repo.retry_all()
            probing = await SiteIncidentRepo(store.db, store.clock).probe_now()
            print(
                f"{count} item(s) will be delivered by the running bot shortly"
                + ("; it checks the site at its next pass (within 30 s)" if probing else "")
            )
        elif args.outbox_command == "retry":
            if args.id is None:
                raise CliError("say which item to retry (`readersviews outbox retry N`), or `--all`")
            if not await repo.retry(args.id):
                raise CliError(f"no outbox item #{args.id} to retry (see `readersviews outbox list`)")
            print(f"#{args.id} will be delivered by the running bot shortly")
        elif args.outbox_command == "drop":
            if not await repo.drop(args.id):
                raise CliError(f"no undelivered outbox item #{args.id} (see `readersviews outbox list`)")
            print(f"#{args.id} dropped; it will not be delivered")
    finally:
        await store.close()
    return 0


async def cmd_export(config: Config, args: argparse.Namespace) -> int:
    from bot.statement_export import export_statement

    _require_database(config)
    store = await _open_store(config)
    try:
        data = await export_statement(
            store, args.slug, fmt=args.format, guild_id=args.guild, include_discord_ids=not args.public, bom=args.bom
        )
    except LookupError as exc:
        raise CliError(str(exc)) from None
    finally:
        await store.close()
    if args.output:
        try:
            await asyncio.to_thread(Path(args.output).write_bytes, data)
        except OSError as exc:
            raise CliError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.buffer.write(data)
    return 0


def _database_password() -> str | None:
    secret = Secrets.from_env().database_password
    return secret.get_secret_value() if secret else None


async def _open_store(config: Config) -> Store:
    """The bot's store for a command: the SQLite file, or PostgreSQL (`database.url`)."""
    return await Store.open(config.database.location, SystemClock(), password=_database_password())


def _database_name(config: Config) -> str:
    """The database as messages name it (a PostgreSQL URL never holds a password: the config refuses one)."""
    return config.database.url or str(config.database.path)


def _require_database(config: Config) -> None:
    """Commands that read or change the bot's data refuse to start where there is none (and create none)."""
    if config.database.is_postgres:
        return  # a PostgreSQL database is created by its operator; opening it creates no file
    if not config.database.path.exists() and not str(config.database.path).startswith("file:"):
        # Opening would create an empty database here and then answer from it ("nothing waiting").
        raise CliError(f"no database at {config.database.path}: run this where the bot runs, or pass its --config")


async def cmd_status(config: Config, args: argparse.Namespace) -> int:
    """`/readersviews status` for every server in the database, without connecting to Discord."""
    from bot.status import collect_status, format_report, known_guilds, report_as_dict

    _require_database(config)
    store = await _open_store(config)
    try:
        guilds = [args.guild] if args.guild else await known_guilds(store)
        now = store.clock.now()
        reports = [
            (gid, await collect_status(store, guild_id=gid, started_at=None, now=now, latency=None, recent=[]))
            for gid in guilds
        ]
    finally:
        await store.close()
    if args.json:
        servers = [{"guild_id": gid, **report_as_dict(report)} for gid, report in reports]
        print(json.dumps({"servers": servers}, indent=2))
        return 0
    if not reports:
        print(f"no server has used the bot yet (database {_database_name(config)})")
    for n, (gid, report) in enumerate(reports):
        print(("\n" if n else "") + f"== server {gid}")
        print(format_report(report))
    return 0


def cmd_health(config: Config) -> int:
    """GET /healthz of the bot running with this config; for HEALTHCHECK and monitoring scripts."""
    import urllib.error
    import urllib.request

    address = config.metrics.address
    if address is None:
        raise CliError("metrics.listen is not set, so the bot serves no /healthz: set it, e.g. 127.0.0.1:9108")
    host, port = address
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        print(f"unhealthy: {exc.read().decode('utf-8', 'replace')}")
        return 1
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"unhealthy: no answer from {url}: {reason}")
        return 1
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
