"""The gateway and provider examples against loopback servers speaking the real formats."""

from __future__ import annotations

from tests.examples.helpers import (
    OPENAI_KEY,
    PROFILE_TOKEN,
    openai_compatible,
    output_lines,
    profile_gateway,
    request_bodies,
    run_example,
)
from tests.providers.loopback import LoopbackServer


def gateway_env(url: str, target: str = "default", token: str = PROFILE_TOKEN) -> dict[str, str]:
    return {"SIPP_GATEWAY_URL": url, "SIPP_GATEWAY_TARGET": target, "SIPP_GATEWAY_TOKEN": token}


def test_gateway_chat_sends_the_profile_chat_body_and_prints_the_reply() -> None:
    with LoopbackServer(profile_gateway) as server:
        proc = run_example("gateway_chat.py", env=gateway_env(server.url, "public-chat"))
    assert proc.stdout == "chat via gateway\n"
    [(path, body)] = request_bodies(server.requests)
    assert path == "/v1/chat"
    assert body["model"] == "public-chat"
    assert body["messages"] == [
        {"role": "system", "content": "Answer concisely."},
        {"role": "user", "content": "Explain gateway inference."},
    ]
    assert body["max_tokens"] == 64 and body["stream"] is False
    assert server.requests[0].headers["authorization"] == f"Bearer {PROFILE_TOKEN}"


def test_gateway_query_prints_finite_then_streamed_text() -> None:
    with LoopbackServer(profile_gateway) as server:
        proc = run_example("gateway_query.py", "Say hi", env=gateway_env(server.url))
    lines = proc.stdout.splitlines()
    assert lines[0] == "finite: 'query via gateway' (stop)"
    assert lines[1] == "streamed: Gateway reply"
    assert lines[2].startswith("[3 batches, finish_reason=stop, usage=")
    assert "'output_tokens': 3" in lines[2]
    bodies = request_bodies(server.requests)
    assert [(path, body["prompt"], body["stream"]) for path, body in bodies] == [
        ("/v1/query", "Say hi", False), ("/v1/query", "Say hi", True)]
    assert server.requests[1].headers["accept"] == "text/event-stream"


def test_gateway_embed_prints_the_vector_length() -> None:
    with LoopbackServer(profile_gateway) as server:
        proc = run_example("gateway_embed.py", "vector me", env=gateway_env(server.url, "embed"))
    assert output_lines(proc) == {"embedding length": "5",
                                  "first values": "[0.5, -0.25, 1.0, 2.0]"}
    assert request_bodies(server.requests) == [
        ("/v1/embed", {"model": "embed", "input": "vector me"})]


def test_gateway_example_surfaces_a_rejected_token_as_an_authentication_error() -> None:
    with LoopbackServer(profile_gateway) as server:
        proc = run_example("gateway_chat.py", env=gateway_env(server.url, token="wrong"),
                           check=False)
    assert proc.returncode == 1
    assert "sipp.errors.AuthenticationError: bad token" in proc.stderr


def test_provider_chat_calls_the_openai_compatible_chat_completions_route() -> None:
    with LoopbackServer(openai_compatible) as server:
        proc = run_example("provider_chat.py", env={
            "OPENAI_BASE_URL": server.url + "/v1", "OPENAI_API_KEY": OPENAI_KEY,
            "OPENAI_MODEL": "local-mock"})
    lines = output_lines(proc)
    assert lines["reply"] == "'provider says: Explain provider inference.'"
    assert lines["finish_reason"] == "stop"
    assert "'total_tokens': 6" in lines["usage"]
    [(path, body)] = request_bodies(server.requests)
    assert path == "/v1/chat/completions"
    assert body["model"] == "local-mock" and body["max_tokens"] == 64
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
