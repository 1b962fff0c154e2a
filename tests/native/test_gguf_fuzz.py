"""GGUF fuzzing: every mutated tiny model loads, or fails with a Python exception; never a signal.

Each case is made from a seed (nothing binary is committed) and loaded in a worker
subprocess (load, context, tokenize, one forward pass). The default run takes the corpus of
cases that once aborted the process, a seeded sample of the targeted mutations and a few
bit flips (about 20-30 s); ``SIPP_FUZZ_PROFILE=slow`` runs every targeted mutation of four
tiny models plus 500 bit flips each (nightly; ``python tests/native/gguf_fuzz.py`` prints the
same as a report).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.native.gguf_fuzz import model_cases, run_cases

SEED = 20261204
SLOW = os.environ.get("SIPP_FUZZ_PROFILE", "") == "slow"

# Mutations that aborted the process (SIGABRT) before the GGUF pre-check knew them.
CORPUS = {
    "block_count=0",
    "block_count=100000",
    "block_count=513",
    "block_count=4294967295",
    "expert_count=1073741824",
    "expert_count=1025",
    "expert_count=4",
    "expert_used_count=5",
    "attention.layer_norm_rms_epsilon=-1.0",
    "attention.layer_norm_rms_epsilon=nan",
    "attention.layer_norm_rms_epsilon=-inf",
    "alignment=1",
    "dup_token[1]=2",
    "dup_token[10]=11",
}


def _default_cases(model: Path) -> Iterator[tuple[str, bytes]]:
    rng = random.Random(SEED)
    for label, data in model_cases(model, SEED, n_random=8):
        name = label.split(":", 1)[1]
        if name in CORPUS or name.startswith("bitflip@") or rng.random() < 0.03:
            yield label, data


def _report(outcomes: list) -> str:  # type: ignore[type-arg]
    crashes = [o for o in outcomes if o.crashed]
    lines = [f"crashes found = {len(crashes)} over {len(outcomes)} mutations"]
    lines += [f"  {o.label}: {o.result}" for o in crashes]
    return "\n".join(lines)


def test_mutated_tiny_llama_never_kills_the_process(
    tmp_path: Path, tiny_llama_path: Path, native: object
) -> None:
    if SLOW:
        pytest.skip("the slow profile runs test_slow_profile instead")
    outcomes = run_cases(_default_cases(tiny_llama_path), tmp_path)
    names = {o.label.split(":", 1)[1] for o in outcomes}
    assert CORPUS <= names
    assert not any(o.crashed for o in outcomes), _report(outcomes)
    for o in outcomes:
        if o.label.split(":", 1)[1] in CORPUS:
            assert o.result.startswith("err ModelLoadError: Cannot load model"), o
    assert all(o.result == "ok" or o.result.split(": ", 1)[1] for o in outcomes)


@pytest.mark.slow
def test_slow_profile(tmp_path: Path, test_models: dict[str, Path], native: object) -> None:
    if not SLOW:
        pytest.skip("set SIPP_FUZZ_PROFILE=slow for >= 500 mutations per model")
    outcomes = []
    for name in ("tiny-llama", "tiny-gemma3", "tiny-bert", "tiny-t5"):
        outcomes += run_cases(model_cases(test_models[name], SEED, n_random=500), tmp_path)
    print(_report(outcomes))
    assert not any(o.crashed for o in outcomes), _report(outcomes)
