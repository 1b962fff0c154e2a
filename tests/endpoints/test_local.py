"""LocalEndpoint through SippClient: capabilities from the loaded model, runs, close."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipp import ChatMessage, LocalModelDescriptor, SippClient, SippTextOptions
from sipp.config import NativeRuntimeConfig
from sipp.errors import BackendError, EngineClosedError, UnsupportedOperationError

GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m['role'] }}\n"
    "{{ m['content'] }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


@pytest.fixture(scope="module", autouse=True)
def _backend() -> None:
    from sipp.native import get_native

    try:
        get_native()
    except BackendError as exc:
        pytest.skip(f"no native backend: {exc}")


def test_capabilities_follow_the_loaded_model(tiny_llama_path: Path,
                                              tiny_llama_no_template_path: Path,
                                              tiny_bert_path: Path, tiny_t5_path: Path) -> None:
    with SippClient() as client:
        refs = {
            "llama": client.add("llama", LocalModelDescriptor(tiny_llama_path)),
            "plain": client.add("plain", LocalModelDescriptor(tiny_llama_no_template_path)),
            "bert": client.add("bert", LocalModelDescriptor(tiny_bert_path)),
            "t5": client.add("t5", LocalModelDescriptor(tiny_t5_path)),
        }
        caps = {name: tuple(client._endpoints[ref.id].capability(op)
                            for op in ("query", "chat", "embed"))
                for name, ref in refs.items()}
    assert caps["llama"] == ("supported", "supported", "unsupported")
    assert caps["plain"] == ("supported", "unsupported", "unsupported")
    assert caps["bert"] == ("unsupported", "unsupported", "supported")
    assert caps["t5"] == ("supported", "unsupported", "unsupported")


def test_template_override_enables_chat(tiny_llama_no_template_path: Path) -> None:
    descriptor = LocalModelDescriptor(tiny_llama_no_template_path, chat_template=GEMMA_TEMPLATE)
    with SippClient() as client:
        ref = client.add("plain", descriptor)
        result = client.chat([ChatMessage("user", "hello")], endpoint=ref,
                             options=SippTextOptions(max_tokens=3, temperature=0)).result(30)
    assert result["usage"] is not None and result["usage"]["input_tokens"] > 5


def test_chat_without_template_says_to_use_query(tiny_llama_no_template_path: Path) -> None:
    with SippClient() as client:
        ref = client.add("plain", LocalModelDescriptor(tiny_llama_no_template_path))
        with pytest.raises(UnsupportedOperationError):
            client.chat([ChatMessage("user", "hello")], endpoint=ref).result(30)


def test_embed_list_returns_one_vector_per_input(tiny_bert_path: Path) -> None:
    config = NativeRuntimeConfig(context={"n_parallel": 4})
    with SippClient() as client:
        ref = client.add("bert", LocalModelDescriptor(tiny_bert_path, config))
        single = client.embed("one", endpoint=ref).result(30)
        many = client.embed(["one", "two", "three"], endpoint=ref).result(30)
    assert len(single["values"]) == 64
    assert len(many["values"]) == 3
    assert many["values"][0] == pytest.approx(single["values"], abs=1e-5)


def test_embedding_batches_larger_than_the_queue_succeed(tiny_bert_path: Path) -> None:
    # 300 inputs used to compute 257 embeddings, then fail with queue_full every time;
    # OpenAI clients send up to 2,048 inputs in one request
    config = NativeRuntimeConfig(context={"n_parallel": 4})  # max_queued_requests 256
    texts = [f"text number {i}" for i in range(300)]
    with SippClient() as client:
        ref = client.add("bert", LocalModelDescriptor(tiny_bert_path, config))
        many = client.embed(texts, endpoint=ref).result(120)
        again = client.embed(texts[7], endpoint=ref).result(30)
    assert len(many["values"]) == 300
    assert many["values"][7] == pytest.approx(again["values"], abs=1e-5)


def test_closing_the_client_fails_pending_runs(tiny_llama_path: Path) -> None:
    client = SippClient()
    ref = client.add("llama", LocalModelDescriptor(tiny_llama_path))
    from sipp.config import SamplingRuntimeConfig
    from sipp.types import LocalTextOptions

    local = LocalTextOptions(sampling=SamplingRuntimeConfig(ignore_eos=True))
    run = client.query("long", endpoint=ref, local=local,
                       options=SippTextOptions(max_tokens=1500))
    client.close()
    error = run.exception(30)
    assert error is None or isinstance(error, EngineClosedError)
    if error is None:  # it may have finished before close; then it is complete
        assert run.result()["finish_reason"] == "length"


def test_client_metrics_per_endpoint_and_for_all(tiny_llama_path: Path,
                                                 tiny_bert_path: Path) -> None:
    observed = NativeRuntimeConfig(observability={"runtime_metrics": True})
    with SippClient() as client:
        text = client.add("text", LocalModelDescriptor(str(tiny_llama_path), observed))
        plain = client.add("plain", LocalModelDescriptor(str(tiny_bert_path)))
        for _ in range(3):
            client.query("Count me", endpoint=text,
                         options=SippTextOptions(max_tokens=4, temperature=0)).result(30)
        one = client.metrics(text)
        assert one["counters"]["requests_completed"] == 3
        assert one["histograms"]["time_to_first_token_seconds"]["count"] == 3
        assert one["requests_running"] == 0 and one["decode_calls"] > 0
        everything = client.metrics()
        assert everything["text"]["counters"] == one["counters"]
        # an endpoint without runtime metrics still reports its scheduler and decodes
        assert "counters" not in client.metrics(plain)
        assert set(everything) <= {"text", "plain"}
