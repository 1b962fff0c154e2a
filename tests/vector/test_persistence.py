"""save / load: bit-exact round trips, memory mapping, and refused corrupted files."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from sipp.vector import FORMAT_VERSION, IndexFileError, VectorIndex


def _index(metric: str = "cosine") -> tuple[VectorIndex, np.ndarray]:
    rng = np.random.default_rng(11)
    data = rng.standard_normal((500, 32)).astype(np.float32)
    index = VectorIndex(32, metric, embedding_model="local:m.gguf:mean")  # type: ignore[arg-type]
    metas = [{"i": i, "name": f"ü{i}", "tags": ["a", None, 1.5]} if i % 7 else None
             for i in range(500)]
    texts = [f"text {i}" if i % 3 else None for i in range(500)]
    index.add([f"id{i}" for i in range(500)], data, metas, texts)
    return index, data


@pytest.mark.parametrize("mmap", [False, True])
@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_round_trip_is_bit_exact(tmp_path: Path, mmap: bool, metric: str) -> None:
    index, data = _index(metric)
    index.delete(["id3", "id4"])
    path = tmp_path / "ix.sippvec"
    index.save(path)
    loaded = VectorIndex.load(path, mmap=mmap)
    assert (loaded.dim, loaded.metric, loaded.embedding_model) == (32, metric,
                                                                   "local:m.gguf:mean")
    assert loaded.ids() == index.ids()
    for id in ("id0", "id7", "id10", "id499"):
        a, b = index.get(id), loaded.get(id)
        assert a[0].tobytes() == b[0].tobytes()
        assert a[1:] == b[1:]
    q = data[42]
    assert loaded.search(q, k=20) == index.search(q, k=20)
    again = tmp_path / "again.sippvec"
    loaded.save(again)
    assert again.read_bytes() == path.read_bytes()


def test_memory_mapped_index_copies_on_first_write(tmp_path: Path) -> None:
    index, _ = _index()
    path = tmp_path / "ix.sippvec"
    index.save(path)
    before = path.read_bytes()
    loaded = VectorIndex.load(path, mmap=True)
    assert isinstance(loaded._vectors, np.memmap)
    loaded.upsert(["id1"], [np.ones(32)])
    loaded.add(["new"], [np.full(32, -1.0)])
    assert loaded.search(np.full(32, -1.0), k=1)[0].id == "new"
    assert path.read_bytes() == before


def test_vectors_sit_at_an_aligned_offset(tmp_path: Path) -> None:
    index, data = _index()
    path = tmp_path / "ix.sippvec"
    index.save(path)
    raw = path.read_bytes()
    assert raw[:8] == b"SIPPVIDX"
    version, header_size, dim, _, count, offset = struct.unpack_from("<IIIIQQ", raw, 8)
    assert (version, header_size, dim, count) == (FORMAT_VERSION, 128, 32, 500)
    assert offset % 64 == 0
    mapped = np.frombuffer(raw, dtype="<f4", count=count * dim, offset=offset)
    assert mapped.reshape(count, dim).tobytes() == data.tobytes()


def test_corrupted_file_is_refused(tmp_path: Path) -> None:
    index, _ = _index()
    path = tmp_path / "ix.sippvec"
    index.save(path)
    raw = bytearray(path.read_bytes())
    raw[128 + 1000] ^= 0x01  # one bit of one vector
    path.write_bytes(raw)
    with pytest.raises(IndexFileError, match="checksum mismatch"):
        VectorIndex.load(path)


def test_truncated_foreign_and_future_files_are_refused(tmp_path: Path) -> None:
    index, _ = _index()
    path = tmp_path / "ix.sippvec"
    index.save(path)
    raw = path.read_bytes()
    (tmp_path / "short").write_bytes(raw[:-10])
    with pytest.raises(IndexFileError, match="truncated"):
        VectorIndex.load(tmp_path / "short")
    (tmp_path / "foreign").write_bytes(b"PK\x03\x04" + raw[4:])
    with pytest.raises(IndexFileError, match="not a Sipp vector index file"):
        VectorIndex.load(tmp_path / "foreign")
    future = bytearray(raw)
    struct.pack_into("<I", future, 8, 99)
    (tmp_path / "future").write_bytes(future)
    with pytest.raises(IndexFileError, match="format version 99 is not supported"):
        VectorIndex.load(tmp_path / "future")


def test_empty_index_round_trips(tmp_path: Path) -> None:
    VectorIndex().save(tmp_path / "e")
    loaded = VectorIndex.load(tmp_path / "e")
    assert len(loaded) == 0 and loaded.dim is None
