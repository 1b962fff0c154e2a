"""Batch building and decoding for one engine step (engine thread only).

:meth:`StepBatch.decode` writes the scheduler's chunks into one reusable ``llama_batch``
with NumPy slices and runs ``llama_decode``, handling libllama's typed errors itself:
``KvCacheFullError`` asks the scheduler to free KV (idle slots, then preemption of the
newest running request) and retries the smaller step; ``InvalidBatchError`` and
``DecodeAbortedError`` fail the step's requests. Anything else propagates (the engine
dies). Images are decoded first, in position order, because a batch carries either
tokens or embeddings.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from sipp.engine.media import Vision
from sipp.engine.metrics import RuntimeMetrics
from sipp.engine.runstate import RunState
from sipp.errors import KvCacheFullError
from sipp.native import DecodeAbortedError, InvalidBatchError, LlamaBatch, LlamaContext
from sipp.scheduler import Scheduler, SchedulerOutput

__all__ = ["StepBatch"]

Step = SchedulerOutput[RunState]


class StepBatch:
    """The engine's batch (and encoder batch for encoder-decoder models) and its decode."""

    def __init__(self, ctx: LlamaContext, scheduler: Scheduler[RunState], *, encoder: bool,
                 vision: Vision | None, metrics: RuntimeMetrics | None,
                 apply_kv_ops: Callable[[Step], None],
                 fail: Callable[[Step, str], None]) -> None:
        self.ctx = ctx
        self.scheduler = scheduler
        self.vision = vision
        self.metrics = metrics
        self._apply_kv_ops = apply_kv_ops
        self._fail = fail
        n = ctx.n_batch
        self.native = LlamaBatch(n)
        self.native.n_seq_id[:] = 1
        self._tok, self._pos = self.native.tokens, self.native.pos
        self._seq, self._logits = self.native.seq_ids[:, 0], self.native.logits
        self._encoder = LlamaBatch(n) if encoder else None
        self._predecoded: dict[int, int] = {}  # id(chunk) -> position decoded up to
        self.indexes: list[int] = []  # logits index of each chunk in the last batch
        self.decode_calls = 0
        self.decoded_tokens = 0

    def encode(self, source: npt.NDArray[np.int32], slot: int) -> None:
        """Run the encoder on ``source`` for ``slot`` (encoder-decoder models)."""
        batch = self._encoder
        assert batch is not None
        n = source.shape[0]
        batch.tokens[:n] = source
        batch.pos[:n] = np.arange(n, dtype=np.int32)
        batch.n_seq_id[:n] = 1
        batch.seq_ids[:n, 0] = slot
        batch.logits[:n] = 0
        batch.n_tokens = n
        self.ctx.encode(batch)

    def decode(self, out: Step) -> Step | None:
        """Decode ``out`` (or what is left of it after KV-full retries); returns the step
        whose chunks were decoded, or None when none were."""
        try:
            while True:
                try:
                    if self.vision is not None:
                        self._predecode(out)
                    self.indexes = self._fill(out)
                    if self.native.n_tokens:
                        self.decode_calls += 1
                        self.ctx.decode(self.native)
                except KvCacheFullError:
                    retry = self._free_kv(out)
                    if retry is None:
                        return None
                    out = retry
                    continue
                except (InvalidBatchError, DecodeAbortedError) as exc:
                    self._fail(out, f"llama_decode failed: {exc}")
                    return None
                self.decoded_tokens += out.n_tokens
                if self.metrics is not None:
                    self.metrics.record_decode(len(out.chunks), out.n_tokens)
                return out
        finally:
            self._predecoded.clear()

    def _free_kv(self, out: Step) -> Step | None:
        """The step to retry after the scheduler freed KV, or None (nothing left to run)."""
        retry = self.scheduler.handle_kv_full(out)
        if retry is None:
            self._fail(out, "KV cache is full even for a single request; raise context.n_ctx")
            return None
        if self.metrics is not None and retry.preempted:
            self.metrics.inc("preemptions", len(retry.preempted))
        self._apply_kv_ops(retry)
        return retry if retry.chunks else None

    def _fill(self, out: Step) -> list[int]:
        """Write ``out.chunks`` into the batch; return the logits index of each chunk (its
        last position; a chunk with drafts has logits at its last ``n_draft + 1``).
        Leading positions already decoded with their images are skipped."""
        tok, pos, seq, logits = self._tok, self._pos, self._seq, self._logits
        offset = 0
        indexes: list[int] = []
        predecoded = self._predecoded
        for chunk in out.chunks:
            n = chunk.n_tokens
            if predecoded and id(chunk) in predecoded:
                skip = predecoded[id(chunk)] - chunk.start_pos
                n -= skip
                end = offset + n
                if n:
                    tok[offset:end] = chunk.tokens[skip:]
                    pos[offset:end] = np.arange(chunk.start_pos + skip,
                                                chunk.start_pos + chunk.n_tokens, dtype=np.int32)
                    seq[offset:end] = chunk.slot
                    logits[offset:end] = 0
                    logits[end - 1] = chunk.sample
                indexes.append(end - 1)
                offset = end
                continue
            end = offset + n
            if n == 1:
                tok[offset] = chunk.tokens[0]
                pos[offset] = chunk.start_pos
                seq[offset] = chunk.slot
                logits[offset] = chunk.sample
            else:
                tok[offset:end] = chunk.tokens
                pos[offset:end] = np.arange(chunk.start_pos, chunk.start_pos + n,
                                            dtype=np.int32)
                seq[offset:end] = chunk.slot
                if chunk.n_draft:  # verification: logits at the pending token and each draft
                    logits[offset:end - chunk.n_draft - 1] = 0
                    logits[end - chunk.n_draft - 1:end] = 1
                else:
                    logits[offset:end] = 0
                    if chunk.sample:
                        logits[end - 1] = 1
            indexes.append(end - 1)
            offset = end
        self.native.n_tokens = offset
        return indexes

    def _predecode(self, out: Step) -> None:
        """Decode every image of this step (and the text before it) ahead of the batch, in
        position order; progress survives a KV-full retry of the same step."""
        vision = self.vision
        assert vision is not None
        for chunk in out.chunks:
            run = chunk.request.payload
            media = run.media if run is not None else None
            if media is None:
                continue
            start = chunk.start_pos
            last = media.last_image_end(start, start + chunk.n_tokens)
            done = self._predecoded.get(id(chunk), start)
            for a, b, span in media.segments(done, last) if last > done else ():
                self.decode_calls += 1
                if span is None:
                    n = b - a
                    self._tok[:n] = chunk.tokens[a - start:b - start]
                    self._pos[:n] = np.arange(a, b, dtype=np.int32)
                    self._seq[:n] = chunk.slot
                    self._logits[:n] = 0
                    self.native.n_tokens = n
                    self.ctx.decode(self.native)
                else:
                    vision.decode_span(self.ctx, span, chunk.slot)
                self._predecoded[id(chunk)] = b
