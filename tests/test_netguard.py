"""Feed fetches never reach loopback, private or otherwise non-public addresses, however spelled or resolved."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

import httpcore
import pytest

from bot.feeds import fetch_feed
from bot.netguard import NOT_ALLOWED, AddressNotAllowed, AddressPolicy, GuardedBackend, guarded_client
from tests.feedserver import FeedServer

FEED = b"<?xml version='1.0'?><rss version='2.0'><channel><title>T</title></channel></rss>"

REFUSED_BY_DEFAULT = [
    "127.0.0.1",
    "127.0.0.2",
    "0.0.0.0",
    "0.1.2.3",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # carrier-grade NAT
    "192.0.0.8",
    "198.18.0.1",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "fec0::1",
    "ff02::1",
    "2001:db8::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::127.0.0.1",  # IPv4-compatible
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b:1::a00:1",  # local-use NAT64 of 10.0.0.1
    "2002:7f00:1::1",  # 6to4 around 127.0.0.1
    "2002:a00:1::1",  # 6to4 around 10.0.0.1
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
]
PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:4700::6810:84e5", "::ffff:93.184.216.34", "64:ff9b::5db8:d822"]


@pytest.mark.parametrize("address", REFUSED_BY_DEFAULT)
def test_default_policy_refuses_non_public_addresses(address: str) -> None:
    """Loopback, private, link-local, CGNAT, multicast, reserved, unspecified: v4, v6 and v4 inside v6."""
    assert not AddressPolicy().allows(address)


@pytest.mark.parametrize("address", PUBLIC)
def test_default_policy_allows_public_addresses(address: str) -> None:
    assert AddressPolicy().allows(address)


def test_allowed_networks_are_an_explicit_opt_in() -> None:
    """An operator's intranet network is allowed (however written), and nothing next to it is."""
    policy = AddressPolicy(["10.0.0.0/8", "fd00::/8"])
    assert policy.allows("10.1.2.3") and policy.allows("::ffff:10.1.2.3") and policy.allows("fd00::5")
    assert not policy.allows("192.168.1.1") and not policy.allows("127.0.0.1") and not policy.allows("::1")
    assert not policy.allows("not an address")


@pytest.fixture
def feed_site(feed_site: FeedServer) -> FeedServer:
    """The shared feed server, serving FEED at /feed."""
    feed_site.set_feed("/feed", FEED)
    return feed_site


def fake_dns(table: dict[str, Sequence[str] | list[Sequence[str]]]) -> Any:
    """A resolver answering from `table`; a list of answers is served one per lookup (rebinding)."""
    lookups: list[str] = []

    async def resolve(host: str, port: int) -> Sequence[str]:
        lookups.append(host)
        answer = table.get(host)
        if answer is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        if answer and isinstance(answer[0], list):
            return answer.pop(0)  # type: ignore[return-value]
        return answer  # type: ignore[return-value]

    resolve.lookups = lookups  # type: ignore[attr-defined]
    return resolve


LOOPBACK_SPELLINGS = ["127.0.0.1", "127.0.0.2", "0.0.0.0", "2130706433", "0x7f000001", "127.1", "[::1]"]


@pytest.mark.parametrize("host", [*LOOPBACK_SPELLINGS, "[::ffff:127.0.0.1]", "localhost"])
async def test_every_spelling_of_loopback_is_refused_before_connecting(feed_site: FeedServer, host: str) -> None:
    """Numeric, hex, short, IPv6 and named spellings of this machine are refused, and no request is sent."""
    port = feed_site.url().split(":")[2].split("/")[0]
    async with guarded_client(AddressPolicy()) as client:
        result = await fetch_feed(client, f"http://{host}:{port}/feed")
    assert result.status == "error" and result.error == NOT_ALLOWED
    assert feed_site.count() == 0


async def test_refusal_does_not_tell_whether_a_port_is_open(feed_site: FeedServer) -> None:
    """The answer for a listening port and a closed one is the same sentence."""
    async with FeedServer() as closed:
        closed_url = closed.url("/feed")
    async with guarded_client(AddressPolicy()) as client:
        open_port = await fetch_feed(client, feed_site.url("/feed"))
        closed_port = await fetch_feed(client, closed_url)
    assert open_port.error == closed_port.error == NOT_ALLOWED


async def test_allowed_network_reaches_the_site(feed_site: FeedServer) -> None:
    """With 127.0.0.0/8 opted in (as the tests' config does), the loopback site is fetched."""
    async with guarded_client(AddressPolicy(["127.0.0.0/8"])) as client:
        result = await fetch_feed(client, feed_site.url("/feed"))
    assert result.ok and result.body == FEED


async def test_names_resolving_to_private_addresses_are_refused(feed_site: FeedServer) -> None:
    """A public-looking name that resolves to a private address is refused; so is one with any such address."""
    dns = fake_dns({"intranet.example": ["10.0.0.5"], "mixed.example": ["93.184.216.34", "127.0.0.1"]})
    async with guarded_client(AddressPolicy(), resolver=dns) as client:
        for name in ("intranet.example", "mixed.example"):
            result = await fetch_feed(client, f"http://{name}/feed")
            assert result.error == NOT_ALLOWED
        unknown = await fetch_feed(client, "http://nowhere.example/feed")
    assert unknown.error is not None and "could not look up nowhere.example" in unknown.error
    assert dns.lookups == ["intranet.example", "mixed.example", "nowhere.example"]


async def test_redirect_to_a_private_address_is_refused(feed_site: FeedServer) -> None:
    """Every redirect hop is checked: an allowed site can't bounce the bot into the private network."""
    port = int(feed_site.url().split(":")[2].split("/")[0])
    # news.example stands for a public site: it resolves to the one address the policy allows.
    dns = fake_dns({"news.example": ["127.0.0.1"], "metadata.example": ["169.254.169.254"], "localhost": ["::1"]})
    targets = {
        "/to-metadata": "http://metadata.example/latest/meta-data/",
        "/to-loopback": f"http://127.0.0.2:{port}/feed",
        "/to-decimal": f"http://2130706434:{port}/feed",  # 127.0.0.2
        "/to-v6": f"http://[::1]:{port}/feed",
        "/to-localhost": f"http://localhost:{port}/feed",
    }
    for path, target in targets.items():
        feed_site.set_redirect(path, target)
    async with guarded_client(AddressPolicy(["127.0.0.1/32"]), resolver=dns) as client:
        assert (await fetch_feed(client, f"http://news.example:{port}/feed")).ok
        for path in targets:
            result = await fetch_feed(client, f"http://news.example:{port}{path}")
            assert result.status == "error" and result.error == NOT_ALLOWED, path
    # The first hop of each reached the site (by name: the Host header is kept), no second hop did.
    assert [r.path for r in feed_site.requests] == ["/feed", *targets]
    assert {r.header("Host") for r in feed_site.requests} == {f"news.example:{port}"}


async def test_each_connection_resolves_and_checks_again(feed_site: FeedServer) -> None:
    """DNS rebinding: a name that answered a public address once and a private one next is refused next."""
    port = int(feed_site.url().split(":")[2].split("/")[0])
    dns = fake_dns({"rebind.example": [["127.0.0.1"], ["10.0.0.1"]]})
    policy = AddressPolicy(["127.0.0.1/32"])
    async with guarded_client(policy, resolver=dns) as client:
        assert (await fetch_feed(client, f"http://rebind.example:{port}/feed")).ok
    async with guarded_client(policy, resolver=dns) as client:
        assert (await fetch_feed(client, f"http://rebind.example:{port}/feed")).error == NOT_ALLOWED
    assert feed_site.count() == 1


class _StreamTo(httpcore.AsyncMockStream):
    def __init__(self, peer: tuple[str, int]) -> None:
        super().__init__([])
        self.peer = peer
        self.closed = False

    def get_extra_info(self, info: str) -> Any:
        return self.peer if info == "server_addr" else None

    async def aclose(self) -> None:
        self.closed = True


class _Misrouting(httpcore.AsyncNetworkBackend):
    """A network that connects somewhere other than the address asked for."""

    def __init__(self, peer: tuple[str, int]) -> None:
        self.stream = _StreamTo(peer)
        self.asked: list[str] = []

    async def connect_tcp(self, host: str, port: int, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        self.asked.append(host)
        return self.stream


async def test_the_address_actually_connected_to_is_checked() -> None:
    """The connection's peer address is checked too: the checked address is the one dialled, and a
    socket that ends up elsewhere (a misrouted or intercepted connection) is closed unused."""
    dns = fake_dns({"news.example": ["93.184.216.34"]})
    misrouted = _Misrouting(("10.0.0.1", 80))
    backend = GuardedBackend(AddressPolicy(), resolver=dns, inner=misrouted)
    with pytest.raises(AddressNotAllowed):
        await backend.connect_tcp("news.example", 80)
    assert misrouted.asked == ["93.184.216.34"] and misrouted.stream.closed

    fine = _Misrouting(("93.184.216.34", 80))
    stream = await GuardedBackend(AddressPolicy(), resolver=dns, inner=fine).connect_tcp("news.example", 80)
    assert stream is fine.stream and not fine.stream.closed


async def test_unix_sockets_are_refused() -> None:
    with pytest.raises(AddressNotAllowed):
        await GuardedBackend(AddressPolicy()).connect_unix_socket("/var/run/docker.sock")
