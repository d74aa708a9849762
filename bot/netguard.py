"""Where URLs typed by server admins may lead: public internet addresses only, unless the operator opts in.

Feed URLs come from admins of any server the bot is in, and feeds redirect wherever they like, so a
fetch must never reach the bot's own machine or network (cloud metadata, databases, admin panels).
Checking the URL's spelling is not enough: `2130706433`, `0x7f000001`, `[::ffff:127.0.0.1]` and names
that resolve to private addresses all reach loopback, and a name may resolve differently on a second
lookup (DNS rebinding). So the check sits where the connection is made: `GuardedBackend` resolves the
host itself, refuses the connection unless every address is allowed, connects to the checked address
(TLS still verifies the host name), and checks the peer address of the socket it got. Every redirect
hop is a new connection and is checked the same way.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Any

import httpcore
import httpx

NOT_ALLOWED = "that address is not allowed"

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""`(host, port) -> addresses`: how a host name is looked up (injectable so tests can fake DNS)."""

# Not public, whatever `is_global` says in a given Python version.
_NEVER_PUBLIC = tuple(
    ip_network(net)
    for net in (
        "0.0.0.0/8",  # "this network"
        "100.64.0.0/10",  # carrier-grade NAT
        "192.0.0.0/24",  # IETF protocol assignments
        "198.18.0.0/15",  # benchmarking
        "240.0.0.0/4",  # reserved, and the broadcast address
        "fc00::/7",  # unique local
        "fec0::/10",  # site-local (deprecated, still routed by some stacks)
        "2001:db8::/32",  # documentation
    )
)
# IPv6 addresses that carry an IPv4 destination in their last 32 bits (the packet goes there).
_NAT64 = (ip_network("64:ff9b::/96"), ip_network("64:ff9b:1::/48"))
_6TO4 = ip_network("2002::/16")


class AddressNotAllowed(Exception):
    """A connection to a non-public address that the operator has not allowed was refused."""

    def __init__(self) -> None:
        super().__init__(NOT_ALLOWED)


def _is_public(address: IPAddress) -> bool:
    if (
        not address.is_global
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or (isinstance(address, IPv6Address) and address.is_site_local)
    ):
        return False
    return not any(address in network for network in _NEVER_PUBLIC if network.version == address.version)


def _destination(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv4-mapped or NAT64 IPv6 address really reaches; else the address itself."""
    if isinstance(address, IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if any(address in network for network in _NAT64):
            return IPv4Address(int(address) & 0xFFFFFFFF)
    return address


class AddressPolicy:
    """Which addresses a fetch may connect to: public ones, plus the operator's `allowed_networks`."""

    def __init__(self, allowed_networks: Iterable[IPNetwork | str] = ()) -> None:
        self.allowed_networks: tuple[IPNetwork, ...] = tuple(ip_network(network) for network in allowed_networks)

    def allows(self, address: IPAddress | str) -> bool:
        if isinstance(address, str):
            try:
                address = ip_address(address)
            except ValueError:
                return False
        destination = _destination(address)
        if any(candidate in network for network in self.allowed_networks for candidate in {address, destination}):
            return True
        if destination is not address:  # IPv4-mapped or NAT64: judged by where it leads
            return _is_public(destination)
        if address in _6TO4:  # both the 6to4 address and the IPv4 relay it embeds must be public
            embedded = address.sixtofour  # type: ignore[union-attr]
            return _is_public(address) and embedded is not None and _is_public(embedded)
        return _is_public(address)


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system's resolver gives for `host` (numeric spellings such as `2130706433` included)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        if str(sockaddr[0]) not in addresses:
            addresses.append(str(sockaddr[0]))
    return addresses


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that connects only to addresses the policy allows (see module doc)."""

    def __init__(
        self,
        policy: AddressPolicy,
        resolver: Resolver | None = None,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.policy = policy
        self.resolver = resolver or system_resolver
        self.inner = inner or httpcore.AnyIOBackend()

    async def _addresses(self, host: str, port: int, seconds: float | None) -> list[IPAddress]:
        try:
            return [ip_address(host.strip("[]"))]
        except ValueError:
            pass
        try:  # the numeric spellings resolvers accept too: 2130706433, 0x7f000001, 0177.0.0.1, 127.1
            return [IPv4Address(socket.inet_aton(host))]
        except OSError:
            pass
        try:
            async with asyncio.timeout(seconds):
                found = await self.resolver(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"looking up {host} timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"could not look up {host}: {exc.strerror or exc}") from None
        addresses: list[IPAddress] = []
        for text in found:
            try:
                addresses.append(ip_address(text))
            except ValueError:
                raise AddressNotAllowed from None
        if not addresses:
            raise httpcore.ConnectError(f"could not look up {host}: no addresses")
        return addresses

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._addresses(host, port, timeout)
        # One disallowed address refuses them all: a name answering both public and private
        # addresses is a rebinding attempt, and which one a retry would reach is not ours to pick.
        if not all(self.policy.allows(address) for address in addresses):
            raise AddressNotAllowed
        failure: Exception | None = None
        for address in addresses:
            try:
                stream = await self.inner.connect_tcp(
                    str(address), port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
                continue
            peer = stream.get_extra_info("server_addr")
            if not peer or not self.policy.allows(str(peer[0])):
                await stream.aclose()
                raise AddressNotAllowed
            return stream
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise AddressNotAllowed

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def guarded_client(
    policy: AddressPolicy, *, resolver: Resolver | None = None, **client_options: Any
) -> httpx.AsyncClient:
    """An httpx client whose every connection (redirect hops included) goes through `GuardedBackend`.

    Proxies from the environment are not used: a proxy would make the connection on our behalf,
    out of reach of the address check.
    """
    transport = httpx.AsyncHTTPTransport()
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=GuardedBackend(policy, resolver),
    )
    return httpx.AsyncClient(transport=transport, trust_env=False, **client_options)
