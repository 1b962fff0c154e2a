"""Admin sessions (random ids, CSRF tokens, TTL) and login throttling with backoff."""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["LoginThrottle", "MemorySessions", "PasswordCheck", "Session", "SessionStore",
           "csrf_ok"]

DEFAULT_TTL_SECONDS = 8 * 3600.0
_MAX_SESSIONS = 256
_MAX_TRACKED_CLIENTS = 4096


class PasswordCheck:
    """Constant-time comparison with the admin password (only a digest is kept)."""

    def __init__(self, password: str) -> None:
        self._digest = hashlib.sha256(password.encode()).digest()

    def matches(self, candidate: str) -> bool:
        return hmac.compare_digest(hashlib.sha256(candidate.encode()).digest(), self._digest)


@dataclass
class Session:
    id: str
    csrf_token: str
    expires: float


class SessionStore:
    """Sessions keyed by a 32-byte random hex id; each carries its own 32-byte CSRF token.

    ``ttl`` (seconds, default 8 hours) may be changed at runtime; it applies to new sessions.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 ttl: float = DEFAULT_TTL_SECONDS) -> None:
        self.clock = clock
        self.ttl = ttl
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self) -> Session:
        session = Session(os.urandom(32).hex(), os.urandom(32).hex(), self.clock() + self.ttl)
        self._sessions[session.id] = session
        while len(self._sessions) > _MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id (expired ones are dropped)."""
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if self.clock() >= session.expires:
            del self._sessions[session_id]
            return None
        return session

    def delete(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(session_id, None)

    def remaining(self, session: Session) -> int:
        return max(0, int(session.expires - self.clock()))

    @staticmethod
    def csrf_ok(session: Session, header: bytes | None) -> bool:
        if header is None:
            return False
        return hmac.compare_digest(header, session.csrf_token.encode())


def csrf_ok(expected: str, header: bytes | None) -> bool:
    """Constant-time check of a request's CSRF header against the session's token."""
    if header is None:
        return False
    return hmac.compare_digest(header, expected.encode())


class MemorySessions:
    """This process's :class:`SessionStore` behind the asynchronous interface the admin
    API uses (the same as the Redis-backed sessions shared by replicas)."""

    def __init__(self, store: SessionStore) -> None:
        self.store = store

    @property
    def ttl(self) -> float:
        return self.store.ttl

    @ttl.setter
    def ttl(self, value: float) -> None:
        self.store.ttl = value

    async def create(self) -> Session:
        return self.store.create()

    async def get(self, session_id: str | None) -> Session | None:
        return self.store.get(session_id)

    async def delete(self, session_id: str | None) -> None:
        self.store.delete(session_id)

    def remaining(self, session: Session) -> int:
        return self.store.remaining(session)

    def now(self) -> float:
        """The clock session expiry times are on."""
        return self.store.clock()


class LoginThrottle:
    """Per-client backoff: the first ``free_attempts`` failures cost nothing; after that each
    failure doubles the wait before the next attempt (1 s, 2 s, 4 s … at most 5 minutes).
    A successful login clears the client's record."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, free_attempts: int = 3,
                 max_delay: float = 300.0) -> None:
        self._clock = clock
        self.free_attempts = free_attempts
        self.max_delay = max_delay
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._pending: set[str] = set()

    def begin(self, client: str) -> float | None:
        """Start one login attempt: None, or the seconds to wait. A client has at most one
        attempt in flight, so parallel guesses cannot all be checked before the first
        failure is recorded (red-team: 100 parallel guesses were all evaluated)."""
        if client in self._pending:
            return 1.0
        wait = self.wait(client)
        if wait is None:
            self._pending.add(client)
        return wait

    def end(self, client: str) -> None:
        """The attempt :meth:`begin` started is over (after its success or failure)."""
        self._pending.discard(client)

    def wait(self, client: str) -> float | None:
        """Seconds the client must wait before trying again, or None."""
        record = self._failures.get(client)
        if record is None:
            return None
        remaining = record[1] - self._clock()
        return remaining if remaining > 0 else None

    def failure(self, client: str) -> None:
        count = self._failures.pop(client, (0, 0.0))[0] + 1
        delay = 0.0
        if count >= self.free_attempts:
            delay = min(self.max_delay, 2.0 ** (count - self.free_attempts))
        self._failures[client] = (count, self._clock() + delay)
        while len(self._failures) > _MAX_TRACKED_CLIENTS:
            self._failures.popitem(last=False)

    def success(self, client: str) -> None:
        self._failures.pop(client, None)
