"""Deterministic GGUF mutations for the fuzz tests (no binaries committed: a seed makes each).

:func:`parse` splits a GGUF file into header, metadata, tensor infos and data (with the byte
offset of every section boundary); :func:`serialize` writes one back. :func:`mutations`
yields ``(label, bytes)`` pairs from a seed: bit flips, truncations at every section
boundary, absurd counts/dimensions/offsets, huge strings and arrays, wrong types for known
keys, unaligned data offsets, duplicate vocabulary strings and absurd hyper-parameters.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

STRING, ARRAY = 8, 9
_SCALAR = {
    0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
    10: "<Q", 11: "<q", 12: "<d",
}  # fmt: skip
U32, I32, F32, BOOL, U64 = 4, 5, 6, 7, 10


@dataclass
class Kv:
    key: str
    vtype: int
    value: Any  # scalar, str, or (etype, list) for arrays


@dataclass
class Tensor:
    name: str
    dims: list[int]
    ttype: int
    offset: int


@dataclass
class Gguf:
    version: int
    kvs: list[Kv]
    tensors: list[Tensor]
    data: bytes
    alignment: int = 32
    data_start: int = 0
    boundaries: list[int] = field(default_factory=list)  # byte offsets of sections (parse)
    string_len_at: list[int] = field(default_factory=list)  # offsets of string length fields
    array_len_at: list[int] = field(default_factory=list)  # offsets of array count fields
    dims_at: list[int] = field(default_factory=list)  # offsets of tensor dimension fields
    offset_at: list[int] = field(default_factory=list)  # offsets of tensor data offsets

    def kv(self, key: str) -> Kv | None:
        return next((kv for kv in self.kvs if kv.key == key), None)

    def arch(self) -> str:
        kv = self.kv("general.architecture")
        return str(kv.value) if kv else ""


class _R:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: str) -> Any:
        (v,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return v

    def string(self, g: Gguf) -> str:
        g.string_len_at.append(self.pos)
        n = self.take("<Q")
        raw = self.data[self.pos : self.pos + n]
        self.pos += n
        return raw.decode("utf-8", "surrogateescape")

    def value(self, vtype: int, g: Gguf) -> Any:
        if vtype == STRING:
            return self.string(g)
        if vtype == ARRAY:
            etype = self.take("<I")
            g.array_len_at.append(self.pos)
            count = self.take("<Q")
            return (etype, [self.value(etype, g) for _ in range(count)])
        return self.take(_SCALAR[vtype])


def parse(data: bytes) -> Gguf:
    """Split a well-formed GGUF file into its parts."""
    r = _R(data)
    assert r.take("<4s") == b"GGUF"
    g = Gguf(version=r.take("<I"), kvs=[], tensors=[], data=b"")
    g.boundaries += [4, 8]
    n_tensors_at = r.pos
    n_tensors = r.take("<Q")
    n_kv = r.take("<Q")
    g.boundaries += [16, 24]
    g.array_len_at.append(n_tensors_at)  # the tensor count is a count too
    g.array_len_at.append(n_tensors_at + 8)
    for _ in range(n_kv):
        key = r.string(g)
        vtype = r.take("<I")
        g.kvs.append(Kv(key, vtype, r.value(vtype, g)))
        g.boundaries.append(r.pos)
    for _ in range(n_tensors):
        name = r.string(g)
        n_dims = r.take("<I")
        dims = []
        for _ in range(n_dims):
            g.dims_at.append(r.pos)
            dims.append(r.take("<Q"))
        ttype = r.take("<I")
        g.offset_at.append(r.pos)
        g.tensors.append(Tensor(name, dims, ttype, r.take("<Q")))
        g.boundaries.append(r.pos)
    align = g.kv("general.alignment")
    g.alignment = int(align.value) if align else 32
    start = (r.pos + g.alignment - 1) // g.alignment * g.alignment
    g.boundaries.append(start)
    g.data_start = start
    g.data = data[start:]
    for t in g.tensors:
        g.boundaries.append(start + t.offset)
    g.boundaries = sorted({*g.boundaries, len(data) - 1})
    return g


def _w_value(out: bytearray, vtype: int, value: Any) -> None:
    if vtype == STRING:
        raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
        out += struct.pack("<Q", len(raw)) + raw
    elif vtype == ARRAY:
        etype, items = value
        out += struct.pack("<IQ", etype, len(items))
        for item in items:
            _w_value(out, etype, item)
    else:
        out += struct.pack(_SCALAR[vtype], value)


def serialize(g: Gguf) -> bytes:
    """Write ``g`` back as GGUF bytes (data padded to ``g.alignment`` as written)."""
    out = bytearray(b"GGUF")
    out += struct.pack("<IQQ", g.version, len(g.tensors), len(g.kvs))
    for kv in g.kvs:
        _w_value(out, STRING, kv.key)
        out += struct.pack("<I", kv.vtype)
        _w_value(out, kv.vtype, kv.value)
    for t in g.tensors:
        _w_value(out, STRING, t.name)
        out += struct.pack("<I", len(t.dims))
        out += b"".join(struct.pack("<Q", d) for d in t.dims)
        out += struct.pack("<IQ", t.ttype, t.offset)
    align = g.alignment if g.alignment > 0 else 32
    out += b"\0" * ((-len(out)) % align)
    return bytes(out) + g.data


def _with_kv(g: Gguf, key: str, vtype: int, value: Any) -> bytes:
    kvs = [kv for kv in g.kvs if kv.key != key] + [Kv(key, vtype, value)]
    return serialize(replace(g, kvs=kvs))


def _without_kv(g: Gguf, key: str) -> bytes:
    return serialize(replace(g, kvs=[kv for kv in g.kvs if kv.key != key]))


def _patch_u64(data: bytes, at: int, value: int) -> bytes:
    return data[:at] + struct.pack("<Q", value & (2**64 - 1)) + data[at + 8 :]


_HUGE = (2**63 - 1, 2**64 - 1, 2**40, 2**32 + 1, 2**31)


def targeted(g: Gguf, original: bytes) -> Iterator[tuple[str, bytes]]:
    """Every hand-picked absurd value (the red-team cases and their neighbours)."""
    arch = g.arch()
    # truncations at every section boundary (and one byte either side)
    for b in g.boundaries:
        for cut in (b - 1, b, b + 1):
            if 0 < cut < len(original):
                yield f"truncate@{cut}", original[:cut]
    # absurd hyper-parameters for the architecture's own keys
    absurd_u32 = {
        "block_count": (0, 100000, 513, 2**31, 2**32 - 1),
        "context_length": (0, 2**32 - 1),
        "embedding_length": (0, 3, 2**31),
        "feed_forward_length": (0, 2**31),
        "attention.head_count": (0, 3, 1000, 2**31),
        "attention.head_count_kv": (0, 3, 1000),
        "attention.key_length": (0, 7, 2**31),
        "attention.value_length": (0, 7, 2**31),
        "expert_count": (2**30, 1025, 4),
        "expert_used_count": (5, 2**30),
        "attention.sliding_window": (0, 2**31),
        "vocab_size": (0, 2**31),
    }
    for suffix, values in absurd_u32.items():
        for v in values:
            yield f"{suffix}={v}", _with_kv(g, f"{arch}.{suffix}", U32, v)
    for suffix in ("attention.layer_norm_rms_epsilon", "attention.layer_norm_epsilon",
                   "rope.freq_base"):  # fmt: skip
        for fv in (-1.0, 0.0, float("nan"), float("inf"), -float("inf"), 1e38):
            yield f"{suffix}={fv}", _with_kv(g, f"{arch}.{suffix}", F32, fv)
    # wrong types for known keys, and required keys missing
    for kv in g.kvs:
        if kv.key.startswith(("general.name", "general.quant")):
            continue
        for vtype, value in ((STRING, "x" * 5), (F32, 1.5), (BOOL, True), (I32, -7),
                             (ARRAY, (U32, [1, 2, 3])), (ARRAY, (STRING, ["a"]))):  # fmt: skip
            if vtype != kv.vtype:
                yield f"type:{kv.key}={vtype}", _with_kv(g, kv.key, vtype, value)
        yield f"missing:{kv.key}", _without_kv(g, kv.key)
    # alignment
    for a in (0, 1, 3, 7, 2**31, 2**32 - 1):
        yield f"alignment={a}", _with_kv(g, "general.alignment", U32, a)
    # duplicate vocabulary strings
    tokens = g.kv("tokenizer.ggml.tokens")
    if tokens is not None:
        etype, items = tokens.value
        for i, j in ((1, 2), (len(items) - 1, 3), (10, 11)):
            dup = list(items)
            dup[i] = dup[j]
            yield f"dup_token[{i}]={j}", _with_kv(g, tokens.key, ARRAY, (etype, dup))
        yield "tokens_empty", _with_kv(g, tokens.key, ARRAY, (etype, []))
        yield "tokens_short", _with_kv(g, tokens.key, ARRAY, (etype, items[:10]))
        huge = [*items[:-1], "y" * 70000]
        yield "tokens_huge_entry", _with_kv(g, tokens.key, ARRAY, (etype, huge))
    for key in ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id"):  # fmt: skip
        for v in (2**31, 2**32 - 1, 99999):
            yield f"{key}={v}", _with_kv(g, key, U32, v)
    # huge strings and arrays (length fields patched in place)
    for at in g.string_len_at[:6] + g.string_len_at[-3:]:
        for v in _HUGE[:3]:
            yield f"strlen@{at}={v}", _patch_u64(original, at, v)
    for at in g.array_len_at:
        for v in (*_HUGE[:3], 0):
            yield f"count@{at}={v}", _patch_u64(original, at, v)
    # tensor dimensions and offsets
    for at in g.dims_at[:4] + g.dims_at[-2:]:
        for v in (0, 2**40, 2**63 - 1, 3):
            yield f"dim@{at}={v}", _patch_u64(original, at, v)
    for at in g.offset_at[:3] + g.offset_at[-2:]:
        for v in (1, 2**40, 2**64 - 32, len(original)):
            yield f"offset@{at}={v}", _patch_u64(original, at, v)
    if g.tensors:
        t0 = g.tensors[0]
        many_dims = [replace(t0, dims=[1] * 9), *g.tensors[1:]]
        yield "n_dims=9", serialize(replace(g, tensors=many_dims))
        unknown = [replace(t0, ttype=99), *g.tensors[1:]]
        yield "ttype=99", serialize(replace(g, tensors=unknown))
        overlap = [replace(t, offset=0) for t in g.tensors]
        yield "offsets_all_0", serialize(replace(g, tensors=overlap))
        dup_name = [*g.tensors, replace(g.tensors[-1])]
        yield "dup_tensor_name", serialize(replace(g, tensors=dup_name))


def bitflips(original: bytes, header_end: int, rng: random.Random) -> tuple[str, bytes]:
    """Flip 1-8 random bits, mostly in the header (where they matter)."""
    data = bytearray(original)
    n = rng.randint(1, 8)
    spots = []
    for _ in range(n):
        limit = header_end if rng.random() < 0.9 else len(data)
        at = rng.randrange(4, limit)  # keep the magic so the loader gets past it
        bit = rng.randrange(8)
        data[at] ^= 1 << bit
        spots.append(f"{at}:{bit}")
    return "bitflip@" + ",".join(spots), bytes(data)


def mutations(original: bytes, seed: int, n_random: int) -> Iterator[tuple[str, bytes]]:
    """The targeted mutations of ``original`` then ``n_random`` seeded bit flips."""
    g = parse(original)
    yield from targeted(g, original)
    rng = random.Random(seed)
    header_end = g.data_start or len(original)
    for _ in range(n_random):
        yield bitflips(original, header_end, rng)
