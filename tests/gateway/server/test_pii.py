"""PII masking at the gateway: a target's ``pii`` table masks what its upstream sees and
restores the answer (finite and SSE); a client policy on a gateway endpoint sends the
gateway only placeholders. The upstream echoes what it received."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from sipp import ChatMessage, GatewayDescriptor, PiiPolicy
from sipp.client import SippClient
from sipp.gateway.server.config import GatewayConfigError, parse_config
from tests.gateway.server.conftest import BASE_CONFIG, ENV, TOKEN, RunningGateway, auth
from tests.pii.samples import COUNTRIES, SAMPLES
from tests.pii.test_client_masking import TEXT, VALUES, echo_openai
from tests.providers.loopback import LoopbackServer


@pytest.fixture
def upstream() -> Iterator[LoopbackServer]:
    with LoopbackServer(echo_openai) as server:
        yield server


def _config(url: str, pii: dict[str, Any] | None) -> dict[str, Any]:
    cfg = copy.deepcopy(BASE_CONFIG)
    target: dict[str, Any] = {"name": "alpha", "type": "openai_compatible", "model": "m",
                              "base_url": url + "/v1", "token_env": "KEY_A"}
    if pii is not None:
        target["pii"] = pii
    cfg["targets"] = [target]
    cfg["max_request_bytes"] = 65536
    return cfg


def _never_sent(server: LoopbackServer) -> None:
    assert server.requests
    for exchange in server.requests:
        body = exchange.body.decode()
        for value in VALUES:
            assert value not in body and json.dumps(value)[1:-1] not in body, value


def test_target_pii_table_masks_upstream_and_restores(upstream: LoopbackServer) -> None:
    gw = RunningGateway(_config(upstream.url, {"mode": "mask", "countries": list(COUNTRIES)}),
                        ENV, SippClient())
    try:
        r = requests.post(gw.url + "/v1/chat", headers=auth(), timeout=10, json={
            "model": "alpha", "messages": [{"role": "user", "content": TEXT}]})
        assert r.status_code == 200, r.text
        assert r.json()["text"] == TEXT
        r = requests.post(gw.url + "/v1/query", headers=auth(), timeout=10,
                          json={"model": "alpha", "prompt": TEXT, "stream": True})
        assert r.status_code == 200
        pieces = [json.loads(line[6:])["text"] for line in r.text.splitlines()
                  if line.startswith("data: ") and '"text"' in line
                  and "finish_reason" not in line]
        assert "".join(pieces) == TEXT
    finally:
        gw.stop()
    _never_sent(upstream)


def test_target_block_mode_refuses_with_the_types(upstream: LoopbackServer) -> None:
    gw = RunningGateway(_config(upstream.url, {"mode": "block", "entities": ["EMAIL"]}),
                        ENV, SippClient())
    try:
        r = requests.post(gw.url + "/v1/query", headers=auth(), timeout=10,
                          json={"model": "alpha", "prompt": "write to a@example.com"})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "pii_blocked"
        assert "EMAIL" in r.json()["error"]["message"]
        assert "a@example.com" not in r.text
    finally:
        gw.stop()
    assert upstream.requests == []


def test_client_policy_masks_what_a_gateway_endpoint_sends(upstream: LoopbackServer) -> None:
    gw = RunningGateway(_config(upstream.url, None), ENV, SippClient())
    try:
        with SippClient(pii=PiiPolicy(countries=COUNTRIES)) as client:
            ref = client.add("gw", GatewayDescriptor(
                "alpha", gw.url, authentication_kind="bearer", authentication_value=TOKEN))
            run = client.chat([ChatMessage("user", TEXT)], endpoint=ref, emit_tokens=True)
            assert "".join(b.text for b in run.tokens()) == TEXT
            assert run.result(10)["text"] == TEXT
    finally:
        gw.stop()
    _never_sent(upstream)


@pytest.mark.parametrize(
    ("pii", "message"),
    [
        ({"mode": "redact"}, r"targets\[0\].pii.mode: must be one of: mask, block, off"),
        ({"entities": ["SSN"]}, r"targets\[0\].pii: entities: unknown entity type 'SSN'"),
        ({"countries": ["XX"]}, r"targets\[0\].pii: .*no national-ID pattern for 'XX'"),
        ({"level": 1}, r"targets\[0\].pii.level: unknown field"),
    ],
)
def test_bad_pii_tables_name_the_field(pii: dict[str, Any], message: str) -> None:
    with pytest.raises(GatewayConfigError, match=message):
        parse_config(_config("http://127.0.0.1:9", pii))


def test_samples_cover_every_builtin_type() -> None:
    from sipp.pii import BUILTIN_ENTITIES

    assert {entity for entity, _ in SAMPLES} == set(BUILTIN_ENTITIES)
