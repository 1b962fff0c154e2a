"""Readers running during writes never observe a write half done."""

from __future__ import annotations

import threading

import numpy as np

from sipp.vector import VectorIndex

GROUP = 8


def test_readers_never_see_torn_state() -> None:
    # Every write adds, replaces or deletes a whole group of GROUP ids that share one
    # vector and one "gen" value. A torn state would show a partial group, or a group
    # whose members carry different generations.
    dim = 16
    index = VectorIndex(dim, "dot")
    stop = threading.Event()
    errors: list[str] = []

    def direction(g: int) -> np.ndarray:
        v = np.zeros(dim, dtype=np.float32)
        v[g % dim] = 1.0
        return v

    def reader() -> None:
        while not stop.is_set():
            for g in range(4):
                try:
                    hits = index.search(direction(g), k=GROUP * 8, filter={"group": g})
                except Exception as exc:  # a torn read may also crash the search
                    errors.append(repr(exc))
                    return
                if hits and len(hits) != GROUP:
                    errors.append(f"group {g}: {len(hits)} members")
                gens = {h.metadata["gen"] for h in hits if h.metadata}
                if len(gens) > 1:
                    errors.append(f"group {g}: generations {gens}")

    def writer() -> None:
        rng = np.random.default_rng(0)
        for gen in range(400):
            g = int(rng.integers(4))
            ids = [f"{g}-{j}" for j in range(GROUP)]
            if rng.random() < 0.25:
                index.delete(ids)
            else:
                vectors = np.tile(direction(g), (GROUP, 1))
                index.upsert(ids, vectors, [{"group": g, "gen": gen}] * GROUP)

    readers = [threading.Thread(target=reader) for _ in range(3)]
    for t in readers:
        t.start()
    writer()
    stop.set()
    for t in readers:
        t.join()
    assert not errors, errors[:5]
