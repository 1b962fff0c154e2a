"""Model facts from GGUF headers, without loading weights (``sipp show``, ``models list``).

Reads only the header (metadata and tensor table) through ``sipp.native._gguf``, which
never decodes the big arrays (vocabularies), so showing a multi-gigabyte model costs
milliseconds and needs no native backend.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["FILE_TYPES", "ModelFacts", "read_model_facts"]

# llama_ftype (llama.h of the pinned llama.cpp): general.file_type -> quantization name
FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
    38: "MXFP4_MOE", 39: "NVFP4", 40: "Q1_0", 41: "Q2_0",
}  # fmt: skip


@dataclass(frozen=True)
class ModelFacts:
    """What a GGUF says about its model. ``size`` and ``n_params`` cover every shard."""

    path: str
    architecture: str | None
    name: str | None
    quantization: str | None
    context_length: int | None
    embedding_length: int | None
    block_count: int | None
    n_params: int
    size: int
    shards: int
    has_chat_template: bool
    chat_template: str | None
    is_projector: bool
    gguf_version: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _int(meta: dict[str, Any], key: str) -> int | None:
    value = meta.get(key)
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def read_model_facts(
    path: str | os.PathLike[str], shards: tuple[Path, ...] | None = None
) -> ModelFacts:
    """Facts of the GGUF at ``path`` (plus ``shards`` of a split model); raises
    ``ModelLoadError`` for a missing, truncated or non-GGUF file."""
    # the native package loads numpy: lazily
    from sipp.native._gguf import read_gguf_file, read_gguf_info

    p = Path(path)
    info = read_gguf_file(p, "Cannot read")
    meta = info.metadata
    arch = info.architecture
    n_params, size = info.n_elements, info.file_size
    for shard in shards or ():
        if Path(shard) != p:
            other = read_gguf_info(shard)
            n_params += other.n_elements
            size += other.file_size
    file_type = _int(meta, "general.file_type")
    template = meta.get("tokenizer.chat_template")
    name = meta.get("general.name")
    return ModelFacts(
        path=str(p),
        architecture=arch,
        name=name if isinstance(name, str) else None,
        quantization=FILE_TYPES.get(file_type, f"type {file_type}") if file_type is not None
        else None,
        context_length=_int(meta, f"{arch}.context_length") if arch else None,
        embedding_length=_int(meta, f"{arch}.embedding_length") if arch else None,
        block_count=_int(meta, f"{arch}.block_count") if arch else None,
        n_params=n_params,
        size=size,
        shards=max(1, len(shards or ())),
        has_chat_template=isinstance(template, str) and bool(template.strip()),
        chat_template=template if isinstance(template, str) else None,
        is_projector=arch == "clip",
        gguf_version=info.version,
    )
