"""The command line: one readable line and exit code 1 for every kind of bad input."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.store import latest_version

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in {"DISCORD_TOKEN", "READERSVIEWS_CONFIG"}}
    base["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A world-readable folder (the read-only test runs as another user)."""
    path = Path(tempfile.mkdtemp(prefix="rv-cli-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


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
