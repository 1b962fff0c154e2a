"""Local endpoints load models from any source: hub files, packaged names, projector auto."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sipp import LocalModelDescriptor, SippClient, SippTextOptions
from sipp.config import NativeRuntimeConfig
from sipp.errors import BackendError, ConfigurationError, ModelLoadError
from sipp.models import ResolveOptions, list_cached
from tests.models.hub_server import HubServer, Repo


@pytest.fixture(scope="module", autouse=True)
def _backend() -> None:
    from sipp.native import get_native

    try:
        get_native()
    except BackendError as exc:
        pytest.skip(f"no native backend: {exc}")


@pytest.fixture
def hub(tiny_llama_path: Path, tiny_qwen2vl_mmproj_path: Path) -> Iterator[HubServer]:
    server = HubServer()
    server.repos["org/tiny-vision"] = Repo({
        "tiny-llama-Q8_0.gguf": tiny_llama_path.read_bytes(),
        "mmproj-tiny-F16.gguf": tiny_qwen2vl_mmproj_path.read_bytes(),
    })
    yield server
    server.close()


def test_hf_source_with_projector_auto_loads_and_generates(
    hub: HubServer, tmp_path: Path
) -> None:
    options = ResolveOptions(cache_dir=tmp_path, endpoint=hub.url, offline=False, bar=False)
    descriptor = LocalModelDescriptor(
        "hf://org/tiny-vision/*Q8_0.gguf",
        NativeRuntimeConfig(multimodal={"projector_path": "auto"}),
        resolve=options,
    )
    assert descriptor.model_path == "hf://org/tiny-vision/*Q8_0.gguf"
    with SippClient() as client:
        ref = client.add("tiny", descriptor)
        assert client.endpoint(ref).supports_media  # type: ignore[attr-defined]
        result = client.query("Hello", endpoint=ref,
                              options=SippTextOptions(max_tokens=4, temperature=0)).result(60)
    assert result["usage"]["output_tokens"] > 0
    names = sorted(Path(e.filename or "").name for e in list_cached(tmp_path))
    assert names == ["mmproj-tiny-F16.gguf", "tiny-llama-Q8_0.gguf"]


def test_bad_sources_fail_when_described_or_added(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="model_path"):
        LocalModelDescriptor("hf://only-org")
    with SippClient() as client, pytest.raises(ModelLoadError, match="is a directory"):
        client.add("dir", LocalModelDescriptor(tmp_path))
    with pytest.raises(ConfigurationError, match="progress must be a callable"):
        LocalModelDescriptor("m.gguf", progress=3)  # type: ignore[arg-type]


def test_packaged_gemma_by_name(gemma_path: Path) -> None:
    with SippClient() as client:
        ref = client.add("gemma", LocalModelDescriptor("gemma"))
        result = client.query("The capital of France is", endpoint=ref,
                              options=SippTextOptions(max_tokens=4, temperature=0)).result(120)
    assert result["usage"]["output_tokens"] > 0 and result["text"]


def test_descriptor_progress_follows_the_load_and_can_cancel(tiny_llama_path: Path) -> None:
    seen: list[float] = []
    with SippClient() as client:
        client.add("tiny", LocalModelDescriptor(tiny_llama_path, progress=seen.append))
        assert seen and seen[-1] == 1.0 and seen == sorted(seen)
        with pytest.raises(ModelLoadError, match="cancelled by the progress callback"):
            client.add("stopped", LocalModelDescriptor(tiny_llama_path,
                                                       progress=lambda fraction: False))
        assert [ref.id for ref in client.endpoints()] == ["tiny"]


def test_hints_name_every_way_to_fix_it(
    tiny_llama_no_template_path: Path, tiny_llama_path: Path
) -> None:
    from sipp import ChatMessage, UnsupportedOperationError

    with SippClient() as client:
        plain = client.add("plain", LocalModelDescriptor(tiny_llama_no_template_path))
        with pytest.raises(UnsupportedOperationError) as chat:
            client.chat([ChatMessage("user", "hi")], endpoint=plain)
        with pytest.raises(UnsupportedOperationError) as embed:
            client.embed("hi", endpoint=plain)
    for needle in ("LocalModelDescriptor(chat_template=...)", 'chat_template = "FILE"',
                   "--chat-template FILE"):
        assert needle in str(chat.value)
    for needle in ("context.embeddings=True", "embeddings = true", "sipp serve --embeddings"):
        assert needle in str(embed.value)
