"""site.kind = none: nothing leaves the bot; every operation succeeds locally."""

from __future__ import annotations

from bot.site.base import RemoteRef, SiteItem


class NoSiteAdapter:
    name = "none"

    async def create(self, item: SiteItem) -> RemoteRef:
        return RemoteRef(None, None)

    async def update(self, remote_id: str | None, item: SiteItem) -> RemoteRef:
        return RemoteRef(remote_id, None)

    async def retract(self, remote_id: str | None, item: SiteItem) -> None:
        return None

    async def lookup(self, item: SiteItem) -> RemoteRef | None:
        return None

    async def check(self) -> str:
        return "site mirroring is off (site.kind: none): approved items stay in Discord"

    async def aclose(self) -> None:
        return None
