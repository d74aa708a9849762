"""Adapters that publish approved items on the site: WordPress REST, a signed webhook, or none."""

from __future__ import annotations

import httpx

from bot.clock import Clock
from bot.config import ConfigError, Secrets, SiteSettings
from bot.site.base import (
    PermanentSiteError,
    RemoteRef,
    SiteAdapter,
    SiteError,
    SiteItem,
    TransientSiteError,
)
from bot.site.none import NoSiteAdapter

__all__ = [
    "NoSiteAdapter",
    "PermanentSiteError",
    "RemoteRef",
    "SiteAdapter",
    "SiteError",
    "SiteItem",
    "TransientSiteError",
    "make_adapter",
]


def make_adapter(
    site: SiteSettings,
    secrets: Secrets,
    http_client: httpx.AsyncClient | None = None,
    *,
    clock: Clock | None = None,
) -> SiteAdapter:
    """The adapter for `site.kind`; a missing setting or secret is a ConfigError naming it.

    The adapter uses `http_client` (shared, closed by its owner) with its own per-request
    timeouts from the config; without one it opens and closes its own.
    """
    if site.kind == "none":
        return NoSiteAdapter()
    if site.kind == "wordpress":
        from bot.site.wordpress import WordPressAdapter

        wp = site.wordpress
        if wp.url is None:
            raise ConfigError("site.wordpress.url: required when site.kind is wordpress (the site's root URL)")
        if not wp.username:
            raise ConfigError("site.wordpress.username: required when site.kind is wordpress")
        if secrets.wordpress_password is None:
            raise ConfigError(
                "READERSVIEWS_WP_APP_PASSWORD is not set: create an application password for "
                f"'{wp.username}' in WordPress (Users → Profile) and put it in the environment"
            )
        return WordPressAdapter(wp, secrets.wordpress_password.get_secret_value(), http_client, clock=clock)
    if site.kind == "webhook":
        from bot.site.webhook import WebhookAdapter

        if site.webhook.url is None:
            raise ConfigError("site.webhook.url: required when site.kind is webhook")
        if secrets.webhook_secret is None:
            raise ConfigError("READERSVIEWS_WEBHOOK_SECRET is not set: the webhook needs a shared signing secret")
        return WebhookAdapter(site.webhook, secrets.webhook_secret.get_secret_value(), http_client, clock=clock)
    raise ConfigError(f"site.kind: unknown kind {site.kind!r}")
