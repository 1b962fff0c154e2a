"""Bearer-token authentication: constant-time comparison against every configured token."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from sipp.errors import AuthenticationError
from sipp.gateway.server.config import TokenConfig

__all__ = ["BearerAuth", "OpenAuth"]


class BearerAuth:
    """Maps an ``Authorization`` header to the :class:`TokenConfig` it belongs to.

    Every configured token is compared (``hmac.compare_digest`` on SHA-256 digests, so the
    time does not depend on where or whether a value matches).
    """

    def __init__(self, tokens: Sequence[tuple[TokenConfig, str]]) -> None:
        self._tokens = [(cfg, hashlib.sha256(value.encode()).digest()) for cfg, value in tokens]

    def authenticate(self, header: bytes | None) -> TokenConfig:
        """The token's policy, or :class:`AuthenticationError` (HTTP 401)."""
        if header is None or not header.startswith(b"Bearer ") or len(header) <= 7:
            raise AuthenticationError("missing bearer token (expected 'Authorization: Bearer "
                                      "<token>')")
        digest = hashlib.sha256(header[7:].strip()).digest()
        found: TokenConfig | None = None
        for cfg, expected in self._tokens:
            if hmac.compare_digest(digest, expected) and found is None:
                found = cfg
        if found is None:
            raise AuthenticationError("invalid bearer token")
        return found


class OpenAuth:
    """No bearer tokens: every request acts as ``policy`` (all targets). Only ``sipp serve``
    builds it, and only for a loopback bind; TOML configs always need ``[[tokens]]``."""

    def __init__(self, policy: TokenConfig) -> None:
        self._policy = policy

    def authenticate(self, header: bytes | None) -> TokenConfig:
        return self._policy
