"""Helpers for engine tests: start runs on an Engine directly (no client)."""

from __future__ import annotations

from collections.abc import Sequence

from sipp.config import SamplingRuntimeConfig
from sipp.engine.core import Engine
from sipp.requests import EmbedRequest, TextRequest
from sipp.runs import RunSink, SippEmbeddingRun, SippTextRun
from sipp.types import EndpointRef, LocalEmbedOptions, LocalTextOptions, SippTextOptions

REF = EndpointRef.local("test")


def query(
    engine: Engine,
    prompt: str,
    *,
    max_tokens: int = 16,
    temperature: float | None = 0.0,
    stop: Sequence[str] | None = None,
    context_key: str | None = None,
    ignore_eos: bool = False,
    stream: bool = False,
    seed: int | None = None,
) -> SippTextRun:
    sampling = SamplingRuntimeConfig(ignore_eos=True, seed=seed) if ignore_eos or seed else None
    local = LocalTextOptions(context_key=context_key, sampling=sampling)
    options = SippTextOptions(max_tokens=max_tokens, temperature=temperature, stop=stop)
    sink = RunSink(REF, wants_tokens=stream)
    engine.submit_text(
        TextRequest("query", prompt, None, options, local, None, None, stream), sink
    )
    return SippTextRun(sink)


def embed(engine: Engine, text: str, *, normalize: bool | None = None) -> SippEmbeddingRun:
    sink = RunSink(REF, wants_tokens=False)
    engine.submit_embed(
        EmbedRequest(text, LocalEmbedOptions(normalize=normalize), None, None), sink
    )
    return SippEmbeddingRun(sink)
