"""Turning configured targets into registered endpoints of the gateway's own SippClient."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sipp._template_source import read_chat_template
from sipp.client import SippClient
from sipp.config import NativeRuntimeConfig
from sipp.descriptors import LocalModelDescriptor, ProviderDescriptor, TimeoutPolicy
from sipp.errors import ConfigurationError, SippError
from sipp.gateway.server.config import (
    AnthropicTarget,
    GatewayConfig,
    LocalTarget,
    OpenAICompatibleTarget,
    OpenAITarget,
    Target,
)
from sipp.gateway.server.logging import logger
from sipp.models.source import parse_source
from sipp.native import requested_backend, select_backend
from sipp.types import EndpointRef

__all__ = ["OPENAI_CORRELATION_HEADER", "TargetRegistry", "TargetState", "correlation_header",
           "descriptor_for", "local_runtime"]

# The header OpenAI reads a caller's request id from.
OPENAI_CORRELATION_HEADER = "x-client-request-id"


def _timeout(seconds: float | None) -> TimeoutPolicy | None:
    if seconds is None:
        return None
    return TimeoutPolicy(connect=min(10.0, seconds), request=seconds, stream_read=seconds)


def local_runtime(target: LocalTarget) -> NativeRuntimeConfig:
    """The local target's ``NativeRuntimeConfig`` (its ``runtime`` table plus ``stats`` and
    the cpu backend's placement)."""
    return NativeRuntimeConfig.from_dict(target.runtime_table())


def descriptor_for(target: Target, key: str | None
                   ) -> LocalModelDescriptor | ProviderDescriptor:
    """The descriptor ``SippClient.add`` registers for ``target`` (``key`` = its secret)."""
    if isinstance(target, LocalTarget):
        source = parse_source(target.model, field=f"targets.{target.name}.model")
        model = target.model
        if source.kind == "path" and not Path(model).expanduser().is_absolute():
            model = str(Path.cwd() / model)  # relative to the working directory
        template = (read_chat_template(target.chat_template,
                                       f"targets.{target.name}.chat_template")
                    if target.chat_template is not None else None)
        return LocalModelDescriptor(model, local_runtime(target), chat_template=template)
    if isinstance(target, OpenAITarget):
        return ProviderDescriptor("openai", target.model, api_key=key, base_url=target.base_url,
                                  timeout=_timeout(target.timeout_seconds))
    if isinstance(target, AnthropicTarget):
        return ProviderDescriptor("anthropic", target.model, api_key=key,
                                  base_url=target.base_url, version=target.version,
                                  timeout=_timeout(target.timeout_seconds))
    assert isinstance(target, OpenAICompatibleTarget)
    return ProviderDescriptor("openai_compatible", target.model, api_key=key,
                              base_url=target.base_url, timeout=_timeout(target.timeout_seconds))


def correlation_header(target: Target) -> str | None:
    """The header that carries the gateway request id to ``target``'s upstream: OpenAI's
    ``x-client-request-id``, an OpenAI-compatible target's ``correlation_header``, none
    for Anthropic and local targets."""
    if isinstance(target, OpenAITarget):
        return OPENAI_CORRELATION_HEADER
    if isinstance(target, OpenAICompatibleTarget):
        return target.correlation_header
    return None


def _select_backend(config: GatewayConfig) -> None:
    """An explicit GPU backend on local targets picks the process-wide native backend
    (passed to :func:`sipp.native.select_backend`; a different ``SIPP_PYTHON_BACKEND`` is an
    error rather than silently overridden)."""
    wanted = {t.backend for t in config.targets
              if isinstance(t, LocalTarget) and t.backend in ("cuda", "metal", "vulkan")}
    if len(wanted) > 1:
        raise ConfigurationError(
            f"local targets request different GPU backends ({', '.join(sorted(wanted))}); "
            "one gateway process loads one native backend")
    if wanted:
        backend = wanted.pop()
        current = requested_backend()
        if current not in ("auto", backend):
            raise ConfigurationError(
                f"a local target requests backend {backend!r} but SIPP_PYTHON_BACKEND={current}")
        select_backend(backend)


@dataclass
class TargetState:
    target: Target
    ref: EndpointRef
    status: Literal["pending", "loading", "ready", "failed"] = "pending"
    error: str | None = None
    stats: str = field(default="off")


class TargetRegistry:
    """Every configured target, its endpoint ref and load state; ``ready`` once all loaded."""

    def __init__(self, config: GatewayConfig, client: SippClient,
                 keys: Mapping[str, str]) -> None:
        self.client = client
        self._keys = keys
        self.states: dict[str, TargetState] = {}
        for target in config.targets:
            kind: Literal["local", "provider"] = (
                "local" if isinstance(target, LocalTarget) else "provider")
            stats = target.stats if isinstance(target, LocalTarget) else "off"
            self.states[target.name] = TargetState(target, EndpointRef(kind, target.name),
                                                   stats=stats)
        self._config = config
        self.ready = False
        self.failed = False

    def get(self, name: str) -> TargetState | None:
        return self.states.get(name)

    def load_all_sync(self) -> None:
        """Register every target (local models load now); raises on the first failure."""
        _select_backend(self._config)
        for state in self.states.values():
            state.status = "loading"
            try:
                self.client.add(state.target.name,
                                descriptor_for(state.target, self._keys.get(state.target.name)),
                                pii=state.target.pii)
                self._correlate(state)
            except (SippError, OSError, ImportError) as exc:
                state.status = "failed"
                state.error = str(exc)
                self.failed = True
                raise ConfigurationError(
                    f"failed to load target {state.target.name}: {exc}") from exc
            state.status = "ready"
            logger.info("target loaded", extra={"target": state.target.name,
                                                "type": state.target.type})
        self.ready = True

    def _correlate(self, state: TargetState) -> None:
        header = correlation_header(state.target)
        if header is not None:
            self.client.endpoint(state.ref).set_correlation_header(header)

    async def load_all(self) -> None:
        await asyncio.to_thread(self.load_all_sync)

    def local_metrics(self) -> dict[str, Mapping[str, Any]]:
        """Runtime metrics of loaded local targets whose ``stats`` is not off."""
        out: dict[str, Mapping[str, Any]] = {}
        for name, state in self.states.items():
            if state.status == "ready" and state.stats != "off":
                try:
                    out[name] = self.client.metrics(state.ref)
                except SippError:
                    continue
        return out
