"""Which endpoint serves which descriptor: the table ``SippClient.add`` dispatches on.

Each entry names the :class:`~sipp.types.EndpointRef` kind and the factory that builds the
endpoint. The factories import their endpoint module when first called, so ``import sipp``
does not load the engine (numpy, jinja2, cffi) or aiohttp until an endpoint needs them.
Tests give ``SippClient`` their own table to register fake endpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from sipp.descriptors import GatewayDescriptor, LocalModelDescriptor, ProviderDescriptor
from sipp.endpoints.base import Endpoint
from sipp.types import EndpointKind, EndpointRef

__all__ = ["DEFAULT_ENDPOINT_KINDS", "EndpointEntry", "EndpointFactory", "entry_for"]

EndpointFactory = Callable[[EndpointRef, Any], Endpoint]


@dataclass(frozen=True)
class EndpointEntry:
    """One row of the table: the ref kind and how to build the endpoint."""

    kind: EndpointKind
    create: EndpointFactory


def _local(ref: EndpointRef, descriptor: LocalModelDescriptor) -> Endpoint:
    from sipp.endpoints.local import LocalEndpoint  # deferred: the engine's imports are heavy

    return LocalEndpoint(ref, descriptor)


def _gateway(ref: EndpointRef, descriptor: GatewayDescriptor) -> Endpoint:
    from sipp.endpoints.gateway import GatewayEndpoint  # deferred: aiohttp

    return GatewayEndpoint(ref, descriptor)


def _provider(ref: EndpointRef, descriptor: ProviderDescriptor) -> Endpoint:
    from sipp.endpoints.provider import ProviderEndpoint  # deferred: aiohttp

    return ProviderEndpoint(ref, descriptor)


DEFAULT_ENDPOINT_KINDS: Mapping[type, EndpointEntry] = MappingProxyType({
    LocalModelDescriptor: EndpointEntry("local", _local),
    GatewayDescriptor: EndpointEntry("gateway", _gateway),
    ProviderDescriptor: EndpointEntry("provider", _provider),
})


def entry_for(table: Mapping[type, EndpointEntry], descriptor: object) -> EndpointEntry | None:
    """The row for ``descriptor``'s class (or the nearest base class in the table)."""
    for cls in type(descriptor).__mro__:
        found = table.get(cls)
        if found is not None:
            return found
    return None
