"""What ships for operators: the systemd unit, the container recipe, the invite URL, the dependencies."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import discord
import pytest

from bot.app import INVITE_PERMISSIONS, invite_url
from bot.config import load_config
from tests.helpers import World, free_port, read_until, stop

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the unit (ExecStart pointed at this checkout's console script)."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed here (.ci/run installs the systemd package)")
    script = Path(sys.executable).parent / "readersviews"
    assert script.exists(), "pip install -e . provides the console script"
    unit = (ROOT / "deploy" / "readersviews.service").read_text()
    for needed in ("User=readersviews", "Restart=on-failure", "ProtectSystem=strict", "StateDirectory=readersviews"):
        assert needed in unit
    (tmp_path / "readersviews.service").write_text(unit.replace("/opt/readersviews/bin/readersviews", str(script)))
    result = subprocess.run(
        [tool, "verify", str(tmp_path / "readersviews.service")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "readersviews.service" not in result.stderr, result.stderr  # no warnings about the unit


README_PERMISSIONS = {
    "View Channels": "view_channel",
    "Send Messages": "send_messages",
    "Send Messages in Threads": "send_messages_in_threads",
    "Create Public Threads": "create_public_threads",
    "Manage Threads": "manage_threads",
    "Embed Links": "embed_links",
    "Attach Files": "attach_files",
    "Read Message History": "read_message_history",
}


def test_readme_permissions_and_invite_url_agree_with_the_code() -> None:
    """The listed permissions, the integer in the example URL and the code's set are one and the same."""
    listed = re.search(r"these permissions: (.*?)\. For example", README, re.S)
    assert listed is not None
    names = [name.strip() for name in " ".join(listed.group(1).split()).split(",")]
    assert sorted(names) == sorted(README_PERMISSIONS)
    expected = discord.Permissions(**dict.fromkeys(README_PERMISSIONS.values(), True))
    assert expected == INVITE_PERMISSIONS
    assert invite_url("YOUR_APP_ID") in README
    assert f"permissions={expected.value}" in README


def test_every_imported_module_is_a_declared_dependency() -> None:
    """bot/ and cogs/ import only the standard library, themselves, and what pyproject.toml installs."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {
        re.split(r"[<>=!~ ;\[]", dep, maxsplit=1)[0].lower().replace("_", "-") for dep in project["dependencies"]
    }
    providers = importlib.metadata.packages_distributions()
    missing = set()
    for path in [*(ROOT / "bot").rglob("*.py"), *(ROOT / "cogs").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            modules = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module]
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                else []
            )
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top in {"bot", "cogs"}:
                    continue
                dists = {d.lower().replace("_", "-") for d in providers.get(top, [top])}
                if not dists & declared:
                    missing.add(f"{top} ({path.relative_to(ROOT)})")
    assert not missing, f"imported but not declared in pyproject.toml: {sorted(missing)}"


def test_license_matches_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "MIT"}
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_container_default_config_puts_the_database_on_the_volume() -> None:
    """The image's config (copied to /srv/readersviews/config/) resolves the database into the data volume."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY deploy/container.yaml /srv/readersviews/config/config.yaml" in dockerfile
    assert 'VOLUME ["/srv/readersviews/data"]' in dockerfile
    assert "USER readersviews" in dockerfile and "HEALTHCHECK" in dockerfile
    config = load_config(ROOT / "deploy" / "container.yaml", required=True)
    where = config.database.path.resolve()
    assert where == (ROOT / "data" / "readersviews.sqlite3").resolve()  # ../data from deploy/ as from config/
    assert config.metrics.listen == "0.0.0.0:9108"


def test_example_config_keeps_the_database_beside_config(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    shutil.copy(ROOT / "config" / "example.yaml", tmp_path / "config" / "config.yaml")
    config = load_config(tmp_path / "config" / "config.yaml", required=True)
    assert config.database.path.resolve() == (tmp_path / "data" / "readersviews.sqlite3").resolve()


async def test_image_entry_commands_as_the_image_runs_them(world: World, tmp_path: Path) -> None:
    """No container engine can fetch a base image here, so the image's ENTRYPOINT/CMD and HEALTHCHECK
    (`readersviews run`, `readersviews health`) run as the image runs them: from the working directory,
    with the image's config at config/config.yaml and no --config."""
    import asyncio

    port = free_port()
    workdir = tmp_path / "srv"
    (workdir / "config").mkdir(parents=True)
    text = (ROOT / "deploy" / "container.yaml").read_text().replace("0.0.0.0:9108", f"127.0.0.1:{port}")
    text += (
        f"discord: {{api_base_url: '{world.fake.api_base}', gateway_url: '{world.fake.gateway_url}',"
        " guild_ready_timeout: 0.1}\n"
    )
    (workdir / "config" / "config.yaml").write_text(text)
    env: dict[str, Any] = {
        **{k: v for k, v in os.environ.items() if k != "READERSVIEWS_CONFIG"},
        "DISCORD_TOKEN": world.fake.token,
        "PYTHONPATH": str(ROOT),
    }
    script = Path(sys.executable).parent / "readersviews"
    unhealthy = await asyncio.to_thread(
        subprocess.run, [script, "health"], cwd=workdir, env=env, capture_output=True, text=True, timeout=60
    )
    assert unhealthy.returncode == 1 and "unhealthy" in unhealthy.stdout
    process = await asyncio.create_subprocess_exec(
        script, "run", cwd=workdir, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    seen: list[str] = []
    try:
        await read_until(process, "logged in as", seen)
        healthy = await asyncio.to_thread(
            subprocess.run, [script, "health"], cwd=workdir, env=env, capture_output=True, text=True, timeout=60
        )
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        assert '"status": "ok"' in healthy.stdout
    finally:
        assert await stop(process, seen) == 0, "".join(seen)
    assert (tmp_path / "srv" / "data" / "readersviews.sqlite3").exists(), "the database is in the volume's folder"
