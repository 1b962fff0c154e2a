"""Local vector search for RAG: :class:`VectorIndex` (exact NumPy search, optional HNSW
through faiss-cpu, a versioned memory-mappable file format, embedding through a client)."""

from __future__ import annotations

from sipp.vector._ann import HnswParams
from sipp.vector._format import FORMAT_VERSION, IndexFileError
from sipp.vector.index import Metric, SearchHit, VectorIndex

__all__ = ["FORMAT_VERSION", "HnswParams", "IndexFileError", "Metric", "SearchHit", "VectorIndex"]
