"""Applying a :class:`PiiPolicy` to one request: masked inputs out, a sink that restores.

The client calls :func:`mask_text_request` / :func:`mask_embed_inputs` after it has chosen
the endpoint and before the endpoint sees the request, and hands the endpoint a
:class:`RestoringSink` in place of the run's sink.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sipp.pii.masking import MaskingSession, StreamRestorer
from sipp.pii.policy import PiiPolicy
from sipp.runs import RunSink
from sipp.types import ChatMessage

__all__ = ["RestoringSink", "mask_embed_inputs", "mask_text_request"]


def mask_text_request(
    policy: PiiPolicy | None,
    endpoint_kind: str,
    prompt: str | None,
    messages: Sequence[ChatMessage] | None,
) -> tuple[MaskingSession | None, str | None, tuple[ChatMessage, ...] | None]:
    """``(session, prompt, messages)`` to send; session is None when nothing applies."""
    msgs = tuple(messages) if messages is not None else None
    if policy is None or not policy.applies_to(endpoint_kind):
        return None, prompt, msgs
    session = policy.session()
    texts = ([prompt] if prompt is not None else []) + [m.content or "" for m in msgs or ()]
    masked = policy.check(session, texts)
    if prompt is not None:
        prompt, masked = masked[0], masked[1:]
    if msgs is not None:
        msgs = tuple(
            m if text == m.content else replace(m, content=text)
            for m, text in zip(msgs, masked, strict=True)
        )
    return (session if session.placeholders else None), prompt, msgs


def mask_embed_inputs(
    policy: PiiPolicy | None, endpoint_kind: str, inputs: Sequence[str]
) -> list[str]:
    """Embedding inputs to send (nothing comes back to restore)."""
    if policy is None or not policy.applies_to(endpoint_kind):
        return list(inputs)
    session = policy.session()
    return policy.check(session, list(inputs))


class RestoringSink(RunSink):
    """A run sink that restores placeholders in token batches and the final text before
    they reach the caller's run (``target``)."""

    __slots__ = ("_restorer", "_session", "_target")

    def __init__(self, target: RunSink, session: MaskingSession) -> None:
        super().__init__(target.endpoint, wants_tokens=target.wants_tokens)
        self._target = target
        self._session = session
        self._restorer: StreamRestorer = session.stream()
        # cancelling the caller's run cancels the work behind this sink
        target.on_cancel(self._forward_cancel)

    def _forward_cancel(self, reason: str) -> None:
        self._request_cancel(reason)

    def push(
        self, text: str, token_count: int, tool_calls: tuple[dict[str, Any], ...] = ()
    ) -> None:
        if not self.wants_tokens or self._target.finished:
            return
        deltas = tuple(_restore_strings(self._session, call) for call in tool_calls)
        self._target.push(self._restorer.feed(text), token_count, deltas)

    def complete(self, payload: dict[str, Any]) -> None:
        if self.wants_tokens:
            rest = self._restorer.flush()
            if rest:
                self._target.push(rest, 0)
        restored = dict(payload)
        if isinstance(restored.get("text"), str):
            restored["text"] = self._session.restore(restored["text"])
        if restored.get("tool_calls"):
            restored["tool_calls"] = _restore_strings(self._session, restored["tool_calls"])
        super().complete(payload)
        self._target.complete(restored)

    def fail(self, error: BaseException) -> None:
        super().fail(error)
        self._target.fail(error)


def _restore_strings(session: MaskingSession, value: Any) -> Any:
    """``value`` (JSON-like) with placeholders restored in every string."""
    if isinstance(value, str):
        return session.restore(value)
    if isinstance(value, dict):
        return {key: _restore_strings(session, item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_restore_strings(session, item) for item in value)
    return value
