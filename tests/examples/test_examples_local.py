"""The local examples on the tiny generated models (fast) and, marked ``gemma``, with their
default packaged Gemma 3 270M."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from tests.examples.helpers import gguf_int, output_lines, run_example


def test_quickstart_without_models_prints_its_usage() -> None:
    proc = run_example("quickstart_local.py", check=False)
    assert proc.returncode == 1
    assert "usage: python quickstart_local.py CHAT_MODEL.gguf EMBED_MODEL.gguf" in proc.stderr


def test_quickstart_prints_query_chat_and_embedding_length(
    native_backend: None, tiny_llama_path: Path, tiny_bert_path: Path
) -> None:
    proc = run_example("quickstart_local.py", str(tiny_llama_path), str(tiny_bert_path))
    lines = output_lines(proc)
    assert list(lines) == ["query", "chat", "embedding length"]
    assert len(lines["query"]) > 2 and len(lines["chat"]) > 2  # non-empty repr'd text
    assert int(lines["embedding length"]) == gguf_int(tiny_bert_path, "bert.embedding_length")


def test_query_prints_text_finish_reason_and_usage(
    native_backend: None, tiny_llama_path: Path
) -> None:
    lines = output_lines(run_example("query.py", str(tiny_llama_path), "Hello there"))
    assert lines["finish_reason"] == "length"  # a random tiny model never stops early
    assert re.fullmatch(r"\d+ in, 32 out", lines["usage"])


def test_chat_renders_the_model_template(native_backend: None, tiny_llama_path: Path) -> None:
    lines = output_lines(run_example("chat.py", str(tiny_llama_path), "Say hello"))
    assert lines["finish_reason"] in ("stop", "length")  # stop: a newline ends the reply
    assert isinstance(ast.literal_eval(lines["reply"]), str)  # a repr, whichever quotes


def test_embed_prints_cosines_to_the_first_text(
    native_backend: None, tiny_bert_path: Path
) -> None:
    proc = run_example("embed.py", str(tiny_bert_path), "red apple", "green apple", "tax law")
    dims = gguf_int(tiny_bert_path, "bert.embedding_length")
    first, *rows = proc.stdout.splitlines()
    assert first == f"vectors: 3 x {dims}"
    assert [row.split("  ", 1)[1] for row in rows] == ["red apple", "green apple", "tax law"]
    cosines = [float(row.split()[0]) for row in rows]
    assert cosines[0] == pytest.approx(1.0, abs=1e-3)  # normalized: self-similarity is 1
    assert all(-1.0001 <= c <= 1.0001 for c in cosines)


def test_streaming_prints_the_text_then_a_summary(
    native_backend: None, tiny_llama_path: Path
) -> None:
    proc = run_example("streaming.py", str(tiny_llama_path), "Hi")
    text, summary = proc.stdout.rstrip("\n").rsplit("\n", 1)
    match = re.fullmatch(r"\[(\d+) batches, 48 tokens, finish_reason=length\]", summary)
    assert match is not None, summary
    assert 1 <= int(match[1]) <= 48
    assert text.strip()


def test_asyncio_app_runs_concurrent_queries_and_a_stream(
    native_backend: None, tiny_llama_path: Path
) -> None:
    lines = run_example("asyncio_app.py", str(tiny_llama_path)).stdout.splitlines()
    assert [line.split(" -> ")[0] for line in lines[:3]] == [
        "'The sky is'", "'Water boils at'", "'The first planet from the sun is'"]
    assert all(line.endswith("(length)") for line in lines[:4])
    assert lines[3].startswith("streamed: ")
    assert lines[4] == "stream matches result: True"


def test_cancel_stops_generation_early(native_backend: None, tiny_llama_path: Path) -> None:
    lines = output_lines(run_example("cancel.py", str(tiny_llama_path)))
    assert lines["cancel requested"] == "True"
    assert lines["finish_reason"] == "cancelled"
    produced = int(lines["tokens before the stop"].split()[0])
    assert 4 <= produced < 100  # stopped within a few engine steps, far from max_tokens


def test_json_schema_output_parses(native_backend: None, tiny_llama_path: Path) -> None:
    # Even a random model can only emit schema-valid JSON; strings are at most 24 chars.
    lines = output_lines(run_example("json_schema.py", str(tiny_llama_path)))
    data = json.loads(lines["json"])
    assert sorted(data) == ["city", "country", "is_capital"]
    assert isinstance(data["is_capital"], bool)
    assert len(data["city"]) <= 24 and len(data["country"]) <= 24


# --------------------------------------------------------------------------- packaged Gemma
@pytest.mark.gemma
def test_query_defaults_to_packaged_gemma(native_backend: None, gemma_path: Path) -> None:
    lines = output_lines(run_example("query.py", timeout=120))
    assert lines["finish_reason"] in ("stop", "length")
    assert len(lines["text"]) > 2


@pytest.mark.gemma
def test_chat_gives_the_base_gemma_a_transcript_template(
    native_backend: None, gemma_path: Path
) -> None:
    lines = output_lines(run_example("chat.py", timeout=120))
    assert "Paris" in lines["reply"]
    assert lines["finish_reason"] == "stop"  # the transcript template's reply ends its line


@pytest.mark.gemma
def test_json_schema_with_gemma(native_backend: None, gemma_path: Path) -> None:
    data = json.loads(output_lines(run_example("json_schema.py", timeout=120))["json"])
    assert sorted(data) == ["city", "country", "is_capital"]


@pytest.mark.gemma
def test_embed_defaults_to_packaged_gemma(native_backend: None, gemma_path: Path) -> None:
    proc = run_example("embed.py", timeout=120)
    first, *rows = proc.stdout.splitlines()
    assert first == f"vectors: 3 x {gguf_int(gemma_path, 'gemma3.embedding_length')}"
    cat, kitten, revenue = (float(row.split()[0]) for row in rows)
    assert cat == pytest.approx(1.0, abs=1e-3)
    assert kitten > revenue  # the paraphrase is closer than the unrelated sentence
