"""Our architecture list equals the pinned llama.cpp's (names only)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sipp.native._archs import (
    EQUAL_HEAD_DIM_ARCHITECTURES,
    KNOWN_ARCHITECTURES,
    PROJECTOR_ARCHITECTURES,
)


def test_known_architectures_equal_the_pinned_source() -> None:
    from build_scripts.llama_source import cache_root, read_pin

    src = cache_root() / "src" / read_pin()["sha256"][:16] / "llama.cpp" / "src" / "llama-arch.cpp"
    if not src.is_file():
        pytest.skip(f"pinned source not extracted ({src})")
    block = re.search(r"LLM_ARCH_NAMES = \{(.*?)\n\};", src.read_text(), re.S)
    assert block is not None
    names = set(re.findall(r'"([^"]+)"', block.group(1))) - {"(unknown)"}
    assert names == set(KNOWN_ARCHITECTURES)
    assert PROJECTOR_ARCHITECTURES <= KNOWN_ARCHITECTURES


def _equal_head_dim_architectures(src: Path) -> set[str]:
    """Archs whose graph constructor asserts ``n_embd_head == hparams.n_embd_head_k()``."""
    names = dict(
        re.findall(
            r"\{\s*(LLM_ARCH_\w+),\s*\"([^\"]+)\"\s*\}", (src / "llama-arch.cpp").read_text()
        )
    )
    mapping = re.search(
        r"llama_model_mapping\(.*?\n\}", (src / "llama-model.cpp").read_text(), re.S
    )
    assert mapping is not None
    class_of: dict[str, str] = {}
    pending: list[str] = []
    for line in mapping.group(0).splitlines():
        if case := re.search(r"case (LLM_ARCH_\w+):", line):
            pending.append(case.group(1))
        if ret := re.search(r"return new (llama_model_\w+)", line):
            class_of.update(dict.fromkeys(pending, ret.group(1)))
            pending = []
    asserting = set()
    for path in (src / "models").glob("*.cpp"):
        for block in re.split(r"\n(?=\S)", path.read_text()):
            head = re.match(
                r"(?:template\s*<[^>]*>\s*)?(llama_model_\w+)::graph(?:<[^>]*>)?::graph\(", block
            )
            if head and "GGML_ASSERT(n_embd_head == hparams.n_embd_head_k())" in block:
                asserting.add(head.group(1))
    return {names[e] for e, c in class_of.items() if c in asserting and e in names}


def test_equal_head_dim_architectures_equal_the_pinned_source() -> None:
    from build_scripts.llama_source import cache_root, read_pin

    src = cache_root() / "src" / read_pin()["sha256"][:16] / "llama.cpp" / "src"
    if not (src / "models").is_dir():
        pytest.skip(f"pinned source not extracted ({src})")
    assert _equal_head_dim_architectures(src) == set(EQUAL_HEAD_DIM_ARCHITECTURES)
    assert EQUAL_HEAD_DIM_ARCHITECTURES <= KNOWN_ARCHITECTURES
