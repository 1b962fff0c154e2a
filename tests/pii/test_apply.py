"""Applying a policy to one request: what an endpoint receives, and RestoringSink."""

from __future__ import annotations

from sipp.pii import PiiPolicy
from sipp.pii.apply import RestoringSink, mask_embed_inputs, mask_text_request
from sipp.runs import RunSink, SippTextRun
from sipp.types import ChatMessage, EndpointRef

REF = EndpointRef.provider("p")


def test_local_endpoints_are_left_alone_unless_asked() -> None:
    messages = [ChatMessage("user", "mail a@example.com")]
    session, _, sent = mask_text_request(PiiPolicy(), "local", None, messages)
    assert session is None and sent == tuple(messages)
    session, _, sent = mask_text_request(PiiPolicy(local=True), "local", None, messages)
    assert session is not None and sent == (ChatMessage("user", "mail <EMAIL_1>"),)
    assert mask_embed_inputs(PiiPolicy(), "local", ["a@example.com"]) == ["a@example.com"]
    assert mask_embed_inputs(PiiPolicy(), "gateway", ["a@example.com"]) == ["<EMAIL_1>"]


def test_masking_keeps_tool_fields_and_shares_placeholders() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [
        ChatMessage("user", "I am a@example.com"),
        ChatMessage("assistant", "", tool_calls=[call]),
        ChatMessage("tool", "found a@example.com", tool_call_id="c1"),
    ]
    session, prompt, sent = mask_text_request(PiiPolicy(), "provider", None, messages)
    assert session is not None and prompt is None and sent is not None
    assert [m.content for m in sent] == ["I am <EMAIL_1>", "", "found <EMAIL_1>"]
    assert sent[1] is messages[1] and sent[2].tool_call_id == "c1"


def test_nothing_found_needs_no_session() -> None:
    session, prompt, _ = mask_text_request(PiiPolicy(), "provider", "hello", None)
    assert session is None and prompt == "hello"


def test_restoring_sink_restores_batches_and_text_and_forwards_cancel() -> None:
    session, prompt, _ = mask_text_request(PiiPolicy(), "provider", "to b@example.com", None)
    assert session is not None and prompt == "to <EMAIL_1>"
    sink = RunSink(REF, wants_tokens=True, request_id="r1")
    restoring = RestoringSink(sink, session)
    cancelled: list[str] = []
    restoring.on_cancel(cancelled.append)
    run = SippTextRun(sink)
    for piece in ["ok <EM", "AIL_", "1> and <", "x"]:
        restoring.push(piece, 1)
    restoring.complete({"text": "ok <EMAIL_1> and <x", "finish_reason": "stop",
                        "usage": None, "local_stats": None})
    batches = list(run.tokens())
    assert [b.text for b in batches] == ["ok ", "", "b@example.com and ", "<x"]
    assert [b.token_count for b in batches] == [1, 1, 1, 1]
    assert run.result(1)["text"] == "ok b@example.com and <x"
    other = RunSink(REF, wants_tokens=False)
    RestoringSink(other, session).on_cancel(cancelled.append)
    assert SippTextRun(other).cancel("caller_cancelled")
    assert cancelled == ["caller_cancelled"]
