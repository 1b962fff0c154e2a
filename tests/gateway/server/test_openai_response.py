"""OpenAI SSE chunks as clients parse them: every text chunk is one JSON object with the
head fields, the choice index and the exact text (quotes, escapes, non-ASCII, emoji)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sipp.gateway.server.openai_response import ChunkStream
from sipp.types import TokenBatch

TEXTS = ["Hello", ' "quoted" \\ back\nslash', "caf\u00e9 \u2028 \U0001f600", "</script>"]


def _parse(frame: bytes) -> Any:
    assert frame.startswith(b"data: ") and frame.endswith(b"\n\n")
    return json.loads(frame[len(b"data: "):])


@pytest.mark.parametrize("chat", [True, False])
@pytest.mark.parametrize("index", [0, 3])
def test_text_chunks_carry_the_head_the_index_and_the_exact_text(chat: bool,
                                                                 index: int) -> None:
    stream = ChunkStream('chatcmpl-"7"', "m\u00f6del", chat, include_usage=False, index=index)
    frames = [stream.token(TokenBatch(text, 1, i, "r", ())) for i, text in enumerate(TEXTS)]
    chunks = [_parse(frame) for frame in frames]
    for number, (chunk, text) in enumerate(zip(chunks, TEXTS, strict=True)):
        assert {k: chunk[k] for k in ("id", "object", "model")} == {
            "id": 'chatcmpl-"7"', "model": "m\u00f6del",
            "object": "chat.completion.chunk" if chat else "text_completion"}
        assert isinstance(chunk["created"], int)
        (choice,) = chunk["choices"]
        assert choice["index"] == index and choice["finish_reason"] is None
        assert choice["logprobs"] is None
        if chat:
            expected = {"content": text, **({"role": "assistant"} if number == 0 else {})}
            assert choice["delta"] == expected
        else:
            assert choice["text"] == text


def test_a_held_back_token_sends_no_frame_after_the_first() -> None:
    stream = ChunkStream("id", "m", True, include_usage=False)
    assert _parse(stream.token(TokenBatch("", 1, 0, "r", ())))["choices"][0]["delta"] == {
        "content": "", "role": "assistant"}
    assert stream.token(TokenBatch("", 1, 1, "r", ())) == b""
