"""Read a GGUF header in Python and check a model file before libllama sees it.

libllama reports bad files only through its log, and many malformed files abort the process
inside it (``GGML_ASSERT``), so :func:`check_model_file` rejects missing paths, directories,
non-GGUF files, truncated headers or tensor data, unknown architectures, and every value
the pinned llama.cpp asserts on instead of reporting -- layer and expert counts out of
range, non-positive or non-finite norm epsilons, duplicate vocabulary strings, an unaligned
data section, absurd tensor counts and dimensions -- with a :class:`ModelLoadError` that
names the path, the key and the reason. Big arrays are skipped, never decoded (the token
list is only hashed for duplicates).
"""

from __future__ import annotations

import math
import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sipp.errors import ModelLoadError
from sipp.native._archs import (
    EQUAL_HEAD_DIM_ARCHITECTURES,
    KNOWN_ARCHITECTURES,
    PROJECTOR_ARCHITECTURES,
)

__all__ = ["GgufInfo", "check_model_file", "read_gguf_file", "read_gguf_info"]

GGUF_MAGIC = b"GGUF"
_DEFAULT_ALIGNMENT = 32

# ggml type id -> (elements per block, bytes per block), from the pinned ggml.h/ggml-common.h.
GGML_TYPE_SIZES: dict[int, tuple[int, int]] = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
    9: (32, 36), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176),
    14: (256, 210), 15: (256, 292), 16: (256, 66), 17: (256, 74), 18: (256, 98),
    19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82), 23: (256, 136), 24: (1, 1),
    25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2),
    34: (256, 54), 35: (256, 66), 39: (32, 17), 40: (64, 36), 41: (128, 18), 42: (64, 18),
}  # fmt: skip

# GGUF metadata value types: id -> struct format of a scalar (strings and arrays apart).
_SCALAR_FORMATS: dict[int, str] = {
    0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
    10: "<Q", 11: "<q", 12: "<d",
}  # fmt: skip
_TYPE_STRING = 8
_TYPE_ARRAY = 9
_MAX_KEEP_ARRAY = 1024  # arrays longer than this are recorded by length only (per-layer fit)
_TOKENS_KEY = "tokenizer.ggml.tokens"
# Limits the pinned llama.cpp asserts on (llama-hparams.h, ggml-backend.cpp, gguf.cpp).
LLAMA_MAX_LAYERS = 512
LLAMA_MAX_EXPERTS = 1024
TENSOR_ALIGNMENT = 32
_MAX_DIMS = 4  # GGML_MAX_DIMS
_MAX_ELEMENTS = 2**62
_EPSILON_SUFFIXES = (
    "attention.layer_norm_rms_epsilon",
    "attention.layer_norm_epsilon",
    "attention.group_norm_epsilon",
    "norm_epsilon",
)
_ROPE_SCALING_TYPES = ("none", "linear", "yarn", "longrope")


class _Truncated(Exception):
    pass


class _Malformed(Exception):
    pass


@dataclass
class GgufInfo:
    """What the header of a GGUF file says (scalar metadata, small arrays, data size)."""

    version: int
    n_tensors: int
    metadata: dict[str, Any] = field(default_factory=dict)
    data_offset: int = 0
    data_size: int = 0
    file_size: int = 0
    unknown_tensor_types: set[int] = field(default_factory=set)
    n_elements: int = 0  # parameters: elements of all tensors in this file

    @property
    def architecture(self) -> str | None:
        value = self.metadata.get("general.architecture")
        return value if isinstance(value, str) else None


class _Reader:
    def __init__(self, buf: mmap.mmap | bytes) -> None:
        self.buf = buf
        self.pos = 0
        self.size = len(buf)

    def take(self, fmt: str) -> Any:
        n = struct.calcsize(fmt)
        if self.pos + n > self.size:
            raise _Truncated
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return value

    def skip(self, n: int) -> None:
        if n < 0 or self.pos + n > self.size:
            raise _Truncated
        self.pos += n

    def string(self) -> str:
        n = self.take("<Q")
        if self.pos + n > self.size:
            raise _Truncated
        raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        self.skip(self.take("<Q"))

    def duplicate_string(self, count: int) -> tuple[int, int] | None:
        """Read ``count`` strings; the indices of the first repeated one, or None."""
        seen: dict[bytes, int] = {}
        duplicate: tuple[int, int] | None = None
        for i in range(count):
            n = self.take("<Q")
            if self.pos + n > self.size:
                raise _Truncated
            raw = bytes(self.buf[self.pos : self.pos + n])
            self.pos += n
            if duplicate is None:
                first = seen.setdefault(raw, i)
                if first != i:
                    duplicate = (first, i)
        return duplicate

    def value(self, vtype: int) -> Any:
        if vtype == _TYPE_STRING:
            return self.string()
        fmt = _SCALAR_FORMATS.get(vtype)
        if fmt is not None:
            return self.take(fmt)
        if vtype == _TYPE_ARRAY:
            etype = self.take("<I")
            count = self.take("<Q")
            if count <= _MAX_KEEP_ARRAY:
                return [self.value(etype) for _ in range(count)]
            if etype == _TYPE_STRING:
                for _ in range(count):
                    self.skip_string()
            elif etype in _SCALAR_FORMATS:
                self.skip(count * struct.calcsize(_SCALAR_FORMATS[etype]))
            else:
                for _ in range(count):
                    self.value(etype)
            return _ArrayLength(count)
        raise _Malformed(f"unknown metadata value type {vtype} at byte {self.pos}")


class _ArrayLength(int):
    """A long metadata array, recorded by its length only."""


def read_gguf_info(path: str | os.PathLike[str]) -> GgufInfo:
    """Parse the header of the GGUF file at ``path`` (raises ``ModelLoadError``)."""
    p = Path(path)
    with p.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size < 4 or handle.read(4) != GGUF_MAGIC:
            raise ModelLoadError(f"Cannot load model {p}: not a GGUF file (no 'GGUF' magic)")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            try:
                return _parse(buf, size)
            except _Truncated:
                raise ModelLoadError(
                    f"Cannot load model {p}: truncated GGUF header ({size} bytes)"
                ) from None
            except _Malformed as exc:
                raise ModelLoadError(
                    f"Cannot load model {p}: malformed GGUF header: {exc}"
                ) from None


def _parse(buf: mmap.mmap, size: int) -> GgufInfo:
    r = _Reader(buf)
    r.skip(4)
    version = r.take("<I")
    if version not in (2, 3):
        raise _Malformed(f"unsupported GGUF version {version} (expected 2 or 3)")
    n_tensors = r.take("<Q")
    n_kv = r.take("<Q")
    if n_tensors > size or n_kv > size:
        raise _Truncated
    info = GgufInfo(version=version, n_tensors=n_tensors, file_size=size)
    for _ in range(n_kv):
        key = r.string()
        vtype = r.take("<I")
        if key == _TOKENS_KEY and vtype == _TYPE_ARRAY:
            etype = r.take("<I")
            count = r.take("<Q")
            if etype == _TYPE_STRING:
                duplicate = r.duplicate_string(count)
                if duplicate is not None:
                    raise _Malformed(
                        f"{key}: tokens {duplicate[0]} and {duplicate[1]} are the same string "
                        "(a vocabulary needs unique token strings)"
                    )
                info.metadata[key] = _ArrayLength(count)
                continue
            r.pos -= 12
        info.metadata[key] = r.value(vtype)
    alignment = info.metadata.get("general.alignment", _DEFAULT_ALIGNMENT)
    if (
        not isinstance(alignment, int)
        or isinstance(alignment, bool)
        or alignment <= 0
        or alignment & (alignment - 1)
    ):
        raise _Malformed(f"general.alignment is {alignment!r}, expected a power of two")
    data_end = 0
    names: set[bytes] = set()
    for i in range(n_tensors):
        n = r.take("<Q")
        if r.pos + n > size:
            raise _Truncated
        name = bytes(buf[r.pos : r.pos + n])
        r.pos += n
        if name in names:
            raise _Malformed(f"tensor {name.decode(errors='replace')!r} appears twice")
        names.add(name)
        n_dims = r.take("<I")
        if n_dims > _MAX_DIMS:
            raise _Malformed(f"tensor {i} has {n_dims} dimensions (at most {_MAX_DIMS})")
        n_elements = 1
        for _ in range(n_dims):
            n_elements *= r.take("<Q")
        if n_elements > _MAX_ELEMENTS:
            raise _Malformed(f"tensor {i} has {n_elements} elements")
        ttype = r.take("<I")
        offset = r.take("<Q")
        if offset % alignment:
            raise _Malformed(
                f"tensor {i} data offset {offset} is not a multiple of the alignment {alignment}"
            )
        info.n_elements += n_elements
        block = GGML_TYPE_SIZES.get(ttype)
        if block is None:
            info.unknown_tensor_types.add(ttype)
            data_end = max(data_end, offset)
            continue
        if n_dims and n_elements % block[0]:
            raise _Malformed(
                f"tensor {i} has {n_elements} elements, not whole blocks of {block[0]}"
            )
        data_end = max(data_end, offset + n_elements // block[0] * block[1])
    info.data_offset = (r.pos + alignment - 1) // alignment * alignment
    if info.data_offset % TENSOR_ALIGNMENT:
        raise _Malformed(
            f"the tensor data starts at byte {info.data_offset}, not a multiple of "
            f"{TENSOR_ALIGNMENT} (general.alignment {alignment}): llama.cpp cannot map it"
        )
    info.data_size = data_end
    return info


def _integers(key: str, value: Any) -> list[int]:
    """A scalar or per-layer array hyper-parameter as a list of ints (raises on other types)."""
    items = value if isinstance(value, list) else [value]
    if isinstance(value, _ArrayLength) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in items
    ):
        raise _Malformed(f"{key} must be an integer (or one per layer), got {value!r}")
    return items


def _check_hyperparameters(info: GgufInfo) -> None:
    """Refuse the hyper-parameter values the pinned libllama aborts on (raises ``_Malformed``
    naming the key); the values it reports itself are left to it."""
    arch = info.architecture
    if arch is None or arch in PROJECTOR_ARCHITECTURES:
        return
    md = info.metadata

    def get(suffix: str) -> tuple[str, Any]:
        return f"{arch}.{suffix}", md.get(f"{arch}.{suffix}")

    key, value = get("block_count")
    n_layer = 0
    if value is not None:
        n_layer = max(_integers(key, value))
        if not 1 <= n_layer <= LLAMA_MAX_LAYERS or isinstance(value, list):
            raise _Malformed(f"{key} is {value!r}, expected 1 to {LLAMA_MAX_LAYERS} layers")
    key, value = get("nextn_predict_layers")
    if value is not None and max(_integers(key, value)) > n_layer:
        raise _Malformed(f"{key} is {value!r}, more than the {n_layer} layers")
    key, value = get("expert_count")
    n_expert = max(_integers(key, value)) if value is not None else 0
    if not 0 <= n_expert <= LLAMA_MAX_EXPERTS:
        raise _Malformed(f"{key} is {n_expert}, expected 0 to {LLAMA_MAX_EXPERTS}")
    used_key, value = get("expert_used_count")
    used = max(_integers(used_key, value), default=0) if value is not None else 0
    if used > n_expert:
        raise _Malformed(f"{used_key} is {used}, more than {key} ({n_expert})")
    if n_expert and used <= 0:
        raise _Malformed(f"{used_key} must be at least 1 when {key} is {n_expert}")
    groups_key, value = get("expert_group_count")
    groups = max(_integers(groups_key, value)) if value is not None else 0
    group_used_key, value = get("expert_group_used_count")
    group_used = max(_integers(group_used_key, value)) if value is not None else 0
    if n_expert == 0 and groups:
        raise _Malformed(f"{groups_key} is {groups} but the model has no experts")
    if n_expert and groups >= n_expert:
        raise _Malformed(f"{groups_key} is {groups}, expected fewer than {key} ({n_expert})")
    if groups > 1 and (n_expert % groups or not 0 < group_used < groups):
        raise _Malformed(
            f"{groups_key} {groups} must divide {key} {n_expert} and {group_used_key} "
            f"({group_used}) must be 1 to {groups - 1}"
        )
    for suffix in _EPSILON_SUFFIXES:
        key, value = get(suffix)
        if value is None:
            continue
        if not isinstance(value, float) or not math.isfinite(value) or value <= 0.0:
            raise _Malformed(f"{key} is {value!r}, expected a finite number > 0")
    _check_head_sizes(arch, get)
    key, value = get("rope.scaling.type")
    if isinstance(value, str) and value not in _ROPE_SCALING_TYPES:
        raise _Malformed(f"{key} is {value!r}, expected one of {', '.join(_ROPE_SCALING_TYPES)}")


def read_gguf_file(path: str | os.PathLike[str], prefix: str) -> GgufInfo:
    """The header of the GGUF file at ``path`` once it is known to be a readable regular
    file; a missing path, a directory, a special file or an OS error is a
    ``ModelLoadError`` reading ``"<prefix> <path>: <reason>"`` (the caller's prefix: what
    it was doing). A bad header raises :func:`read_gguf_info`'s errors."""
    p = Path(path)
    if not p.exists():
        raise ModelLoadError(f"{prefix} {p}: file not found")
    if p.is_dir():
        raise ModelLoadError(f"{prefix} {p}: is a directory, expected a .gguf file")
    if not p.is_file():
        raise ModelLoadError(f"{prefix} {p}: not a regular file")
    try:
        return read_gguf_info(p)
    except PermissionError as exc:
        raise ModelLoadError(f"{prefix} {p}: permission denied") from exc
    except OSError as exc:
        raise ModelLoadError(f"{prefix} {p}: {exc.strerror or exc}") from exc


def check_model_file(path: str | os.PathLike[str]) -> GgufInfo:
    """Validate ``path`` as a loadable GGUF model; raise ``ModelLoadError`` naming the reason."""
    p = Path(path)
    info = read_gguf_file(p, "Cannot load model")
    needed = info.data_offset + info.data_size
    if info.n_tensors and needed > info.file_size:
        raise ModelLoadError(
            f"Cannot load model {p}: truncated tensor data (the header needs {needed} bytes, "
            f"the file has {info.file_size})"
        )
    arch = info.architecture
    if arch is None:
        raise ModelLoadError(f"Cannot load model {p}: no general.architecture in the GGUF header")
    try:
        _check_hyperparameters(info)
    except _Malformed as exc:
        raise ModelLoadError(f"Cannot load model {p}: {exc}") from None
    if arch in PROJECTOR_ARCHITECTURES:
        raise ModelLoadError(
            f"Cannot load model {p}: architecture {arch!r} is a multimodal projector "
            "(mmproj); pass it as the projector of a text model instead"
        )
    if arch not in KNOWN_ARCHITECTURES:
        raise ModelLoadError(
            f"Cannot load model {p}: unsupported architecture {arch!r} "
            "(not known to the pinned llama.cpp)"
        )
    return info


def _check_head_sizes(arch: str, get: Any) -> None:
    """Key and value head sizes: positive, and equal where the arch's graph asserts it."""
    sizes: dict[str, int] = {}
    for suffix in ("attention.key_length", "attention.value_length"):
        key, value = get(suffix)
        if value is not None:
            sizes[key] = min(_integers(key, value))
            if sizes[key] < 1:
                raise _Malformed(f"{key} is {value!r}, expected at least 1")
    if arch not in EQUAL_HEAD_DIM_ARCHITECTURES:
        return
    embd_key, n_embd = get("embedding_length")
    head_key, n_head = get("attention.head_count")
    if not isinstance(n_embd, int) or n_head is None:
        return
    heads = max(_integers(head_key, n_head))
    if heads <= 0:
        return
    default = n_embd // heads
    k = sizes.get(f"{arch}.attention.key_length", default)
    v = sizes.get(f"{arch}.attention.value_length", default)
    if k != v:
        raise _Malformed(
            f"{arch}.attention.key_length ({k}) and {arch}.attention.value_length ({v}) must "
            f"be equal for architecture {arch!r} (defaults: {embd_key} / {head_key} = {default})"
        )
