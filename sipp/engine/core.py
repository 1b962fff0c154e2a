"""The engine core: one thread per loaded model owns its ``llama_context``.

Callers (any thread) tokenize and validate in :meth:`Engine.submit_text` /
:meth:`Engine.submit_embed`, which add a :class:`~sipp.scheduler.Request` to the scheduler
(``QueueFullError`` / ``RequestTooLargeError`` at once) and wake the engine thread. The engine
thread loops: ``scheduler.schedule()`` → apply KV operations → fill one ``llama_batch`` with
NumPy → one ``llama_decode`` → sample each sequence with its own C sampler chain →
detokenize, stop strings → one push per run → ``scheduler.update_from_output()`` → complete
finished runs. With nothing to do it blocks on its inbox (never spins).

Shutdown (:meth:`Engine.close`) fails pending runs with ``EngineClosedError``; if the engine
thread raises, every pending and later run fails with ``EngineDeadError``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from sipp.config import (
    DEFAULT_CONTEXT_KEY,
    DEFAULT_MAX_TOKENS,
    ContextRuntimeConfig,
    NativeRuntimeConfig,
)
from sipp.engine._llama import (
    Batch,
    ContextSettings,
    LlamaContext,
    LlamaModel,
    SamplerChain,
    gpu_devices,
    placement_args,
)
from sipp.engine._residency import acquire as acquire_residency
from sipp.engine.media import MediaPrompt, Vision, marked_messages, place_markers
from sipp.engine.metrics import RuntimeMetrics
from sipp.engine.sampling import history_length, plan_chain, resolve_grammar, resolve_sampling
from sipp.engine.text import TextStream
from sipp.errors import (
    ConfigurationError,
    EngineClosedError,
    EngineDeadError,
    EngineError,
    InvalidRequestError,
    KvCacheFullError,
    ModelLoadError,
    RequestTooLargeError,
    SippError,
    UnsupportedOperationError,
)
from sipp.native.model import list_devices
from sipp.requests import EmbedRequest, RunSink, TextRequest
from sipp.scheduler import (
    KvClear,
    KvCopy,
    KvRemove,
    Request,
    RequestStatus,
    SchedulerConfig,
    SchedulerOutput,
    SnapshotRestore,
    SnapshotSave,
)
from sipp.scheduler._scheduler import Scheduler
from sipp.types import FinishReason

__all__ = ["Engine", "ModelInfo"]

_log = logging.getLogger("sipp.engine")
ModelClass = Literal["decoder", "encoder", "encoder_decoder"]
_WAKE, _CLOSE = "wake", "close"
# what the AUTO context sizes start from (declared with the settings)
_N_CTX_PER_SLOT: int = ContextRuntimeConfig.setting("n_ctx").fallback
_N_BATCH: int = ContextRuntimeConfig.setting("n_batch").fallback
_N_UBATCH: int = ContextRuntimeConfig.setting("n_ubatch").fallback
# libllama reports these non-causal architectures as "decoder" models.
_ENCODER_ONLY_ARCHS = frozenset({
    "bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3", "modern-bert",
    "neo-bert", "t5encoder",
})


def _context_key(local: Any) -> str:
    """A text request's ``context_key``: its own, else :data:`DEFAULT_CONTEXT_KEY`."""
    key = local.context_key if local is not None else None
    return DEFAULT_CONTEXT_KEY if key is None else str(key)


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


@dataclass(eq=False)
class _Run:
    """Engine-side state of one request (hung on ``Request.payload``)."""

    sink: RunSink
    kind: Literal["generate", "embed"]
    n_input: int
    t_arrival: float
    chain: SamplerChain | None = None
    stream: TextStream | None = None
    history: npt.NDArray[np.int32] | None = None
    source: npt.NDArray[np.int32] | None = None
    normalize: bool = True
    t_start: float | None = None
    t_first: float | None = None
    t_last: float | None = None
    prefill_tokens: int = 0
    gaps: list[float] | None = None
    embedding: list[float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    media: MediaPrompt | None = None


@dataclass(eq=False)
class _MediaJob:
    """A request with images waiting for the engine thread to tokenize and encode them."""

    run: _Run
    text: str
    bitmaps: list[Any]
    max_tokens: int
    context_key: str | None
    history: int


class Engine:
    """One loaded model and the thread that runs it. Create with :meth:`Engine.load`."""

    info: ModelInfo

    def __init__(self) -> None:  # use Engine.load
        self._inbox: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle_submitters = threading.Condition(self._lock)
        self._submitting = 0  # callers tokenizing / building chains on the model now
        self._runs: dict[int, Request] = {}
        self._next_id = 1
        self._closed = False
        self._dead: BaseException | None = None
        self._thread: threading.Thread | None = None
        self.name = ""
        self.decode_calls = 0
        self.decoded_tokens = 0
        self.runtime_metrics: RuntimeMetrics | None = None
        self.vision: Vision | None = None
        self._media_jobs: list[_MediaJob] = []
        self._predecoded: dict[int, int] = {}  # id(chunk) -> position decoded up to
        self._indexes: list[int] = []  # logits index of each chunk in the last batch

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def load(
        cls,
        model_path: str,
        config: NativeRuntimeConfig | None = None,
        *,
        chat_template: str | None = None,
        name: str = "",
    ) -> Engine:
        """Load ``model_path`` on a new engine thread; blocks until ready or raises
        ``ModelLoadError`` (or ``ConfigurationError`` for an impossible configuration)."""
        if not os.path.isfile(model_path):
            raise ModelLoadError(f"failed to load model from {model_path}: no such file")
        engine = cls()
        engine.name = name or os.path.basename(model_path)
        raw = config or NativeRuntimeConfig()
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            try:
                engine._open(model_path, raw, chat_template)
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
        return engine

    def _open(self, path: str, cfg: NativeRuntimeConfig, chat_template: str | None) -> None:
        self.config = cfg
        placement = cfg.placement
        gpu = placement.gpu_layers
        devices = list_devices()
        placed = placement_args(placement, devices)
        used = gpu_devices(devices, placement.devices)
        self.offloads = bool(used) and gpu != 0
        if self.offloads and "backend_sampling" in cfg.sampling.fields_set and (
            cfg.sampling.backend_sampling
        ):
            raise ConfigurationError(
                "sampling.backend_sampling=True asks for sampling inside the GPU graph "
                "(experimental in the pinned llama.cpp), which this engine does not do: "
                "samplers run on the host after each decode; leave it unset or set False"
            )
        lease = acquire_residency(cfg.residency, devices, used, offloads=self.offloads)
        try:
            model = LlamaModel(
                path,
                use_mmap=placement.use_mmap,
                use_mlock=placement.use_mlock,
                check_tensors=placement.check_tensors,
                # None lets sipp.native decide (off on AMX CPUs, where repacking crashes)
                extra_bufts=None if placement.no_extra_bufts is None
                else not placement.no_extra_bufts,
                gpu_layers=None if gpu == "auto" else -1 if gpu == "all" else int(gpu),
                **placed,
            )
        except BaseException:
            if lease is not None:
                lease.release()
            raise
        if lease is not None:
            model.on_close(lease.release)
        self.model = model
        try:
            self._open_context(model, cfg, chat_template)
            if cfg.multimodal.projector_path is not None:
                self._open_vision(cfg)
        except BaseException:
            model.close()
            raise

    def _open_vision(self, cfg: NativeRuntimeConfig) -> None:
        info = self.info
        if not info.can_generate or info.model_class != "decoder":
            raise ModelLoadError(
                f"multimodal.projector_path needs a text-generating decoder model; "
                f"{info.path} is a {info.model_class} model"
                + (" with embeddings enabled" if info.embeddings else "")
            )
        vision = Vision(self.model.native, cfg.multimodal, n_batch=info.n_batch,
                        n_ubatch=info.n_ubatch, n_threads=cfg.context.n_threads_batch)
        self.vision = vision
        self.info = replace(info, vision=True, media_marker=vision.marker)

    def _open_context(self, model: LlamaModel, cfg: NativeRuntimeConfig,
                      chat_template: str | None) -> None:
        c = cfg.context
        if model.has_encoder and model.has_decoder:
            model_class: ModelClass = "encoder_decoder"
        elif model.has_encoder or not model.has_decoder or (
            model.architecture in _ENCODER_ONLY_ARCHS
        ):
            model_class = "encoder"
        else:
            model_class = "decoder"
        embeddings = c.embeddings if c.embeddings is not None else model_class == "encoder"
        if model_class == "encoder_decoder":
            if embeddings:
                raise ModelLoadError("encoder-decoder models do not support embedding output")
            if c.n_parallel > 1:
                raise ModelLoadError(
                    f"encoder-decoder models require n_parallel=1 (got context.n_parallel="
                    f"{c.n_parallel})"
                )
        n_par = c.n_parallel
        train = model.n_ctx_train or _N_CTX_PER_SLOT
        n_ctx = c.n_ctx or min(train, _N_CTX_PER_SLOT) * n_par
        cache_mode = "disabled" if (
            model_class != "decoder" or embeddings or model.is_recurrent
            or cfg.cache.mode == "off"
        ) else cfg.cache.mode
        shares = cache_mode in ("live_slot_prefix", "live_slot_and_snapshot")
        kv_unified = c.kv_unified if c.kv_unified is not None else (shares and n_par > 1)
        swa_full = c.swa_full if c.swa_full is not None else (
            model.n_swa > 0 and cache_mode != "disabled")
        n_batch = c.n_batch or _N_BATCH
        n_ubatch = c.n_ubatch or min(_N_UBATCH, n_batch)
        if model_class != "decoder" or embeddings:
            n_ubatch = n_batch  # non-causal / pooled: a whole sequence in one ubatch
            if embeddings and n_par > 1:
                # libllama reserves its pooled-output graph for min(n_ctx, n_ubatch) tokens
                # split evenly over n_seq_max sequences and aborts the process
                # (GGML_ASSERT ggml_can_mul_mat) when they do not divide: use the largest
                # multiple of n_parallel that fits both.
                n_ubatch = n_batch = max(min(n_batch, n_ctx) // n_par * n_par, n_par)
        settings = ContextSettings(
            n_ctx=n_ctx, n_batch=n_batch, n_ubatch=n_ubatch, n_seq_max=n_par,
            n_threads=c.n_threads, n_threads_batch=c.n_threads_batch,
            embeddings=bool(embeddings), pooling=c.pooling, kv_unified=kv_unified,
            swa_full=swa_full, flash_attention=c.flash_attention,
            cache_type_k=c.cache_type_k, cache_type_v=c.cache_type_v,
            offload_kqv=c.offload_kqv, op_offload=c.op_offload,
            no_perf=not cfg.observability.backend_profiling,
            rope_scaling=c.rope_scaling, rope_freq_base=c.rope_freq_base,
            rope_freq_scale=c.rope_freq_scale, yarn_orig_ctx=c.yarn_orig_ctx,
            yarn_ext_factor=c.yarn_ext_factor, yarn_attn_factor=c.yarn_attn_factor,
            yarn_beta_fast=c.yarn_beta_fast, yarn_beta_slow=c.yarn_beta_slow,
        )
        ctx = LlamaContext(model, settings)
        self.ctx = ctx
        # context.warmup: one throw-away BOS/EOS run now, not on the first request
        self.warmup_s: float | None = ctx.warmup() if c.warmup else None
        if cfg.observability.metrics_enabled:
            self.runtime_metrics = RuntimeMetrics()
        per_slot = ctx.n_ctx if (kv_unified or n_par == 1) else ctx.n_ctx // n_par
        self.scheduler = Scheduler(SchedulerConfig.from_runtime(
            cfg, n_ctx_per_slot=per_slot, token_budget=ctx.n_batch,
            reuse_kv=cache_mode != "disabled", cross_slot_copy=kv_unified or n_par == 1,
            partial_kv_edits=not model.native.is_hybrid,
        ))
        self.batch = Batch(ctx, ctx.n_batch)
        self._encode_batch = Batch(ctx, ctx.n_batch) if model_class == "encoder_decoder" \
            else None
        template = chat_template or model.chat_template
        self._template_source = template
        self._template: Any = None
        pooling = ctx.pooling
        embedding_size = model.n_cls_out if pooling == "rank" else model.n_embd
        self.info = ModelInfo(
            path=model.path, architecture=model.architecture, model_class=model_class,
            n_vocab=model.n_vocab, n_ctx=ctx.n_ctx, n_ctx_per_slot=per_slot,
            n_batch=ctx.n_batch, n_ubatch=ctx.n_ubatch, n_parallel=ctx.n_seq_max,
            embeddings=bool(embeddings), pooling=pooling, embedding_size=embedding_size,
            has_chat_template=template is not None, cache_mode=cache_mode,
            kv_unified=kv_unified, swa_full=swa_full,
        )

    def close(self) -> None:
        """Stop the engine thread; pending runs fail with ``EngineClosedError``. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._inbox.put(_CLOSE)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ submission
    def submit_text(self, request: TextRequest, sink: RunSink) -> None:
        """Tokenize, validate and queue a query or chat (raises at once on bad input)."""
        with self._submitter():
            self._submit_text(request, sink)

    def submit_embed(self, request: EmbedRequest, sink: RunSink) -> None:
        """Tokenize and queue one embedding input (raises at once on bad input)."""
        with self._submitter():
            self._submit_embed(request, sink)

    @contextlib.contextmanager
    def _submitter(self) -> Iterator[None]:
        """Keep the model open while a caller thread tokenizes and builds its chain."""
        with self._lock:
            self._check_usable()
            self._submitting += 1
        try:
            yield
        finally:
            with self._lock:
                self._submitting -= 1
                self._idle_submitters.notify_all()

    def _submit_text(self, request: TextRequest, sink: RunSink) -> None:
        info = self.info
        if not info.can_generate:
            raise UnsupportedOperationError(
                f"unsupported operation {request.operation}: the loaded model "
                f"({info.architecture}) does not generate text"
                + (" (embeddings are enabled)" if info.embeddings else "")
            )
        media = request.local.media if request.local is not None else None
        if media and self.vision is None:
            raise UnsupportedOperationError(
                "unsupported operation: local.media needs a vision model loaded with its "
                "projector (multimodal.projector_path on the LocalModelDescriptor config)"
            )
        if media:
            text, bitmaps = self._media_prompt(request, media)
            prompt = np.zeros(0, dtype=np.int32)
        else:
            prompt = self._prompt_tokens(request)
        opts, local = request.options, request.local
        max_tokens = opts.max_tokens if opts.max_tokens is not None else DEFAULT_MAX_TOKENS
        params = resolve_sampling(
            self.config.sampling, local.sampling if local else None,
            temperature=opts.temperature, top_p=opts.top_p,
        )
        grammar = resolve_grammar(local.grammar if local else None,
                                  local.json_schema if local else None)
        override = local.sampling if local else None
        if self.offloads and override is not None and override.backend_sampling and (
            "backend_sampling" in override.fields_set
        ):
            raise InvalidRequestError(
                "local.sampling.backend_sampling=True asks for in-graph GPU sampling, which "
                "this engine does not do (samplers run on the host after each decode)"
            )
        stages = plan_chain(params, n_vocab=self.model.n_vocab, n_ctx=info.n_ctx_per_slot,
                            grammar=grammar,
                            eog_tokens=self.model.eog_tokens if params.ignore_eos else ())
        chain = SamplerChain(self.model, stages)
        source: npt.NDArray[np.int32] | None = None
        if info.model_class == "encoder_decoder":
            if prompt.shape[0] > info.n_batch:
                chain.close()
                raise RequestTooLargeError(
                    f"encoder input has {prompt.shape[0]} tokens but one batch holds at most "
                    f"n_batch={info.n_batch}"
                )
            source = prompt
            prompt = np.array([self.model.decoder_start], dtype=np.int32)
        hist = history_length(params) if not grammar else 0
        if media:
            run = _Run(sink=sink, kind="generate", n_input=0, t_arrival=time.perf_counter(),
                       chain=chain, stream=TextStream(opts.stop))
            if params.n_probs:
                run.extra["logprobs"], run.extra["n_probs"] = [], params.n_probs
            self._queue_media(_MediaJob(run, text, bitmaps, max_tokens,
                                        _context_key(local), hist))
            return
        history = (source if source is not None else prompt)[-hist:] if hist else None
        run = _Run(
            sink=sink, kind="generate",
            n_input=int((source if source is not None else prompt).shape[0]),
            t_arrival=time.perf_counter(), chain=chain,
            stream=TextStream(opts.stop), history=history, source=source,
        )
        if params.n_probs:
            run.extra["logprobs"], run.extra["n_probs"] = [], params.n_probs
        context_key = _context_key(local)
        try:
            self._enqueue(Request(
                request_id=0, prompt_tokens=prompt, max_tokens=max_tokens,
                context_key=context_key, kind="generate", payload=run,
            ), sink)
        except BaseException:
            chain.close()
            raise

    def _submit_embed(self, request: EmbedRequest, sink: RunSink) -> None:
        info = self.info
        if not info.can_embed:
            raise UnsupportedOperationError(
                "unsupported operation embed: the loaded model has no pooled embedding "
                "output (load an embedding model or set context.embeddings=True with a "
                "pooling other than none)"
            )
        tokens = self.model.tokenize(request.input, add_special=True, parse_special=True)
        if tokens.shape[0] == 0:
            raise InvalidRequestError("embed input produced no tokens")
        normalize = True
        if request.local is not None and request.local.normalize is not None:
            normalize = request.local.normalize
        run = _Run(sink=sink, kind="embed", n_input=int(tokens.shape[0]),
                   t_arrival=time.perf_counter(),
                   normalize=normalize and info.pooling != "rank")
        context_key = request.local.context_key if request.local else None
        self._enqueue(Request(request_id=0, prompt_tokens=tokens, kind="embed",
                              context_key=context_key, payload=run), sink)

    def _check_usable(self) -> None:
        if self._dead is not None:
            raise EngineDeadError(f"engine for {self.name} died: {self._dead!r}")
        if self._closed:
            raise EngineClosedError(f"engine for {self.name} is closed")

    def _enqueue(self, request: Request, sink: RunSink) -> None:
        with self._lock:
            self._check_usable()
            request.request_id = self._next_id
            self._next_id += 1
            self.scheduler.add(request)
            self._runs[request.request_id] = request
        rid = request.request_id
        sink.on_cancel(lambda reason: self._cancel(rid, reason))
        self._inbox.put(_WAKE)

    def _cancel(self, request_id: int, reason: str) -> None:
        self.scheduler.cancel(request_id, reason)
        self._inbox.put(_WAKE)

    def _media_prompt(self, request: TextRequest, media: Sequence[Any]) -> tuple[str, list[Any]]:
        """The prompt text with one marker per image, and the decoded images (caller thread:
        bad media raise ``MediaError`` naming ``local.media[i]`` at once)."""
        vision = self.vision
        assert vision is not None
        marker = vision.marker
        if request.operation == "query":
            assert request.prompt is not None
            text = place_markers(request.prompt, len(media), marker)
        else:
            assert request.messages is not None
            messages = marked_messages(request.messages, len(media), marker)
            text = self._render_chat(replace(request, messages=messages))
            place_markers(text, len(media), marker)  # the template kept every marker
        return text, vision.load(media)

    def _queue_media(self, job: _MediaJob) -> None:
        with self._lock:
            if self._dead is not None or self._closed:
                for bitmap in job.bitmaps:
                    bitmap.close()
                assert job.run.chain is not None
                job.run.chain.close()
                self._check_usable()
            self._media_jobs.append(job)
        self._inbox.put(_WAKE)

    def _admit_media(self) -> None:
        """Tokenize and encode queued image requests, then hand them to the scheduler
        (engine thread)."""
        with self._lock:
            jobs, self._media_jobs = self._media_jobs, []
        vision = self.vision
        for job in jobs:
            run = job.run
            assert vision is not None and run.chain is not None
            model = self.model
            try:
                try:
                    prepared = vision.prepare(job.text, job.bitmaps,
                                              bos=model.bos if model.add_bos else None)
                finally:
                    for bitmap in job.bitmaps:
                        bitmap.close()
                run.media = prepared
                run.n_input = int(prepared.tokens.shape[0])
                if job.history:
                    hist = prepared.tokens[-job.history:]
                    run.history = hist[hist < model.n_vocab]
                self._enqueue(Request(
                    request_id=0, prompt_tokens=prepared.tokens, max_tokens=job.max_tokens,
                    context_key=job.context_key, kind="generate", payload=run,
                    media_spans=prepared.bounds,
                ), run.sink)
            except SippError as exc:
                run.chain.close()
                run.sink.fail(exc)

    def _prompt_tokens(self, request: TextRequest) -> npt.NDArray[np.int32]:
        model = self.model
        if request.operation == "query":
            assert request.prompt is not None
            tokens = model.tokenize(request.prompt, add_special=model.add_bos,
                                    parse_special=True)
        else:
            text = self._render_chat(request)
            tokens = model.tokenize(text, add_special=False, parse_special=True)
            if model.add_bos and (tokens.shape[0] == 0 or int(tokens[0]) != model.bos):
                tokens = np.concatenate([np.array([model.bos], dtype=np.int32), tokens])
        if tokens.shape[0] == 0:
            raise InvalidRequestError("prompt produced no tokens (empty prompt)")
        return tokens

    def _render_chat(self, request: TextRequest) -> str:
        if self._template_source is None:
            raise UnsupportedOperationError(
                "unsupported operation chat: loaded model has no chat template; call "
                "query() with a raw prompt instead, or pass chat_template= on the descriptor"
            )
        if self._template is None:
            from sipp.engine.chat_template import ChatTemplate

            self._template = ChatTemplate(
                self._template_source,
                bos_token=self.model.token_text(self.model.bos),
                eos_token=self.model.token_text(self.model.eos),
            )
        assert request.messages is not None
        text = str(self._template.render(request.messages, add_generation_prompt=True))
        if not text:
            raise UnsupportedOperationError(
                "unsupported operation chat: model chat template did not produce a prompt"
            )
        return text

    # ------------------------------------------------------------------ engine thread
    def _run_loop(self) -> None:
        try:
            while True:
                with self._lock:
                    busy = self.scheduler.has_work or bool(self._media_jobs)
                command = self._inbox.get() if not busy else _WAKE
                closing = command == _CLOSE
                while not closing:
                    try:
                        closing = self._inbox.get_nowait() == _CLOSE
                    except queue.Empty:
                        break
                if closing:
                    self._shutdown(EngineClosedError(f"engine for {self.name} was closed"))
                    return
                self.step()
        except BaseException as exc:  # the engine is dead: nothing may hang
            _log.exception("engine thread for %s died", self.name)
            self._dead = exc
            self._shutdown(EngineDeadError(f"engine for {self.name} died: {exc!r}"))

    def _shutdown(self, error: EngineError) -> None:
        with self._lock:
            self._closed = True
            try:
                self.scheduler.abort_all(RequestStatus.FINISHED_ERROR)
            except Exception:  # keep failing the runs even if the scheduler is broken
                _log.exception("scheduler abort failed")
            runs, self._runs = list(self._runs.values()), {}
            jobs, self._media_jobs = self._media_jobs, []
        for job in jobs:
            job.run.sink.fail(error)
            for bitmap in job.bitmaps:
                bitmap.close()
            if job.run.chain is not None:
                job.run.chain.close()
        for request in runs:
            run: _Run = request.payload  # type: ignore[assignment]
            run.sink.fail(error)
            if run.chain is not None:
                run.chain.close()
        with self._lock:  # no caller may still be using the model
            self._idle_submitters.wait_for(lambda: self._submitting == 0)
        try:
            if self.vision is not None:
                self.vision.close()
            self.ctx.close()
            self.model.close()
        except Exception:
            _log.exception("closing the native context failed")

    def step(self) -> None:
        """One scheduler step on the engine thread: KV ops, one decode, sampling, results."""
        if self._media_jobs:
            self._admit_media()
        with self._lock:
            out = self.scheduler.schedule()
        for request in out.finished:
            self._complete(request)
        if out.shifted and self.runtime_metrics is not None:
            self.runtime_metrics.inc("context_shifts", len(out.shifted))
        self._apply_kv_ops(out)
        if not out.chunks:
            return
        now = time.perf_counter()
        for chunk in out.chunks:
            run: _Run = chunk.request.payload  # type: ignore[assignment]
            if run.t_start is None:
                run.t_start = now
                if self.runtime_metrics is not None:
                    self.runtime_metrics.record_admission(
                        chunk.request.num_prompt_tokens, chunk.request.num_cached_tokens)
                    run.gaps = []
            if run.source is not None and chunk.start_pos == 0:
                self._encode(run.source, chunk.slot)
        decoded = self._decode(out)
        if decoded is not None:
            self._sample(decoded)

    def _apply_kv_ops(self, out: SchedulerOutput) -> None:
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
                if not ctx.seq_restore(op.slot, op.data):
                    raise EngineError(f"restoring a KV snapshot into slot {op.slot} failed")
            elif isinstance(op, SnapshotSave):
                data = ctx.seq_save(op.slot)
                with self._lock:
                    self.scheduler.snapshot_saved(op.key, op.n_tokens, data)

    def _encode(self, source: npt.NDArray[np.int32], slot: int) -> None:
        batch = self._encode_batch
        assert batch is not None
        n = source.shape[0]
        batch.token[:n] = source
        batch.pos[:n] = np.arange(n, dtype=np.int32)
        batch.seq[:n] = slot
        batch.logits[:n] = 0
        batch.set_size(n)
        self.ctx.encode(batch)

    def _fill(self, out: SchedulerOutput) -> list[int]:
        """Write ``out.chunks`` into the batch; return the logits index of each chunk.
        Leading positions already decoded with their images (:meth:`_predecode`) are
        skipped."""
        batch = self.batch
        tok, pos, seq, logits = batch.token, batch.pos, batch.seq, batch.logits
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
                logits[offset:end] = 0
                logits[end - 1] = chunk.sample
            indexes.append(end - 1)
            offset = end
        batch.set_size(offset)
        return indexes

    def _decode(self, out: SchedulerOutput) -> SchedulerOutput | None:
        try:
            return self._decode_step(out)
        finally:
            self._predecoded.clear()

    def _decode_step(self, out: SchedulerOutput) -> SchedulerOutput | None:
        while True:
            rc = self._predecode(out) if self.vision is not None else 0
            if rc == 0:
                self._indexes = self._fill(out)
                if self.batch.native.n_tokens:
                    rc = self.ctx.decode(self.batch)
                    self.decode_calls += 1
            if rc == 0:
                self.decoded_tokens += out.n_tokens
                if self.runtime_metrics is not None:
                    self.runtime_metrics.record_decode(len(out.chunks), out.n_tokens)
                return out
            if rc != 1:
                if rc < -1:
                    raise EngineError(f"llama_decode failed fatally (status={rc})")
                self._fail_chunks(out, f"llama_decode failed (status={rc}, "
                                       f"n_tokens={out.n_tokens})")
                return None
            with self._lock:
                retry = self.scheduler.handle_kv_full(out)
            if retry is None:
                self._fail_chunks(out, "KV cache is full even for a single request; "
                                       "raise context.n_ctx")
                return None
            for request in retry.preempted:
                run: _Run = request.payload  # type: ignore[assignment]
                run.extra["preemptions"] = run.extra.get("preemptions", 0) + 1
            if self.runtime_metrics is not None and retry.preempted:
                self.runtime_metrics.inc("preemptions", len(retry.preempted))
            self._apply_kv_ops(retry)
            if not retry.chunks:
                return None
            out = retry

    def _predecode(self, out: SchedulerOutput) -> int:
        """Decode every image of this step (and the text before it) ahead of the batch, in
        position order: a batch carries either tokens or embeddings. Returns a decode
        status; progress survives a KV-full retry of the same step."""
        for chunk in out.chunks:
            run: _Run = chunk.request.payload  # type: ignore[assignment]
            media = run.media
            if media is None:
                continue
            start = chunk.start_pos
            last = media.last_image_end(start, start + chunk.n_tokens)
            done = self._predecoded.get(id(chunk), start)
            for a, b, span in media.segments(done, last) if last > done else ():
                if span is None:
                    batch = self.batch
                    n = b - a
                    batch.token[:n] = chunk.tokens[a - start:b - start]
                    batch.pos[:n] = np.arange(a, b, dtype=np.int32)
                    batch.seq[:n] = chunk.slot
                    batch.logits[:n] = 0
                    batch.set_size(n)
                    rc = self.ctx.decode(batch)
                else:
                    rc = self._decode_image(span, chunk.slot)
                self.decode_calls += 1
                if rc != 0:
                    return rc
                self._predecoded[id(chunk)] = b
        return 0

    def _decode_image(self, span: Any, slot: int) -> int:
        from sipp.native import DecodeAbortedError, InvalidBatchError

        assert self.vision is not None
        try:
            self.vision.decode_span(self.ctx.native, span, slot)
        except KvCacheFullError:
            return 1
        except DecodeAbortedError:
            return 2
        except InvalidBatchError:
            return -1
        return 0

    def _fail_chunks(self, out: SchedulerOutput, message: str) -> None:
        finished: dict[int, FinishReason] = {c.request.request_id: "error" for c in out.chunks}
        for chunk in out.chunks:
            chunk.request.error = message
        with self._lock:
            done = self.scheduler.update_from_output({}, finished)
        for request in done:
            self._complete(request)

    def _sample(self, out: SchedulerOutput) -> None:
        ctx, model = self.ctx, self.model
        sampled: dict[int, int] = {}
        finished: dict[int, FinishReason] = {}
        emitted: list[tuple[_Run, str]] = []
        now = time.perf_counter()
        for chunk, index in zip(out.chunks, self._indexes, strict=True):
            if not chunk.sample:
                continue
            request = chunk.request
            run: _Run = request.payload  # type: ignore[assignment]
            if run.kind == "embed":
                run.embedding = self._read_embedding(chunk.slot, run.normalize)
                run.t_first = now
                continue
            chain = run.chain
            assert chain is not None and run.stream is not None
            if run.history is not None:
                for token in run.history.tolist():
                    chain.accept(token)
                run.history = None
            token = chain.sample(ctx, index)
            if run.t_first is None:
                run.t_first = now
            elif run.gaps is not None and run.t_last is not None:
                run.gaps.append(now - run.t_last)
            run.t_last = now
            if model.is_eog(token):
                finished[request.request_id] = "stop"
                continue
            sampled[request.request_id] = token
            if "n_probs" in run.extra:  # sampling.n_probs
                run.extra["logprobs"].append(ctx.top_logprobs(index, run.extra["n_probs"], token))
            text = run.stream.feed(model.piece(token))
            if run.stream.stopped:
                finished[request.request_id] = "stop"
            emitted.append((run, text))
        with self._lock:
            done = self.scheduler.update_from_output(sampled, finished)
        for run, text in emitted:
            run.sink.push(text, 1)
        for request in done:
            self._complete(request)
        if self.runtime_metrics is not None:
            self.runtime_metrics.set_gauge("requests_running", self.scheduler.num_running)
            self.runtime_metrics.set_gauge("requests_queued", self.scheduler.num_waiting)

    def _read_embedding(self, slot: int, normalize: bool) -> list[float]:
        vec = self.ctx.embedding(slot)
        if normalize:
            norm = math.sqrt(float(np.dot(vec.astype(np.float64), vec.astype(np.float64))))
            if norm > 0:
                vec = (vec / norm).astype(np.float32)
        return [float(v) for v in vec.tolist()]

    def _complete(self, request: Request) -> None:
        with self._lock:
            self._runs.pop(request.request_id, None)
        run: _Run = request.payload  # type: ignore[assignment]
        if run.chain is not None:
            run.chain.close()
        status = request.status
        if self.runtime_metrics is not None:
            now = time.perf_counter()
            self.runtime_metrics.record_finish(
                status.finish_reason or "error",
                generated_tokens=len(request.output_tokens),
                ttft_s=(run.t_first - run.t_arrival) if run.t_first is not None else None,
                e2e_s=now - run.t_arrival,
                inter_token_s=run.gaps or (),
            )
        if status is RequestStatus.FINISHED_ERROR:
            run.sink.fail(EngineError(request.error or "request failed in the engine"))
            return
        stats = self._local_stats(request, run)
        usage = {"input_tokens": run.n_input, "output_tokens": len(request.output_tokens),
                 "total_tokens": run.n_input + len(request.output_tokens)}
        if run.kind == "embed":
            if run.embedding is None:  # cancelled before it ran
                from sipp.errors import CancelledError

                run.sink.fail(CancelledError(f"request cancelled ({request.error})"))
                return
            run.sink.complete({"values": run.embedding, "usage": usage, "local_stats": stats,
                               "pooling": self.info.pooling, "normalized": run.normalize})
            return
        stream = run.stream
        assert stream is not None
        if status is not RequestStatus.FINISHED_CANCELLED:
            tail = stream.finish()
            if tail:
                run.sink.push(tail, 0)
        reason = status.finish_reason or "stop"
        payload: dict[str, Any] = {"text": stream.text, "finish_reason": reason,
                                   "usage": usage, "local_stats": stats}
        if "n_probs" in run.extra:
            payload["logprobs"] = self._logprobs(run.extra["logprobs"])
        run.sink.complete(payload)

    def _logprobs(self, raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``sampling.n_probs`` results with each token's text."""
        def text(token: int) -> str:
            return self.model.piece(token).decode("utf-8", "replace")

        return [{"token": e["token"], "text": text(e["token"]), "logprob": e["logprob"],
                 "top_logprobs": [{"token": t, "text": text(t), "logprob": lp}
                                  for t, lp in e["top"]]} for e in raw]

    def _local_stats(self, request: Request, run: _Run) -> dict[str, Any]:
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

        def rate(n: int, ms: float) -> float | None:
            return n * 1000.0 / ms if n > 0 and ms > 0 else None

        return {
            "input_tokens": run.n_input,
            "output_tokens": n_out,
            "cache_mode": self.info.cache_mode,
            "cache_source": request.cache_source,
            "cache_hits": cached,
            "cached_tokens": cached,
            "prefill_tokens": prefill_tokens,
            "ttft_ms": (first - run.t_arrival) * 1000.0 if run.t_first else None,
            "inter_token_ms": decode_ms / (n_out - 1) if n_out > 1 else None,
            "e2e_ms": e2e_ms,
            "prefill_ms": prefill_ms,
            "decode_ms": decode_ms,
            "prefill_tokens_per_second": rate(prefill_tokens, prefill_ms),
            "decode_tokens_per_second": rate(n_out - 1, decode_ms),
            "e2e_tokens_per_second": rate(n_out, e2e_ms),
            "preemptions": request.num_preemptions,
            "context_shifts": request.num_context_shifts,
            **self._image_stats(run),
        }

    @staticmethod
    def _image_stats(run: _Run) -> dict[str, int]:
        media = run.media
        if media is None:
            return {}
        return {"images": len(media.spans), "images_encoded": media.images_encoded,
                "images_cached": media.images_cached,
                "image_tokens": sum(span.end - span.start for span in media.spans)}

    # ------------------------------------------------------------------ introspection
    def slot_states(self) -> Sequence[tuple[str, int, str | None]]:
        with self._lock:
            return [(str(s), n, k) for s, n, k in self.scheduler.slot_states()]

    def metrics(self) -> dict[str, Any]:
        """Runtime metrics (``observability.runtime_metrics``): counters, gauges and
        histograms, the scheduler's statistics, and llama.cpp perf counters when
        ``backend_profiling`` is on."""
        with self._lock:
            scheduler = self.scheduler.stats.as_dict()
            running, queued = self.scheduler.num_running, self.scheduler.num_waiting
        out: dict[str, Any] = (
            self.runtime_metrics.snapshot() if self.runtime_metrics is not None else {}
        )
        out["scheduler"] = scheduler
        out["requests_running"], out["requests_queued"] = running, queued
        out["decode_calls"], out["decoded_tokens"] = self.decode_calls, self.decoded_tokens
        if self.vision is not None:
            cache = self.vision.cache
            out["images_encoded"], out["images_cached"] = cache.images_encoded, cache.images_cached
        if self.config.observability.backend_profiling and not self._closed:
            out["backend"] = self.ctx.perf()
        return out
