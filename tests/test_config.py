"""Configuration: defaults, validation and one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.config import Config, ConfigError, Secrets, load_config, parse_config, resolve_config_path


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_missing_default_file_gives_builtin_defaults(tmp_path: Path) -> None:
    """Without a file the bot still starts with documented defaults."""
    config = load_config(tmp_path / "absent.yaml", required=False)
    assert config == Config()
    assert config.site.kind == "none"
    assert str(config.database.path).endswith(".sqlite3")


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.yaml", required=True)


def test_unknown_key_names_the_nearest_valid_one(tmp_path: Path) -> None:
    path = write(tmp_path, "feeds:\n  max_age_dais: 2\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, required=True)
    message = str(caught.value)
    assert "feeds.max_age_dais" in message and "did you mean 'max_age_days'" in message
    assert "\n" not in message


def test_unknown_top_level_section_lists_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown option .feed.; did you mean .feeds."):
        parse_config({"feed": {}})


def test_wrong_type_names_field_and_value(tmp_path: Path) -> None:
    path = write(tmp_path, "feeds:\n  per_poll_cap: lots\n")
    with pytest.raises(ConfigError, match=r"feeds\.per_poll_cap: .*'lots'"):
        load_config(path, required=True)


def test_unreadable_yaml_reports_line(tmp_path: Path) -> None:
    path = write(tmp_path, "site:\n  kind: [wordpress\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(path, required=True)


def test_yaml_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(path, required=True)


def test_gateway_url_must_be_websocket() -> None:
    with pytest.raises(ConfigError, match=r"discord\.gateway_url"):
        parse_config({"discord": {"gateway_url": "http://localhost:1/"}})


def test_config_is_frozen() -> None:
    config = parse_config({"logging": {"level": "debug"}})
    assert config.logging.level == "DEBUG"
    with pytest.raises(Exception, match="frozen"):
        config.logging.level = "INFO"  # type: ignore[misc]


def test_example_config_is_valid() -> None:
    """The committed example documents real options: it must load as is."""
    example = Path(__file__).resolve().parent.parent / "config" / "example.yaml"
    config = load_config(example, required=True)
    assert config.site.kind == "none"


def test_secrets_only_from_environment() -> None:
    secrets = Secrets.from_env({"DISCORD_TOKEN": " abc.def ", "READERSVIEWS_WP_APP_PASSWORD": ""})
    assert secrets.discord_token is not None and secrets.discord_token.get_secret_value() == "abc.def"
    assert secrets.wordpress_password is None
    assert "abc.def" not in repr(secrets)
    with pytest.raises(ConfigError, match=r"unknown option .discord\.token."):
        parse_config({"discord": {"token": "abc"}})


def test_config_path_resolution(tmp_path: Path) -> None:
    assert resolve_config_path("x.yaml", {}) == (Path("x.yaml"), True)
    assert resolve_config_path(None, {"READERSVIEWS_CONFIG": "y.yaml"}) == (Path("y.yaml"), True)
    assert resolve_config_path(None, {})[1] is False


def test_mistyped_cog_is_refused_with_a_suggestion() -> None:
    """A cog name that does not exist fails at load (so `check` catches it), with a did-you-mean."""
    with pytest.raises(ConfigError, match=r"cogs: no cog module 'cogs.artcles'; did you mean 'cogs.articles'\?"):
        parse_config({"cogs": ["cogs.admin", "cogs.artcles"]})
    with pytest.raises(ConfigError, match=r"no cog module 'nowhere\.cog'; the bot's cogs are cogs\.admin"):
        parse_config({"cogs": ["nowhere.cog"]})


def test_unknown_guild_key_suggests_a_guild_setting() -> None:
    """Under `guilds.<id>` the hint names the per-server settings, not the top-level sections."""
    with pytest.raises(ConfigError, match=r"'guilds.123.alert_channel'; did you mean 'alert_channel_id'\?"):
        parse_config({"guilds": {123: {"alert_channel": 5}}})
    with pytest.raises(ConfigError, match="valid keys: alert_channel_id, review_channel_id"):
        parse_config({"guilds": {123: {"zzz": 5}}})


@pytest.mark.parametrize(
    ("field", "raw"),
    [
        ("site.wordpress.url", {"site": {"wordpress": {"url": "https://editor:hunter2pass@paper.example/"}}}),
        ("site.webhook.url", {"site": {"webhook": {"url": "https://editor:hunter2pass@paper.example/"}}}),
        ("discord.api_base_url", {"discord": {"api_base_url": "http://u:hunter2pass@proxy:8080/api/v10"}}),
    ],
)
def test_url_with_credentials_is_refused_without_echoing_them(field: str, raw: dict[str, Any]) -> None:
    """A password in a URL would leak into errors: refused at load, and not repeated."""
    with pytest.raises(ConfigError, match=f"{field}: must not contain a user name or password") as raised:
        parse_config(raw)
    assert "hunter2pass" not in str(raised.value)


def test_unreadable_config_path_is_one_line() -> None:
    """A config path the bot can't even look at (here a name too long for the file system; for a
    service user, a folder it may not enter) is one readable error, not a traceback."""
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(Path("x" * 300 + ".yaml"), required=True)
