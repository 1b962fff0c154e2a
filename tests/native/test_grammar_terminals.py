"""A grammar whose terminals only match NUL (or nothing) is a GrammarError, not an abort.

libllama accepts such a grammar, then throws ``Unexpected empty grammar stack`` from the
first sampled token, out of a C call: the process aborted (red-team finding)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipp.errors import GrammarError
from sipp.native import LlamaModel, SamplerChain
from sipp.native._gbnf import check_terminals

REPO = Path(__file__).resolve().parents[2]

@pytest.fixture(scope="module")
def model_for_gbnf(native: object, tiny_llama_path: Path) -> Iterator[LlamaModel]:
    with LlamaModel(tiny_llama_path) as model:
        yield model


DEAD = [
    r'root ::= "\x00"',
    r"root ::= [\x00]",
    r"root ::= [\U0010FFFF-\x00]",
    r"root ::= []",
    r"root ::= [^\x01-\U0010FFFF]",
    r'root ::= "ok" tail' + "\n" + r'tail ::= "a\x00b"',
]
LIVE = [
    r'root ::= "a" [^\x00] # a comment with "\x00" in it',
    r"root ::= [\x00-\x7F]+",
    r'root ::= "\"" [a-z]* "\\" [\]]',
    r"root ::= [^a]",
    r'root ::= "yes" | "no"',
]


@pytest.mark.parametrize("grammar", DEAD)
def test_dead_terminals_are_refused(grammar: str) -> None:
    with pytest.raises(GrammarError, match=r"Invalid GBNF grammar: the (literal|character class)"):
        check_terminals(grammar)


@pytest.mark.parametrize("grammar", LIVE)
def test_live_terminals_pass(grammar: str) -> None:
    check_terminals(grammar)


_PROGRAM = """
import sys
import numpy as np
from sipp.errors import GrammarError
from sipp.native import LlamaBatch, LlamaContext, LlamaModel, SamplerChain
with LlamaModel(sys.argv[1]) as model, LlamaContext(model, n_ctx=64, n_batch=32) as ctx:
    tokens = model.tokenize("Hello", add_special=True)
    batch = LlamaBatch(32)
    batch.set(np.array(tokens), np.arange(len(tokens)), 0)
    ctx.decode(batch)
    for grammar in sys.argv[2:]:
        try:
            with SamplerChain(model, [("grammar", {"grammar": grammar}), ("greedy", {})]) as c:
                c.sample(ctx, -1)
            print("sampled")
        except GrammarError as exc:
            print("GrammarError", exc)
"""


def test_sampling_with_them_raises_instead_of_aborting(
    tiny_llama_path: Path, native: object
) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _PROGRAM, str(tiny_llama_path), *DEAD[:3]],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-1000:]
    assert [line.split()[0] for line in proc.stdout.splitlines()] == ["GrammarError"] * 3


GBNF_PIECES = st.sampled_from(
    [
        "root ::= ", "item ::= ", "root ::= item", '"a"', '"\\x00"', "[a-z]", "[^\\x00]",
        "[\\U0010FFFF-\\x00]", "[]", ".", "item", "undefined", "(", ")", "|", "*", "+", "?",
        "{2,3}", "{1000000}", " ", "\n", "# c\n", '"\\', "[\\", "<[1]>", "!", "root",
        '"\\u00e9"', "{,}", "::=",
    ]
)


@given(st.lists(GBNF_PIECES, min_size=1, max_size=10).map("".join))
def test_random_gbnf_builds_or_raises_grammar_error(model_for_gbnf: Any, text: str) -> None:
    try:
        with SamplerChain(model_for_gbnf, [("grammar", {"grammar": text}), ("greedy", {})]):
            pass
    except GrammarError as exc:
        assert str(exc)
