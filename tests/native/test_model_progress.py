"""Load progress: libllama's progress_callback reaches a Python callable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sipp.errors import ModelLoadError
from sipp.native import LlamaModel


def test_progress_reports_fractions_up_to_one(native: Any, tiny_llama_path: Path) -> None:
    seen: list[float] = []
    model = LlamaModel(tiny_llama_path, progress=seen.append)
    try:
        assert seen and seen[-1] == 1.0
        assert seen == sorted(seen) and all(0.0 <= f <= 1.0 for f in seen)
        assert model.tokenize("Hello")  # the model is usable
    finally:
        model.close()


def test_returning_false_cancels_the_load(native: Any, tiny_llama_path: Path) -> None:
    calls: list[float] = []

    def stop(fraction: float) -> bool:
        calls.append(fraction)
        return False

    with pytest.raises(ModelLoadError, match="cancelled by the progress callback"):
        LlamaModel(tiny_llama_path, progress=stop)
    assert len(calls) == 1


def test_a_raising_callback_cancels_and_is_named(
    native: Any, tiny_llama_path: Path
) -> None:
    def boom(fraction: float) -> None:
        raise RuntimeError("disk on fire")

    with pytest.raises(ModelLoadError, match="disk on fire"):
        LlamaModel(tiny_llama_path, progress=boom)
    with pytest.raises(TypeError, match="progress must be a callable"):
        LlamaModel(tiny_llama_path, progress=3)
