"""``VectorIndex``: float32 vectors with string ids, JSON metadata and optional texts.

Exact search is one NumPy matrix-vector product (no dependency beyond NumPy); from a
configurable size on, an HNSW graph (faiss-cpu, the ``sipppy[vector]`` extra) answers
instead. Rows are only ever appended: ``upsert`` and ``delete`` mark the old row dead, and
the index compacts itself once a quarter of its rows are dead. Every public method is
thread-safe; a readers-writer lock lets searches run together and never see a write
half done.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from sipp.errors import ConfigurationError, InvalidRequestError
from sipp.vector._ann import HnswGraph, HnswParams, load_faiss
from sipp.vector._embed import embed_texts, endpoint_model_id
from sipp.vector._filters import compile_filter
from sipp.vector._format import IndexFileError, read_index, write_index
from sipp.vector._rwlock import ReadWriteLock

if TYPE_CHECKING:
    from sipp.client import SippClient
    from sipp.types import EndpointRef

__all__ = ["Metric", "SearchHit", "VectorIndex"]

Metric = Literal["cosine", "dot", "l2"]
_METRICS = ("cosine", "dot", "l2")
_MIN_CAPACITY = 64
_COMPACT_MIN_DEAD = 1024
# below this many allowed rows a filtered approximate search scans them exactly instead
_SUBSET_SCAN_ROWS = 20_000


@dataclass(frozen=True)
class SearchHit:
    """One search result: ``score`` is the cosine similarity, the dot product, or the
    Euclidean distance (``l2``; smaller is closer). Hits come best first."""

    id: str
    score: float
    metadata: dict[str, Any] | None
    text: str | None


def _json_object(value: Any, path: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidRequestError(f"{path} must be a dict or None, got {type(value).__name__}")
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError(f"{path} must hold only JSON values: {exc}") from exc
    result: dict[str, Any] = json.loads(text)
    if any(not isinstance(key, str) for key in value):
        raise InvalidRequestError(f"{path} keys must be strings")
    return result


class VectorIndex:
    """An in-process vector index (see the module docstring).

    ``dim`` may be left out and is then taken from the first vectors added.
    ``approximate_min_size``: from this many live rows on, searches use the HNSW graph
    (None, the default: always exact; 0: always approximate). ``embedding_model`` names the
    model the vectors come from; vectors from another model are refused.
    """

    def __init__(
        self,
        dim: int | None = None,
        metric: Metric = "cosine",
        *,
        approximate_min_size: int | None = None,
        hnsw: HnswParams | None = None,
        embedding_model: str | None = None,
    ) -> None:
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
            raise ConfigurationError(f"dim must be a positive int, got {dim!r}")
        if metric not in _METRICS:
            raise ConfigurationError(f"metric must be one of cosine, dot, l2; got {metric!r}")
        if approximate_min_size is not None and (
            isinstance(approximate_min_size, bool)
            or not isinstance(approximate_min_size, int)
            or approximate_min_size < 0
        ):
            raise ConfigurationError(
                f"approximate_min_size must be None or an int >= 0, got {approximate_min_size!r}"
            )
        if hnsw is not None and not isinstance(hnsw, HnswParams):
            raise ConfigurationError("hnsw must be an HnswParams")
        if embedding_model is not None and (
            not isinstance(embedding_model, str) or not embedding_model
        ):
            raise ConfigurationError("embedding_model must be a non-empty string or None")
        if approximate_min_size is not None:
            load_faiss()  # fail now, not at the first large add
        self._dim = dim
        self._metric: Metric = metric
        self._approximate_min_size = approximate_min_size
        self._hnsw = hnsw or HnswParams()
        self._embedding_model = embedding_model
        self._lock = ReadWriteLock()
        self._vectors: npt.NDArray[np.float32] = np.zeros((0, dim or 0), dtype=np.float32)
        self._writable = True
        self._sq_norms: npt.NDArray[np.float32] = np.zeros(0, dtype=np.float32)
        self._alive: npt.NDArray[np.bool_] = np.zeros(0, dtype=bool)
        self._size = 0
        self._ids: list[str] = []
        self._metas: list[dict[str, Any] | None] = []
        self._texts: list[str | None] = []
        self._rows: dict[str, int] = {}
        self._graph: HnswGraph | None = None
        self._binding: tuple[SippClient, EndpointRef] | None = None

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int | None:
        return self._dim

    @property
    def metric(self) -> Metric:
        return self._metric

    @property
    def embedding_model(self) -> str | None:
        return self._embedding_model

    @property
    def approximate_min_size(self) -> int | None:
        return self._approximate_min_size

    @property
    def hnsw(self) -> HnswParams:
        return self._hnsw

    def __len__(self) -> int:
        with self._lock.read():
            return len(self._rows)

    def __contains__(self, id: object) -> bool:
        with self._lock.read():
            return id in self._rows

    def ids(self) -> list[str]:
        """Live ids in insertion order."""
        with self._lock.read():
            return [self._ids[r] for r in range(self._size) if self._alive[r]]

    def get(self, id: str) -> tuple[npt.NDArray[np.float32], dict[str, Any] | None, str | None]:
        """``(vector copy, metadata, text)`` of ``id``; KeyError when absent."""
        with self._lock.read():
            row = self._rows[id]
            meta = self._metas[row]
            return (np.array(self._vectors[row]), None if meta is None else dict(meta),
                    self._texts[row])

    # ------------------------------------------------------------------ writes
    def add(
        self,
        ids: Sequence[str],
        vectors: npt.ArrayLike,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        texts: Sequence[str | None] | None = None,
        *,
        model: str | None = None,
    ) -> None:
        """Add new rows; an id already present is an error (use :meth:`upsert`)."""
        self._write(ids, vectors, metadatas, texts, model, replace=False)

    def upsert(
        self,
        ids: Sequence[str],
        vectors: npt.ArrayLike,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        texts: Sequence[str | None] | None = None,
        *,
        model: str | None = None,
    ) -> None:
        """Add rows, replacing those whose id is present (vector, metadata and text)."""
        self._write(ids, vectors, metadatas, texts, model, replace=True)

    def delete(self, ids: Sequence[str] | str) -> int:
        """Remove ``ids``; returns how many were present."""
        items = [ids] if isinstance(ids, str) else list(ids)
        with self._lock.write():
            removed = 0
            for id in items:
                row = self._rows.pop(id, None)
                if row is not None:
                    self._alive[row] = False
                    removed += 1
            self._maybe_compact()
            return removed

    def _write(
        self,
        ids: Sequence[str],
        vectors: npt.ArrayLike,
        metadatas: Sequence[Mapping[str, Any] | None] | None,
        texts: Sequence[str | None] | None,
        model: str | None,
        *,
        replace: bool,
    ) -> None:
        id_list = self._check_ids(ids)
        matrix = self._check_vectors(vectors, len(id_list))
        metas = self._check_column(metadatas, len(id_list), "metadatas")
        clean_metas = [_json_object(m, f"metadatas[{i}]") for i, m in enumerate(metas)]
        text_list = self._check_column(texts, len(id_list), "texts")
        for i, text in enumerate(text_list):
            if text is not None and not isinstance(text, str):
                raise InvalidRequestError(f"texts[{i}] must be a string or None")
        if model is not None and (not isinstance(model, str) or not model):
            raise InvalidRequestError("model must be a non-empty string or None")
        with self._lock.write():
            if model is not None and self._embedding_model not in (None, model):
                raise InvalidRequestError(
                    f"model: vectors from embedding model {model!r} cannot join an index of "
                    f"{self._embedding_model!r}"
                )
            if self._dim is None:
                if matrix.shape[1] == 0:
                    raise InvalidRequestError("vectors must have at least one dimension")
                self._dim = matrix.shape[1]
                self._vectors = np.zeros((0, self._dim), dtype=np.float32)
            elif matrix.shape[1] != self._dim:
                raise InvalidRequestError(
                    f"vectors have dimension {matrix.shape[1]}, the index has {self._dim}"
                )
            if not replace:
                for id in id_list:
                    if id in self._rows:
                        raise InvalidRequestError(
                            f"ids: {id!r} is already in the index (use upsert)"
                        )
            if model is not None:
                self._embedding_model = model
            if not id_list:
                return
            self._append(id_list, matrix, clean_metas, list(text_list))

    def _append(
        self,
        ids: list[str],
        matrix: npt.NDArray[np.float32],
        metas: list[dict[str, Any] | None],
        texts: list[str | None],
    ) -> None:
        n = len(ids)
        self._reserve(self._size + n)
        start = self._size
        self._vectors[start:start + n] = matrix
        self._sq_norms[start:start + n] = np.einsum("ij,ij->i", matrix, matrix)
        self._alive[start:start + n] = True
        for offset, id in enumerate(ids):
            old = self._rows.get(id)
            if old is not None:
                self._alive[old] = False
            self._rows[id] = start + offset
        self._ids.extend(ids)
        self._metas.extend(metas)
        self._texts.extend(texts)
        self._size += n
        if self._graph is not None:
            self._graph.add(matrix)
        elif self._wants_graph():
            self._build_graph()
        self._maybe_compact()

    def _reserve(self, rows: int) -> None:
        capacity = len(self._vectors)
        if rows <= capacity and self._writable:
            return
        new_capacity = max(rows, _MIN_CAPACITY, capacity * 2 if rows > capacity else capacity)
        assert self._dim is not None
        vectors = np.zeros((new_capacity, self._dim), dtype=np.float32)
        vectors[: self._size] = self._vectors[: self._size]
        norms = np.zeros(new_capacity, dtype=np.float32)
        norms[: self._size] = self._sq_norms[: self._size]
        alive = np.zeros(new_capacity, dtype=bool)
        alive[: self._size] = self._alive[: self._size]
        self._vectors, self._sq_norms, self._alive = vectors, norms, alive
        self._writable = True

    def _maybe_compact(self) -> None:
        dead = self._size - len(self._rows)
        if dead < _COMPACT_MIN_DEAD or dead * 4 < self._size:
            return
        keep = np.flatnonzero(self._alive[: self._size])
        self._vectors = np.ascontiguousarray(self._vectors[keep])
        self._sq_norms = np.ascontiguousarray(self._sq_norms[keep])
        self._alive = np.ones(len(keep), dtype=bool)
        self._ids = [self._ids[r] for r in keep]
        self._metas = [self._metas[r] for r in keep]
        self._texts = [self._texts[r] for r in keep]
        self._rows = {id: row for row, id in enumerate(self._ids)}
        self._size = len(keep)
        self._writable = True
        self._graph = None
        if self._wants_graph():
            self._build_graph()

    def _wants_graph(self) -> bool:
        limit = self._approximate_min_size
        return limit is not None and len(self._rows) >= max(limit, 1)

    def _build_graph(self) -> None:
        assert self._dim is not None
        graph = HnswGraph(self._dim, self._metric, self._hnsw)
        graph.add(self._vectors[: self._size])
        self._graph = graph

    # ------------------------------------------------------------------ input checks
    @staticmethod
    def _check_ids(ids: Sequence[str]) -> list[str]:
        if isinstance(ids, str) or not isinstance(ids, Sequence):
            raise InvalidRequestError("ids must be a list of strings")
        seen: set[str] = set()
        for i, id in enumerate(ids):
            if not isinstance(id, str) or not id:
                raise InvalidRequestError(f"ids[{i}] must be a non-empty string")
            if id in seen:
                raise InvalidRequestError(f"ids[{i}]: {id!r} appears twice in one call")
            seen.add(id)
        return list(ids)

    @staticmethod
    def _check_vectors(vectors: npt.ArrayLike, count: int) -> npt.NDArray[np.float32]:
        try:
            matrix = np.asarray(vectors, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise InvalidRequestError(f"vectors must be numbers: {exc}") from exc
        if matrix.ndim == 1 and count == 1:
            matrix = matrix.reshape(1, -1)
        if matrix.ndim != 2 or len(matrix) != count:
            raise InvalidRequestError(
                f"vectors must be a ({count}, dim) array (one row per id), got shape "
                f"{matrix.shape}"
            )
        bad = ~np.isfinite(matrix).all(axis=1)
        if bad.any():
            raise InvalidRequestError(
                f"vectors[{int(np.flatnonzero(bad)[0])}] contains NaN or infinity"
            )
        return matrix

    @staticmethod
    def _check_column(values: Sequence[Any] | None, count: int, name: str) -> Sequence[Any]:
        if values is None:
            return [None] * count
        if isinstance(values, str | Mapping) or not isinstance(values, Sequence):
            raise InvalidRequestError(f"{name} must be a list with one entry per id")
        if len(values) != count:
            raise InvalidRequestError(f"{name} has {len(values)} entries for {count} ids")
        return values

    # ------------------------------------------------------------------ search
    def search(
        self,
        query: npt.ArrayLike | str,
        k: int = 10,
        *,
        filter: Mapping[str, Any] | None = None,
        exact: bool = False,
        client: SippClient | None = None,
        endpoint: EndpointRef | None = None,
    ) -> list[SearchHit]:
        """The ``k`` nearest live rows to ``query`` that pass ``filter``, best first.

        ``query`` is a vector, or a text embedded through ``client.embed`` on ``endpoint``
        (default: the pair last given to :meth:`add_texts`). ``exact=True`` skips the HNSW
        graph.
        """
        if isinstance(query, str):
            return self.search_text(query, k, filter=filter, exact=exact, client=client,
                                    endpoint=endpoint)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InvalidRequestError(f"k must be a positive int, got {k!r}")
        predicate = compile_filter(filter)
        try:
            q = np.asarray(query, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise InvalidRequestError(f"query must be a vector of numbers: {exc}") from exc
        if q.ndim != 1 or not np.isfinite(q).all():
            raise InvalidRequestError("query must be one finite vector")
        with self._lock.read():
            if self._dim is None or not self._rows:
                return []
            if len(q) != self._dim:
                raise InvalidRequestError(
                    f"query has dimension {len(q)}, the index has {self._dim}"
                )
            n = self._size
            allowed = self._alive[:n].copy()
            if predicate is not None:
                metas = self._metas
                for row in np.flatnonzero(allowed):
                    if not predicate(metas[row]):
                        allowed[row] = False
            count = int(allowed.sum())
            if not count:
                return []
            graph = None if exact else self._graph
            if graph is not None and (predicate is None or count >= _SUBSET_SCAN_ROWS):
                rows = graph.search(q, min(k, count), None if count == n else allowed)
                scores = self._scores(q, rows)
                order = self._order(scores)
                rows, scores = rows[order], scores[order]
            elif count == n:
                rows, scores = self._top(q, np.arange(n), k)
            else:
                rows, scores = self._top(q, np.flatnonzero(allowed), k)
            return [
                SearchHit(self._ids[r], float(s), None if self._metas[r] is None
                          else dict(self._metas[r] or {}), self._texts[r])
                for r, s in zip(rows.tolist(), scores.tolist(), strict=True)
            ]

    def _scores(
        self, q: npt.NDArray[np.float32], rows: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]:
        """Scores of ``rows`` against ``q`` under the index metric."""
        if len(rows) == self._size and (len(rows) == 0 or rows[-1] == self._size - 1):
            block = self._vectors[: self._size]
            sq = self._sq_norms[: self._size]
        else:
            block = self._vectors[rows]
            sq = self._sq_norms[rows]
        dots = block @ q
        if self._metric == "dot":
            return dots
        q_sq = float(q @ q)
        if self._metric == "cosine":
            denom = np.sqrt(sq) * math.sqrt(q_sq)
            cosine: npt.NDArray[np.float32] = np.divide(
                dots, denom, out=np.zeros_like(dots), where=denom > 0
            )
            return cosine
        result: npt.NDArray[np.float32] = np.sqrt(np.maximum(sq - 2 * dots + q_sq, 0))
        return result

    def _order(self, scores: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
        keys = scores if self._metric == "l2" else -scores
        result: npt.NDArray[np.int64] = np.argsort(keys, kind="stable")
        return result

    def _top(
        self, q: npt.NDArray[np.float32], rows: npt.NDArray[np.int64], k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        scores = self._scores(q, rows)
        if k < len(rows):
            keys = scores if self._metric == "l2" else -scores
            part = np.argpartition(keys, k - 1)[:k]
            rows, scores = rows[part], scores[part]
        order = self._order(scores)
        return rows[order], scores[order]

    # ------------------------------------------------------------------ texts
    def add_texts(
        self,
        texts: Sequence[str],
        *,
        client: SippClient,
        endpoint: EndpointRef,
        ids: Sequence[str] | None = None,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        batch_size: int = 32,
        upsert: bool = False,
        model: str | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[str]:
        """Embed ``texts`` through ``client.embed`` in batches and add them (with the
        texts kept for retrieval). Returns the ids (generated ``doc-N`` when not given).

        ``model`` names the embedding model (default: derived from the endpoint); an index
        holding vectors of another model refuses them. ``progress(done, total)`` runs after
        each batch.
        """
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise InvalidRequestError("texts must be a list of strings")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidRequestError(f"texts[{i}] must be a string")
        if ids is None:
            ids = self._fresh_ids(len(texts))
        id_list = self._check_ids(ids)
        if len(id_list) != len(texts):
            raise InvalidRequestError(f"ids has {len(id_list)} entries for {len(texts)} texts")
        metas = self._check_column(metadatas, len(texts), "metadatas")
        name = model or endpoint_model_id(client, endpoint)
        self._check_model(name)
        if not upsert:
            with self._lock.read():
                for id in id_list:
                    if id in self._rows:
                        raise InvalidRequestError(
                            f"ids: {id!r} is already in the index (use upsert=True)"
                        )
        self._binding = (client, endpoint)
        for start, vectors in embed_texts(client, endpoint, list(texts), batch_size, progress):
            stop = start + len(vectors)
            self._write(id_list[start:stop], vectors, metas[start:stop],
                        list(texts[start:stop]), name, replace=upsert)
        return id_list

    def _fresh_ids(self, count: int) -> list[str]:
        """``doc-N`` ids not in the index, N counting on from the rows written so far."""
        with self._lock.read():
            number, fresh = len(self._ids), list[str]()
            while len(fresh) < count:
                if f"doc-{number}" not in self._rows:
                    fresh.append(f"doc-{number}")
                number += 1
            return fresh

    def search_text(
        self,
        text: str,
        k: int = 10,
        *,
        filter: Mapping[str, Any] | None = None,
        exact: bool = False,
        client: SippClient | None = None,
        endpoint: EndpointRef | None = None,
        model: str | None = None,
    ) -> list[SearchHit]:
        """Embed ``text`` and search; refuses an endpoint whose model is not the index's."""
        if not isinstance(text, str):
            raise InvalidRequestError("text must be a string")
        if client is None or endpoint is None:
            if self._binding is None:
                raise InvalidRequestError(
                    "search by text needs client= and endpoint= (or a prior add_texts)"
                )
            client, endpoint = self._binding
        self._check_model(model or endpoint_model_id(client, endpoint))
        [(_, vectors)] = list(embed_texts(client, endpoint, [text], 1, None))
        return self.search(vectors[0], k, filter=filter, exact=exact)

    def _check_model(self, name: str) -> None:
        current = self._embedding_model
        if current is not None and current != name:
            raise InvalidRequestError(
                f"endpoint: embedding model {name!r} differs from the index's {current!r}"
            )

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the live rows (and the HNSW graph, when built) to ``path`` atomically."""
        with self._lock.write():
            self._compact_fully()
            graph = None
            if self._graph is not None:
                faiss = load_faiss()
                graph = faiss.serialize_index(self._graph._index).tobytes()
            records = {
                "ids": self._ids[: self._size],
                "metadatas": self._metas[: self._size],
                "texts": self._texts[: self._size],
                "embedding_model": self._embedding_model,
                "approximate_min_size": self._approximate_min_size,
                "hnsw": {"m": self._hnsw.m, "ef_construction": self._hnsw.ef_construction,
                         "ef_search": self._hnsw.ef_search},
            }
            write_index(path, self._dim or 0, self._metric, self._vectors[: self._size],
                        records, graph)

    def _compact_fully(self) -> None:
        if self._size == len(self._rows):
            return
        keep = np.flatnonzero(self._alive[: self._size])
        rebuild = self._graph is not None
        self._vectors = np.ascontiguousarray(self._vectors[keep])
        self._sq_norms = np.ascontiguousarray(self._sq_norms[keep])
        self._alive = np.ones(len(keep), dtype=bool)
        self._ids = [self._ids[r] for r in keep]
        self._metas = [self._metas[r] for r in keep]
        self._texts = [self._texts[r] for r in keep]
        self._rows = {id: row for row, id in enumerate(self._ids)}
        self._size = len(keep)
        self._graph = None
        if rebuild and self._size:
            self._build_graph()

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, mmap: bool = False, verify: bool = True
    ) -> VectorIndex:
        """Read an index written by :meth:`save`.

        ``mmap=True`` maps the vectors read-only (copied into memory on the first write).
        ``verify`` checks the SHA-256 checksum (reads the file once); a corrupted,
        truncated or foreign file raises :class:`~sipp.vector.IndexFileError`.
        """
        payload = read_index(path, mmap=mmap, verify=verify)
        records = payload.records
        hnsw = records.get("hnsw") or {}
        index = cls(
            payload.dim or None,
            payload.metric,  # type: ignore[arg-type]
            approximate_min_size=records.get("approximate_min_size"),
            hnsw=HnswParams(**hnsw) if hnsw else None,
            embedding_model=records.get("embedding_model"),
        )
        count = len(payload.vectors)
        index._vectors = payload.vectors
        index._writable = not mmap
        index._sq_norms = np.einsum("ij,ij->i", payload.vectors, payload.vectors).astype(
            np.float32
        )
        index._alive = np.ones(count, dtype=bool)
        index._size = count
        index._ids = list(records["ids"])
        index._metas = list(records["metadatas"])
        index._texts = list(records["texts"])
        index._rows = {id: row for row, id in enumerate(index._ids)}
        if len(index._rows) != count:
            raise IndexFileError(f"{path}: duplicate ids in the records section")
        if payload.graph is not None and index._approximate_min_size is not None:
            faiss = load_faiss()
            graph = HnswGraph(payload.dim, payload.metric, index._hnsw)
            graph._index = faiss.deserialize_index(np.frombuffer(payload.graph, dtype=np.uint8))
            index._graph = graph
        elif index._wants_graph():
            index._build_graph()
        return index
