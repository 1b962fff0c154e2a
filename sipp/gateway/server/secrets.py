"""Secret values named by the TOML, read from the environment when ``serve`` starts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sipp.errors import ConfigurationError
from sipp.gateway.server.config import (
    AnthropicTarget,
    GatewayConfig,
    GatewayTarget,
    OpenAICompatibleTarget,
    OpenAITarget,
    leaf_targets,
)

__all__ = ["GatewaySecrets", "read_secrets"]


@dataclass(frozen=True)
class GatewaySecrets:
    """Values of the secret env vars; ``repr`` never shows them."""

    admin_password: str = field(repr=False)
    tokens: tuple[tuple[str, str], ...] = field(repr=False)  # (caller, bearer value)
    target_keys: Mapping[str, str] = field(repr=False)  # target name -> API key / token
    state_url: str | None = field(default=None, repr=False)  # [state] url_env's value


def _read(environ: Mapping[str, str], name: str, problems: list[str], *,
          no_whitespace: bool) -> str:
    value = environ.get(name)
    if value is None:
        problems.append(f"{name} is required")
        return ""
    if not value.strip():
        problems.append(f"{name} must not be empty")
        return ""
    if no_whitespace and any(ch.isspace() for ch in value):
        problems.append(f"{name} must not contain whitespace")
        return ""
    return value


def read_secrets(config: GatewayConfig, environ: Mapping[str, str]) -> GatewaySecrets:
    """Read every secret; a missing, blank or (for bearer/API keys) whitespace-containing
    value is an error naming the variable, never its value."""
    problems: list[str] = []
    admin = _read(environ, config.admin_password_env, problems, no_whitespace=False)
    tokens = tuple(
        (token.caller, _read(environ, token.env, problems, no_whitespace=True))
        for token in config.tokens
    )
    keys: dict[str, str] = {}
    for target in leaf_targets(config.targets):  # deployments of routed targets too
        if isinstance(target, OpenAITarget | AnthropicTarget):
            keys[target.name] = _read(environ, target.api_key_env, problems, no_whitespace=True)
        elif isinstance(target, OpenAICompatibleTarget):
            keys[target.name] = _read(environ, target.token_env, problems, no_whitespace=True)
        elif isinstance(target, GatewayTarget) and target.token_env is not None:
            keys[target.name] = _read(environ, target.token_env, problems, no_whitespace=True)
    state_url = None
    if config.state.backend == "redis" and config.state.url_env:
        state_url = _read(environ, config.state.url_env, problems, no_whitespace=True)
        if state_url and not state_url.startswith(("redis://", "rediss://", "unix://")):
            problems.append(f"{config.state.url_env} must be a redis://, rediss:// or "
                            "unix:// URL")
    if problems:
        raise ConfigurationError("gateway secrets are invalid: " + "; ".join(problems))
    return GatewaySecrets(admin, tokens, keys, state_url)
