"""The on-disk format of a :class:`~sipp.vector.VectorIndex` (version 1).

One little-endian file; the vectors sit at a 64-byte aligned offset so that
``VectorIndex.load(path, mmap=True)`` maps them instead of reading them::

    offset  size  field
    0       8     magic b"SIPPVIDX"
    8       4     u32 format version (1)
    12      4     u32 header size (128)
    16      4     u32 dimension
    20      4     u32 metric (0 cosine, 1 dot, 2 l2)
    24      8     u64 row count
    32      16    u64 vectors offset, u64 vectors byte size (row-major float32)
    48      16    u64 records offset, u64 records byte size (UTF-8 JSON, see below)
    64      16    u64 graph offset, u64 graph byte size (0, 0 without an HNSW graph)
    80      32    SHA-256 of bytes 0-79, 112-127 and everything after the header
    112     16    reserved (zero)

The records JSON holds ``ids``, ``metadatas``, ``texts`` (one entry per row),
``embedding_model`` and the index settings. The graph section is a serialized faiss HNSW
index whose ids are the row numbers.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sipp.errors import SippError

__all__ = ["FORMAT_VERSION", "IndexFileError", "IndexPayload", "read_index", "write_index"]

MAGIC = b"SIPPVIDX"
FORMAT_VERSION = 1
HEADER_SIZE = 128
METRICS = ("cosine", "dot", "l2")
_HEAD = struct.Struct("<8sIIIIQQQQQQQ")  # bytes 0..80
_CHUNK = 1 << 22


class IndexFileError(SippError, ValueError):
    """A vector index file is not one, is of an unknown version, truncated or corrupted."""

    default_code = "invalid_index_file"
    http_status = 400


@dataclass
class IndexPayload:
    """What a file holds (``vectors`` may be a read-only memory map)."""

    dim: int
    metric: str
    vectors: npt.NDArray[np.float32]
    records: dict[str, Any]
    graph: bytes | None


def _align(offset: int) -> int:
    return (offset + 63) // 64 * 64


def write_index(
    path: str | os.PathLike[str],
    dim: int,
    metric: str,
    vectors: npt.NDArray[np.float32],
    records: dict[str, Any],
    graph: bytes | None,
) -> None:
    """Write atomically: a temporary file in the same folder, then ``os.replace``."""
    target = Path(path)
    body_vectors = np.ascontiguousarray(vectors, dtype="<f4").tobytes()
    body_records = json.dumps(records, ensure_ascii=False, separators=(",", ":")).encode()
    vectors_offset = HEADER_SIZE
    records_offset = vectors_offset + len(body_vectors)
    graph_bytes = graph or b""
    graph_offset = _align(records_offset + len(body_records)) if graph_bytes else 0
    head = _HEAD.pack(
        MAGIC, FORMAT_VERSION, HEADER_SIZE, dim, METRICS.index(metric), len(vectors),
        vectors_offset, len(body_vectors), records_offset, len(body_records),
        graph_offset, len(graph_bytes),
    )
    reserved = bytes(16)
    padding = bytes(graph_offset - records_offset - len(body_records)) if graph_bytes else b""
    digest = hashlib.sha256()
    for part in (head, reserved, body_vectors, body_records, padding, graph_bytes):
        digest.update(part)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as out:
            for part in (head, digest.digest(), reserved, body_vectors, body_records,
                         padding, graph_bytes):
                out.write(part)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_index(path: str | os.PathLike[str], *, mmap: bool, verify: bool) -> IndexPayload:
    """Read and check a file; any inconsistency raises :class:`IndexFileError`."""
    source = Path(path)
    size = source.stat().st_size
    with open(source, "rb") as f:
        header = f.read(HEADER_SIZE)
        if len(header) < 8 or header[:8] != MAGIC:
            raise IndexFileError(f"{source}: not a Sipp vector index file (bad magic)")
        if len(header) < HEADER_SIZE:
            raise IndexFileError(f"{source}: truncated header")
        fields = _HEAD.unpack(header[:80])
        (_, version, header_size, dim, metric_code, count, v_off, v_len, r_off, r_len,
         g_off, g_len) = fields
        if version != FORMAT_VERSION:
            raise IndexFileError(
                f"{source}: format version {version} is not supported "
                f"(this Sipp reads version {FORMAT_VERSION})"
            )
        if header_size != HEADER_SIZE or metric_code >= len(METRICS) or (dim == 0 and count):
            raise IndexFileError(f"{source}: corrupted header")
        end = max(r_off + r_len, g_off + g_len)
        if v_off != HEADER_SIZE or v_len != count * dim * 4 or r_off != v_off + v_len:
            raise IndexFileError(f"{source}: corrupted header (section sizes disagree)")
        if end != size:
            raise IndexFileError(
                f"{source}: file is {size} bytes, its header describes {end} (truncated "
                "or extended)"
            )
        if verify:
            digest = hashlib.sha256(header[:80])
            digest.update(header[112:])
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
            if digest.digest() != header[80:112]:
                raise IndexFileError(f"{source}: checksum mismatch (the file is corrupted)")
        f.seek(r_off)
        try:
            records = json.loads(f.read(r_len).decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise IndexFileError(f"{source}: corrupted records section ({exc})") from exc
        graph = None
        if g_len:
            f.seek(g_off)
            graph = f.read(g_len)
    if not isinstance(records, dict) or any(
        not isinstance(records.get(key), list) or len(records[key]) != count
        for key in ("ids", "metadatas", "texts")
    ):
        raise IndexFileError(f"{source}: records section does not match the row count")
    vectors: npt.NDArray[np.float32]
    if count == 0:
        vectors = np.zeros((0, dim), dtype=np.float32)
    elif mmap:
        vectors = np.memmap(source, dtype="<f4", mode="r", offset=v_off, shape=(count, dim))
    else:
        vectors = np.fromfile(source, dtype="<f4", count=count * dim, offset=v_off).reshape(
            count, dim
        )
    return IndexPayload(int(dim), METRICS[metric_code], vectors, records, graph)
