"""Our architecture list equals the pinned llama.cpp's (names only)."""

from __future__ import annotations

import re

import pytest

from sipp.native._archs import KNOWN_ARCHITECTURES, PROJECTOR_ARCHITECTURES


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
