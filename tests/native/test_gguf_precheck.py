"""GGUF files that abort libllama (GGML_ASSERT) are refused first, with a ModelLoadError that
names the key; each case is one the red-team pass or the fuzzer found aborting the process."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from sipp.errors import ModelLoadError
from sipp.native import check_model_file
from tests.native.gguf_mutate import F32, U32, Gguf, Kv, parse, serialize

REPO = Path(__file__).resolve().parents[2]


def _with(g: Gguf, key: str, vtype: int, value: object) -> Gguf:
    return replace(g, kvs=[kv for kv in g.kvs if kv.key != key] + [Kv(key, vtype, value)])


def _dup_token(g: Gguf) -> Gguf:
    tokens = g.kv("tokenizer.ggml.tokens")
    assert tokens is not None
    etype, items = tokens.value
    items = list(items)
    items[1] = items[2]  # one flipped bit in a vocabulary string can do this
    return _with(g, tokens.key, tokens.vtype, (etype, items))


# label -> (mutation, words the message must hold)
CASES = {
    "block_count=0": (lambda g: _with(g, "llama.block_count", U32, 0), "llama.block_count is 0"),
    "block_count=100000": (
        lambda g: _with(g, "llama.block_count", U32, 100000),
        "expected 1 to 512 layers",
    ),
    "rms_eps=-1": (
        lambda g: _with(g, "llama.attention.layer_norm_rms_epsilon", F32, -1.0),
        "llama.attention.layer_norm_rms_epsilon is -1.0, expected a finite number > 0",
    ),
    "rms_eps=nan": (
        lambda g: _with(g, "llama.attention.layer_norm_rms_epsilon", F32, float("nan")),
        "expected a finite number > 0",
    ),
    "expert_count=2**30": (
        lambda g: _with(g, "llama.expert_count", U32, 2**30),
        "llama.expert_count is 1073741824, expected 0 to 1024",
    ),
    "expert_used>expert_count": (
        lambda g: _with(_with(g, "llama.expert_count", U32, 4), "llama.expert_used_count", U32, 5),
        "llama.expert_used_count is 5, more than llama.expert_count (4)",
    ),
    "experts_without_used": (
        lambda g: _with(g, "llama.expert_count", U32, 4),
        "llama.expert_used_count must be at least 1",
    ),
    "duplicate_token": (_dup_token, "tokens 1 and 2 are the same string"),
    "key_length!=value_length": (
        lambda g: _with(g, "llama.attention.key_length", U32, 7),
        "llama.attention.key_length (7) and llama.attention.value_length (16) must be equal",
    ),
    "alignment=1": (
        lambda g: _with(g, "general.alignment", U32, 1),
        "not a multiple of 32 (general.alignment 1)",
    ),
    "alignment=3": (lambda g: _with(g, "general.alignment", U32, 3), "expected a power of two"),
}


@pytest.fixture(scope="module")
def tiny(tiny_llama_path: Path) -> Gguf:
    return parse(tiny_llama_path.read_bytes())


@pytest.mark.parametrize("label", list(CASES))
def test_precheck_refuses_what_libllama_aborts_on(tmp_path: Path, tiny: Gguf, label: str) -> None:
    mutate, words = CASES[label]
    path = tmp_path / f"{label}.gguf"
    path.write_bytes(serialize(mutate(tiny)))
    with pytest.raises(ModelLoadError) as info:
        check_model_file(path)
    assert str(path) in str(info.value)
    assert words in str(info.value)


def test_loading_them_ends_in_python_errors_not_signals(
    tmp_path: Path, tiny: Gguf, native: object
) -> None:
    paths = []
    for label, (mutate, _) in CASES.items():
        path = tmp_path / f"{label}.gguf"
        path.write_bytes(serialize(mutate(tiny)))
        paths.append(str(path))
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("gguf_fuzz_worker.py"))],
        input="\n".join(paths) + "\n", capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == len(paths)
    assert all(line.startswith("err ModelLoadError: Cannot load model") for line in lines), lines


def test_the_tiny_models_still_pass(test_models: dict[str, Path]) -> None:
    for name, path in test_models.items():
        if "mmproj" not in name:
            assert check_model_file(path).architecture
