"""Property tests of the public listener's request decoders (Sipp profile and OpenAI routes):
whatever the body, the answer is a 2xx or a 4xx with a JSON error naming the problem, never
a 5xx. Bodies mix well-typed requests, wrong types for every known field and hostile JSON
(deep nesting, huge integers, lone surrogates, NaN)."""

from __future__ import annotations

import json
from typing import Any

import requests
from hypothesis import given
from hypothesis import strategies as st

from tests.gateway.server.conftest import RunningGateway, auth

SCALARS = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
)
ANY = st.recursive(
    SCALARS,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
    max_leaves=8,
)
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "tool", "x"]), "content": ANY}
)
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "model": st.sampled_from(["alpha", "beta", "nope", "", "\ud800"]) | ANY,
    "prompt": st.text(max_size=30) | ANY,
    "input": st.text(max_size=30) | st.lists(st.text(max_size=5), max_size=4) | ANY,
    "messages": st.lists(MESSAGE, max_size=3) | ANY,
    "max_tokens": st.integers(-5, 2**65) | ANY,
    "max_completion_tokens": st.none() | st.integers(-5, 100) | ANY,
    "temperature": st.floats(-1, 3, allow_nan=False) | ANY,
    "top_p": st.floats(-1, 2, allow_nan=False) | ANY,
    "stop": st.lists(st.text(max_size=4), max_size=3) | st.text(max_size=4) | ANY,
    "stream": st.booleans() | ANY,
    "stream_options": st.fixed_dictionaries({"include_usage": ANY}) | ANY,
    "n": st.integers(-1, 3) | ANY,
    "encoding_format": st.sampled_from(["float", "base64", "x"]) | ANY,
}
BODIES = st.fixed_dictionaries({}, optional=FIELDS).map(lambda d: json.dumps(d).encode())
HOSTILE = st.sampled_from(
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"model": "alpha", "max_tokens": ' + b"9" * 5000 + b"}",
        b'{"model": "alpha", "prompt": "a\\ud800", "messages": [{"role": "user", '
        b'"content": "\\udfff"}], "input": "\\ud800"}',
        b'{"model": "\\ud800"}',
        b'{"model": "alpha", "temperature": NaN}',
        b'{"model": "alpha", "stream": true, "stream_options": 5}',
        b"\xff\xfe\x00",
        b"",
        b"null",
    ]
) | st.binary(max_size=64)

ROUTES = ["/v1/query", "/v1/chat", "/v1/embed", "/v1/chat/completions", "/v1/completions",
          "/v1/embeddings"]  # fmt: skip


def _check(gateway: RunningGateway, route: str, body: bytes) -> None:
    headers = {**auth(), "content-type": "application/json"}
    r = requests.post(gateway.url + route, data=body, headers=headers, timeout=30)
    assert r.status_code < 500, (route, body[:200], r.status_code, r.text[:300])
    if r.status_code >= 400:
        error = r.json()["error"]
        assert isinstance(error["message"], str) and error["message"], r.text


def test_public_routes_answer_every_body_without_5xx(gateway: RunningGateway) -> None:
    @given(st.sampled_from(ROUTES), BODIES | HOSTILE)
    def check(route: str, body: bytes) -> None:
        _check(gateway, route, body)

    check()
