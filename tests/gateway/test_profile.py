"""The gateway wire profile: request decoding, response and SSE encoding, error bodies."""

from __future__ import annotations

import json

import pytest

from sipp.errors import (
    AuthenticationError,
    EndpointError,
    InvalidRequestError,
    QueueFullError,
    RateLimitedError,
    TargetNotFoundError,
)
from sipp.gateway import profile
from sipp.runs import RunSink, SippTextRun
from sipp.transports.sse import SseParser
from sipp.types import ChatMessage, EndpointRef, SippTextOptions


def test_query_body_round_trip() -> None:
    body = profile.encode_query_body("t", "hi", SippTextOptions(max_tokens=4, top_p=0.5,
                                                              stop=["x"]), stream=True)
    decoded = profile.decode_query_body(json.dumps(body).encode())
    assert decoded.target == "t" and decoded.prompt == "hi" and decoded.stream is True
    assert decoded.options == SippTextOptions(max_tokens=4, top_p=0.5, stop=["x"])


def test_chat_and_embed_bodies_decode() -> None:
    chat = profile.decode_chat_body({"model": "t", "messages": [
        {"role": "system", "content": "s"}, {"role": "user", "content": "u"}]})
    assert chat.messages == (ChatMessage("system", "s"), ChatMessage("user", "u"))
    assert chat.stream is False and chat.options == SippTextOptions()
    embed = profile.decode_embed_body('{"model": "t", "input": "x"}')
    assert (embed.target, embed.input) == ("t", "x")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("{", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ({"prompt": "x"}, "'model'"),
        ({"model": "t"}, "'prompt'"),
        ({"model": "t", "prompt": "x", "max_tokens": "5"}, "'max_tokens'"),
        ({"model": "t", "prompt": "x", "max_tokens": 0}, "max_tokens"),
        ({"model": "t", "prompt": "x", "temperature": True}, "'temperature'"),
        ({"model": "t", "prompt": "x", "top_p": 2}, "top_p"),
        ({"model": "t", "prompt": "x", "stop": "x"}, "'stop'"),
        ({"model": "t", "prompt": "x", "stream": "yes"}, "'stream'"),
        ({"model": "t", "prompt": "x", "grammar": "g"}, "unknown field 'grammar'"),
    ],
)
def test_bad_query_bodies_name_the_field(body: object, field: str) -> None:
    with pytest.raises(InvalidRequestError, match=field) as info:
        profile.decode_query_body(body if isinstance(body, str) else json.dumps(body))
    assert info.value.http_status == 400


@pytest.mark.parametrize(
    ("messages", "field"),
    [
        ([], "'messages'"),
        ([{"role": "robot", "content": "x"}], r"messages\[0\].role"),
        ([{"role": "user", "content": "x", "tool_call_id": "c"}], r"messages\[0\]"),
        ([{"role": "user", "content": "x", "audio": 1}], r"messages\[0\]"),
        ([{"role": "user"}], r"messages\[0\]"),
        ([{"role": "user", "content": 3}], r"messages\[0\].content"),
    ],
)
def test_bad_chat_messages(messages: object, field: str) -> None:
    with pytest.raises(InvalidRequestError, match=field):
        profile.decode_chat_body({"model": "t", "messages": messages})


def test_tools_and_tool_turns_round_trip_through_the_chat_body() -> None:
    from sipp.tools import ToolChoice, ToolRequest, parse_tools
    from sipp.types import ChatMessage

    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = (ChatMessage("user", "hi"), ChatMessage("assistant", "", [call]),
                ChatMessage("tool", "42", tool_call_id="c1", name="f"))
    tools = ToolRequest(parse_tools([{"type": "function", "function": {"name": "f"}}]),
                        ToolChoice("required", "f"), parallel=False)
    body = profile.encode_chat_body("t", messages, tools=tools)
    decoded = profile.decode_chat_body(json.dumps(body))
    assert decoded.messages == messages
    assert decoded.tools == tools
    response = profile.text_response_body("t", {"text": "", "finish_reason": "tool_calls",
                                                "usage": None, "tool_calls": [call]})
    result = profile.decode_text_response(json.dumps(response))
    assert (result.finish_reason, result.tool_calls) == ("tool_calls", [call])
    event = profile.token_event("", 3, [{"index": 0, "function": {"arguments": "{}"}}])
    name, data = event.decode().split("\n")[0][7:], event.decode().split("\n")[1][6:]
    token = profile.decode_stream_event(name, data)
    assert token == profile.StreamToken("", 3, ({"index": 0, "function": {"arguments": "{}"}},))


def test_extra_fields_collected_when_allowed_and_cannot_override_when_encoding() -> None:
    decoded = profile.decode_embed_body({"model": "t", "input": "x", "dims": 8},
                                        allow_extra=True)
    assert decoded.extra == {"dims": 8}
    with pytest.raises(InvalidRequestError, match="cannot override typed field: model"):
        profile.encode_embed_body("t", "x", extra={"model": "other"})


def test_finite_responses_round_trip() -> None:
    usage = {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3}
    body = profile.text_response_body("t", {"text": "hi", "finish_reason": "length",
                                            "usage": usage}, id="r")
    assert body == {"id": "r", "model": "t", "text": "hi", "finish_reason": "length",
                    "usage": usage}
    decoded = profile.decode_text_response(json.dumps(body))
    assert (decoded.text, decoded.finish_reason, decoded.usage) == ("hi", "length", usage)
    emb = profile.embedding_response_body("t", {"values": [1, 0.5], "usage": None})
    assert emb == {"id": "response", "model": "t", "embedding": [1.0, 0.5]}
    assert profile.decode_embedding_response(emb).values == [1.0, 0.5]
    with pytest.raises(EndpointError, match="not numeric"):
        profile.decode_embedding_response({"embedding": [1, "x"]})


def test_sse_events_encode_and_decode() -> None:
    frames = (profile.token_event("a", 0) + profile.usage_event(
        {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2})
        + profile.done_event("stop") + profile.error_event(QueueFullError("busy")))
    events = [profile.decode_stream_event(e.event, e.data) for e in SseParser().feed(frames)]
    assert events[0] == profile.StreamToken("a", 0)
    assert isinstance(events[1], profile.StreamUsage)
    assert events[2] == profile.StreamDone("stop")
    assert isinstance(events[3], profile.StreamError)
    assert isinstance(events[3].error, QueueFullError)


def test_text_stream_helper_turns_a_run_into_frames() -> None:
    sink = RunSink(EndpointRef.local("m"), wants_tokens=True)
    sink.push("He", 1)
    sink.push("y", 1)
    sink.complete({"text": "Hey", "finish_reason": "stop", "usage": None, "local_stats": None})
    frames = b"".join(profile.text_stream(SippTextRun(sink)))
    names = [e.event for e in SseParser().feed(frames)]
    assert names == ["token", "token", "done"]
    failed = RunSink(EndpointRef.local("m"), wants_tokens=True)
    failed.fail(AuthenticationError("bad token"))
    events = SseParser().feed(b"".join(profile.text_stream(SippTextRun(failed))))
    assert [e.event for e in events] == ["error"]
    assert json.loads(events[0].data) == {"error": {"code": "authentication",
                                                    "message": "bad token"}}


def test_error_bodies() -> None:
    assert profile.error_response(TargetNotFoundError("no such target")) == (
        404, {"error": {"code": "target_not_found", "message": "no such target"}})
    assert profile.error_response(RuntimeError("secret detail"))[0] == 500
    assert "secret" not in json.dumps(profile.error_response(RuntimeError("secret detail")))
    err = profile.decode_error_body(429, b'{"error":{"code":"rate_limited","message":"m"}}',
                                    retry_after=2.0)
    assert isinstance(err, RateLimitedError) and err.retry_after == 2.0
    odd = profile.decode_error_body(500, b'{"error":{"code":"execution","message":"m"}}')
    assert isinstance(odd, EndpointError) and odd.code == "execution" and odd.status == 500
