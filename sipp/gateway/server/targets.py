"""Turning configured targets into registered endpoints of the gateway's own SippClient."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sipp._template_source import read_chat_template
from sipp.client import SippClient
from sipp.config import NativeRuntimeConfig
from sipp.descriptors import (
    GatewayDescriptor,
    LocalModelDescriptor,
    ProviderDescriptor,
    TimeoutPolicy,
)
from sipp.endpoints.base import Endpoint
from sipp.errors import ConfigurationError, SippError
from sipp.gateway.server.config import (
    AnthropicTarget,
    GatewayConfig,
    GatewayTarget,
    LocalTarget,
    OpenAICompatibleTarget,
    OpenAITarget,
    RoutedTarget,
    SingleTarget,
    Target,
    leaf_targets,
)
from sipp.gateway.server.logging import logger
from sipp.gateway.server.router import (
    Attribution,
    Member,
    RouterEndpoint,
    http_probe,
    router_metric_lines,
)
from sipp.models.source import parse_source
from sipp.native import requested_backend, select_backend
from sipp.pii.policy import PiiPolicy
from sipp.types import EndpointKind, EndpointRef

__all__ = ["OPENAI_CORRELATION_HEADER", "TargetRegistry", "TargetState", "correlation_header",
           "descriptor_for", "endpoint_kind", "local_runtime", "starts_off_loop"]

# The header OpenAI reads a caller's request id from.
OPENAI_CORRELATION_HEADER = "x-client-request-id"
# The header a Sipp gateway takes its request id from (so both hops log the same id).
GATEWAY_CORRELATION_HEADER = "x-request-id"


def _timeout(seconds: float | None) -> TimeoutPolicy | None:
    if seconds is None:
        return None
    return TimeoutPolicy(connect=min(10.0, seconds), request=seconds, stream_read=seconds)


def local_runtime(target: LocalTarget) -> NativeRuntimeConfig:
    """The local target's ``NativeRuntimeConfig`` (its ``runtime`` table plus ``stats`` and
    the cpu backend's placement)."""
    return NativeRuntimeConfig.from_dict(target.runtime_table())


def descriptor_for(target: SingleTarget, key: str | None
                   ) -> LocalModelDescriptor | ProviderDescriptor | GatewayDescriptor:
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
    if isinstance(target, GatewayTarget):
        return GatewayDescriptor(target.remote_target, target.base_url,
                                 authentication_kind="bearer" if key else "none",
                                 authentication_value=key or None,
                                 timeout=_timeout(target.timeout_seconds))
    if isinstance(target, AnthropicTarget):
        return ProviderDescriptor("anthropic", target.model, api_key=key,
                                  base_url=target.base_url, version=target.version,
                                  timeout=_timeout(target.timeout_seconds))
    assert isinstance(target, OpenAICompatibleTarget)
    return ProviderDescriptor("openai_compatible", target.model, api_key=key,
                              base_url=target.base_url, timeout=_timeout(target.timeout_seconds))


def correlation_header(target: SingleTarget) -> str | None:
    """The header that carries the gateway request id to ``target``'s upstream: OpenAI's
    ``x-client-request-id``, an OpenAI-compatible target's ``correlation_header``,
    ``x-request-id`` for another gateway, none for Anthropic and local targets."""
    if isinstance(target, OpenAITarget):
        return OPENAI_CORRELATION_HEADER
    if isinstance(target, OpenAICompatibleTarget):
        return target.correlation_header
    if isinstance(target, GatewayTarget):
        return GATEWAY_CORRELATION_HEADER
    return None


def _select_backend(config: GatewayConfig) -> None:
    """An explicit GPU backend on local targets picks the process-wide native backend
    (passed to :func:`sipp.native.select_backend`; a different ``SIPP_PYTHON_BACKEND`` is an
    error rather than silently overridden)."""
    wanted = {t.backend for t in leaf_targets(config.targets)
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
    """A configured target, its endpoint ref and load state. ``off_loop``: whether its runs
    start on a submission thread (see :func:`starts_off_loop`)."""

    target: Target
    ref: EndpointRef
    status: Literal["pending", "loading", "ready", "failed"] = "pending"
    error: str | None = None
    stats: str = field(default="off")
    off_loop: bool = True


def starts_off_loop(target: Target, targets: Mapping[str, Target]) -> bool:
    """Whether starting a run on ``target`` is CPU work that must leave the event loop: a
    local model renders its template, tokenizes and compiles grammars; a PII policy scans
    the text. A router counts if any deployment or fallback (``targets`` by name) does.
    Provider and gateway targets only encode a JSON body for the I/O loop, which costs
    less inline than the two thread hand-offs of a submission thread."""
    seen: set[str] = set()
    pending = [target]
    while pending:
        current = pending.pop()
        if current.name in seen:
            continue
        seen.add(current.name)
        if current.pii is not None and current.pii.mode != "off":
            return True
        if isinstance(current, LocalTarget):
            return True
        if isinstance(current, RoutedTarget):
            pending.extend(d.target for d in current.deployments)
            pending.extend(targets[name] for name in current.fallbacks if name in targets)
    return False


def endpoint_kind(target: Target) -> EndpointKind:
    """The kind of the endpoint ``target`` registers (a router's: its deployments' kind
    when they agree, else ``gateway``)."""
    if isinstance(target, RoutedTarget):
        return RouterEndpoint.kind_of(endpoint_kind(d.target) for d in target.deployments)
    if isinstance(target, LocalTarget):
        return "local"
    return "gateway" if isinstance(target, GatewayTarget) else "provider"


class TargetRegistry:
    """Every configured target, its endpoint ref and load state; ``ready`` once all loaded.

    A routed target's deployments are registered on the client as ``<target>/<name>``
    endpoints, then a :class:`RouterEndpoint` over them under the target's own name.
    ``disabled`` says whether an administrator disabled a target (fallbacks skip those)."""

    def __init__(self, config: GatewayConfig, client: SippClient,
                 keys: Mapping[str, str]) -> None:
        self.client = client
        self._keys = keys
        self.states: dict[str, TargetState] = {}
        by_name = {target.name: target for target in config.targets}
        for target in config.targets:
            stats = target.stats if isinstance(target, LocalTarget) else "off"
            self.states[target.name] = TargetState(
                target, EndpointRef(endpoint_kind(target), target.name), stats=stats,
                off_loop=starts_off_loop(target, by_name))
        self._config = config
        self.ready = False
        self.failed = False
        self.routers: dict[str, RouterEndpoint] = {}
        self.attribution = Attribution()
        self.disabled: Callable[[str], bool] = lambda name: False
        self._deployments: dict[str, tuple[LocalTarget, EndpointRef]] = {}

    def get(self, name: str) -> TargetState | None:
        return self.states.get(name)

    def load_all_sync(self) -> None:
        """Register every target (local models load now); raises on the first failure.
        Routers come last, once every target they may fall back to exists."""
        _select_backend(self._config)
        states = list(self.states.values())
        for state in sorted(states, key=lambda s: isinstance(s.target, RoutedTarget)):
            state.status = "loading"
            try:
                self._register(state)
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

    def _register(self, state: TargetState) -> None:
        target = state.target
        if not isinstance(target, RoutedTarget):
            self._add(target, pii=target.pii)
            return
        members = []
        for deployment in target.deployments:
            ref = self._add(deployment.target, pii=None)
            if isinstance(deployment.target, LocalTarget) and deployment.target.stats != "off":
                self._deployments[deployment.target.name] = (deployment.target, ref)
            leaf = deployment.target
            probe = (http_probe(leaf.readiness_url) if isinstance(leaf, GatewayTarget)
                     and leaf.readiness_url else None)
            members.append(Member(leaf.name, self.client.endpoint(ref), deployment.weight,
                                  probe))
        router = RouterEndpoint(state.ref, target, members, self._fallback, self.attribution)
        self.client.register(router, pii=target.pii)
        self.routers[target.name] = router

    def _add(self, target: SingleTarget, pii: PiiPolicy | None) -> EndpointRef:
        ref = self.client.add(target.name, descriptor_for(target, self._keys.get(target.name)),
                              pii=pii)
        header = correlation_header(target)
        if header is not None:
            self.client.endpoint(ref).set_correlation_header(header)
        return ref

    def _fallback(self, name: str) -> Endpoint | None:
        """A fallback target's endpoint while it is ready and enabled."""
        state = self.states.get(name)
        if state is None or state.status != "ready" or self.disabled(name):
            return None
        try:
            return self.client.endpoint(state.ref)
        except SippError:
            return None

    async def load_all(self) -> None:
        await asyncio.to_thread(self.load_all_sync)

    def local_metrics(self) -> dict[str, Mapping[str, Any]]:
        """Runtime metrics of loaded local targets (and local deployments, as
        ``<target>/<deployment>``) whose ``stats`` is not off."""
        out: dict[str, Mapping[str, Any]] = {}
        refs = [(name, state.ref) for name, state in self.states.items()
                if state.status == "ready" and state.stats != "off"]
        refs += [(name, ref) for name, (_target, ref) in self._deployments.items()]
        for name, ref in refs:
            try:
                out[name] = self.client.metrics(ref)
            except SippError:
                continue
        return out

    def router_metrics(self) -> list[str]:
        """Per-deployment Prometheus lines of the routed targets."""
        return router_metric_lines(self.routers) if self.routers else []
