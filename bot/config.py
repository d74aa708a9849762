"""Typed configuration: YAML for settings, the environment for secrets.

A bad value fails start-up with one line naming the field (see `ConfigError`).
"""

from __future__ import annotations

import difflib
import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

DEFAULT_CONFIG_PATH = Path("config/config.yaml")
CONFIG_ENV = "READERSVIEWS_CONFIG"
DEFAULT_COGS = ("cogs.admin", "cogs.articles", "cogs.readers_views", "cogs.editorial", "cogs.statements")


class ConfigError(Exception):
    """A configuration problem, phrased as one line for the operator."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _no_userinfo(value: HttpUrl | None, where: str) -> HttpUrl | None:
    """Credentials in a URL end up in error messages and logs: they belong in their own settings."""
    if value is not None and (value.username or value.password):
        raise ValueError(f"must not contain a user name or password ({where})")
    return value


class DiscordSettings(_Model):
    api_base_url: HttpUrl | None = None
    """Where REST calls go, e.g. a REST proxy: http://proxy:8080/api/v10 (default: Discord)."""
    gateway_url: str | None = None
    """Gateway websocket URL override (ws:// or wss://)."""
    guild_ready_timeout: float = Field(default=2.0, ge=0.0, le=60.0)
    max_connections: int = Field(default=64, ge=1, le=1000)
    """HTTP connections kept to Discord's REST API; bursts queue for a pooled connection."""
    message_content_intent: bool = True
    members_intent: bool = False
    allowed_guild_ids: tuple[int, ...] = ()
    """The servers this bot serves; in any other it says once that it isn't enabled and does nothing.
    Empty: every server it is added to (`check` and the start-up log warn)."""
    connect_timeout_seconds: float = Field(default=300.0, ge=0, le=86400)
    """At start, keep retrying (with back-off) this long while Discord can't be reached, then exit 1."""
    shard_count: int | None = Field(default=None, ge=1, le=10000)
    """Run the bot as this many Discord shards (discord.py's AutoShardedBot); default: not sharded."""
    shard_ids: tuple[int, ...] | None = None
    """The shards this process runs (default: all of shard_count). Processes running other shards
    share the PostgreSQL database (database.url); each shard may run in one process only."""

    @model_validator(mode="after")
    def _shards(self) -> DiscordSettings:
        if self.shard_ids is not None:
            if self.shard_count is None:
                raise ValueError("shard_ids needs shard_count (how many shards the bot has in all)")
            if not self.shard_ids or len(set(self.shard_ids)) != len(self.shard_ids):
                raise ValueError("shard_ids must list each shard once")
            wrong = [i for i in self.shard_ids if not 0 <= i < self.shard_count]
            if wrong:
                raise ValueError(
                    f"shard_ids {wrong} are not shards of {self.shard_count} (0 to {self.shard_count - 1})"
                )
        return self

    @property
    def sharded(self) -> bool:
        return self.shard_count is not None

    @field_validator("api_base_url")
    @classmethod
    def _api_without_credentials(cls, value: HttpUrl | None) -> HttpUrl | None:
        return _no_userinfo(value, "discord.py sends the bot token itself")

    @field_validator("gateway_url")
    @classmethod
    def _ws_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("ws://", "wss://")):
            raise ValueError("must start with ws:// or wss://")
        return value


class DatabaseSettings(_Model):
    path: Path = Path("data/readersviews.sqlite3")
    """The embedded SQLite file (the default store)."""
    url: str | None = None
    """postgresql://user@host:port/db selects PostgreSQL instead of `path` (password from the environment)."""

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a PostgreSQL URL: postgresql://user@host:port/database")
        if parts.password is not None:
            raise ValueError(
                "must not contain the password: set READERSVIEWS_DATABASE_PASSWORD (or PGPASSWORD, or ~/.pgpass)"
            )
        return value

    @property
    def is_postgres(self) -> bool:
        return self.url is not None

    @property
    def location(self) -> str:
        """What Store.open takes: the PostgreSQL URL, or the SQLite file's path."""
        return self.url if self.url is not None else str(self.path)


class LoggingSettings(_Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"
    """json: one object per line (time, level, logger, message and the ids involved)."""

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class MetricsSettings(_Model):
    listen: str | None = None
    """host:port for GET /metrics (Prometheus) and GET /healthz, e.g. 127.0.0.1:9108 (default: off)."""

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be host:port, e.g. 127.0.0.1:9108")
        return value

    @property
    def address(self) -> tuple[str, int] | None:
        """(host, port) to listen on, brackets of an IPv6 host removed; None when off."""
        if self.listen is None:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


class WordPressSettings(_Model):
    url: HttpUrl | None = None
    """The site's root, e.g. https://paper.example (the REST API lives under /wp-json)."""
    username: str | None = None

    @field_validator("url")
    @classmethod
    def _url_without_credentials(cls, value: HttpUrl | None) -> HttpUrl | None:
        return _no_userinfo(value, "set site.wordpress.username and READERSVIEWS_WP_APP_PASSWORD instead")

    post_status: Literal["pending", "draft", "publish"] = "pending"
    category_ids: tuple[int, ...] = ()
    tag_ids: tuple[int, ...] = ()
    statement_type: Literal["posts", "pages"] = "pages"
    timeout: float = Field(default=20.0, gt=0, le=300)


class WebhookSettings(_Model):
    url: HttpUrl | None = None
    timeout: float = Field(default=20.0, gt=0, le=300)

    @field_validator("url")
    @classmethod
    def _url_without_credentials(cls, value: HttpUrl | None) -> HttpUrl | None:
        return _no_userinfo(value, "the webhook is signed with READERSVIEWS_WEBHOOK_SECRET instead")


class SiteSettings(_Model):
    kind: Literal["none", "wordpress", "webhook"] = "none"
    disclaimer: str = (
        "Opinions expressed in these contributions are the writers' own and don't necessarily "
        "reflect those of the publication."
    )
    wordpress: WordPressSettings = WordPressSettings()
    webhook: WebhookSettings = WebhookSettings()
    statement_update_minutes: int = Field(default=10, ge=1, le=1440)
    delivered_retention_days: int = Field(default=30, ge=1, le=3650)
    """Delivered outbox items (letter texts included) are deleted after this many days."""
    review_check_minutes: int = Field(default=10, ge=1, le=1440)
    """How often letters waiting for the site's editors (pending/draft posts) are checked."""


class FeedSettings(_Model):
    default_interval_minutes: int = Field(default=15, ge=1, le=1440)
    max_age_days: float = Field(default=3.0, gt=0)
    max_bytes: int = Field(default=5_000_000, ge=10_000)
    timeout_seconds: float = Field(default=20.0, gt=0, le=300)
    max_redirects: int = Field(default=5, ge=0, le=20)
    per_poll_cap: int = Field(default=5, ge=1, le=100)
    burst_poll_seconds: int = Field(default=60, ge=10, le=3600)
    """After a poll that found per_poll_cap new items or more, the feed is polled again this soon."""
    summary_chars: int = Field(default=500, ge=100, le=1800)
    """Length a post's summary is cut to (after a sentence if one ends in its second half, else a word)."""
    poll_concurrency: int = Field(default=4, ge=1, le=64)
    """Feeds fetched at once: a slow or hanging site never holds up the others."""
    max_per_server: int = Field(default=100, ge=0)
    """Feeds one server may have (0: no cap): one server's admins can't fill the shared poller."""
    alert_after_failures: int = Field(default=3, ge=1, le=100)
    contact_url: str | None = None
    """Put in the User-Agent so site owners can reach the operator."""
    allowed_networks: tuple[IPvAnyNetwork, ...] = ()
    """Non-public networks feeds may be fetched from (e.g. 10.0.0.0/8 for an intranet site); none by default."""


class LetterSettings(_Model):
    min_chars: int = Field(default=80, ge=0)
    max_chars: int = Field(default=4000, ge=100, le=4000)
    max_links: int = Field(default=3, ge=0)
    new_account_days: int = Field(default=7, ge=0)
    new_account_queue_cap: int = Field(default=20, ge=0)
    """Letters from accounts younger than new_account_days that may wait for review at once, per server (0: no cap)."""
    submissions_per_day: int = Field(default=5, ge=1)
    retention_days: int = Field(default=90, ge=1)
    blocked_words: tuple[str, ...] = ()
    record_channel_ids: tuple[int, ...] = ()
    title_template: str = "{byline}: {first_words}"
    """A letter's title on the site; placeholders {byline}, {first_words}, {article}, {id}."""

    @field_validator("title_template")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        import string

        allowed = {"byline", "first_words", "article", "id"}
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError as exc:
            raise ValueError(f"not a valid template ({exc})") from None
        unknown = names - allowed
        if unknown:
            raise ValueError(f"unknown placeholder(s) {', '.join(sorted(unknown))}; use {', '.join(sorted(allowed))}")
        if not value.strip():
            raise ValueError("must not be empty")
        return value


class GuildSeed(_Model):
    """Per-server settings an operator may seed from the file; `/readersviews setup` overrides."""

    alert_channel_id: int | None = None
    review_channel_id: int | None = None
    editor_role_id: int | None = None
    organizer_role_id: int | None = None


class Config(_Model):
    discord: DiscordSettings = DiscordSettings()
    database: DatabaseSettings = DatabaseSettings()
    logging: LoggingSettings = LoggingSettings()
    site: SiteSettings = SiteSettings()
    feeds: FeedSettings = FeedSettings()
    letters: LetterSettings = LetterSettings()
    metrics: MetricsSettings = MetricsSettings()
    cogs: tuple[str, ...] = DEFAULT_COGS
    guilds: dict[int, GuildSeed] = {}

    @model_validator(mode="after")
    def _some_shards_need_postgres(self) -> Config:
        shards = self.discord
        some = shards.shard_ids is not None and len(shards.shard_ids) < (shards.shard_count or 0)
        if some and not self.database.is_postgres:
            raise ValueError(
                "discord.shard_ids lists only some shards: the processes running the others must share "
                "a PostgreSQL database (database.url); one SQLite file serves one process"
            )
        return self

    @field_validator("cogs")
    @classmethod
    def _cogs_exist(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """A mistyped cog fails here (`check` too), not as a traceback once the bot has logged in."""
        for name in value:
            try:
                found = importlib.util.find_spec(name) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                close = difflib.get_close_matches(name, DEFAULT_COGS, n=1, cutoff=0.6)
                hint = f"did you mean '{close[0]}'?" if close else f"the bot's cogs are {', '.join(DEFAULT_COGS)}"
                raise ValueError(f"no cog module '{name}'; {hint}")
        return value


class Secrets(_Model):
    """Secrets come only from the environment, never from the YAML."""

    discord_token: SecretStr | None = None
    wordpress_password: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    database_password: SecretStr | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Secrets:
        env = os.environ if env is None else env

        def get(name: str) -> SecretStr | None:
            value = env.get(name, "").strip()
            return SecretStr(value) if value else None

        return cls(
            discord_token=get("DISCORD_TOKEN"),
            wordpress_password=get("READERSVIEWS_WP_APP_PASSWORD"),
            webhook_secret=get("READERSVIEWS_WEBHOOK_SECRET"),
            database_password=get("READERSVIEWS_DATABASE_PASSWORD"),
        )


def resolve_config_path(
    cli_path: str | os.PathLike[str] | None, env: Mapping[str, str] | None = None
) -> tuple[Path, bool]:
    """Return (path, explicit): an explicit path must exist; the default may be absent."""
    env = os.environ if env is None else env
    if cli_path:
        return Path(cli_path), True
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]), True
    return DEFAULT_CONFIG_PATH, False


def load_config(path: Path, *, required: bool) -> Config:
    """Read and validate the YAML file; raise ConfigError with one readable line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise ConfigError(f"config file {path} does not exist") from None
        return Config()
    except OSError as exc:
        # e.g. a folder the service user can't enter (/etc/readersviews without its group).
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"config file {path} is not valid YAML{where}: {problem}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must be a mapping of sections, got {type(raw).__name__}")
    return relative_to_file(parse_config(raw, source=str(path)), path)


def relative_to_file(config: Config, path: Path) -> Config:
    """Relative paths in a config file mean "beside the file", not "wherever the bot was started"."""
    db = config.database.path
    if db.is_absolute() or config.database.is_postgres:
        return config
    resolved = path.absolute().parent / db
    if not resolved.exists() and db.exists() and resolved.absolute() != db.absolute():
        # Such a path used to be taken from the working directory: don't start on a new, empty database.
        raise ConfigError(
            f"{path}: database.path '{db}' is relative to the config file's folder, so it means {resolved}, "
            f"which does not exist; the database is at {db.absolute()}: move it there or give the absolute path"
        )
    database = config.database.model_copy(update={"path": resolved})
    return config.model_copy(update={"database": database})


def parse_config(raw: Mapping[str, Any], *, source: str = "config") -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc, raw)}") from None


def _model_at(path: list[str]) -> type[BaseModel]:
    """The model whose keys are valid at `path` (e.g. guilds.<id> -> GuildSeed), for did-you-mean hints."""
    model: type[BaseModel] = Config
    parts = iter(path)
    for part in parts:
        field_info = model.model_fields.get(part)
        inner = field_info.annotation if field_info else None
        if get_origin(inner) is dict:
            inner = get_args(inner)[1]
            if next(parts, None) is None:  # the path ends at the mapping itself (e.g. `guilds`)
                break
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            model = inner
        else:
            break
    return model


def _describe(exc: ValidationError, raw: Mapping[str, Any]) -> str:
    """The first error as `field.path: what was wrong`, with a did-you-mean for unknown keys."""
    error = exc.errors()[0]
    location = [str(part) for part in error["loc"]]
    field = ".".join(location) or "(top level)"
    if error["type"] == "extra_forbidden":
        model = _model_at(location[:-1])
        close = difflib.get_close_matches(location[-1], list(model.model_fields), n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(model.model_fields)}"
        return f"unknown option '{field}'{hint}"
    message = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    # A URL's user info or query may be a secret: such input is not echoed.
    secret = isinstance(value, str) and "://" in value and ("@" in value or "?" in value)
    shown = "" if isinstance(value, (dict, list)) or secret else f" (got {value!r})"
    return f"{field}: {message}{shown}"


def load(cli_path: str | os.PathLike[str] | None = None) -> Config:
    path, explicit = resolve_config_path(cli_path)
    return load_config(path, required=explicit)
