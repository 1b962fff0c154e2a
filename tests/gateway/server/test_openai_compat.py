"""The official ``openai`` package against the OpenAI-compatible routes."""

from __future__ import annotations

import pytest
import requests

from tests.gateway.server.conftest import LIMITED_TOKEN, TOKEN, RunningGateway, Script, auth

openai = pytest.importorskip("openai", reason="the openai package is not installed")


def _client(gw: RunningGateway, token: str = TOKEN) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=token, max_retries=0)


def test_chat_complete_stream_embed(gateway: RunningGateway, script: Script) -> None:
    with _client(gateway) as client:
        chat = client.chat.completions.create(
            model="alpha", max_tokens=8, temperature=0,
            messages=[{"role": "developer", "content": "brief"},
                      {"role": "user", "content": "hello"}])
        assert chat.choices[0].message.content == "Hello"
        assert chat.choices[0].finish_reason == "stop"
        assert chat.usage is not None and chat.usage.total_tokens == 5
        sent = script.requests[-1]
        assert [m.role for m in sent.messages] == ["system", "user"]  # type: ignore[union-attr]
        assert sent.options.max_tokens == 8  # type: ignore[union-attr]

        completion = client.completions.create(model="beta", prompt="long hello", stop="\n")
        assert completion.choices[0].text == "Hello"
        assert completion.choices[0].finish_reason == "length"

        stream = client.chat.completions.create(
            model="alpha", stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "hello"}])
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "Hello"
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 2

        text_stream = client.completions.create(model="alpha", prompt="hello", stream=True)
        assert "".join(c.choices[0].text for c in text_stream) == "Hello"

        single = client.embeddings.create(model="alpha", input="abc")  # base64 by default
        assert single.data[0].embedding == [0.25, -0.5, 3.0]
        many = client.embeddings.create(model="alpha", input=["a", "abcd"],
                                        encoding_format="float")
        assert [d.embedding[2] for d in many.data] == [1.0, 4.0]

        assert [m.id for m in client.models.list()] == ["alpha", "beta"]


def test_policy_and_errors_in_openai_shape(gateway: RunningGateway, script: Script) -> None:
    with _client(gateway, LIMITED_TOKEN) as client:
        assert [m.id for m in client.models.list()] == ["alpha"]
        with pytest.raises(openai.PermissionDeniedError):
            client.chat.completions.create(model="beta",
                                           messages=[{"role": "user", "content": "hi"}])
    with _client(gateway, "wrong") as client, pytest.raises(openai.AuthenticationError):
        client.models.list()
    with _client(gateway) as client:
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="zeta",
                                           messages=[{"role": "user", "content": "hi"}])
        # n choices; the sampling fields reach a provider target unchanged
        two = client.chat.completions.create(
            model="alpha", n=2, seed=7, frequency_penalty=0.5, presence_penalty=-1,
            logit_bias={"42": 5}, messages=[{"role": "user", "content": "hi"}])
        assert [c.index for c in two.choices] == [0, 1]
        assert all(c.message.content == "Hello" for c in two.choices)
        sent = script.requests[-1]
        assert sent.provider_options == {  # type: ignore[union-attr]
            "seed": 8, "frequency_penalty": 0.5, "presence_penalty": -1,
            "logit_bias": {"42": 5}}
        # anything not served is refused with the field named, never silently dropped
        for extra, param in (({"functions": [{"name": "f"}]}, "functions"),
                             ({"logit_bias": {"x": 1}}, "logit_bias"),
                             ({"top_logprobs": 3}, "top_logprobs"),
                             ({"response_format": {"type": "xml"}}, "response_format.type")):
            with pytest.raises(openai.BadRequestError, match=param) as info:
                client.chat.completions.create(model="alpha", **extra,  # type: ignore[arg-type]
                                               messages=[{"role": "user", "content": "hi"}])
            assert info.value.param == param
        neutral = client.chat.completions.create(
            model="alpha", frequency_penalty=0, presence_penalty=0.0, logit_bias={}, seed=None,
            user="someone", messages=[{"role": "user", "content": "hi"}])
        assert neutral.choices[0].message.content
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="alpha",
                                           messages=[{"role": "user", "content": "fail-early"}])
    r = requests.post(gateway.url + "/v1/chat/completions", headers=auth(), timeout=5,
                      json={"model": "alpha", "messages": [{"role": "function", "content": "x"}]})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert r.json()["error"]["param"] == "messages[0].role"
    assert "messages[0].role" in r.json()["error"]["message"]
    # 404 and 405 under the OpenAI prefix use OpenAI's shape too
    r = requests.post(gateway.url + "/v1/nothing", headers=auth(), timeout=5, json={})
    assert r.status_code == 404
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert r.json()["error"]["code"] == "not_found"
    r = requests.get(gateway.url + "/v1/chat/completions", headers=auth(), timeout=5)
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert r.json()["error"] == {"message": "use POST for /v1/chat/completions",
                                 "type": "invalid_request_error", "param": None,
                                 "code": "method_not_allowed"}


def test_models_retrieve(gateway: RunningGateway) -> None:
    with _client(gateway) as client:
        model = client.models.retrieve("beta")
        assert (model.id, model.object, model.owned_by) == ("beta", "model", "sipp-gateway")
        with pytest.raises(openai.NotFoundError) as info:
            client.models.retrieve("zeta")
        assert info.value.param == "model" and info.value.code == "model_not_found"
    with _client(gateway, LIMITED_TOKEN) as client, pytest.raises(openai.NotFoundError):
        client.models.retrieve("beta")  # not on this token's allowlist
