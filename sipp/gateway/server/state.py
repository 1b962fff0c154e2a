"""What both listeners share: :class:`GatewayState`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sipp.client import SippClient
from sipp.errors import AuthorizationError, TargetNotFoundError, TargetNotReadyError
from sipp.gateway.server.activity import Activity
from sipp.gateway.server.admin.sessions import PasswordCheck
from sipp.gateway.server.admission import Admission
from sipp.gateway.server.auth import BearerAuth, OpenAuth
from sipp.gateway.server.blocklist import Blocklist
from sipp.gateway.server.cache import CacheRegistry, RedisStores
from sipp.gateway.server.client_ip import ClientIpResolver
from sipp.gateway.server.config import GatewayConfig, RateLimitConfig, TokenConfig
from sipp.gateway.server.http import Exchange
from sipp.gateway.server.metrics import GatewayMetrics
from sipp.gateway.server.rag import RagRegistry
from sipp.gateway.server.ratelimit import RateLimiter
from sipp.gateway.server.replication import Replication
from sipp.gateway.server.secrets import GatewaySecrets
from sipp.gateway.server.shared_state import SharedState
from sipp.gateway.server.submission import DEFAULT_SUBMIT_WORKERS, Submitter
from sipp.gateway.server.targets import TargetRegistry, TargetState
from sipp.gateway.server.traffic import TokenBudgets

__all__ = ["GatewayState"]


class GatewayState:
    """Everything the listeners share: config, client, targets, security and metrics.

    ``submit_workers`` threads start runs off the event loop (see :mod:`.submission`)."""

    def __init__(self, config: GatewayConfig, secrets: GatewaySecrets,
                 client: SippClient | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 submit_workers: int = DEFAULT_SUBMIT_WORKERS) -> None:
        self.config = config
        self.client = client or SippClient()
        self.targets = TargetRegistry(config, self.client, secrets.target_keys)
        by_caller = {t.caller: t for t in config.tokens}
        self.auth: BearerAuth | OpenAuth = (
            BearerAuth([(by_caller[caller], value) for caller, value in secrets.tokens])
            if config.tokens else OpenAuth(TokenConfig("", "local", ()))
        )
        self.client_ip = ClientIpResolver(config.client_ip)
        self.clock = clock
        self.rate_limit = config.rate_limit
        self.rate_limiter: RateLimiter | None = None
        self.set_rate_limit(config.rate_limit)
        self.admission = Admission(config.max_concurrent_requests)
        self.submitter = Submitter(submit_workers)
        self.metrics = GatewayMetrics(t.name for t in config.targets)
        self.activity = Activity(t.name for t in config.targets)
        self.blocklist = Blocklist()
        self.budgets = TokenBudgets(config.token_limit.callers, config.token_limit.targets,
                                    clock)
        self.disabled_targets: set[str] = set()
        # routers skip fallback targets an administrator disabled
        self.targets.disabled = lambda name: name in self.disabled_targets
        self.admin_password = PasswordCheck(secrets.admin_password)
        shared = None
        if config.state.backend == "redis":
            shared = SharedState(secrets.state_url or "", key_prefix=config.state.key_prefix,
                                 on_unavailable=config.state.on_unavailable,
                                 replica_id=config.state.replica_id)
        self.shared: SharedState | None = shared
        self.replication = Replication(self, shared)
        self.started = time.time()
        self.draining = False
        # response caches and RAG collections (see .interception)
        self.caches = CacheRegistry(
            config.extensions, clock, self.embed,
            RedisStores(secrets.state_url or "", config.state.key_prefix)
            if config.state.backend == "redis" and config.extensions.caches else None)
        self.rag = RagRegistry(config.extensions.collections, self.client,
                               lambda name: self.targets.states[name].ref)

    async def embed(self, target: str, text: str) -> list[float]:
        """One text's vector from ``target``, for the gateway's own use (no admission,
        no budgets): cache keys and RAG queries."""
        state = self.targets.states[target]
        ref = state.ref
        run = await self.submitter.start(lambda: self.client.embed(text, endpoint=ref),
                                         off_loop=state.off_loop)
        return [float(v) for v in (await run)["values"]]

    def set_rate_limit(self, settings: RateLimitConfig) -> None:
        """Apply per-client request rate-limit settings (every bucket starts full again)."""
        self.rate_limit = settings
        self.rate_limiter = (RateLimiter(settings.requests_per_minute, settings.burst,
                                         self.clock) if settings.enabled else None)

    def record_usage(self, ex: Exchange, target: str, usage: Any) -> None:
        """Count a finished run's usage for ``target`` (metrics, dashboard and budgets; the
        output tokens already charged while streaming are not counted twice)."""
        self.metrics.record_usage(target, usage, counted_output=ex.charged_output)
        ex.usage = usage

    def charge_output(self, ex: Exchange, tokens: int) -> None:
        """Charge ``tokens`` just generated for ``ex`` to its caller's and target's budgets
        and the output-token metric, now rather than when the run ends."""
        target = ex.budget_target
        if tokens <= 0 or target is None:
            return
        ex.charged_output += tokens
        self.metrics.output_tokens[target] += tokens
        if self.budgets.limited:  # (per streamed batch: skipped when no limit is set)
            self.replication.charge_soon(ex.caller, target, tokens)

    def settle_after_disconnect(self, ex: Exchange, usage: Any) -> None:
        """A run whose client left has ended: charge what it used beyond what streamed
        (its input, and output generated after the last batch was sent)."""
        target = ex.budget_target
        if target is None or not isinstance(usage, dict):
            return
        output = int(usage.get("output_tokens") or 0)
        extra = max(0, output - ex.charged_output)
        self.replication.charge_soon(ex.caller, target,
                                      int(usage.get("input_tokens") or 0) + extra)
        self.metrics.record_usage(target, usage, counted_output=ex.charged_output)
        ex.charged_output += extra

    async def resolve_target(self, token: TokenConfig, name: str,
                             ex: Exchange | None = None) -> TargetState:
        """The allowed, loaded target named ``name`` (403, 404 or 503 otherwise; 429 when
        the caller's or the target's token budget is spent); with ``ex``, the exchange's
        tokens are charged to this target's budget."""
        if not token.allows(name):
            raise AuthorizationError(f"token is not allowed to access target: {name}")
        state = self.targets.get(name)
        if state is None:
            raise TargetNotFoundError(f"target not found: {name}")
        if state.status != "ready":
            raise TargetNotReadyError(f"target {name} is not ready ({state.status})")
        if name in self.disabled_targets:
            raise TargetNotReadyError(f"target {name} is disabled by the gateway administrator",
                                      code="target_disabled")
        if self.budgets.applies(token.caller, name):  # (no limit: nothing to check)
            await self.replication.check_budgets(token.caller, name)
        if ex is not None:
            ex.budget_target = name
        return state

    def close(self) -> None:
        """Stop the submission threads, then close the client and its endpoints (blocks)."""
        self.rag.close()
        self.submitter.close()
        self.client.close()
