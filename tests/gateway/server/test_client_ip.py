"""Client IP from forwarded headers: the rightmost untrusted hop (nginx real_ip_recursive),
whatever a client puts to its left; properties over random hop lists and header splits."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from sipp.gateway.server.client_ip import ClientIpResolver
from sipp.gateway.server.config import ClientIpConfig

TRUSTED = ("10.0.0.0/8", "127.0.0.0/8")
PEER = "127.0.0.1"


def _resolver(source: str = "x_forwarded_for") -> ClientIpResolver:
    nets = tuple(ipaddress.ip_network(n) for n in TRUSTED)
    return ClientIpResolver(ClientIpConfig(source=source, trusted_proxy_cidrs=nets))  # type: ignore[arg-type]


PROXY = st.integers(1, 2**24 - 2).map(lambda i: str(ipaddress.ip_address(0x0A000000 + i)))
PROXIES = st.lists(PROXY, max_size=3)
CLIENTS = (
    st.ip_addresses(v=4)
    .map(str)
    .filter(lambda a: not ipaddress.ip_address(a).is_loopback and not a.startswith("10."))
)
GARBAGE = st.lists(st.text(max_size=12).filter(lambda t: "," not in t) | CLIENTS, max_size=4)


@given(GARBAGE, CLIENTS, PROXIES, st.integers(0, 6))
def test_rightmost_untrusted_hop_is_the_client(
    spoofed: list[str], client: str, proxies: list[str], split: int
) -> None:
    hops = [*spoofed, client, *proxies]
    cut = min(split, len(hops))
    lines = [", ".join(hops[:cut]), ", ".join(hops[cut:])]
    headers = [(b"x-forwarded-for", line.encode("latin-1", "replace")) for line in lines if line]
    assert _resolver().resolve(PEER, headers) == client


def test_untrusted_peer_and_odd_headers() -> None:
    r = _resolver()
    assert r.resolve("203.0.113.5", [(b"x-forwarded-for", b"1.2.3.4")]) == "203.0.113.5"
    assert r.resolve(PEER, [(b"x-forwarded-for", b"10.0.0.1, 10.0.0.2")]) == "10.0.0.1"
    assert r.resolve(PEER, [(b"x-forwarded-for", b"1.2.3.4, junk")]) == PEER
    assert r.resolve(PEER, [(b"x-forwarded-for", b"junk, 10.0.0.3")]) == "10.0.0.3"
    assert r.resolve(PEER, []) == PEER
    assert _resolver("x_real_ip").resolve(PEER, [(b"x-real-ip", b"198.51.100.7")]) == "198.51.100.7"
