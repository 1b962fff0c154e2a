"""Gemma 3 270M (PyPI package) through SippClient: determinism, streaming, stops, JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from sipp import EndpointRef, LocalModelDescriptor, SippClient, SippTextOptions
from sipp.config import NativeRuntimeConfig
from sipp.errors import BackendError
from sipp.types import LocalTextOptions

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def gemma(gemma_path: Path) -> Iterator[tuple[SippClient, EndpointRef]]:
    from sipp.native import get_native

    try:
        get_native()
    except BackendError as exc:
        pytest.skip(f"no native backend: {exc}")
    config = NativeRuntimeConfig(context={"n_parallel": 4, "n_ctx": 4 * 1024})
    with SippClient() as client:
        yield client, client.add("gemma", LocalModelDescriptor(gemma_path, config))


def test_greedy_query_is_deterministic(gemma: tuple[SippClient, EndpointRef]) -> None:
    client, ref = gemma
    options = SippTextOptions(max_tokens=16, temperature=0)
    first = client.query(PROMPT, endpoint=ref, options=options).result(120)
    second = client.query(PROMPT, endpoint=ref, options=options).result(120)
    assert first["text"] == second["text"]
    assert first["usage"] is not None and first["usage"]["output_tokens"] > 0


def test_streaming_matches_final_text(gemma: tuple[SippClient, EndpointRef]) -> None:
    client, ref = gemma
    run = client.query(PROMPT, endpoint=ref, emit_tokens=True,
                       options=SippTextOptions(max_tokens=16, temperature=0))
    streamed = "".join(batch.text for batch in run.tokens())
    assert streamed == run.result(120)["text"]


def test_stop_string_is_not_emitted(gemma: tuple[SippClient, EndpointRef]) -> None:
    client, ref = gemma
    options = SippTextOptions(max_tokens=16, temperature=0)
    full = client.query(PROMPT, endpoint=ref, options=options).result(120)["text"]
    stop = full[len(full) // 2 : len(full) // 2 + 5]
    stopped = client.query(PROMPT, endpoint=ref, options=SippTextOptions(
        max_tokens=16, temperature=0, stop=[stop])).result(120)
    assert stopped["finish_reason"] == "stop"
    assert stopped["text"] == full[: full.index(stop)]


def test_json_schema_output_validates(gemma: tuple[SippClient, EndpointRef]) -> None:
    client, ref = gemma
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20},
                       "population_millions": {"type": "integer", "minimum": 0,
                                               "maximum": 100}},
        "required": ["city", "population_millions"],
        "additionalProperties": False,
    }
    result = client.query("Describe Paris as JSON:", endpoint=ref,
                          options=SippTextOptions(max_tokens=64, temperature=0),
                          local=LocalTextOptions(json_schema=schema)).result(120)
    assert result["finish_reason"] == "stop"
    value = json.loads(result["text"])
    assert set(value) == {"city", "population_millions"}
    assert isinstance(value["city"], str) and len(value["city"]) <= 20
    assert isinstance(value["population_millions"], int)
    assert 0 <= value["population_millions"] <= 100
