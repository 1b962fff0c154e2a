"""The engine-side state of one request, hung on its scheduler ``Request.payload``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from sipp.config import SpeculativeConfig
from sipp.engine.media import MediaPrompt
from sipp.engine.sampling import Sampler, TokenLogprob
from sipp.engine.text import TextStream
from sipp.requests import RunSink
from sipp.scheduler import Request

__all__ = ["EngineRequest", "RunState"]


@dataclass(eq=False)
class RunState:
    """What the engine keeps for one run besides the scheduler's view: where results go,
    its sampler and text stream (generate), timings, and optional outputs."""

    sink: RunSink
    kind: Literal["generate", "embed"]
    n_input: int
    t_arrival: float
    sampler: Sampler | None = None
    stream: TextStream | None = None
    history: npt.NDArray[np.int32] | None = None  # prompt tokens the sampler must accept
    source: npt.NDArray[np.int32] | None = None  # encoder input (encoder-decoder models)
    normalize: bool = True
    t_start: float | None = None
    t_first: float | None = None
    t_last: float | None = None
    gaps: list[float] | None = None  # inter-token gaps, kept when runtime metrics are on
    embedding: list[float] | None = None
    n_probs: int = 0  # sampling.n_probs: top log-probabilities per token
    logprobs: list[TokenLogprob] | None = None
    media: MediaPrompt | None = None
    spec: SpeculativeConfig | None = None  # speculative decoding in effect (None: off)
    n_drafted: int = 0  # draft tokens verified for this run
    n_accepted: int = 0  # ... and kept

    def release(self) -> None:
        """Free the native sampler (idempotent)."""
        sampler, self.sampler = self.sampler, None
        if sampler is not None:
            sampler.close()


EngineRequest = Request[RunState]
