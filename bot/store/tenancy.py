"""The served-servers condition shared by queries of background work (feeds, deadlines)."""

from __future__ import annotations


def only_guilds(guilds: frozenset[int] | None, column: str = "guild_id") -> tuple[str, tuple[int, ...]]:
    """An ` AND <column> IN (...)` condition for the served servers; none when every server is served.

    Background work of a server the operator took off `discord.allowed_guild_ids` must not run (and
    must not keep a timer waking: its deadlines stay in the past for ever).
    """
    if guilds is None:
        return "", ()
    ids = tuple(sorted(guilds))
    return f" AND {column} IN ({', '.join('?' * len(ids))})", ids
