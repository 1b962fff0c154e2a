"""The draft model of ``speculative.mode = "draft"``: a smaller model with the target's
vocabulary, loaded next to it with its own context, run on the engine thread.

Per slot it keeps a mirror of the tokens its KV holds (positions equal indexes, as the
scheduler's slots do). Each :meth:`DraftModel.propose` first brings every asked slot up
to date with its request's text (the common prefix stays, the rest is removed and the
missing tokens are decoded, in one batch or a few), then drafts greedily one token per
request per decode. Rejected drafts are found and removed by the next sync, so the
target's preemptions, context shifts and slot reuse need no extra bookkeeping here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from sipp.config import NativeRuntimeConfig
from sipp.engine.context_plan import ModelFacts, context_params, plan_context
from sipp.engine.loading import LoadedModel, load_model
from sipp.engine.runstate import EngineRequest
from sipp.errors import EngineError, ModelLoadError
from sipp.native import LlamaBatch, LlamaContext, LlamaModel

__all__ = ["DraftModel", "check_same_vocabulary"]

_log = logging.getLogger("sipp.engine")
Tokens = npt.NDArray[np.int32]
_EMPTY: Tokens = np.empty(0, dtype=np.int32)


def check_same_vocabulary(target: LlamaModel, draft: LlamaModel, path: str) -> None:
    """Raise ``ModelLoadError`` unless ``draft`` tokenizes exactly as ``target``: same
    size, same special tokens and the same text for every token id."""
    if draft.n_vocab != target.n_vocab:
        raise ModelLoadError(
            f"speculative.draft_model {path}: its vocabulary has {draft.n_vocab} tokens, the "
            f"target's {target.n_vocab}; a draft model must share the target's vocabulary"
        )
    if (draft.bos, draft.eos) != (target.bos, target.eos):
        raise ModelLoadError(
            f"speculative.draft_model {path}: its BOS/EOS tokens ({draft.bos}, {draft.eos}) "
            f"differ from the target's ({target.bos}, {target.eos})"
        )
    for token in range(target.n_vocab):
        if draft.token_to_piece(token, True) != target.token_to_piece(token, True):
            raise ModelLoadError(
                f"speculative.draft_model {path}: token {token} is "
                f"{draft.token_to_piece(token, True)!r} in the draft but "
                f"{target.token_to_piece(token, True)!r} in the target; a draft model must "
                "share the target's vocabulary"
            )


def _common_prefix(a: Tokens, b: Tokens) -> int:
    n = min(a.shape[0], b.shape[0])
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if diff.size else n


class DraftModel:
    """The draft model, its context and per-slot mirrors (engine thread only)."""

    def __init__(self, loaded: LoadedModel, ctx: LlamaContext, window: int) -> None:
        self.loaded = loaded
        self.ctx = ctx
        self.batch = LlamaBatch(ctx.n_batch)
        self.batch.n_seq_id[:] = 1
        self._mirrors = [np.empty(window + 1, dtype=np.int32) for _ in range(ctx.n_seq_max)]
        self._held = [0] * ctx.n_seq_max
        self.decode_calls = 0

    @classmethod
    def open(cls, path: str, config: NativeRuntimeConfig, target: LlamaModel, *,
             n_ctx: int, n_parallel: int) -> DraftModel:
        """Load the draft model of ``config.speculative`` next to ``target`` (whose
        context has ``n_ctx`` cells over ``n_parallel`` slots: the draft's default)."""
        given = config.speculative.draft_context
        draft_ctx = replace(
            given,
            n_ctx=given.n_ctx if "n_ctx" in given.fields_set else n_ctx,
            n_parallel=n_parallel,
            embeddings=False,
        )
        draft_config = NativeRuntimeConfig(placement=config.placement, context=draft_ctx,
                                           residency=config.residency)
        loaded = load_model(path, draft_config)
        try:
            model = loaded.model
            check_same_vocabulary(target, model, path)
            if not model.has_decoder or model.has_encoder:
                raise ModelLoadError(
                    f"speculative.draft_model {path} is not a text-generating decoder model"
                )
            plan = plan_context(ModelFacts.of(model), draft_config)
            if not plan.partial_kv_edits:
                raise ModelLoadError(
                    f"speculative.draft_model {path}: its memory cannot remove part of a "
                    "sequence (recurrent or hybrid model), which drafting needs"
                )
            ctx = LlamaContext(model, **context_params(plan, draft_config))
        except BaseException:
            loaded.close()
            raise
        return cls(loaded, ctx, plan.window(ctx.n_ctx))

    def close(self) -> None:
        try:
            self.ctx.close()
        finally:
            self.loaded.close()

    def propose(self, requests: Sequence[EngineRequest], limits: Sequence[int]) -> list[Tokens]:
        """Up to ``limits[i]`` greedy draft tokens after each request's text; a request
        whose draft context fails gets none (its slot is cleared)."""
        try:
            return self._propose(requests, limits)
        except EngineError as exc:  # KV full or a failed decode: drop the draft state
            _log.debug("draft model decode failed (%s): no drafts this step", exc)
            for slot in range(len(self._held)):
                self.ctx.seq_rm(slot, -1, -1)
                self._held[slot] = 0
            return [_EMPTY for _ in requests]

    def _propose(self, requests: Sequence[EngineRequest], limits: Sequence[int]) -> list[Tokens]:
        ctx = self.ctx
        batch = self.batch
        tok, pos, seq, logits = batch.tokens, batch.pos, batch.seq_ids[:, 0], batch.logits
        cap = batch.capacity
        drafts: list[list[int]] = [[] for _ in requests]
        slots = [r.slot or 0 for r in requests]
        # 1. sync each slot with its request's text; the last token's logits give draft 1
        pending: list[tuple[int, int]] = []  # (request index, batch entry) in this batch
        n = 0
        for i, request in enumerate(requests):
            slot = slots[i]
            text = request.all_tokens.view()
            size = text.shape[0]
            mirror = self._mirrors[slot]
            if size + limits[i] > mirror.shape[0]:
                continue  # past the draft context's window: no drafts
            keep = min(_common_prefix(mirror[:self._held[slot]], text), size - 1)
            if keep < self._held[slot]:
                ctx.seq_rm(slot, keep, -1)
            mirror[keep:size] = text[keep:]
            self._held[slot] = size
            start = keep
            while start < size:
                take = min(size - start, cap - n)
                end = start + take
                tok[n:n + take] = text[start:end]
                pos[n:n + take] = np.arange(start, end, dtype=np.int32)
                seq[n:n + take] = slot
                logits[n:n + take] = 0
                n += take
                if end == size:
                    logits[n - 1] = 1
                    pending.append((i, n - 1))
                start = end
                if n == cap:
                    n = self._flush(n, pending, drafts)
        if n:
            self._flush(n, pending, drafts)
        # 2. one more greedy token per request and decode, until each has its limit
        longest = max(limits)
        for step in range(1, longest):
            n = 0
            for i in range(len(requests)):
                if len(drafts[i]) != step or step >= limits[i]:
                    continue
                slot = slots[i]
                token = drafts[i][-1]
                at = self._held[slot]
                self._mirrors[slot][at] = token
                self._held[slot] = at + 1
                tok[n], pos[n], seq[n], logits[n] = token, at, slot, 1
                pending.append((i, n))
                n += 1
            if not n:
                break
            self._flush(n, pending, drafts)
        return [np.array(d[:k], dtype=np.int32) for d, k in zip(drafts, limits, strict=True)]

    def _flush(self, n: int, pending: list[tuple[int, int]], drafts: list[list[int]]) -> int:
        """Decode the ``n`` batch entries; each pending request gets its argmax token."""
        self.batch.n_tokens = n
        self.decode_calls += 1
        self.ctx.decode(self.batch)
        for i, entry in pending:
            drafts[i].append(int(np.argmax(self.ctx.logits_ith(entry))))
        pending.clear()
        return 0
