"""Authorization headers: any bytes give the configured token's policy or a 401 error;
only the exact token (surrounding spaces aside) authenticates."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipp.errors import AuthenticationError
from sipp.gateway.server.auth import BearerAuth
from sipp.gateway.server.config import TokenConfig

POLICY = TokenConfig("TOK", "caller", ())
TOKEN = "sk-right-token"
AUTH = BearerAuth([(POLICY, TOKEN)])


@given(st.binary(max_size=80) | st.builds(lambda b: b"Bearer " + b, st.binary(max_size=40)))
def test_any_header_is_the_policy_or_a_401(header: bytes) -> None:
    try:
        assert AUTH.authenticate(header) is POLICY
    except AuthenticationError as exc:
        assert exc.http_status == 401 and exc.message
    else:
        assert header.startswith(b"Bearer ") and header[7:].strip() == TOKEN.encode()


@pytest.mark.parametrize("header", [f"Bearer {TOKEN}", f"Bearer   {TOKEN}  "])
def test_the_right_token_passes(header: str) -> None:
    assert AUTH.authenticate(header.encode()) is POLICY


@pytest.mark.parametrize("header", [None, b"", b"Bearer ", b"bearer " + TOKEN.encode(),
                                    b"Basic " + TOKEN.encode(), b"Bearer " + TOKEN.encode()[:-1],
                                    b"Bearer " + TOKEN.encode() + b"x"])  # fmt: skip
def test_near_misses_are_401(header: bytes | None) -> None:
    with pytest.raises(AuthenticationError):
        AUTH.authenticate(header)
