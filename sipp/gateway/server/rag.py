"""RAG interception: ``[[collections]]`` of document chunks in a persisted
:class:`~sipp.vector.VectorIndex`, searched with a request's last user turn before it is
forwarded.

A collection's index file (``index_path``) loads at start; a missing or stale one (the
source changed since, recorded in ``<index_path>.source.json``) is rebuilt on a background
thread and swapped in when done, so reindexing never blocks serving. ``sipp-gateway index``
builds the same file offline.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sipp.client import SippClient
from sipp.errors import ConfigurationError, SippError
from sipp.gateway.server.cache_config import ChunkingConfig, CollectionConfig, RagConfig
from sipp.gateway.server.logging import logger
from sipp.types import EndpointRef
from sipp.vector import IndexFileError, VectorIndex

__all__ = ["Collection", "Passage", "RagRegistry", "build_index", "chunk_text",
           "read_documents", "source_signature"]

_TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".rst")


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk: ``id`` is ``<document id>#<chunk number>``."""

    id: str
    text: str
    score: float
    document: str

    def as_document(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text}


def read_documents(source: str | Path) -> list[tuple[str, str]]:
    """``(id, text)`` per document: each text file under a directory (id = its relative
    path), or each line ``{"id", "text"}`` of a JSONL file."""
    path = Path(source).expanduser()
    if path.is_dir():
        out = []
        for file in sorted(p for p in path.rglob("*") if p.is_file()
                           and p.suffix.lower() in _TEXT_SUFFIXES):
            out.append((file.relative_to(path).as_posix(), file.read_text(encoding="utf-8")))
        return out
    if not path.is_file():
        raise ConfigurationError(f"collection source {source} does not exist")
    docs = []
    seen: set[str] = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"{source}:{number}: invalid JSON: {exc.msg}") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str) or \
                not isinstance(obj.get("text"), str):
            raise ConfigurationError(f"{source}:{number}: each line must be an object with "
                                     'string "id" and "text"')
        if obj["id"] in seen:
            raise ConfigurationError(f"{source}:{number}: duplicate document id {obj['id']!r}")
        seen.add(obj["id"])
        docs.append((obj["id"], obj["text"]))
    return docs


def chunk_text(text: str, rule: ChunkingConfig) -> list[str]:
    """Paragraphs (split on blank lines) packed into chunks of at most ``max_chars``; a
    longer paragraph is cut into pieces that repeat ``overlap`` characters."""
    chunks: list[str] = []
    current = ""
    for paragraph in (p.strip() for p in text.replace("\r\n", "\n").split("\n\n")):
        if not paragraph:
            continue
        for piece in _cut(paragraph, rule):
            if current and len(current) + 2 + len(piece) <= rule.max_chars:
                current = f"{current}\n\n{piece}"
            else:
                if current:
                    chunks.append(current)
                current = piece
    if current:
        chunks.append(current)
    return chunks


def _cut(paragraph: str, rule: ChunkingConfig) -> Iterator[str]:
    if len(paragraph) <= rule.max_chars:
        yield paragraph
        return
    step = rule.max_chars - rule.overlap
    for start in range(0, len(paragraph), step):
        yield paragraph[start:start + rule.max_chars]
        if start + rule.max_chars >= len(paragraph):
            return


def source_signature(source: str | Path) -> str:
    """A digest of the source's files (names, sizes, modification times)."""
    path = Path(source).expanduser()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        try:
            stat = file.stat()
        except OSError:
            continue
        digest.update(f"{file}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _sidecar(config: CollectionConfig) -> Path:
    return Path(config.index_path + ".source.json").expanduser()


def build_index(config: CollectionConfig, client: SippClient, endpoint: EndpointRef
                ) -> VectorIndex:
    """Chunk and embed the collection's documents, save the index and its source
    signature (blocking: run it on a thread)."""
    signature = source_signature(config.source)
    ids: list[str] = []
    texts: list[str] = []
    metadatas: list[dict[str, Any]] = []
    for doc_id, text in read_documents(config.source):
        for number, chunk in enumerate(chunk_text(text, config.chunking)):
            ids.append(f"{doc_id}#{number}")
            texts.append(chunk)
            metadatas.append({"document": doc_id, "chunk": number})
    index = VectorIndex()
    if texts:
        index.add_texts(texts, client=client, endpoint=endpoint, ids=ids, metadatas=metadatas)
    path = Path(config.index_path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    index.save(path)
    tmp = _sidecar(config).with_suffix(".tmp")
    tmp.write_text(json.dumps({"signature": signature, "chunks": len(texts)}), encoding="utf-8")
    os.replace(tmp, _sidecar(config))
    return index


class Collection:
    """One collection's current index (swapped whole when a rebuild finishes)."""

    def __init__(self, config: CollectionConfig) -> None:
        self.config = config
        self.index: VectorIndex | None = None
        self.status: Literal["empty", "indexing", "ready", "failed"] = "empty"
        self.error: str | None = None
        self.signature: str | None = None
        self.searches = 0

    def load(self) -> bool:
        """Load the persisted index; False when it is missing, unreadable or stale."""
        path = Path(self.config.index_path).expanduser()
        if not path.is_file():
            return False
        try:
            self.index = VectorIndex.load(path)
            self.status = "ready"
            self.signature = json.loads(_sidecar(self.config).read_text(encoding="utf-8")
                                        ).get("signature")
        except IndexFileError as exc:
            logger.warning("collection index unreadable, rebuilding",
                           extra={"collection": self.config.name, "error": exc.message})
            return False
        except (OSError, ValueError, AttributeError):
            self.signature = None
        return not self.config.reindex_on_change or \
            self.signature == source_signature(self.config.source)

    def search(self, vector: Sequence[float], rag: RagConfig) -> list[Passage]:
        index = self.index
        if index is None or not len(index):
            return []
        self.searches += 1
        return [Passage(hit.id, hit.text or "", hit.score,
                        str((hit.metadata or {}).get("document", hit.id)))
                for hit in index.search(list(vector), rag.top_k)
                if hit.score >= rag.min_score and hit.text]

    def snapshot(self) -> dict[str, Any]:
        index = self.index
        return {"name": self.config.name, "status": self.status, "error": self.error,
                "chunks": len(index) if index is not None else 0,
                "documents": len({(m or {}).get("document") for m in _metas(index)}),
                "searches": self.searches, "source": self.config.source,
                "embedding_target": self.config.embedding_target}


def _metas(index: VectorIndex | None) -> Iterator[dict[str, Any] | None]:
    if index is None:
        return
    for row_id in index.ids():
        yield index.get(row_id)[1]


class RagRegistry:
    """The gateway's collections: loaded at start, rebuilt in the background when missing
    or when their source changes (polled every ``poll_seconds``)."""

    def __init__(self, collections: dict[str, CollectionConfig] | Any, client: SippClient,
                 endpoint_of: Callable[[str], EndpointRef], poll_seconds: float = 2.0) -> None:
        self.collections = {name: Collection(c) for name, c in dict(collections).items()}
        self.client = client
        self.endpoint_of = endpoint_of
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Load persisted indexes and start the rebuild/watch thread (call once the
        embedding targets are loaded)."""
        if not self.collections or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._watch, name="sipp-gateway-rag",
                                        daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        stale = [c for c in self.collections.values() if not c.load()]
        for collection in stale:
            self.reindex(collection.config.name)
        while not self._stop.wait(self.poll_seconds):
            for collection in self.collections.values():
                if not collection.config.reindex_on_change or collection.status == "indexing":
                    continue
                try:
                    changed = source_signature(collection.config.source) != collection.signature
                except OSError:
                    continue
                if changed:
                    self.reindex(collection.config.name)

    def reindex(self, name: str) -> None:
        """Rebuild one collection now (blocking; serving goes on with the old index)."""
        collection = self.collections[name]
        with self._lock:
            previous = collection.status
            collection.status = "indexing"
            try:
                endpoint = self.endpoint_of(collection.config.embedding_target)
                collection.index = build_index(collection.config, self.client, endpoint)
                collection.signature = json.loads(
                    _sidecar(collection.config).read_text(encoding="utf-8"))["signature"]
                collection.status = "ready"
                collection.error = None
                logger.info("collection indexed", extra={
                    "collection": name, "chunks": len(collection.index)})
            except (SippError, OSError) as exc:
                collection.status = "failed" if previous != "ready" else "ready"
                collection.error = str(exc)
                # retried when the source changes, not on every poll
                collection.signature = source_signature(collection.config.source)
                logger.error("collection indexing failed",
                             extra={"collection": name, "error": str(exc)})

    async def retrieve(self, rag: RagConfig, question: str,
                       embed: Callable[[str, str], Awaitable[Sequence[float]]]
                       ) -> list[Passage]:
        collection = self.collections.get(rag.collection)
        if collection is None or collection.index is None or not question.strip():
            return []
        vector = await embed(collection.config.embedding_target, question)
        return await asyncio.to_thread(collection.search, vector, rag)

    def snapshot(self) -> list[dict[str, Any]]:
        return [c.snapshot() for c in self.collections.values()]

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
