"""The in-memory client blocklist: single IP addresses and CIDR networks."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable

__all__ = ["Blocklist", "normalize_entry"]

_MAX_ENTRIES = 2048
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def normalize_entry(text: str) -> str:
    """``text`` as a canonical IP address or CIDR network string; ``ValueError`` naming what
    was expected otherwise (``10.0.0.7``, ``2001:db8::/32``)."""
    value = text.strip()
    try:
        if "/" in value:
            return str(ipaddress.ip_network(value, strict=False))
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"client must be an IP address or CIDR network (like 203.0.113.7 or "
                         f"10.0.0.0/8), got {text[:64]!r}") from None


class Blocklist:
    """Blocked addresses and networks with the time each was added (at most 2048; adding
    more drops the oldest). Lives in memory (a restart empties it); with ``[state] backend =
    "redis"`` every replica mirrors the shared list (see :mod:`.replication`)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._added: dict[str, float] = {}
        self._addresses: set[str] = set()
        self._networks: dict[str, Network] = {}

    def __len__(self) -> int:
        return len(self._added)

    def add(self, text: str) -> str:
        """Block ``text`` (an IP or CIDR); returns its canonical form."""
        entry = normalize_entry(text)
        self._added.pop(entry, None)
        self._added[entry] = self._clock()
        if "/" in entry:
            self._networks[entry] = ipaddress.ip_network(entry)
        else:
            self._addresses.add(entry)
        while len(self._added) > _MAX_ENTRIES:
            self._forget(next(iter(self._added)))
        return entry

    def replace(self, entries: dict[str, float]) -> None:
        """Make the list exactly ``entries`` (canonical entry -> Unix time added), oldest
        first: how a replica applies the blocklist shared through Redis."""
        for entry in list(self._added):
            self._forget(entry)
        for entry, added in sorted(entries.items(), key=lambda item: item[1]):
            self._added[entry] = added
            if "/" in entry:
                self._networks[entry] = ipaddress.ip_network(entry)
            else:
                self._addresses.add(entry)
        while len(self._added) > _MAX_ENTRIES:
            self._forget(next(iter(self._added)))

    def added_at(self, entry: str) -> float | None:
        """When ``entry`` (canonical) was added, or None."""
        return self._added.get(entry)

    def remove(self, text: str) -> bool:
        """Unblock ``text``; False when it was not on the list."""
        entry = normalize_entry(text)
        if entry not in self._added:
            return False
        self._forget(entry)
        return True

    def _forget(self, entry: str) -> None:
        del self._added[entry]
        self._addresses.discard(entry)
        self._networks.pop(entry, None)

    def blocks(self, client: str) -> bool:
        """Whether the client address (as resolved by the gateway) is blocked."""
        if client in self._addresses:
            return True
        if not self._networks:
            return False
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            return False
        return any(address.version == net.version and address in net
                   for net in self._networks.values())

    def entries(self) -> list[dict[str, object]]:
        """``[{client, addedUnixSeconds, ageSeconds}]``, newest first."""
        now = self._clock()
        return [{"client": entry, "addedUnixSeconds": int(added),
                 "ageSeconds": max(0, int(now - added))}
                for entry, added in reversed(self._added.items())]
