"""Vision is local-only: media sent to gateway or provider endpoints is refused before any
request leaves the client (chat and query, options and endpoint_options alike)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest

from sipp import (
    ChatMessage,
    GatewayDescriptor,
    LocalTextOptions,
    ProviderDescriptor,
    SippClient,
)
from sipp.errors import InvalidRequestError
from sipp.types import EndpointRef
from tests.providers.loopback import Exchange, LoopbackServer

PNG_HEADER = b"\x89PNG\r\n\x1a\n"


def never(ex: Exchange) -> None:  # pragma: no cover - the test fails if a request arrives
    ex.send_json(500, {"error": {"code": "unexpected", "message": "no request expected"}})


@pytest.fixture
def client() -> Iterator[SippClient]:
    with SippClient() as c:
        yield c


def _gateway(client: SippClient, url: str) -> EndpointRef:
    return client.add("gw", GatewayDescriptor("target", url))


def _openai(client: SippClient, url: str) -> EndpointRef:
    return client.add("oa", ProviderDescriptor("openai", "gpt-test", api_key="sk-test",
                                               base_url=url + "/v1"))


def _anthropic(client: SippClient, url: str) -> EndpointRef:
    return client.add("an", ProviderDescriptor("anthropic", "claude-test", api_key="sk-test",
                                               base_url=url + "/v1"))


@pytest.mark.parametrize("add", [_gateway, _openai, _anthropic], ids=["gateway", "openai",
                                                                       "anthropic"])
def test_media_is_refused_before_sending(client: SippClient,
                                         add: Callable[[SippClient, str], EndpointRef]) -> None:
    image = np.zeros((2, 2, 3), dtype=np.uint8)
    media = LocalTextOptions(media=[image, PNG_HEADER])
    with LoopbackServer(never) as server:
        ref = add(client, server.url)
        attempts: list[Callable[[], object]] = [
            lambda: client.chat([ChatMessage("user", "what is this?")], endpoint=ref,
                                local=media),
            lambda: client.query("describe <__media__>", endpoint=ref, local=media),
        ]
        if ref.kind == "gateway":
            attempts.append(
                lambda: client.query("x", endpoint=ref, endpoint_options={"media": ["a.png"]})
            )
        for attempt in attempts:
            with pytest.raises(InvalidRequestError, match=r"local|media"):
                attempt().result(timeout=10)  # type: ignore[attr-defined]
    assert server.requests == []
