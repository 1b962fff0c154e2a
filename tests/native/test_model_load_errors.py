"""Every bad model path gives ``ModelLoadError`` naming the path and the reason, never a crash."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sipp.errors import ModelLoadError
from sipp.native import LlamaModel, check_model_file

REPO = Path(__file__).resolve().parents[2]


def write_gguf(path: Path, arch: str, with_tensor: bool = False) -> Path:
    gguf = pytest.importorskip("gguf")
    import numpy as np

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(1)
    if with_tensor:
        writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _expect(path: Path, reason: str) -> None:
    with pytest.raises(ModelLoadError) as info:
        LlamaModel(path)
    assert str(path) in str(info.value)
    assert reason in str(info.value)
    assert info.value.code == "model_load"


def test_missing_file(tmp_path: Path) -> None:
    _expect(tmp_path / "missing.gguf", "file not found")


def test_directory(tmp_path: Path) -> None:
    _expect(tmp_path, "is a directory")


@pytest.mark.parametrize("kind", ["missing", "directory", "fifo"])
def test_path_checks_are_shared_with_model_facts(tmp_path: Path, kind: str) -> None:
    """Loading and ``sipp show`` (``read_model_facts``) check the path alike, each with its
    own prefix."""
    from sipp.models import read_model_facts

    path = tmp_path / "m.gguf"
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs here")
        os.mkfifo(path)
    reason = {"missing": "file not found", "directory": "is a directory, expected a .gguf file",
              "fifo": "not a regular file"}[kind]
    with pytest.raises(ModelLoadError) as loading:
        check_model_file(path)
    with pytest.raises(ModelLoadError) as showing:
        read_model_facts(path)
    assert str(loading.value) == f"Cannot load model {path}: {reason}"
    assert str(showing.value) == f"Cannot read {path}: {reason}"


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "random.gguf"
    path.write_bytes(os.urandom(4096))
    _expect(path, "not a GGUF file")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.gguf"
    path.write_bytes(b"")
    _expect(path, "not a GGUF file")


def test_truncated_header(tmp_path: Path, tiny_llama_path: Path) -> None:
    path = tmp_path / "cut-header.gguf"
    path.write_bytes(tiny_llama_path.read_bytes()[:200])
    _expect(path, "truncated GGUF header")


def test_truncated_tensor_data(tmp_path: Path, tiny_llama_path: Path) -> None:
    data = tiny_llama_path.read_bytes()
    info = check_model_file(tiny_llama_path)
    assert info.data_offset + info.data_size == len(data)
    path = tmp_path / "cut-data.gguf"
    path.write_bytes(data[: info.data_offset + info.data_size // 2])
    _expect(path, "truncated tensor data")


def test_unsupported_architecture(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "arch.gguf", "not-a-real-arch")
    _expect(path, "unsupported architecture 'not-a-real-arch'")


def test_projector_file_is_not_a_text_model(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "mmproj.gguf", "clip")
    _expect(path, "multimodal projector")


def test_header_fine_but_weights_missing_is_a_load_error(tmp_path: Path, native: Any) -> None:
    # Valid GGUF, known architecture, no weights: libllama itself returns NULL.
    path = write_gguf(tmp_path / "noweights.gguf", "llama", with_tensor=True)
    code = (
        "import sys\n"
        "from sipp.errors import ModelLoadError\n"
        "from sipp.native import LlamaModel\n"
        "try:\n"
        f"    LlamaModel({str(path)!r})\n"
        "except ModelLoadError as exc:\n"
        "    print('ERR', exc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"ERR Cannot load model {path}:")


def test_path_type_is_checked() -> None:
    with pytest.raises(TypeError, match="path must be a str or os"):
        LlamaModel(42)  # type: ignore[arg-type]
