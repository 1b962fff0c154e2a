"""Sampling and output for one engine step (engine thread only): pick each sequence's
token, detokenize with stop strings, read embeddings, push text, and complete finished runs
with their usage and ``local_stats``.

Results are built as dataclasses (:class:`TextResult`, :class:`EmbedResult`,
:class:`RunStats`) and turned into the public response dicts in one place,
:meth:`TextResult.payload` / :meth:`EmbedResult.payload`, right before the sink gets them.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sipp.engine.metrics import RuntimeMetrics
from sipp.engine.runstate import EngineRequest, RunState
from sipp.engine.sampling import TokenLogprob, top_logprobs
from sipp.errors import CancelledError, EngineError
from sipp.native import LlamaContext, LlamaModel
from sipp.scheduler import RequestStatus, Scheduler, SchedulerOutput
from sipp.types import FinishReason

__all__ = ["EmbedResult", "Output", "RunStats", "TextResult"]

_IMAGE_FIELDS = ("images", "images_encoded", "images_cached", "image_tokens")
_SPEC_FIELDS = ("draft_tokens", "accepted_tokens", "acceptance_rate")


@dataclass(frozen=True, slots=True)
class RunStats:
    """``local_stats`` of one finished run (image counts only for prompts with images)."""

    input_tokens: int
    output_tokens: int
    cache_mode: str
    cache_source: str
    cache_hits: int
    cached_tokens: int
    prefill_tokens: int
    ttft_ms: float | None
    inter_token_ms: float | None
    e2e_ms: float
    prefill_ms: float
    decode_ms: float
    prefill_tokens_per_second: float | None
    decode_tokens_per_second: float | None
    e2e_tokens_per_second: float | None
    preemptions: int
    context_shifts: int
    images: int | None = None
    images_encoded: int | None = None
    images_cached: int | None = None
    image_tokens: int | None = None
    draft_tokens: int | None = None
    accepted_tokens: int | None = None
    acceptance_rate: float | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if self.images is None:
            for name in _IMAGE_FIELDS:
                del out[name]
        if self.draft_tokens is None:
            for name in _SPEC_FIELDS:
                del out[name]
        return out


@dataclass(frozen=True, slots=True)
class TextResult:
    """A finished generation."""

    text: str
    finish_reason: FinishReason
    input_tokens: int
    output_tokens: int
    stats: RunStats
    logprobs: tuple[dict[str, Any], ...] | None = None

    def payload(self) -> dict[str, Any]:
        """The ``SippTextResponse`` fields (the run adds ``endpoint``)."""
        out: dict[str, Any] = {
            "text": self.text, "finish_reason": self.finish_reason,
            "usage": _usage(self.input_tokens, self.output_tokens),
            "local_stats": self.stats.as_dict(),
        }
        if self.logprobs is not None:
            out["logprobs"] = list(self.logprobs)
        return out


@dataclass(frozen=True, slots=True)
class EmbedResult:
    """A finished embedding."""

    values: list[float]
    input_tokens: int
    stats: RunStats
    pooling: str
    normalized: bool

    def payload(self) -> dict[str, Any]:
        """The ``SippEmbeddingResponse`` fields (the run adds ``endpoint``)."""
        return {"values": self.values, "usage": _usage(self.input_tokens, 0),
                "local_stats": self.stats.as_dict(), "pooling": self.pooling,
                "normalized": self.normalized}


def _usage(n_in: int, n_out: int) -> dict[str, int]:
    return {"input_tokens": n_in, "output_tokens": n_out, "total_tokens": n_in + n_out}


class Output:
    """Turns decoded logits and embeddings into pushed text and completed runs."""

    def __init__(self, model: LlamaModel, ctx: LlamaContext, scheduler: Scheduler[RunState], *,
                 cache_mode: str, pooling: str, metrics: RuntimeMetrics | None,
                 on_done: Callable[[EngineRequest], None]) -> None:
        self.model = model
        self.ctx = ctx
        self.scheduler = scheduler
        self.cache_mode = cache_mode
        self.pooling = pooling
        self.metrics = metrics
        self._on_done = on_done

    def sample(self, out: SchedulerOutput[RunState], indexes: list[int]) -> list[EngineRequest]:
        """Sample every chunk that asked for logits and push the text; returns the requests
        that finished (the caller completes them with :meth:`complete`)."""
        ctx, model = self.ctx, self.model
        sampled: dict[int, int] = {}
        finished: dict[int, FinishReason] = {}
        accepted: dict[int, int] = {}
        emitted: list[tuple[RunState, str, int]] = []
        now = time.perf_counter()
        for chunk, index in zip(out.chunks, indexes, strict=True):
            if not chunk.sample:
                continue
            request = chunk.request
            run = request.payload
            assert run is not None
            if run.kind == "embed":
                run.embedding = self._embedding(chunk.slot, run.normalize)
                run.t_first = now
                continue
            sampler, stream = run.sampler, run.stream
            assert sampler is not None and stream is not None
            if run.history is not None:
                for token in run.history.tolist():
                    sampler.accept(token)
                run.history = None
            if chunk.n_draft:
                room = request.max_tokens - len(request.output_tokens)
                self._verify(chunk.tokens, index - chunk.n_draft, run, request.request_id,
                             room, sampled, finished, accepted, emitted, now)
                continue
            token = sampler.sample(ctx, index)
            if run.t_first is None:
                run.t_first = now
            elif run.gaps is not None and run.t_last is not None:
                run.gaps.append(now - run.t_last)
            run.t_last = now
            if model.is_eog(token):
                finished[request.request_id] = "stop"
                continue
            sampled[request.request_id] = token
            if run.logprobs is not None:  # sampling.n_probs
                run.logprobs.append(top_logprobs(ctx.logits_ith(index), run.n_probs, token))
            text = stream.feed(model.token_to_piece(token))
            if stream.stopped:
                finished[request.request_id] = "stop"
            emitted.append((run, text, 1))
        done = self.scheduler.update_from_output(sampled, finished, accepted)
        for run, text, n in emitted:
            run.sink.push(text, n)
        if self.metrics is not None:
            self.metrics.set_gauge("requests_running", self.scheduler.num_running)
            self.metrics.set_gauge("requests_queued", self.scheduler.num_waiting)
        return done

    def _verify(self, tokens: npt.NDArray[np.int32], first: int, run: RunState, rid: int,
                room: int, sampled: dict[int, int], finished: dict[int, FinishReason],
                accepted: dict[int, int], emitted: list[tuple[RunState, str, int]],
                now: float) -> None:
        """Check one chunk's drafts (``tokens`` = pending token, then the drafts; their
        logits start at batch entry ``first``): sample each position with the request's
        own chain and keep going while the sampled token equals the next draft. The
        emitted tokens are exactly what plain decoding would give, one step at a time
        (greedy: the argmax; sampled: the same chain and RNG draws, so the target
        distribution and a fixed seed's output are kept). At most ``room`` tokens are
        emitted (``max_tokens``)."""
        ctx, model = self.ctx, self.model
        sampler, stream = run.sampler, run.stream
        assert sampler is not None and stream is not None
        n_draft = tokens.shape[0] - 1
        drafts = tokens.tolist()
        parts: list[str] = []
        n_out = 0
        last: int | None = None
        for i in range(n_draft + 1):
            token = sampler.sample(ctx, first + i)
            if model.is_eog(token):
                finished[rid] = "stop"
                break
            n_out += 1
            if run.logprobs is not None:
                run.logprobs.append(top_logprobs(ctx.logits_ith(first + i), run.n_probs, token))
            parts.append(stream.feed(model.token_to_piece(token)))
            if stream.stopped:
                finished[rid] = "stop"
                last = token
                break
            if i == n_draft or token != drafts[i + 1] or n_out >= room:
                last = token
                break
        n_kept = n_out - 1 if last is not None else n_out  # drafts kept before ``last``
        accepted[rid] = n_kept
        if last is not None:
            sampled[rid] = last
        if self.metrics is not None:
            self.metrics.inc("spec_draft_tokens", n_draft)
            self.metrics.inc("spec_accepted_tokens", n_kept)
        if run.spec is not None:
            run.n_drafted += n_draft
            run.n_accepted += n_kept
        if not n_out:
            return
        if run.t_first is None:
            run.t_first = now
        elif run.gaps is not None and run.t_last is not None:
            run.gaps.append(now - run.t_last)
            run.gaps.extend([0.0] * (n_out - 1))
        run.t_last = now
        emitted.append((run, "".join(parts), n_out))

    def fail_step(self, out: SchedulerOutput[RunState], message: str) -> list[EngineRequest]:
        """Mark every request of a step that could not be decoded as failed; returns them
        as finished (to :meth:`complete`)."""
        finished: dict[int, FinishReason] = {c.request.request_id: "error" for c in out.chunks}
        for chunk in out.chunks:
            chunk.request.error = message
        return self.scheduler.update_from_output({}, finished)

    def _embedding(self, slot: int, normalize: bool) -> list[float]:
        vec = self.ctx.embeddings_seq(slot, copy=True)
        if normalize:
            norm = math.sqrt(float(np.dot(vec.astype(np.float64), vec.astype(np.float64))))
            if norm > 0:
                vec = (vec / norm).astype(np.float32)
        return [float(v) for v in vec.tolist()]

    def complete(self, request: EngineRequest) -> None:
        """Deliver a finished request's result (or error) to its sink."""
        self._on_done(request)
        run = request.payload
        assert run is not None
        run.release()
        status = request.status
        if self.metrics is not None:
            self.metrics.record_finish(
                status.finish_reason or "error",
                generated_tokens=len(request.output_tokens),
                ttft_s=(run.t_first - run.t_arrival) if run.t_first is not None else None,
                e2e_s=time.perf_counter() - run.t_arrival,
                inter_token_s=run.gaps or (),
            )
        if status is RequestStatus.FINISHED_ERROR:
            run.sink.fail(EngineError(request.error or "request failed in the engine"))
            return
        stats = self._stats(request, run)
        if run.kind == "embed":
            if run.embedding is None:  # cancelled before it ran
                run.sink.fail(CancelledError(f"request cancelled ({request.error})"))
                return
            run.sink.complete(EmbedResult(run.embedding, run.n_input, stats, self.pooling,
                                          run.normalize).payload())
            return
        stream = run.stream
        assert stream is not None
        if status is not RequestStatus.FINISHED_CANCELLED:
            tail = stream.finish()
            if tail:
                run.sink.push(tail, 0)
        logprobs = self._logprobs(run.logprobs) if run.logprobs is not None else None
        run.sink.complete(TextResult(stream.text, status.finish_reason or "stop", run.n_input,
                                     len(request.output_tokens), stats, logprobs).payload())

    def _logprobs(self, raw: list[TokenLogprob]) -> tuple[dict[str, Any], ...]:
        """``sampling.n_probs`` results with each token's text."""
        def text(token: int) -> str:
            return self.model.token_to_piece(token).decode("utf-8", "replace")

        return tuple({"token": e.token, "text": text(e.token), "logprob": e.logprob,
                      "top_logprobs": [{"token": t, "text": text(t), "logprob": lp}
                                       for t, lp in e.top]} for e in raw)

    def _stats(self, request: EngineRequest, run: RunState) -> RunStats:
        end = time.perf_counter()
        n_out = len(request.output_tokens)
        start = run.t_start if run.t_start is not None else end
        first = run.t_first if run.t_first is not None else end
        last = run.t_last if run.t_last is not None else first
        prefill_ms = (first - start) * 1000.0
        decode_ms = (last - first) * 1000.0
        e2e_ms = (end - run.t_arrival) * 1000.0
        cached = request.num_cached_tokens
        prefill_tokens = max(request.num_prompt_tokens - cached, 0) if run.t_start else 0
        media = run.media
        return RunStats(
            input_tokens=run.n_input, output_tokens=n_out, cache_mode=self.cache_mode,
            cache_source=request.cache_source, cache_hits=cached, cached_tokens=cached,
            prefill_tokens=prefill_tokens,
            ttft_ms=(first - run.t_arrival) * 1000.0 if run.t_first else None,
            inter_token_ms=decode_ms / (n_out - 1) if n_out > 1 else None,
            e2e_ms=e2e_ms, prefill_ms=prefill_ms, decode_ms=decode_ms,
            prefill_tokens_per_second=_rate(prefill_tokens, prefill_ms),
            decode_tokens_per_second=_rate(n_out - 1, decode_ms),
            e2e_tokens_per_second=_rate(n_out, e2e_ms),
            preemptions=request.num_preemptions, context_shifts=request.num_context_shifts,
            images=len(media.spans) if media is not None else None,
            images_encoded=media.images_encoded if media is not None else None,
            images_cached=media.images_cached if media is not None else None,
            image_tokens=sum(s.end - s.start for s in media.spans) if media is not None
            else None,
            draft_tokens=run.n_drafted if run.spec is not None else None,
            accepted_tokens=run.n_accepted if run.spec is not None else None,
            acceptance_rate=(run.n_accepted / run.n_drafted if run.n_drafted else 0.0)
            if run.spec is not None else None,
        )


def _rate(n: int, ms: float) -> float | None:
    return n * 1000.0 / ms if n > 0 and ms > 0 else None
