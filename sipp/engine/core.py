"""The engine: one thread per loaded model owns its ``llama_context`` and its scheduler.

Submitting threads (:meth:`Engine.submit_text` / :meth:`Engine.submit_embed`) render,
tokenize, plan the sampler and compile grammars themselves (:mod:`sipp.engine.submission`),
check the request against the window (``RequestTooLargeError``), reserve a queue place
(``QueueFullError`` at once when the queue is full) and put the request into the engine's
inbox. Cancels go through the same inbox. No lock they take is ever held across a step.

The engine thread loops: drain the inbox into the scheduler (adds, cancels, image
requests to encode) → ``scheduler.schedule()`` → apply KV operations → build and decode
one batch (:mod:`sipp.engine.batching`) → sample, detokenize, push
(:mod:`sipp.engine.output`) → publish an immutable :class:`EngineStats` snapshot when a
run finished, before idling and at most every 50 ms otherwise (what :meth:`Engine.metrics`
and :meth:`Engine.slot_states` read) → complete finished runs. With
nothing to do it blocks on the inbox (never spins). The scheduler is touched by this
thread only.

Shutdown (:meth:`Engine.close`) fails pending runs with ``EngineClosedError``; if the engine
thread raises, every pending and later run fails with ``EngineDeadError``.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sipp.config import NativeRuntimeConfig
from sipp.engine._shutdown import close_at_exit
from sipp.engine.batching import StepBatch
from sipp.engine.context_plan import (
    ContextPlan,
    ModelClass,
    ModelFacts,
    context_params,
    plan_context,
)
from sipp.engine.draft_model import DraftModel
from sipp.engine.loading import LoadedModel, load_model
from sipp.engine.media import Vision
from sipp.engine.media_queue import MediaJob
from sipp.engine.metrics import RuntimeMetrics
from sipp.engine.output import Output
from sipp.engine.runstate import EngineRequest, RunState
from sipp.engine.speculative import Speculator
from sipp.engine.submission import Submission
from sipp.errors import (
    ConfigurationError,
    EngineClosedError,
    EngineDeadError,
    EngineError,
    ModelLoadError,
    QueueFullError,
    SippError,
)
from sipp.native import LlamaContext, LlamaModel
from sipp.requests import EmbedRequest, RunSink, TextRequest
from sipp.scheduler import (
    KvClear,
    KvCopy,
    KvRemove,
    RequestStatus,
    Scheduler,
    SchedulerConfig,
    SchedulerOutput,
    SnapshotRestore,
    SnapshotSave,
)

__all__ = ["Engine", "EngineStats", "ModelInfo"]

_log = logging.getLogger("sipp.engine")


@dataclass(frozen=True)
class ModelInfo:
    """What the loaded model can do (used for endpoint capabilities)."""

    path: str
    architecture: str
    model_class: ModelClass
    n_vocab: int
    n_ctx: int
    n_ctx_per_slot: int
    n_batch: int
    n_ubatch: int
    n_parallel: int
    embeddings: bool
    pooling: str
    embedding_size: int
    has_chat_template: bool
    cache_mode: str
    kv_unified: bool
    swa_full: bool
    vision: bool = False
    media_marker: str | None = None

    @property
    def can_generate(self) -> bool:
        return self.model_class != "encoder" and not self.embeddings

    @property
    def can_embed(self) -> bool:
        return self.embeddings and self.pooling != "none" and self.model_class != (
            "encoder_decoder")


@dataclass(frozen=True)
class EngineStats:
    """What the engine thread last published: read by any thread without waiting for a
    step."""

    scheduler: dict[str, object]
    running: int
    queued: int
    slots: tuple[tuple[str, int, str | None], ...]
    decode_calls: int
    decoded_tokens: int
    images_encoded: int | None = None
    images_cached: int | None = None
    backend: dict[str, float] | None = None


@dataclass(frozen=True, slots=True)
class _Cancel:
    request_id: int
    reason: str


class _Signal(enum.Enum):
    CLOSE = "close"  # stop the engine thread; whatever is still in the inbox fails


# While busy, the stats snapshot is rebuilt at most this often (it costs tens of µs); it is
# always rebuilt when a run finishes (before its result is delivered) and before idling.
_PUBLISH_INTERVAL_S = 0.05
_Item = EngineRequest | MediaJob | _Cancel | _Signal


class Engine:
    """One loaded model and the thread that runs it. Create with :meth:`Engine.load`."""

    info: ModelInfo
    config: NativeRuntimeConfig
    model: LlamaModel
    ctx: LlamaContext
    scheduler: Scheduler[RunState]
    plan: ContextPlan

    def __init__(self) -> None:  # use Engine.load
        self._inbox: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        # guards the fields below; held for a few lines at a time, never across a step
        self._gate = threading.Lock()
        self._idle_submitters = threading.Condition(self._gate)
        self._submitting = 0  # callers tokenizing / building samplers on the model now
        self._reserved = 0  # queue places taken by requests still in the inbox
        self._waiting = 0  # the scheduler's queue length, as the engine thread last saw it
        self._closed = False
        self._dead: BaseException | None = None
        self._ids = itertools.count(1)
        self._runs: dict[int, EngineRequest] = {}  # engine thread only
        self._done: list[EngineRequest] = []  # finished this step (engine thread only)
        self._thread: threading.Thread | None = None
        self._loaded: LoadedModel | None = None
        self.name = ""
        self.runtime_metrics: RuntimeMetrics | None = None
        self.vision: Vision | None = None
        self.warmup_s: float | None = None
        self.offloads = False  # whether the model offloads to a GPU
        self._stats = EngineStats({}, 0, 0, (), 0, 0)
        self._next_publish = 0.0
        self._draft: DraftModel | None = None

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def load(
        cls,
        model_path: str,
        config: NativeRuntimeConfig | None = None,
        *,
        chat_template: str | None = None,
        name: str = "",
        progress: Callable[[float], object] | None = None,
    ) -> Engine:
        """Load ``model_path`` on a new engine thread; blocks until ready or raises
        ``ModelLoadError`` (or ``ConfigurationError`` for an impossible configuration).
        ``progress(fraction)`` is called from the engine thread while the weights load;
        returning False cancels the load."""
        if not os.path.isfile(model_path):
            raise ModelLoadError(f"failed to load model from {model_path}: no such file")
        engine = cls()
        engine.name = name or os.path.basename(model_path)
        raw = config or NativeRuntimeConfig()
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            try:
                engine._open(model_path, raw, chat_template, progress)
            except BaseException as exc:  # reported to the loading thread
                failure.append(exc)
                ready.set()
                return
            ready.set()
            engine._run_loop()

        thread = threading.Thread(target=main, name=f"sipp-engine-{engine.name}", daemon=True)
        engine._thread = thread
        thread.start()
        ready.wait()
        if failure:
            thread.join()
            exc = failure[0]
            if isinstance(exc, SippError):
                raise exc
            raise ModelLoadError(f"failed to load model from {model_path}: {exc}") from exc
        close_at_exit(engine)
        return engine

    def _open(self, path: str, raw: NativeRuntimeConfig, chat_template: str | None,
              progress: Callable[[float], object] | None = None) -> None:
        self.config = cfg = raw
        loaded = load_model(path, raw, progress)
        self._loaded = loaded
        self.offloads = loaded.offloads
        self.model = model = loaded.model
        try:
            plan = plan_context(ModelFacts.of(model), raw)
            self.plan = plan
            if raw.scheduler.deterministic and not plan.partial_kv_edits:
                raise ConfigurationError(
                    "scheduler.deterministic covers attention KV caches; this model's "
                    "memory (recurrent or hybrid) is not covered"
                )
            self.ctx = ctx = LlamaContext(model, **context_params(plan, raw))
            if raw.scheduler.deterministic and not ctx.set_batch_invariant(True):
                raise ConfigurationError(
                    "scheduler.deterministic needs the CPU backend's batch-invariant "
                    "kernels (llama_set_batch_invariant, added by native/patches): this "
                    "backend was built without them or the context has no CPU backend; "
                    "rebuild the backend package from this checkout"
                )
            # context.warmup: one throw-away BOS/EOS run now, not on the first request
            self.warmup_s = ctx.warmup() if cfg.context.warmup else None
            if cfg.observability.metrics_enabled:
                self.runtime_metrics = RuntimeMetrics()
            self._open_scheduler(plan, cfg)
            template = chat_template or model.chat_template()
            pooling = ctx.pooling_type
            self.info = ModelInfo(
                path=str(model.path), architecture=model.architecture,
                model_class=plan.model_class, n_vocab=model.n_vocab, n_ctx=ctx.n_ctx,
                n_ctx_per_slot=self.scheduler.config.n_ctx_per_slot, n_batch=ctx.n_batch,
                n_ubatch=ctx.n_ubatch, n_parallel=ctx.n_seq_max, embeddings=plan.embeddings,
                pooling=pooling,
                embedding_size=model.n_cls_out if pooling == "rank" else model.n_embd_out,
                has_chat_template=template is not None, cache_mode=plan.cache_mode,
                kv_unified=plan.kv_unified, swa_full=plan.swa_full,
            )
            if cfg.multimodal.projector_path is not None:
                self._open_vision(cfg)
            if cfg.speculative.draft_model is not None and self.info.can_generate:
                self._draft = DraftModel.open(cfg.speculative.draft_model, cfg, model,
                                              n_ctx=ctx.n_ctx, n_parallel=ctx.n_seq_max)
        except BaseException:
            if self.vision is not None:
                self.vision.close()
            loaded.close()
            raise
        self._batch = StepBatch(ctx, self.scheduler, encoder=plan.model_class == "encoder_decoder",
                                vision=self.vision, metrics=self.runtime_metrics,
                                apply_kv_ops=self._apply_kv_ops, fail=self._fail_step)
        self._output = Output(model, ctx, self.scheduler, cache_mode=plan.cache_mode,
                              pooling=pooling, metrics=self.runtime_metrics,
                              on_done=self._forget)
        can_speculate = (plan.partial_kv_edits and plan.model_class == "decoder"
                         and self.info.can_generate)
        self.scheduler.drafter = Speculator(self._draft) if can_speculate else None
        self._submission = Submission(model, self.info, cfg.sampling, template=template,
                                      vision=self.vision, offloads=loaded.offloads,
                                      speculative=cfg.speculative, can_speculate=can_speculate,
                                      has_draft=self._draft is not None)
        self._publish()

    def _open_scheduler(self, plan: ContextPlan, cfg: NativeRuntimeConfig) -> None:
        self.scheduler = Scheduler(SchedulerConfig.from_runtime(
            cfg, n_ctx_per_slot=plan.window(self.ctx.n_ctx), token_budget=self.ctx.n_batch,
            cache_mode=plan.cache_mode, cross_slot_copy=plan.cross_slot_copy,
            partial_kv_edits=plan.partial_kv_edits,
        ))

    def _open_vision(self, cfg: NativeRuntimeConfig) -> None:
        info = self.info
        if not info.can_generate or info.model_class != "decoder":
            raise ModelLoadError(
                f"multimodal.projector_path needs a text-generating decoder model; "
                f"{info.path} is a {info.model_class} model"
                + (" with embeddings enabled" if info.embeddings else "")
            )
        vision = Vision(self.model, cfg.multimodal, n_batch=info.n_batch,
                        n_ubatch=info.n_ubatch, n_threads=cfg.context.n_threads_batch)
        self.vision = vision
        self.info = replace(info, vision=True, media_marker=vision.marker)

    def close(self) -> None:
        """Stop the engine thread; pending runs fail with ``EngineClosedError``. Idempotent."""
        with self._gate:
            if self._closed:
                return
            self._closed = True
        self._inbox.put(_Signal.CLOSE)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def decode_calls(self) -> int:
        """``llama_decode`` calls so far (text batches and images)."""
        return self._stats.decode_calls

    @property
    def decoded_tokens(self) -> int:
        return self._stats.decoded_tokens

    # ------------------------------------------------------------------ submission
    def submit_text(self, request: TextRequest, sink: RunSink) -> None:
        """Tokenize, validate and queue a query or chat (raises at once on bad input)."""
        with self._submitter():
            item = self._submission.text(request, sink)
            if isinstance(item, MediaJob):
                self._enqueue(item, item.run, sink)
            else:
                self._enqueue(item, self._payload(item), sink)

    def submit_embed(self, request: EmbedRequest, sink: RunSink) -> None:
        """Tokenize and queue one embedding input (raises at once on bad input)."""
        with self._submitter():
            item = self._submission.embed(request, sink)
            self._enqueue(item, self._payload(item), sink)

    @contextlib.contextmanager
    def _submitter(self) -> Iterator[None]:
        """Keep the model open while a caller thread tokenizes and builds its sampler."""
        with self._gate:
            self._check_usable()
            self._submitting += 1
        try:
            yield
        finally:
            with self._gate:
                self._submitting -= 1
                self._idle_submitters.notify_all()

    def _check_usable(self) -> None:
        if self._dead is not None:
            raise EngineDeadError(f"engine for {self.name} died: {self._dead!r}")
        if self._closed:
            raise EngineClosedError(f"engine for {self.name} is closed")

    def _enqueue(self, item: EngineRequest | MediaJob, run: RunState, sink: RunSink) -> None:
        """Reserve a queue place and hand ``item`` to the engine thread."""
        try:
            if not isinstance(item, MediaJob):
                self.scheduler.check(item)  # RequestTooLargeError now, not on the engine
            limit = self.scheduler.config.max_queued_requests
            with self._gate:
                self._check_usable()
                waiting = self._reserved + self._waiting
                if waiting >= limit:
                    raise QueueFullError(
                        f"request queue is full: {waiting} requests waiting "
                        f"(max_queued_requests={limit})"
                    )
                self._reserved += 1
                item.request_id = rid = next(self._ids)
                self._inbox.put(item)
        except BaseException:
            if isinstance(item, MediaJob):
                item.discard()
            run.release()
            raise
        sink.on_cancel(lambda reason: self._inbox.put(_Cancel(rid, reason)))

    @staticmethod
    def _payload(request: EngineRequest) -> RunState:
        run = request.payload
        assert run is not None
        return run

    # ------------------------------------------------------------------ engine thread
    def _run_loop(self) -> None:
        try:
            while True:
                if self._drain(block=not self.scheduler.has_work):
                    self._shutdown(EngineClosedError(f"engine for {self.name} was closed"))
                    return
                self.step()
        except BaseException as exc:  # the engine is dead: nothing may hang
            _log.exception("engine thread for %s died", self.name)
            self._dead = exc
            self._shutdown(EngineDeadError(f"engine for {self.name} died: {exc!r}"))

    def _drain(self, *, block: bool) -> bool:
        """Move everything in the inbox into the scheduler (waiting for the first item when
        ``block``); True when the engine is asked to close."""
        try:
            item = self._inbox.get() if block else self._inbox.get_nowait()
        except queue.Empty:
            return False
        added = 0
        while True:
            if isinstance(item, _Cancel):
                self.scheduler.cancel(item.request_id, item.reason)
            elif isinstance(item, _Signal):
                return True  # CLOSE: the rest fails in _shutdown
            else:
                added += 1
                self._admit(item)
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
        if added:
            with self._gate:
                self._reserved -= added
                self._waiting = self.scheduler.num_waiting
        return False

    def _admit(self, item: EngineRequest | MediaJob) -> None:
        """Hand one submitted request to the scheduler (image requests are tokenized and
        their images encoded first); a request that cannot be added fails its run."""
        run = item.run if isinstance(item, MediaJob) else self._payload(item)
        try:
            if isinstance(item, MediaJob):
                assert self.vision is not None
                bos = self.model.bos if self.model.add_bos else None
                request = item.prepare(self.vision, bos=bos, n_vocab=self.model.n_vocab)
            else:
                request = item
            self.scheduler.add(request, reserved=True)
        except SippError as exc:
            run.release()
            run.sink.fail(exc)
            return
        self._runs[request.request_id] = request

    def _forget(self, request: EngineRequest) -> None:
        self._runs.pop(request.request_id, None)

    def _fail_step(self, out: SchedulerOutput[RunState], message: str) -> None:
        self._done.extend(self._output.fail_step(out, message))

    def step(self) -> None:
        """One scheduler step on the engine thread: KV ops, one decode, sampling, results;
        then the stats snapshot (when a run finished, the engine goes idle, or every
        :data:`_PUBLISH_INTERVAL_S` while busy), then the runs that finished are completed."""
        done = self._done
        out = self.scheduler.schedule()
        self._waiting = self.scheduler.num_waiting  # admissions free queue places now
        done.extend(out.finished)
        if out.shifted and self.runtime_metrics is not None:
            self.runtime_metrics.inc("context_shifts", len(out.shifted))
        self._apply_kv_ops(out)
        if out.chunks:
            self._start_chunks(out)
            started = time.perf_counter()
            decoded = self._batch.decode(out)
            if decoded is not None:
                done.extend(self._output.sample(decoded, self._batch.indexes))
                if decoded is out:  # not cut down by a KV-full retry: a clean measurement
                    self.scheduler.observe_step(out.n_tokens, time.perf_counter() - started)
        now = time.perf_counter()
        if done or now >= self._next_publish or not self.scheduler.has_work:
            self._publish()
            self._next_publish = now + _PUBLISH_INTERVAL_S
        self._done = []
        for request in done:
            self._output.complete(request)

    def _start_chunks(self, out: SchedulerOutput[RunState]) -> None:
        """First-chunk bookkeeping: start times, admission metrics, the encoder run."""
        now = time.perf_counter()
        for chunk in out.chunks:
            run = chunk.request.payload
            assert run is not None
            if run.t_start is None:
                run.t_start = now
                if self.runtime_metrics is not None:
                    self.runtime_metrics.record_admission(
                        chunk.request.num_prompt_tokens, chunk.request.num_cached_tokens)
                    run.gaps = []
            if run.source is not None and chunk.start_pos == 0:
                self._batch.encode(run.source, chunk.slot)

    def _apply_kv_ops(self, out: SchedulerOutput[RunState]) -> None:
        ctx = self.ctx
        for op in out.kv_ops:
            if isinstance(op, KvRemove):
                if not ctx.seq_rm(op.slot, op.p0, op.p1):
                    ctx.seq_rm(op.slot, -1, -1)  # partial removal unsupported: clear
            elif isinstance(op, KvClear):
                ctx.seq_rm(op.slot, -1, -1)
            elif isinstance(op, KvCopy):
                ctx.seq_cp(op.src_slot, op.dst_slot, op.p0, op.p1)
            elif isinstance(op, SnapshotRestore):
                try:
                    ctx.seq_state_set(op.data, op.slot)
                except EngineError as exc:
                    raise EngineError(
                        f"restoring a KV snapshot into slot {op.slot} failed") from exc
            elif isinstance(op, SnapshotSave):
                self.scheduler.snapshot_saved(op.key, op.n_tokens, ctx.seq_state_get(op.slot))

    def _publish(self) -> None:
        """Publish the stats snapshot (engine thread; one object swap)."""
        scheduler = self.scheduler
        waiting = scheduler.num_waiting
        self._waiting = waiting
        cache = self.vision.cache if self.vision is not None else None
        batch = getattr(self, "_batch", None)
        self._stats = EngineStats(
            scheduler=scheduler.stats.as_dict(), running=scheduler.num_running,
            queued=waiting,
            slots=tuple((str(s), n, k) for s, n, k in scheduler.slot_states()),
            decode_calls=batch.decode_calls if batch is not None else 0,
            decoded_tokens=batch.decoded_tokens if batch is not None else 0,
            images_encoded=cache.images_encoded if cache is not None else None,
            images_cached=cache.images_cached if cache is not None else None,
            backend=self.ctx.perf() if self.config.observability.backend_profiling else None,
        )

    def _shutdown(self, error: EngineError) -> None:
        with self._gate:
            self._closed = True  # from here on nothing enters the inbox
        pending: list[RunState] = []
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, MediaJob):
                item.discard()
                pending.append(item.run)
            elif not isinstance(item, (_Cancel, _Signal)):
                pending.append(self._payload(item))
        try:
            self.scheduler.abort_all(RequestStatus.FINISHED_ERROR)
        except Exception:  # keep failing the runs even if the scheduler is broken
            _log.exception("scheduler abort failed")
        pending.extend(self._payload(r) for r in self._runs.values())
        self._runs = {}
        for run in pending:
            run.sink.fail(error)
            run.release()
        with self._gate:  # no caller may still be using the model
            self._idle_submitters.wait_for(lambda: self._submitting == 0)
        try:
            if self.vision is not None:
                self.vision.close()
            if self._draft is not None:
                self._draft.close()
            self.ctx.close()
            if self._loaded is not None:
                self._loaded.close()
        except Exception:
            _log.exception("closing the native context failed")

    # ------------------------------------------------------------------ introspection
    @property
    def stats(self) -> EngineStats:
        """The snapshot the engine thread last published: exact while idle and as of
        each run's completion, at most ~50 ms old while busy."""
        return self._stats

    def slot_states(self) -> Sequence[tuple[str, int, str | None]]:
        return list(self._stats.slots)

    def metrics(self) -> dict[str, Any]:
        """Runtime metrics (``observability.runtime_metrics``): counters, gauges and
        histograms, the scheduler's statistics, and llama.cpp perf counters when
        ``backend_profiling`` is on (the engine's latest :attr:`stats` snapshot)."""
        stats = self._stats
        out: dict[str, Any] = (
            self.runtime_metrics.snapshot() if self.runtime_metrics is not None else {}
        )
        out["scheduler"] = {k: dict(v) if isinstance(v, dict) else v
                            for k, v in stats.scheduler.items()}
        out["requests_running"], out["requests_queued"] = stats.running, stats.queued
        out["decode_calls"], out["decoded_tokens"] = stats.decode_calls, stats.decoded_tokens
        drafted = int(stats.scheduler.get("draft_tokens", 0))  # type: ignore[call-overload]
        kept = int(stats.scheduler.get("accepted_tokens", 0))  # type: ignore[call-overload]
        out["speculative"] = {"draft_tokens": drafted, "accepted_tokens": kept,
                              "acceptance_rate": kept / drafted if drafted else 0.0}
        if stats.images_encoded is not None:
            out["images_encoded"], out["images_cached"] = (stats.images_encoded,
                                                           stats.images_cached)
        if stats.backend is not None:
            out["backend"] = dict(stats.backend)
        return out
