"""Runtime controls and limits that every replica applies: local, or shared through Redis.

:class:`Replication` is what the request pipeline and the admin API call. Without shared
state (``[state] backend = "memory"``, the default) it works on this process's objects
exactly as a single gateway always did. With Redis it takes request and token buckets from
Redis, writes every admin change there (controls, blocklist), and applies the changes other
replicas made through :class:`~.shared_state.SharedState`'s version polling.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

from sipp.errors import RateLimitedError
from sipp.gateway.server.blocklist import normalize_entry
from sipp.gateway.server.config import RateLimitConfig
from sipp.gateway.server.shared_state import SharedState, StateUnavailableError
from sipp.gateway.server.traffic import LimitKind

if TYPE_CHECKING:
    from sipp.gateway.server.state import GatewayState

__all__ = ["Replication"]

_KINDS: tuple[LimitKind, ...] = ("caller", "target")


class Replication:
    """Limits and controls of one replica (see the module docstring)."""

    def __init__(self, state: GatewayState, shared: SharedState | None) -> None:
        self.state = state
        self.shared = shared
        self._pending: set[asyncio.Future[None]] = set()  # charges in flight to Redis
        if shared is not None:
            shared.on_change("controls", self._apply_controls)
            shared.on_change("blocklist", self._apply_blocklist)

    @property
    def replica_id(self) -> str | None:
        return self.shared.replica_id if self.shared is not None else None

    def degraded(self) -> str | None:
        """Why this replica runs degraded (shared state unreachable), or None."""
        if self.shared is not None and not self.shared.available:
            return f"shared state unavailable (on_unavailable={self.shared.on_unavailable})"
        return None

    def _fail_open(self) -> bool:
        return self.shared is not None and self.shared.on_unavailable == "fail_open"

    # ------------------------------------------------------------------ per request
    async def take_request(self, client: str) -> float | None:
        """One request of ``client``: None if allowed, else seconds until allowed."""
        state = self.state
        if state.rate_limiter is None:
            return None
        if self.shared is None:
            return state.rate_limiter.acquire(client)
        settings = state.rate_limit
        try:
            return await self.shared.take_request(client, settings.requests_per_minute,
                                                  settings.burst)
        except StateUnavailableError:
            if self._fail_open():
                return None
            raise

    async def check_budgets(self, caller: str, target: str) -> None:
        """429 when the caller's or the target's tokens-per-minute budget is spent."""
        budgets = self.state.budgets
        if self.shared is None:
            budgets.check(caller, target)
            return
        for kind, name in (("caller", caller), ("target", target)):
            limit = budgets.limit(kind, name)  # type: ignore[arg-type]
            if limit is None:
                continue
            try:
                level = await self.shared.budget_level(kind, name, limit)
            except StateUnavailableError:
                if self._fail_open():
                    continue
                raise
            if level <= 0:
                raise RateLimitedError(
                    f"{kind} {name} is over its limit of {limit} tokens per minute",
                    retry_after=(-level + 1.0) / (limit / 60.0))

    async def charge(self, caller: str | None, target: str | None, tokens: int) -> None:
        """Take ``tokens`` from the caller's and the target's budgets."""
        budgets = self.state.budgets
        if self.shared is None:
            budgets.charge(caller, target, tokens)
            return
        if tokens <= 0:
            return
        for kind, name in (("caller", caller), ("target", target)):
            limit = budgets.limit(kind, name) if name is not None else None  # type: ignore[arg-type]
            if limit is None or name is None:
                continue
            try:
                await self.shared.budget_level(kind, name, limit, take=tokens)
            except StateUnavailableError:
                pass  # counted by SharedState; the request itself already finished

    def charge_soon(self, caller: str | None, target: str | None, tokens: int) -> None:
        """:meth:`charge` from synchronous code on the event loop: at once in memory, as a
        background task with Redis (the caller never waits on it; none when neither the
        caller nor the target has a limit, as for most streamed batches)."""
        if self.shared is None:
            self.state.budgets.charge(caller, target, tokens)
            return
        if tokens <= 0 or not self.state.budgets.applies(caller, target):
            return
        task = asyncio.ensure_future(self.charge(caller, target, tokens))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    # ------------------------------------------------------------------ admin changes
    async def set_rate_limit(self, settings: RateLimitConfig) -> None:
        await self._share("controls", "rate_limit", json.dumps(
            [settings.enabled, settings.requests_per_minute, settings.burst]))
        self.state.set_rate_limit(settings)

    async def set_concurrency(self, limit: int | None) -> None:
        await self._share("controls", "concurrency", json.dumps(limit))
        self.state.admission.limit = limit

    async def set_target_enabled(self, name: str, enabled: bool) -> None:
        await self._share("controls", f"disabled:{name}", None if enabled else "1")
        if enabled:
            self.state.disabled_targets.discard(name)
        else:
            self.state.disabled_targets.add(name)

    async def set_token_limit(self, kind: LimitKind, name: str, limit: int | None) -> None:
        if self.shared is not None:
            try:
                await self.shared.reset_budget(kind, name)
            except StateUnavailableError as exc:
                raise exc from None
        await self._share("controls", f"token_limit:{kind}:{name}", json.dumps(limit))
        self.state.budgets.set_limit(kind, name, limit)

    async def block(self, text: str) -> str:
        entry = normalize_entry(text)
        added = time.time()
        await self._share("blocklist", entry, repr(added))
        return self.state.blocklist.add(entry)

    async def unblock(self, text: str) -> bool:
        entry = normalize_entry(text)
        if self.shared is None:
            return self.state.blocklist.remove(entry)
        # the shared list decides: another replica may have added it a moment ago
        removed = await self.shared.hash_delete("blocklist", entry)
        self.state.blocklist.remove(entry)
        return removed

    async def _share(self, name: str, field: str, value: str | None) -> None:
        if self.shared is not None:
            await self.shared.hash_set(name, field, value)

    # ------------------------------------------------------------------ applying others'
    def _apply_controls(self, data: dict[str, str]) -> None:
        state = self.state
        state.disabled_targets.clear()
        state.disabled_targets.update(
            key.removeprefix("disabled:") for key in data if key.startswith("disabled:"))
        if "concurrency" in data:
            state.admission.limit = json.loads(data["concurrency"])
        if "rate_limit" in data:
            enabled, rpm, burst = json.loads(data["rate_limit"])
            settings = RateLimitConfig(bool(enabled), int(rpm), int(burst))
            if settings != state.rate_limit:
                state.set_rate_limit(settings)
        for key, value in data.items():
            if not key.startswith("token_limit:"):
                continue
            _, kind, name = key.split(":", 2)
            if kind not in _KINDS:
                continue
            limit: Any = json.loads(value)
            if state.budgets.limit(kind, name) != limit:
                state.budgets.set_limit(kind, name, limit)

    def _apply_blocklist(self, data: dict[str, str]) -> None:
        self.state.blocklist.replace({entry: float(added) for entry, added in data.items()})
