"""Unchanged real clients (openai, instructor, LangChain, litellm, LlamaIndex) against a
real ``sipp-gateway`` on loopback, for a local target and for an OpenAI-compatible provider
target whose upstream is another Sipp server (``sipp serve``) on loopback.

Both targets run the tiny random-weight Llama with the Hermes-style template of
``tests/tool_templates.py``. Nothing depends on what it samples: every structured answer is
forced by ``tool_choice`` / ``response_format`` grammars (and, for instructor's JSON mode,
whose ``json_object`` admits any object, by a logit bias that closes the object at once).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

from tests.serving import REPO, free_port, sipp_serve
from tests.tool_templates import HERMES_TEMPLATE

pydantic = pytest.importorskip("pydantic")
openai = pytest.importorskip("openai")

TOKEN = "real-clients-token"
TARGETS = ["local", "remote"]


class Weather(pydantic.BaseModel):
    """Weather request for one city."""

    city: Literal["Paris", "Oslo"]
    days: int = pydantic.Field(ge=1, le=7)


class Note(pydantic.BaseModel):
    """Any JSON object (instructor's JSON mode only asks for an object)."""

    model_config = pydantic.ConfigDict(extra="allow")


WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": Weather.model_json_schema()}}


def get_weather(city: Literal["Paris", "Oslo"], days: int) -> str:
    """Weather for a city over some days."""
    return f"{city}: sunny for {days} days"


# real objects, not the strings of ``from __future__ import annotations``: tool builders
# (LlamaIndex) make a pydantic model from the signature in their own namespace
get_weather.__annotations__ = {"city": Literal["Paris", "Oslo"], "days": int, "return": str}


class _Gateway:
    def __init__(self, url: str, proc: subprocess.Popen[str], log: list[str]) -> None:
        self.url = url
        self.proc = proc
        self.log = log


def _start_gateway(config: Path, url: str, env: dict[str, str]) -> Iterator[_Gateway]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sipp.gateway.server.cli", "serve", "--config", str(config)],
        env={**os.environ, "PYTHONPATH": str(REPO), **env}, cwd=REPO,
        stderr=subprocess.PIPE, text=True)
    log: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            log.append(line)
            if "gateway application ready" in line:
                ready.set()
        ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not ready.wait(120) or proc.poll() is not None:
            pytest.fail("sipp-gateway did not start:\n" + "".join(log)[-4000:])
        yield _Gateway(url, proc, log)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        reader.join(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, tiny_llama_path: Path,
            ) -> Iterator[str]:
    """The gateway's OpenAI base URL (``.../v1``) with targets ``local`` and ``remote``."""
    pytest.importorskip("uvicorn")
    root = tmp_path_factory.mktemp("real-clients")
    template = root / "hermes.jinja"
    template.write_text(HERMES_TEMPLATE)
    upstream_env = {"UPSTREAM_KEY": "upstream-secret"}
    with sipp_serve(str(tiny_llama_path), "--chat-template", str(template), "--ctx-size",
                    "4096", "--parallel", "4", "--name", "tiny", "--api-key-env",
                    "UPSTREAM_KEY", env=upstream_env) as upstream:
        port = free_port()
        config = root / "gateway.toml"
        config.write_text(f"""
public_bind = "127.0.0.1:{port}"
management_bind = "127.0.0.1:{free_port()}"
admin_password_env = "RC_ADMIN"
max_request_bytes = 1048576

[security.client_ip]
source = "peer"
trusted_proxy_cidrs = []

[security.rate_limit]
enabled = false
requests_per_minute = 60
burst = 60

[routes]
openai = "/v1"
admin = false

[[tokens]]
env = "RC_TOKEN"
caller = "tests"
targets = []

[[targets]]
name = "local"
type = "local"
model = "{tiny_llama_path}"
chat_template = "{template}"

[targets.runtime.context]
n_ctx = 4096
n_parallel = 4

[[targets]]
name = "remote"
type = "openai_compatible"
model = "tiny"
base_url = "{upstream.url}/v1"
token_env = "UPSTREAM_KEY"
""")
        env = {"RC_ADMIN": "pw", "RC_TOKEN": TOKEN, **upstream_env}
        for running in _start_gateway(config, f"http://127.0.0.1:{port}", env):
            yield running.url + "/v1"


def _closing_brace_bias(path: Path) -> dict[str, int]:
    """``logit_bias`` that makes ``}`` the likeliest token (closes a JSON object at once)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    tokens = reader.fields["tokenizer.ggml.tokens"]
    ids = {str(i) for i, part in enumerate(tokens.data)
           if bytes(tokens.parts[part]).decode("utf-8", "replace") in ("}", "▁}")}
    assert ids
    return dict.fromkeys(ids, 100)


# --------------------------------------------------------------------------- openai SDK
@pytest.mark.parametrize("target", TARGETS)
def test_openai_sdk_parse_and_streamed_tool_calls(gateway: str, target: str) -> None:
    client = openai.OpenAI(base_url=gateway, api_key=TOKEN, max_retries=0)
    parsed = client.beta.chat.completions.parse(
        model=target, messages=[{"role": "user", "content": "Weather in Paris?"}],
        response_format=Weather, seed=3)
    weather = parsed.choices[0].message.parsed
    assert isinstance(weather, Weather)

    stream = client.chat.completions.create(
        model=target, messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=[WEATHER_TOOL], tool_choice="required", parallel_tool_calls=False, stream=True)
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in stream:
        for delta in chunk.choices[0].delta.tool_calls or []:
            entry = calls.setdefault(delta.index, {"name": "", "arguments": ""})
            if delta.function and delta.function.name:
                entry["name"] += delta.function.name
            if delta.function and delta.function.arguments:
                entry["arguments"] += delta.function.arguments
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert [c["name"] for c in calls.values()] == ["get_weather"]
    Weather.model_validate_json(calls[0]["arguments"])


@pytest.mark.parametrize("target", TARGETS)
def test_openai_sdk_sampling_surface(gateway: str, target: str) -> None:
    client = openai.OpenAI(base_url=gateway, api_key=TOKEN, max_retries=0)
    ask = [{"role": "user", "content": "Say something."}]

    def once() -> Any:
        return client.chat.completions.create(
            model=target, messages=ask, max_completion_tokens=8, temperature=1.0, seed=11,
            logprobs=True, top_logprobs=2, frequency_penalty=0.5, presence_penalty=0.5)

    first, again = once(), once()
    assert first.choices[0].message.content == again.choices[0].message.content
    content = first.choices[0].logprobs.content
    assert content and all(len(entry.top_logprobs) == 2 for entry in content)
    assert "".join(entry.token for entry in content) == first.choices[0].message.content
    assert client.models.retrieve(target).id == target


# --------------------------------------------------------------------------- instructor
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("mode", ["TOOLS", "JSON_SCHEMA", "JSON", "MD_JSON"])
def test_instructor_modes(gateway: str, target: str, mode: str, tiny_llama_path: Path) -> None:
    instructor = pytest.importorskip("instructor")
    client = instructor.from_openai(openai.OpenAI(base_url=gateway, api_key=TOKEN,
                                                  max_retries=0),
                                    mode=getattr(instructor.Mode, mode))
    ask = [{"role": "user", "content": "Weather in Paris for three days?"}]
    if mode == "JSON":  # json_object admits any object: a bias closes it at once
        note = client.chat.completions.create(
            model=target, response_model=Note, messages=ask, max_retries=0,
            logit_bias=_closing_brace_bias(tiny_llama_path))
        assert isinstance(note, Note)
        return
    extra: dict[str, Any] = {}
    if mode == "MD_JSON":  # a random model writes no code block: force the JSON itself
        extra["response_format"] = {"type": "json_schema", "json_schema": {
            "name": "Weather", "schema": Weather.model_json_schema()}}
    weather = client.chat.completions.create(model=target, response_model=Weather,
                                             messages=ask, max_retries=0, **extra)
    assert isinstance(weather, Weather)


# --------------------------------------------------------------------------- LangChain
@pytest.mark.parametrize("target", TARGETS)
def test_langchain_structured_output_and_tool_round_trip(gateway: str, target: str) -> None:
    langchain_openai = pytest.importorskip("langchain_openai")
    from langchain_core.messages import HumanMessage, ToolMessage

    llm = langchain_openai.ChatOpenAI(model=target, base_url=gateway, api_key=TOKEN,
                                      max_retries=0, temperature=0)
    for method in ("json_schema", "function_calling"):
        weather = llm.with_structured_output(Weather, method=method).invoke("Weather?")
        assert isinstance(weather, Weather)
    with_tools = llm.bind_tools([get_weather], tool_choice="get_weather")
    question = HumanMessage("Weather in Oslo?")
    call = with_tools.invoke([question])
    assert [c["name"] for c in call.tool_calls] == ["get_weather"]
    args = call.tool_calls[0]["args"]
    result = ToolMessage(get_weather(**args), tool_call_id=call.tool_calls[0]["id"])
    answer = llm.bind_tools([get_weather], tool_choice="none").invoke(
        [question, call, result], max_tokens=4)
    assert isinstance(answer.content, str) and not answer.tool_calls


# --------------------------------------------------------------------------- litellm
@pytest.mark.filterwarnings("ignore:Items? .* using the `ReadOnly` qualifier:UserWarning")
@pytest.mark.parametrize("target", TARGETS)
def test_litellm_seed_response_format_and_tools(gateway: str, target: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    litellm = pytest.importorskip("litellm")
    common: dict[str, Any] = {"model": f"openai/{target}", "api_base": gateway,
                              "api_key": TOKEN, "num_retries": 0}
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    first = litellm.completion(messages=ask, seed=5, temperature=1.0, max_tokens=6, **common)
    again = litellm.completion(messages=ask, seed=5, temperature=1.0, max_tokens=6, **common)
    assert first.choices[0].message.content == again.choices[0].message.content
    structured = litellm.completion(messages=ask, response_format=Weather, **common)
    Weather.model_validate_json(structured.choices[0].message.content)
    called = litellm.completion(messages=ask, tools=[WEATHER_TOOL], tool_choice="required",
                                parallel_tool_calls=False, **common)
    call = called.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    Weather.model_validate_json(call.function.arguments)


# --------------------------------------------------------------------------- LlamaIndex
@pytest.mark.parametrize("target", TARGETS)
def test_llamaindex_openailike_function_tool(gateway: str, target: str) -> None:
    openai_like = pytest.importorskip("llama_index.llms.openai_like")
    from llama_index.core.tools import FunctionTool

    llm = openai_like.OpenAILike(model=target, api_base=gateway, api_key=TOKEN,
                                 is_chat_model=True, is_function_calling_model=True,
                                 context_window=4096, max_retries=0)
    tool = FunctionTool.from_defaults(fn=get_weather)
    response = llm.chat_with_tools([tool], user_msg="Weather in Oslo?", tool_required=True,
                                   allow_parallel_tool_calls=False)
    selections = llm.get_tool_calls_from_response(response, error_on_no_tool_call=True)
    assert [s.tool_name for s in selections] == ["get_weather"]
    output = tool.call(**selections[0].tool_kwargs)
    assert "sunny" in str(output)


# --------------------------------------------------------------------------- Sipp client
@pytest.mark.parametrize("target", TARGETS)
def test_sipp_gateway_endpoint_carries_tools_whole_and_streamed(gateway: str,
                                                                target: str) -> None:
    from sipp import GatewayDescriptor, SippClient, SippTextOptions

    room = SippTextOptions(max_tokens=1000)  # the profile default is 64; a call is bounded
    with SippClient() as client:
        ref = client.add("gw", GatewayDescriptor(
            target, gateway.removesuffix("/v1"), authentication_kind="bearer",
            authentication_value=TOKEN))
        ask = [{"role": "user", "content": "Weather in Oslo?"}]
        whole = client.chat(ask, endpoint=ref, tools=[WEATHER_TOOL], tool_choice="required",
                            parallel_tool_calls=False, options=room).result(timeout=120)
        assert whole["finish_reason"] == "tool_calls"
        Weather.model_validate_json(whole["tool_calls"][0]["function"]["arguments"])
        run = client.chat(ask, endpoint=ref, tools=[WEATHER_TOOL], tool_choice="required",
                          parallel_tool_calls=False, emit_tokens=True, options=room)
        deltas = [d for batch in run.tokens() for d in batch.tool_calls]
        streamed = run.result(timeout=120)
        assert deltas[0]["function"]["name"] == "get_weather"
        assert "".join(d["function"]["arguments"] for d in deltas) == \
            streamed["tool_calls"][0]["function"]["arguments"]
        answer = client.chat(
            [*ask, {"role": "assistant", "content": None, "tool_calls": whole["tool_calls"]},
             {"role": "tool", "tool_call_id": whole["tool_calls"][0]["id"], "content": "rain"}],
            endpoint=ref, options=SippTextOptions(max_tokens=4)).result(timeout=120)
        assert answer["finish_reason"] in ("stop", "length")
