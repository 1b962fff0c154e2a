"""``sipp serve MODEL``: one local model over HTTP with no config file."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from sipp._serve import _parser, build_serve_config, target_name
from sipp.errors import ConfigurationError
from tests.serving import Served, sipp_serve

REPO_ROOT = Path(__file__).resolve().parents[1]


def _post(url: str, body: dict[str, object], token: str | None = None) -> tuple[int, dict]:  # type: ignore[type-arg]
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, json.dumps(body).encode(), headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture
def served(tiny_llama_path: Path) -> Iterator[Served]:
    with sipp_serve(str(tiny_llama_path), "--ctx-size", "512", "--parallel", "2",
                    "--api-key-env", "SIPP_TEST_KEY", env={"SIPP_TEST_KEY": "s3cret"}) as served:
        yield served


def test_serve_answers_openai_sdk_and_raw_http(served: Served) -> None:
    openai = pytest.importorskip("openai")
    base = served.url
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="s3cret")
    assert [m.id for m in client.models.list().data] == ["tiny-llama"]
    chat = client.chat.completions.create(
        model="tiny-llama", messages=[{"role": "user", "content": "Hello"}], max_tokens=4,
        temperature=0,
    )
    assert chat.choices[0].message.role == "assistant"
    assert chat.usage is not None and chat.usage.completion_tokens > 0
    status, body = _post(f"{base}/v1/query", {"model": "tiny-llama", "prompt": "Hello",
                                              "max_tokens": 4}, token="s3cret")
    assert status == 200 and body["usage"]["output_tokens"] > 0
    status, body = _post(f"{base}/v1/query", {"model": "tiny-llama", "prompt": "Hello"})
    assert status == 401  # the key is required once one is configured
    logs = served.stop()
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert "\x1b" not in logs and "\\u001b" not in logs  # no ANSI colour codes
    assert [line["msg"] for line in lines].count("gateway listening") == 1
    assert not [line for line in lines if line["logger"].startswith("uvicorn")]
    requests = [line for line in lines if line["msg"] == "request"]
    assert [r["status"] for r in requests][-3:] == [200, 200, 401]  # one line per request


def _args(*argv: str) -> object:
    return _parser().parse_args(list(argv))


def test_non_loopback_bind_requires_an_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="--api-key-env"):
        build_serve_config(_args("m.gguf", "--host", "0.0.0.0"))
    monkeypatch.delenv("SIPP_NO_SUCH_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="SIPP_NO_SUCH_KEY"):
        build_serve_config(_args("m.gguf", "--host", "0.0.0.0", "--api-key-env",
                                 "SIPP_NO_SUCH_KEY"))
    monkeypatch.setenv("SIPP_KEY", "k")
    config, secrets = build_serve_config(_args("m.gguf", "--host", "0.0.0.0",
                                               "--api-key-env", "SIPP_KEY"))
    assert config.public_bind == ("0.0.0.0", 8080) and config.management_bind[0] == "127.0.0.1"
    assert secrets.tokens == (("client", "k"),)


def test_loopback_config_has_one_named_target_and_options(tmp_path: Path) -> None:
    template = tmp_path / "t.jinja"
    template.write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    config, secrets = build_serve_config(_args(
        "hf://org/repo/model-Q4_K_M.gguf", "--ctx-size", "1024", "--parallel", "3",
        "--chat-template", str(template), "--port", "9000"))
    target = config.targets[0]
    assert target.name == "model-Q4_K_M" and target.model == "hf://org/repo/model-Q4_K_M.gguf"
    assert target.runtime == {"context": {"n_ctx": 1024, "n_parallel": 3}}
    assert target.chat_template == template.read_text()
    assert config.tokens == () and secrets.tokens == ()
    assert config.routes.openai == "/v1" and config.routes.admin is None


def test_target_names_come_from_the_source() -> None:
    assert target_name("gemma") == "gemma"
    assert target_name("/m/Qwen3-0.6B-Q8_0.gguf") == "Qwen3-0.6B-Q8_0"
    assert target_name("hf://org/SmolLM2-GGUF/*Q4_K_M.gguf") == "SmolLM2-GGUF"
    assert target_name("https://h/x/big-00001-of-00003.gguf") == "big"


def test_bad_model_source_is_a_one_line_error() -> None:
    from sipp._serve import serve_main

    pytest.importorskip("uvicorn")
    import io

    err = io.StringIO()
    assert serve_main(["ftp://x/m.gguf"], err=err) == 2
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1 and "unsupported scheme" in lines[0]


def test_serve_without_the_gateway_extra_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from sipp import __version__
    from sipp._serve import serve_main

    monkeypatch.setitem(sys.modules, "uvicorn", None)
    err = io.StringIO()
    assert serve_main(["m.gguf"], err=err) == 2
    assert err.getvalue() == ("sipp serve: error: serving needs the gateway extra: "
                              f'pip install "sipppy[gateway]=={__version__}"\n')
