"""State shared by gateway replicas through Redis (TOML ``[state] backend = "redis"``).

What is shared, and how:

- per-client request rate limits and tokens-per-minute budgets: atomic token buckets in Lua
  scripts on the Redis server (its clock, so replicas' clocks never matter);
- admin sessions and their CSRF tokens: one key per session with the session's TTL;
- the blocklist and the runtime controls (targets enabled/disabled, concurrency limit, rate
  limit settings, token limits): a hash each plus a version counter. Every replica keeps a
  local mirror, applied on its own writes at once and polled by version every
  ``POLL_SECONDS`` (so a change on one replica is enforced by all within a second);
- in-flight admission stays per replica (a concurrency limit is a per-process resource).

Redis calls are asynchronous (``redis.asyncio``): nothing blocks the event loop. When Redis
cannot be reached, :class:`StateUnavailableError` is raised; the gateway applies
``on_unavailable`` (limits and budgets: ``fail_open`` admits, ``fail_closed`` refuses with
503), admin sessions always fail closed, and the mirrors keep their last known values.
redis-py reconnects by itself on the next command.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError

from sipp.errors import SippError

__all__ = ["POLL_SECONDS", "RedisSessions", "SharedState", "StateUnavailableError"]

POLL_SECONDS = 0.25
_TIMEOUT_SECONDS = 0.5
_T = TypeVar("_T")
logger = logging.getLogger("sipp.gateway")

# KEYS[1] bucket hash; ARGV: capacity, refill per second, cost. Returns the wait in
# microseconds (0 = allowed and charged). The bucket starts full.
_REQUEST_BUCKET = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or capacity
local ts = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= cost then
  tokens = tokens - cost
else
  wait = math.ceil((cost - tokens) / rate * 1000000)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 60)
return wait
"""

# KEYS[1] budget hash; ARGV: tokens per minute, tokens to take (0 = only read). Returns the
# level after taking, as a string (it may be negative: a budget can be overdrawn).
_BUDGET_BUCKET = """
local capacity = tonumber(ARGV[1])
local take = tonumber(ARGV[2])
local rate = capacity / 60
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'level', 'ts')
local level = tonumber(state[1]) or capacity
local ts = tonumber(state[2]) or now
level = math.min(capacity, level + math.max(0, now - ts) * rate) - take
redis.call('HSET', KEYS[1], 'level', tostring(level), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], 180)
return tostring(level)
"""


class StateUnavailableError(SippError):
    """The shared state store (Redis) could not be reached."""

    default_code = "state_unavailable"
    http_status = 503


@dataclass
class SharedSession:
    """An admin session stored in Redis (``expires`` in Unix seconds)."""

    id: str
    csrf_token: str
    expires: float


class SharedState:
    """The Redis side of the gateway's shared state (see the module docstring)."""

    def __init__(self, url: str, *, key_prefix: str = "sipp:",
                 on_unavailable: Literal["fail_open", "fail_closed"] = "fail_closed",
                 replica_id: str | None = None) -> None:
        self._redis: Any = redis_asyncio.Redis.from_url(
            url, socket_timeout=_TIMEOUT_SECONDS, socket_connect_timeout=_TIMEOUT_SECONDS,
            decode_responses=True, retry_on_timeout=False)
        self.prefix = key_prefix
        self.on_unavailable = on_unavailable
        self.replica_id = replica_id or f"{socket.gethostname()}:{os.getpid()}"
        self.available = True
        self.unavailable_total = 0
        self._request_script = self._redis.register_script(_REQUEST_BUCKET)
        self._budget_script = self._redis.register_script(_BUDGET_BUCKET)
        self._versions: dict[str, int | None] = {"controls": None, "blocklist": None}
        self._poller: asyncio.Task[None] | None = None
        self._closing = False
        self._listeners: dict[str, Callable[[dict[str, str]], None]] = {}

    # ------------------------------------------------------------------ plumbing
    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def _call(self, action: Callable[[], Awaitable[_T]]) -> _T:
        try:
            result = await action()
        except (RedisError, OSError) as exc:
            if self.available:
                logger.warning("shared state unavailable: %s", exc)
            self.available = False
            self.unavailable_total += 1
            raise StateUnavailableError(f"shared state store unavailable: {exc}") from None
        if not self.available:
            logger.info("shared state available again")
        self.available = True
        return result

    async def ping(self) -> bool:
        """True when Redis answers (used by the poller and readiness)."""
        try:
            await self._call(self._redis.ping)
        except StateUnavailableError:
            return False
        return True

    # ------------------------------------------------------------------ limits
    async def take_request(self, client: str, requests_per_minute: int,
                           burst: int) -> float | None:
        """One request of ``client`` against the shared bucket: None if allowed, else the
        seconds until a token is available."""
        wait_us = await self._call(lambda: self._request_script(
            keys=[self.key("rl", client)], args=[burst, requests_per_minute / 60.0, 1]))
        return None if int(wait_us) == 0 else int(wait_us) / 1e6

    async def budget_level(self, kind: str, name: str, tokens_per_minute: int,
                           take: int = 0) -> float:
        """The budget's level after taking ``take`` tokens (0 = only read)."""
        level = await self._call(lambda: self._budget_script(
            keys=[self.key("budget", kind, name)], args=[tokens_per_minute, take]))
        return float(level)

    async def reset_budget(self, kind: str, name: str) -> None:
        """Start a budget full again (after its limit changed)."""
        await self._call(lambda: self._redis.delete(self.key("budget", kind, name)))

    # ------------------------------------------------------------------ sessions
    async def session_put(self, session: SharedSession) -> None:
        ttl = max(1, int(session.expires - time.time()))
        value = json.dumps({"csrf": session.csrf_token, "expires": session.expires})
        await self._call(lambda: self._redis.set(self.key("session", session.id), value,
                                                 ex=ttl))

    async def session_get(self, session_id: str) -> SharedSession | None:
        raw = await self._call(lambda: self._redis.get(self.key("session", session_id)))
        if raw is None:
            return None
        data = json.loads(raw)
        if time.time() >= float(data["expires"]):
            return None
        return SharedSession(session_id, str(data["csrf"]), float(data["expires"]))

    async def session_delete(self, session_id: str) -> None:
        await self._call(lambda: self._redis.delete(self.key("session", session_id)))

    # ------------------------------------------------------------------ mirrored hashes
    def on_change(self, name: Literal["controls", "blocklist"],
                  apply: Callable[[dict[str, str]], None]) -> None:
        """Call ``apply(whole hash)`` whenever the shared hash ``name`` changes."""
        self._listeners[name] = apply

    async def hash_set(self, name: str, field: str, value: str | None) -> None:
        """Set (or with None delete) one field of a mirrored hash and bump its version."""
        async def write() -> Any:
            pipe = self._redis.pipeline(transaction=True)
            if value is None:
                pipe.hdel(self.key(name), field)
            else:
                pipe.hset(self.key(name), field, value)
            pipe.incr(self.key(name, "version"))
            return await pipe.execute()

        results = await self._call(write)
        self._versions[name] = int(results[-1])

    async def hash_delete(self, name: str, field: str) -> bool:
        """Delete one field of a mirrored hash (bumping its version); False when the field
        was not there (on any replica)."""
        async def write() -> Any:
            pipe = self._redis.pipeline(transaction=True)
            pipe.hdel(self.key(name), field)
            pipe.incr(self.key(name, "version"))
            return await pipe.execute()

        removed, version = await self._call(write)
        self._versions[name] = int(version)
        return bool(removed)

    async def _refresh(self) -> None:
        for name, apply in list(self._listeners.items()):
            version_key, hash_key = self.key(name, "version"), self.key(name)
            version = await self._call(lambda: self._redis.get(version_key))  # noqa: B023
            current = int(version) if version is not None else 0
            if current == self._versions.get(name):
                continue
            data = await self._call(lambda: self._redis.hgetall(hash_key))  # noqa: B023
            self._versions[name] = current
            try:
                apply(dict(data))
            except Exception:  # a bad entry must not stop the poller
                logger.exception("cannot apply shared %s", name)

    async def start(self) -> None:
        """Load the mirrors once (if Redis is up) and start polling for changes."""
        try:
            await self._refresh()
        except StateUnavailableError:
            pass
        self._poller = asyncio.ensure_future(self._poll())

    async def _poll(self) -> None:
        # A flag, not only cancellation: redis-py may turn a cancel that lands inside a
        # call into a connection error, which would otherwise keep this loop alive.
        while not self._closing:
            await asyncio.sleep(POLL_SECONDS)
            try:
                await self._refresh()
            except StateUnavailableError:
                continue

    async def close(self) -> None:
        self._closing = True
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.wait({self._poller}, timeout=2 * POLL_SECONDS + _TIMEOUT_SECONDS)
        await self._redis.aclose()


class RedisSessions:
    """Admin sessions in Redis, with the interface the admin API uses for memory ones."""

    def __init__(self, shared: SharedState, ttl: float) -> None:
        self.shared = shared
        self.ttl = ttl

    async def create(self) -> SharedSession:
        session = SharedSession(os.urandom(32).hex(), os.urandom(32).hex(),
                                time.time() + self.ttl)
        await self.shared.session_put(session)
        return session

    async def get(self, session_id: str | None) -> SharedSession | None:
        if not session_id or len(session_id) > 128:
            return None
        return await self.shared.session_get(session_id)

    async def delete(self, session_id: str | None) -> None:
        if session_id and len(session_id) <= 128:
            await self.shared.session_delete(session_id)

    @staticmethod
    def now() -> float:
        """The clock session expiry times are on (Unix time: shared by replicas)."""
        return time.time()
