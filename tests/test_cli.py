"""The command line: one readable line and exit code 1 for every kind of bad input."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.__main__ import main
from bot.statement_rules import SignRequest
from bot.statements import StatementService
from bot.store import Store, latest_version
from tests.helpers import FakeClock, cli, closed_port, one_error_line

ROOT = Path(__file__).resolve().parent.parent


def test_version_and_help(workdir: Path) -> None:
    assert cli("--version", cwd=workdir).stdout.startswith("readersviews ")
    helped = cli("--help", cwd=workdir)
    assert helped.returncode == 0
    for command in ("run", "check", "migrate", "sync-commands", "outbox", "export"):
        assert command in helped.stdout
    assert "usage:" in cli("outbox", "--help", cwd=workdir).stdout


def test_run_without_token(workdir: Path) -> None:
    line = one_error_line(cli("run", cwd=workdir))
    assert "DISCORD_TOKEN is not set" in line
    assert not (workdir / "data").exists(), "nothing is written before the token is known"


def test_check_reports_and_fails_without_token(workdir: Path) -> None:
    result = cli("check", cwd=workdir)
    assert result.returncode == 1
    assert "FAIL DISCORD_TOKEN" in result.stdout
    assert "ok   config: valid" in result.stdout
    assert not (workdir / "data").exists(), "check does not create the database"
    ok = cli("check", cwd=workdir, env={"DISCORD_TOKEN": "x.y.z"})
    assert ok.returncode == 0, ok.stdout
    assert "0 failed" in ok.stdout


def test_bad_config_is_one_line(workdir: Path) -> None:
    (workdir / "c.yaml").write_text("feeds:\n  per_poll_cap: -3\n")
    line = one_error_line(cli("--config", "c.yaml", "check", cwd=workdir))
    assert "feeds.per_poll_cap" in line
    (workdir / "c.yaml").write_text("discord: {token: abc}\n")
    assert "unknown option 'discord.token'" in one_error_line(cli("--config", "c.yaml", "run", cwd=workdir))
    (workdir / "c.yaml").write_text("\tbad: [\n")
    assert "not valid YAML" in one_error_line(cli("--config", "c.yaml", "migrate", cwd=workdir))
    assert "does not exist" in one_error_line(cli("--config", "absent.yaml", "check", cwd=workdir))


def test_config_from_environment_variable(workdir: Path) -> None:
    (workdir / "c.yaml").write_text("database: {path: elsewhere.sqlite3}\n")
    result = cli("migrate", cwd=workdir, env={"READERSVIEWS_CONFIG": str(workdir / "c.yaml")})
    assert result.returncode == 0, result.stderr
    assert (workdir / "elsewhere.sqlite3").exists()


def test_migrate_then_newer_schema_refused(workdir: Path) -> None:
    result = cli("migrate", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert f"schema v{latest_version()}" in result.stdout
    assert "nothing to apply" in cli("migrate", cwd=workdir).stdout
    conn = sqlite3.connect(workdir / "data" / "readersviews.sqlite3")
    conn.execute(f"PRAGMA user_version = {latest_version() + 1}")
    conn.close()
    assert "newer than this readersviews understands" in one_error_line(cli("migrate", cwd=workdir))
    result = cli("check", cwd=workdir, env={"DISCORD_TOKEN": "x"})
    assert result.returncode == 1 and "FAIL database" in result.stdout


def test_outbox_cli_on_empty_store(workdir: Path) -> None:
    assert cli("migrate", cwd=workdir).returncode == 0
    result = cli("outbox", "list", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "every item was delivered" in result.stdout
    assert "no outbox item #7" in one_error_line(cli("outbox", "retry", "7", cwd=workdir))


def test_incomplete_site_settings_fail_before_anything_is_written(workdir: Path) -> None:
    (workdir / "c.yaml").write_text("site: {kind: wordpress}\n")
    line = one_error_line(cli("--config", "c.yaml", "run", cwd=workdir, env={"DISCORD_TOKEN": "x"}))
    assert "site.wordpress.url" in line
    assert not (workdir / "data").exists()
    (workdir / "c.yaml").write_text("site: {kind: webhook, webhook: {url: 'http://127.0.0.1:9/hook'}}\n")
    line = one_error_line(cli("--config", "c.yaml", "run", cwd=workdir, env={"DISCORD_TOKEN": "x"}))
    assert "READERSVIEWS_WEBHOOK_SECRET" in line


# -- export statement ---------------------------------------------------------------------------------

GUILD = 111_111_111_111_111_111
OTHER_GUILD = 333_333_333_333_333_333
ORGANIZER = 222_222_222_222_222_222
PUBLIC_SIGNER = 900_000_000_000_000_001
PRIVATE_SIGNER = 900_000_000_000_000_002
HIDDEN_SIGNER = 900_000_000_000_000_003
ORG_SIGNER = 900_000_000_000_000_004
WITHDRAWN_SIGNER = 900_000_000_000_000_005
SIGNER_IDS = (PUBLIC_SIGNER, PRIVATE_SIGNER, HIDDEN_SIGNER, ORG_SIGNER, WITHDRAWN_SIGNER)


async def _publish(service: StatementService, guild_id: int, title: str, slug: str) -> int:
    draft = await service.create_draft(
        guild_id=guild_id,
        organizer_id=ORGANIZER,
        title=title,
        body="We, the undersigned, ask the council to keep the library open.",
        channel_id=5,
        closes_at=None,
        slug=slug,
    )
    await service.publish(draft.id, channel_id=5, message_id=6, actor_id=ORGANIZER)
    return draft.id


@pytest.fixture
async def signed_config(tmp_path: Path) -> Path:
    """A config file whose database holds `library` (signed five ways) in one server, `parks` and a second `library`."""
    clock = FakeClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    database = tmp_path / "signons.sqlite3"
    store = await Store.open(database, clock)
    service = StatementService(store, clock)
    try:
        library = await _publish(service, GUILD, "Save the library", "library")
        signers: list[tuple[int, str, dict[str, Any]]] = [
            (PUBLIC_SIGNER, "Zoë Ó Briain", {"role": "Librarian", "city": "Leeds", "country": "UK"}),
            (PRIVATE_SIGNER, "Quiet Person", {"public": False}),
            (HIDDEN_SIGNER, "Spam Spammer", {}),
            (ORG_SIGNER, "Ann Chair", {"kind": "organization", "organization": "Friends of the Library"}),
            (WITHDRAWN_SIGNER, "Changed Mind", {}),
        ]
        for user_id, name, extra in signers:
            clock.advance(minutes=1)
            kind = extra.pop("kind", "individual")
            await service.sign(SignRequest(statement_id=library, user_id=user_id, kind=kind, name=name, **extra))
        await service.withdraw(library, WITHDRAWN_SIGNER)
        spam = next(s for s in await service.repo.live_signatures(library) if s.user_id == HIDDEN_SIGNER)
        await service.hide(library, spam.id, actor_id=ORGANIZER)
        await _publish(service, GUILD, "Keep the parks", "parks")
        other = await _publish(service, OTHER_GUILD, "Their library", "library")
        await service.sign(SignRequest(statement_id=other, user_id=PUBLIC_SIGNER, kind="individual", name="Elsewhere"))
    finally:
        await service.aclose()
        await store.close()
    config = tmp_path / "config.yaml"
    config.write_text(f"database: {{path: '{database}'}}\nlogging: {{level: WARNING}}\n")
    return config


@dataclass
class Ran:
    code: int
    stdout: bytes
    stderr: str


@pytest.fixture
def run_main(capsysbinary: pytest.CaptureFixture[bytes]) -> Iterator[Callable[..., Ran]]:
    """`run_main(*args)` runs `bot.__main__.main` in this process; its logging set-up is undone afterwards."""
    loggers = [logging.getLogger(name) for name in ("", "discord", "discord.gateway", "discord.client", "httpx")]
    saved = [(list(lg.handlers), list(lg.filters), lg.level) for lg in loggers]

    def run(*args: str) -> Ran:
        capsysbinary.readouterr()
        code = main(list(args))
        out, err = capsysbinary.readouterr()
        return Ran(code, out, err.decode())

    yield run
    for logger, (handlers, filters, level) in zip(loggers, saved, strict=True):
        logger.handlers[:], logger.filters[:] = handlers, filters
        logger.setLevel(level)


def error_line(ran: Ran) -> str:
    assert ran.code == 1, ran
    lines = [line for line in ran.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in ran.stderr, ran.stderr
    assert ran.stdout == b""
    return lines[0]


def export(config: Path, *args: str) -> list[str]:
    return ["--config", str(config), "export", "statement", *args]


def test_export_csv_is_the_organizers_list(signed_config: Path, run_main: Callable[..., Ran]) -> None:
    """The default CSV has every live signature (private and hidden too) with Discord ids; withdrawn ones are gone."""
    ran = run_main(*export(signed_config, "library", "--guild", str(GUILD)))
    assert ran.code == 0, ran.stderr
    assert not ran.stdout.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(ran.stdout.decode("utf-8"))))
    assert [(r["name"], r["discord_user_id"], r["public"], r["hidden"]) for r in rows] == [
        ("Zoë Ó Briain", str(PUBLIC_SIGNER), "yes", "no"),
        ("Quiet Person", str(PRIVATE_SIGNER), "no", "no"),
        ("Spam Spammer", str(HIDDEN_SIGNER), "yes", "yes"),
        ("Ann Chair", str(ORG_SIGNER), "yes", "no"),
    ]
    assert rows[0]["role"] == "Librarian" and rows[0]["city"] == "Leeds" and rows[0]["country"] == "UK"
    assert rows[3]["kind"] == "organization" and rows[3]["organization"] == "Friends of the Library"
    conn = sqlite3.connect(signed_config.parent / "signons.sqlite3")
    [(detail,)] = conn.execute("SELECT detail FROM audit_log WHERE action = 'statement.export'").fetchall()
    conn.close()
    assert json.loads(detail) == {"format": "csv", "organizer_columns": True, "via": "cli"}


def test_export_csv_with_bom(signed_config: Path, run_main: Callable[..., Ran]) -> None:
    """--bom starts the CSV with a UTF-8 BOM (Excel then reads accents right); the rows are the same."""
    plain = run_main(*export(signed_config, "library", "--guild", str(GUILD)))
    bom = run_main(*export(signed_config, "library", "--guild", str(GUILD), "--bom"))
    assert bom.code == 0, bom.stderr
    assert bom.stdout.startswith(b"\xef\xbb\xbfname,role,")
    assert bom.stdout[3:] == plain.stdout


def test_export_json_to_a_file(signed_config: Path, tmp_path: Path, run_main: Callable[..., Ran]) -> None:
    """--format json -o FILE writes the document to the file, nothing to standard output."""
    target = tmp_path / "library.json"
    ran = run_main(*export(signed_config, "library", "--guild", str(GUILD), "--format", "json", "-o", str(target)))
    assert ran.code == 0, ran.stderr
    assert ran.stdout == b"" and f"wrote {target}" in ran.stderr
    document = json.loads(target.read_text(encoding="utf-8"))
    assert document["statement"]["slug"] == "library" and document["statement"]["count"] == 4
    assert document["statement"]["status"] == "open"
    assert [s["name"] for s in document["signatures"]] == ["Zoë Ó Briain", "Quiet Person", "Spam Spammer", "Ann Chair"]
    assert document["signatures"][2]["hidden"] is True
    assert "Zoë Ó Briain" in target.read_text(encoding="utf-8"), "names are written as UTF-8, not escaped"


def test_export_public_list_has_no_private_hidden_or_ids(signed_config: Path, run_main: Callable[..., Ran]) -> None:
    """--public exports what the site shows: listed, not hidden, and no Discord ids in any column."""
    ran = run_main(*export(signed_config, "library", "--guild", str(GUILD), "--public"))
    assert ran.code == 0, ran.stderr
    rows = list(csv.DictReader(io.StringIO(ran.stdout.decode("utf-8"))))
    assert [r["name"] for r in rows] == ["Zoë Ó Briain", "Ann Chair"]
    assert set(rows[0]) == {"name", "role", "organization", "city", "country", "kind", "public", "signed_at"}
    document_run = run_main(*export(signed_config, "library", "--guild", str(GUILD), "--public", "--format", "json"))
    document = json.loads(document_run.stdout)
    assert [s["name"] for s in document["signatures"]] == ["Zoë Ó Briain", "Ann Chair"]
    assert document["statement"]["count"] == 2
    for output in (ran.stdout, document_run.stdout):
        for user_id in (*SIGNER_IDS, ORGANIZER):
            assert str(user_id).encode() not in output
        assert b"Quiet Person" not in output and b"Spam" not in output


def test_export_unknown_slug_is_one_line(signed_config: Path, run_main: Callable[..., Ran]) -> None:
    """An unknown slug (or one not in the given server) is one error line and exit code 1."""
    assert "no statement with slug 'nope'" in error_line(run_main(*export(signed_config, "nope")))
    line = error_line(run_main(*export(signed_config, "parks", "--guild", str(OTHER_GUILD))))
    assert f"no statement with slug 'parks' in server {OTHER_GUILD}" in line


def test_export_ambiguous_slug_asks_for_the_server(signed_config: Path, run_main: Callable[..., Ran]) -> None:
    """A slug used in two servers names both and asks for --guild; with it, that server's statement is exported."""
    line = error_line(run_main(*export(signed_config, "library")))
    assert str(GUILD) in line and str(OTHER_GUILD) in line and "--guild" in line
    ran = run_main(*export(signed_config, "library", "--guild", str(OTHER_GUILD)))
    assert ran.code == 0, ran.stderr
    assert [r["name"] for r in csv.DictReader(io.StringIO(ran.stdout.decode()))] == ["Elsewhere"]
    assert run_main(*export(signed_config, "parks")).code == 0, "a slug used once needs no --guild"


def test_export_without_database_or_writable_target(
    tmp_path: Path, signed_config: Path, run_main: Callable[..., Ran]
) -> None:
    """No database at the configured path, or an -o that cannot be written: one line, and no empty database made."""
    config = tmp_path / "elsewhere.yaml"
    config.write_text(f"database: {{path: '{tmp_path / 'absent.sqlite3'}'}}\n")
    assert "no database at" in error_line(run_main(*export(config, "library")))
    assert not (tmp_path / "absent.sqlite3").exists()
    line = error_line(run_main(*export(signed_config, "parks", "-o", str(tmp_path / "missing-dir" / "x.csv"))))
    assert "cannot write" in line and "missing-dir" in line


def test_export_through_the_console_script(signed_config: Path, tmp_path: Path) -> None:
    """`python -m bot export statement` writes the CSV bytes to a real standard output; --help explains --public."""
    result = subprocess.run(
        [sys.executable, "-m", "bot", *export(signed_config, "parks", "--bom")],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout
        == b"\xef\xbb\xbfname,role,organization,city,country,kind,public,signed_at,discord_user_id,hidden,flags\r\n"
    )
    helped = cli("export", "statement", "--help", cwd=tmp_path)
    assert helped.returncode == 0 and "--public" in helped.stdout and "Discord ids" in helped.stdout


def test_mistyped_cog_fails_check(workdir: Path) -> None:
    """`check` catches a cog typo (it used to pass, then `run` crashed), with a did-you-mean."""
    (workdir / "c.yaml").write_text("cogs: [cogs.admin, cogs.artcles]\n")
    line = one_error_line(cli("--config", "c.yaml", "check", cwd=workdir, env={"DISCORD_TOKEN": "x.y.z"}))
    assert "no cog module 'cogs.artcles'; did you mean 'cogs.articles'?" in line


@pytest.mark.parametrize("command", ["run", "sync-commands"])
def test_unreachable_discord_is_one_line(workdir: Path, command: str) -> None:
    """Discord (or the REST proxy) refusing connections is one clear line and exit 1, not a traceback."""
    api = f"http://127.0.0.1:{closed_port()}/api/v10?key=s3cret"
    # connect_timeout_seconds 0: no retries at start (tests/test_ops.py covers them).
    (workdir / "c.yaml").write_text(
        f"discord: {{api_base_url: '{api}', connect_timeout_seconds: 0}}\ndatabase: {{path: db.sqlite3}}\n"
    )
    assert cli("--config", "c.yaml", "migrate", cwd=workdir).returncode == 0
    result = cli("--config", "c.yaml", command, cwd=workdir, env={"DISCORD_TOKEN": "x.y.z"})
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("readersviews: error: cannot reach http://127.0.0.1:"), result.stderr
    assert "s3cret" not in line


def test_check_does_not_echo_url_secrets(workdir: Path) -> None:
    """A site that cannot be reached is reported without the URL's query string (it may hold a key)."""
    url = f"http://127.0.0.1:{closed_port()}/hook?token=hunter2pass"
    (workdir / "c.yaml").write_text(f"site: {{kind: webhook, webhook: {{url: '{url}'}}}}\n")
    env = {"DISCORD_TOKEN": "x.y.z", "READERSVIEWS_WEBHOOK_SECRET": "k"}
    result = cli("--config", "c.yaml", "check", cwd=workdir, env=env)
    assert result.returncode == 1
    assert "FAIL site (webhook): " in result.stdout and "127.0.0.1" in result.stdout, result.stdout
    assert "hunter2pass" not in result.stdout + result.stderr


async def test_site_connection_errors_redact_url_secrets() -> None:
    """`cannot connect to ...` names the host but never the URL's password or query string."""
    import httpx

    from bot.site.base import TransientSiteError, send

    url = f"http://editor:hunter2pass@127.0.0.1:{closed_port()}/wp-json/?key=s3cret"
    async with httpx.AsyncClient() as client:
        with pytest.raises(TransientSiteError) as raised:
            await send(client, "GET", url, seconds=5, what="WordPress")
    message = str(raised.value)
    assert message.startswith("cannot connect to WordPress at http://***@127.0.0.1:"), message
    assert "hunter2pass" not in message and "s3cret" not in message


@pytest.mark.parametrize(
    "command",
    [
        ["outbox", "list"],
        ["outbox", "list", "--all"],
        ["outbox", "retry", "3"],
        ["outbox", "drop", "3"],
        ["export", "statement", "open-letter"],
        ["sync-commands"],
    ],
)
def test_commands_without_a_database_say_so_and_create_nothing(workdir: Path, command: list[str]) -> None:
    """Run in the wrong folder, a command says there is no database there instead of answering from a new, empty one."""
    line = one_error_line(cli(*command, cwd=workdir, env={"DISCORD_TOKEN": "x.y.z"}))
    assert "no database at data/readersviews.sqlite3" in line
    assert list(workdir.iterdir()) == [], "nothing is created"


def test_migrate_says_it_creates_the_database(workdir: Path) -> None:
    """`migrate` is the install step: it creates the database, and says so."""
    result = cli("migrate", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "no database at data/readersviews.sqlite3 yet: created it" in result.stdout


def test_unusable_database_is_one_line_for_migrate_and_outbox(workdir: Path) -> None:
    """A database path that can't be opened (here a folder) is one line, never a traceback, for every command."""
    (workdir / "data" / "readersviews.sqlite3").mkdir(parents=True)
    for command in (["migrate"], ["outbox", "list"], ["outbox", "retry", "1"]):
        assert "cannot open database" in one_error_line(cli(*command, cwd=workdir))


def test_locked_database_is_one_line_for_outbox(workdir: Path) -> None:
    """A database another program keeps locked past the busy timeout: one line, not a traceback."""
    assert cli("migrate", cwd=workdir).returncode == 0
    conn = sqlite3.connect(workdir / "data" / "readersviews.sqlite3", isolation_level=None)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.execute("BEGIN EXCLUSIVE")
    try:
        line = one_error_line(cli("outbox", "retry", "1", cwd=workdir))
    finally:
        conn.execute("ROLLBACK")
        conn.close()
    assert "database" in line and "locked" in line


def test_config_is_accepted_after_the_subcommand(workdir: Path) -> None:
    """`readersviews check --config x.yaml` works like `readersviews --config x.yaml check`."""
    (workdir / "c.yaml").write_text("database: {path: elsewhere.sqlite3}\n")
    result = cli("check", "--config", "c.yaml", cwd=workdir, env={"DISCORD_TOKEN": "x.y.z"})
    assert result.returncode == 0, result.stderr
    assert "elsewhere.sqlite3" in result.stdout
    result = cli("outbox", "list", "--config", "c.yaml", cwd=workdir)
    # Relative to the config file's folder (here the working directory), so shown as an absolute path.
    assert f"no database at {workdir / 'elsewhere.sqlite3'}" in one_error_line(result)
    assert cli("migrate", "--config", "c.yaml", cwd=workdir).returncode == 0
    assert (workdir / "elsewhere.sqlite3").exists()
    # Before the subcommand still works, and the subcommand's own --config wins when both are given.
    result = cli("--config", "absent.yaml", "check", "--config", "c.yaml", cwd=workdir, env={"DISCORD_TOKEN": "x"})
    assert result.returncode == 0, result.stderr


def test_check_calls_the_config_valid_only_when_all_of_it_is(workdir: Path) -> None:
    """Site settings missing a part (here the WordPress password) make the config line FAIL, not 'valid'."""
    (workdir / "c.yaml").write_text("site: {kind: wordpress, wordpress: {url: 'http://127.0.0.1:9/', username: bob}}\n")
    result = cli("--config", "c.yaml", "check", cwd=workdir, env={"DISCORD_TOKEN": "x.y.z"})
    assert result.returncode == 1
    assert "config: valid" not in result.stdout
    assert "FAIL config: site (wordpress) is not complete: READERSVIEWS_WP_APP_PASSWORD is not set" in result.stdout


async def test_check_shows_the_sites_host_and_port(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A site at http://host:port (no path) is shown as such, not as an unparseable URL."""
    from bot.__main__ import cmd_check
    from bot.config import Secrets, parse_config
    from tests.sitefake import WP_PASSWORD, WP_USER, FakeSite

    site = FakeSite()
    base = await site.start()
    try:
        config = parse_config(
            {
                "database": {"path": str(tmp_path / "db.sqlite3")},
                "site": {"kind": "wordpress", "wordpress": {"url": base, "username": WP_USER}},
            }
        )
        code = await cmd_check(config, Secrets(discord_token="x.y.z", wordpress_password=WP_PASSWORD))
    finally:
        await site.stop()
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"ok   site (wordpress): WordPress {base}: signed in" in out
    assert "unparseable" not in out
