"""Client identity: the TCP peer, or a forwarded header sent by a trusted proxy."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from sipp.gateway.server.config import ClientIpConfig

__all__ = ["ClientIpResolver"]


class ClientIpResolver:
    """``resolve(peer, headers)`` gives the client IP string used for rate limits and logs.

    ``x_forwarded_for`` (leftmost entry) and ``x_real_ip`` are honoured only when the peer
    is inside one of ``trusted_proxy_cidrs``; otherwise, or if the header does not hold an
    IP address, the peer address is used.
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
        for name, value in headers:
            if name == self._header:
                text = value.decode("latin-1")
                if self._source == "x_forwarded_for":
                    text = text.split(",", 1)[0]
                try:
                    return str(ipaddress.ip_address(text.strip()))
                except ValueError:
                    return peer
        return peer

    def _is_trusted(self, peer: str) -> bool:
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address.version == net.version and address in net for net in self._trusted)
