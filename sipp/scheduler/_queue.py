"""The waiting queue: arrival order, preempted requests at the front."""

from __future__ import annotations

import heapq
import itertools
from typing import Generic

from sipp.scheduler._request import P, Request

__all__ = ["WaitQueue"]


class WaitQueue(Generic[P]):
    """A heap of waiting requests; removal is lazy (O(log n) amortized per operation).

    Order key: a sequence number; :meth:`push_front` uses a decreasing one so preempted
    requests come before every queued one.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Request[P]]] = []
        self._members: dict[int, Request[P]] = {}
        self._back = itertools.count(1)
        self._front = itertools.count(-1, -1)

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._members

    def _push(self, request: Request[P], seq: int) -> None:
        self._members[request.request_id] = request
        heapq.heappush(self._heap, (seq, request.request_id, request))

    def push(self, request: Request[P]) -> None:
        """Queue behind every waiting request."""
        self._push(request, next(self._back))

    def push_front(self, request: Request[P]) -> None:
        """Queue ahead of every waiting request (preemption)."""
        self._push(request, next(self._front))

    def _settle(self) -> None:
        heap = self._heap
        while heap and self._members.get(heap[0][1]) is not heap[0][2]:
            heapq.heappop(heap)

    def peek(self) -> Request[P] | None:
        """The next request to admit, or None."""
        self._settle()
        return self._heap[0][2] if self._heap else None

    def pop(self) -> Request[P]:
        """Remove and return the next request (the queue must not be empty)."""
        self._settle()
        request = heapq.heappop(self._heap)[2]
        del self._members[request.request_id]
        return request

    def get(self, request_id: int) -> Request[P] | None:
        """A waiting request by id, or None."""
        return self._members.get(request_id)

    def remove(self, request_id: int) -> Request[P] | None:
        """Remove a request wherever it is; returns it, or None when absent."""
        return self._members.pop(request_id, None)

    def requests(self) -> list[Request[P]]:
        """Waiting requests in admission order."""
        self._settle()
        live = [e for e in self._heap if self._members.get(e[1]) is e[2]]
        return [e[2] for e in sorted(live, key=lambda e: e[0])]
