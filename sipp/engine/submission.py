"""Submission: a validated text or embed request turned into a scheduler request, on the
caller's thread (chat template, tokenizing, sampling plan, grammar compilation).

Nothing here touches the ``llama_context`` or the scheduler: the work a request costs
before it can queue runs on the thread that submits it, never on the engine thread.
Requests with images become a :class:`~sipp.engine.media_queue.MediaJob` instead (their
tokenizing and image encoding need the engine thread).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt

from sipp.config import (
    DEFAULT_CONTEXT_KEY,
    DEFAULT_MAX_TOKENS,
    SamplingRuntimeConfig,
    SpeculativeConfig,
)
from sipp.documents import with_documents
from sipp.engine.chat_template import ChatTemplate
from sipp.engine.media import Vision, marked_messages, place_markers
from sipp.engine.media_queue import MediaJob
from sipp.engine.runstate import EngineRequest, RunState
from sipp.engine.sampling import (
    Sampler,
    history_length,
    plan_chain,
    resolve_grammar,
    resolve_sampling,
)
from sipp.engine.text import TextStream
from sipp.engine.tools import ToolPlan, plan_tools
from sipp.engine.tools.sink import ToolCallSink
from sipp.errors import (
    InvalidRequestError,
    RequestTooLargeError,
    SippError,
    UnsupportedOperationError,
)
from sipp.native import LlamaModel
from sipp.requests import EmbedRequest, RunSink, TextRequest
from sipp.scheduler import Request

__all__ = ["Submission"]

Tokens = npt.NDArray[np.int32]


class Submission:
    """Prepares requests for one loaded model (safe from any thread while it is open)."""

    def __init__(self, model: LlamaModel, info: Any, sampling: SamplingRuntimeConfig, *,
                 template: str | None, vision: Vision | None, offloads: bool,
                 speculative: SpeculativeConfig | None = None,
                 can_speculate: bool = False, has_draft: bool = False) -> None:
        self.model = model
        self.info = info
        self.sampling = sampling
        self.speculative = speculative or SpeculativeConfig()
        self.can_speculate = can_speculate
        self.has_draft = has_draft
        self.vision = vision
        self.offloads = offloads
        self._template_source = template
        self._template: ChatTemplate | None = None
        bos, eos = model.bos, model.eos
        self._bos = -1 if bos is None else bos
        self._eos = -1 if eos is None else eos
        self._add_bos = model.add_bos
        start = model.decoder_start_token
        self._decoder_start = self._bos if start is None else start

    # ------------------------------------------------------------------ text
    def text(self, request: TextRequest, sink: RunSink) -> EngineRequest | MediaJob:
        """The scheduler request for a query or chat (raises at once on bad input)."""
        info = self.info
        if not info.can_generate:
            raise UnsupportedOperationError(
                f"unsupported operation {request.operation}: the loaded model "
                f"({info.architecture}) does not generate text"
                + (" (embeddings are enabled)" if info.embeddings else "")
            )
        local = request.local
        media = local.media if local is not None else None
        if media and self.vision is None:
            raise UnsupportedOperationError(
                "unsupported operation: local.media needs a vision model loaded with its "
                "projector (multimodal.projector_path on the LocalModelDescriptor config)"
            )
        if media:
            text, bitmaps = self._media_prompt(request, media)
            prompt = np.zeros(0, dtype=np.int32)
        else:
            prompt = self.prompt_tokens(request)
        opts = request.options
        max_tokens = opts.max_tokens if opts.max_tokens is not None else DEFAULT_MAX_TOKENS
        if opts.max_tokens is None and local is not None and local.fill_window:
            # to end of sequence or a full window (no context shift past it)
            max_tokens = max(1, info.n_ctx_per_slot - int(prompt.shape[0]))
        params = resolve_sampling(
            self.sampling, local.sampling if local else None,
            temperature=opts.temperature, top_p=opts.top_p,
        )
        grammar = resolve_grammar(local.grammar if local else None,
                                  local.json_schema if local else None)
        plan = self._tool_plan(request)
        triggers: tuple[str, ...] = ()
        if plan is not None and plan.grammar is not None:
            if grammar is not None:
                raise InvalidRequestError(
                    "tools with tool_choice other than 'none' constrain the output already: "
                    "drop local.grammar / local.json_schema (or set tool_choice='none')"
                )
            grammar, triggers = plan.grammar, plan.triggers
        if plan is not None and plan.parses:
            sink = ToolCallSink(sink, plan.stream())
        override = local.sampling if local else None
        if self.offloads and override is not None and override.backend_sampling and (
            "backend_sampling" in override.fields_set
        ):
            raise InvalidRequestError(
                "local.sampling.backend_sampling=True asks for in-graph GPU sampling, which "
                "this engine does not do (samplers run on the host after each decode)"
            )
        model = self.model
        stages = plan_chain(params, n_vocab=model.n_vocab, n_ctx=info.n_ctx_per_slot,
                            grammar=grammar, grammar_triggers=triggers,
                            eog_tokens=tuple(sorted(model.eog_tokens()))
                            if params.ignore_eos else ())
        source: Tokens | None = None
        if info.model_class == "encoder_decoder":
            if prompt.shape[0] > info.n_batch:
                raise RequestTooLargeError(
                    f"encoder input has {prompt.shape[0]} tokens but one batch holds at most "
                    f"n_batch={info.n_batch}"
                )
            source = prompt
            prompt = np.array([self._decoder_start], dtype=np.int32)
        stream = TextStream(opts.stop)
        hist = history_length(params) if not grammar else 0
        context_key = _context_key(local)
        run = RunState(sink=sink, kind="generate", n_input=0, t_arrival=time.perf_counter(),
                       sampler=Sampler(model, stages), stream=stream, source=source)
        if params.n_probs:
            run.n_probs, run.logprobs = params.n_probs, []
        run.spec = self._speculation(local.speculative if local else None, grammar)
        n_draft = run.spec.max_draft_tokens if run.spec is not None else 0
        if media:
            run.spec = None  # prompts with images do not speculate
            return MediaJob(run, text, bitmaps, max_tokens, context_key, hist)
        fed = source if source is not None else prompt
        run.n_input = int(fed.shape[0])
        run.history = fed[-hist:] if hist else None
        try:
            return Request(request_id=0, prompt_tokens=prompt, max_tokens=max_tokens,
                           context_key=context_key, kind="generate", payload=run,
                           max_draft_tokens=n_draft)
        except BaseException:
            run.release()
            raise

    def _speculation(self, override: SpeculativeConfig | None,
                     grammar: str | None) -> SpeculativeConfig | None:
        """The speculative decoding a request gets, or None: off, a grammar (drafts
        would have to follow it), or a model that cannot drop rejected KV positions."""
        try:
            spec = self.speculative.with_override(override)
        except SippError as exc:
            raise InvalidRequestError(str(exc)) from exc
        if spec.mode == "draft" and not self.has_draft:
            raise InvalidRequestError(
                "local.speculative.mode='draft' needs a model loaded with a draft model "
                "(speculative.draft_model in its runtime config)"
            )
        if spec.mode == "off" or grammar or not self.can_speculate:
            return None
        return spec

    def prompt_tokens(self, request: TextRequest) -> Tokens:
        """The prompt's token ids: a query as given, a chat rendered by the template, with
        exactly one BOS when the model adds one."""
        model = self.model
        if request.operation == "query":
            assert request.prompt is not None
            tokens = _tokens(model.tokenize(request.prompt, add_special=self._add_bos,
                                            parse_special=True))
        else:
            text = self._render_chat(request)
            tokens = _tokens(model.tokenize(text, add_special=False, parse_special=True))
            bos = self._bos
            if self._add_bos and (tokens.shape[0] == 0 or int(tokens[0]) != bos):
                tokens = np.concatenate([np.array([bos], dtype=np.int32), tokens])
        if tokens.shape[0] == 0:
            raise InvalidRequestError("prompt produced no tokens (empty prompt)")
        return tokens

    def _tool_plan(self, request: TextRequest) -> ToolPlan | None:
        """The tool plan of a chat with tools (family from the chat template)."""
        tools = request.tools
        if tools is None or not tools.tools:
            return None
        if request.operation != "chat" or self._template_source is None:
            raise InvalidRequestError("tools need a chat on a model with a chat template")
        return plan_tools(self._template_source, tools.tools, tools.choice,
                          parallel=tools.parallel)

    def _render_chat(self, request: TextRequest) -> str:
        if self._template_source is None:
            raise UnsupportedOperationError(
                "unsupported operation chat: loaded model has no chat template; call "
                "query() with a raw prompt instead, or pass chat_template= on the descriptor"
            )
        template = self._template
        if template is None:
            template = self._template = ChatTemplate(
                self._template_source,
                bos_token=self._token_text(self._bos),
                eos_token=self._token_text(self._eos),
            )
        assert request.messages is not None
        tools = [t.to_dict() for t in request.tools.tools] if request.tools else None
        messages = request.messages
        extra: dict[str, Any] = {}
        if request.documents:
            if template.takes_documents:
                extra["documents"] = [dict(d) for d in request.documents]
            else:
                messages = with_documents(messages, request.documents)
        text = str(template.render(messages, add_generation_prompt=True, tools=tools, **extra))
        if not text:
            raise UnsupportedOperationError(
                "unsupported operation chat: model chat template did not produce a prompt"
            )
        return text

    def _token_text(self, token: int) -> str:
        """A token's text with special tokens rendered (e.g. ``<bos>``); "" for none."""
        if token < 0:
            return ""
        return self.model.token_to_piece(token, special=True).decode("utf-8", "replace")

    def _media_prompt(self, request: TextRequest, media: Sequence[Any]) -> tuple[str, list[Any]]:
        """The prompt text with one marker per image, and the decoded images (bad media
        raise ``MediaError`` naming ``local.media[i]`` at once)."""
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

    # ------------------------------------------------------------------ embed
    def embed(self, request: EmbedRequest, sink: RunSink) -> EngineRequest:
        """The scheduler request for one embedding input (raises at once on bad input)."""
        info = self.info
        if not info.can_embed:
            raise UnsupportedOperationError(
                "unsupported operation embed: the loaded model has no pooled embedding "
                "output (load an embedding model or set context.embeddings=True with a "
                "pooling other than none)"
            )
        tokens = _tokens(self.model.tokenize(request.input, add_special=True,
                                             parse_special=True))
        if tokens.shape[0] == 0:
            raise InvalidRequestError("embed input produced no tokens")
        normalize = True
        if request.local is not None and request.local.normalize is not None:
            normalize = request.local.normalize
        run = RunState(sink=sink, kind="embed", n_input=int(tokens.shape[0]),
                       t_arrival=time.perf_counter(),
                       normalize=normalize and info.pooling != "rank")
        context_key = request.local.context_key if request.local else None
        return Request(request_id=0, prompt_tokens=tokens, kind="embed",
                       context_key=context_key, payload=run)


def _tokens(ids: list[int]) -> Tokens:
    return np.asarray(ids, dtype=np.int32)


def _context_key(local: Any) -> str:
    """A text request's ``context_key``: its own, else :data:`DEFAULT_CONTEXT_KEY`."""
    key = local.context_key if local is not None else None
    return DEFAULT_CONTEXT_KEY if key is None else str(key)
