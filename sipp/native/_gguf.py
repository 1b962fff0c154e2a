"""Read a GGUF header in Python and check a model file before libllama sees it.

libllama reports bad files only through its log, and some malformed files can crash it, so
:func:`check_model_file` rejects missing paths, directories, non-GGUF files, truncated
headers or tensor data and unknown architectures with a :class:`ModelLoadError` that names
the path and the reason. Big arrays (token lists) are skipped, never decoded.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sipp.errors import ModelLoadError
from sipp.native._archs import KNOWN_ARCHITECTURES, PROJECTOR_ARCHITECTURES

__all__ = ["GgufInfo", "check_model_file", "read_gguf_info"]

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
_MAX_KEEP_ARRAY = 64  # arrays longer than this are recorded by length only


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
        info.metadata[key] = r.value(r.take("<I"))
    data_end = 0
    for _ in range(n_tensors):
        r.skip_string()
        n_dims = r.take("<I")
        if n_dims > 8:
            raise _Malformed(f"tensor with {n_dims} dimensions")
        n_elements = 1
        for _ in range(n_dims):
            n_elements *= r.take("<Q")
        ttype = r.take("<I")
        offset = r.take("<Q")
        info.n_elements += n_elements
        block = GGML_TYPE_SIZES.get(ttype)
        if block is None:
            info.unknown_tensor_types.add(ttype)
            data_end = max(data_end, offset)
            continue
        data_end = max(data_end, offset + n_elements // block[0] * block[1])
    alignment = info.metadata.get("general.alignment", _DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0:
        raise _Malformed(f"general.alignment is {alignment!r}, expected a positive integer")
    info.data_offset = (r.pos + alignment - 1) // alignment * alignment
    info.data_size = data_end
    return info


def check_model_file(path: str | os.PathLike[str]) -> GgufInfo:
    """Validate ``path`` as a loadable GGUF model; raise ``ModelLoadError`` naming the reason."""
    p = Path(path)
    if not p.exists():
        raise ModelLoadError(f"Cannot load model {p}: file not found")
    if p.is_dir():
        raise ModelLoadError(f"Cannot load model {p}: is a directory, expected a .gguf file")
    if not p.is_file():
        raise ModelLoadError(f"Cannot load model {p}: not a regular file")
    try:
        info = read_gguf_info(p)
    except PermissionError as exc:
        raise ModelLoadError(f"Cannot load model {p}: permission denied") from exc
    except OSError as exc:
        raise ModelLoadError(f"Cannot load model {p}: {exc.strerror or exc}") from exc
    needed = info.data_offset + info.data_size
    if info.n_tensors and needed > info.file_size:
        raise ModelLoadError(
            f"Cannot load model {p}: truncated tensor data (the header needs {needed} bytes, "
            f"the file has {info.file_size})"
        )
    arch = info.architecture
    if arch is None:
        raise ModelLoadError(f"Cannot load model {p}: no general.architecture in the GGUF header")
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
