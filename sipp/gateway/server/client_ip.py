"""Client identity: the TCP peer, or a forwarded header sent by a trusted proxy."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from sipp.gateway.server.config import ClientIpConfig

__all__ = ["ClientIpResolver"]


class ClientIpResolver:
    """``resolve(peer, headers)`` gives the client IP string used for rate limits and logs.

    ``x_forwarded_for`` and ``x_real_ip`` are honoured only when the peer is inside one of
    ``trusted_proxy_cidrs``; otherwise the peer address is used. ``X-Forwarded-For`` is read
    as nginx's ``real_ip_recursive`` does: every proxy appends the address it saw, so the
    list is walked from the right past trusted proxies and the first untrusted address is
    the client (the entries left of it are whatever the client sent, and never decide). If
    every entry is a trusted proxy the leftmost is used; an entry that is not an IP address
    stops the walk at the peer.
    """

    def __init__(self, config: ClientIpConfig) -> None:
        self._source = config.source
        self._trusted = config.trusted_proxy_cidrs
        self._header = {"x_forwarded_for": b"x-forwarded-for",
                        "x_real_ip": b"x-real-ip"}.get(config.source)

    def resolve(self, peer: str | None, headers: Iterable[tuple[bytes, bytes]]) -> str:
        peer = peer or "unknown"
        if self._header is None or not self._trusted or not self._is_trusted(peer):
            return peer
        values = [value.decode("latin-1") for name, value in headers if name == self._header]
        if not values:
            return peer
        if self._source != "x_forwarded_for":
            return _address(values[0]) or peer
        # several header lines form one list, in order (RFC 9110 section 5.3)
        hops = [hop for value in values for hop in value.split(",")]
        client = peer
        for hop in reversed(hops):
            address = _address(hop)
            if address is None:
                return client
            client = address
            if not self._is_trusted(address):
                return address
        return client

    def forwarded_https(self, peer: str | None, headers: Iterable[tuple[bytes, bytes]]) -> bool:
        """Whether a trusted proxy says the client connected over TLS (``X-Forwarded-Proto:
        https``, the proxy's own entry: the rightmost). Any peer outside
        ``trusted_proxy_cidrs`` is not believed."""
        if not self._trusted or not self._is_trusted(peer or ""):
            return False
        protos = [value.decode("latin-1") for name, value in headers
                  if name == b"x-forwarded-proto"]
        if not protos:
            return False
        return protos[-1].split(",")[-1].strip().lower() == "https"

    def _is_trusted(self, peer: str) -> bool:
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address.version == net.version and address in net for net in self._trusted)


def _address(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None
