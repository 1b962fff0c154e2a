"""Tokens and model facts of local endpoints through SippClient."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipp import (
    AmbiguousEndpointError,
    GatewayDescriptor,
    InvalidRequestError,
    LocalModelDescriptor,
    SippClient,
    UnsupportedOperationError,
)
from sipp.config import NativeRuntimeConfig
from sipp.errors import BackendError
from sipp.models import read_model_facts


@pytest.fixture(scope="module", autouse=True)
def _backend() -> None:
    from sipp.native import get_native

    try:
        get_native()
    except BackendError as exc:
        pytest.skip(f"no native backend: {exc}")


def test_tokenize_detokenize_round_trip(tiny_llama_path: Path) -> None:
    with SippClient() as client:
        ref = client.add("tiny", LocalModelDescriptor(tiny_llama_path))
        ids = client.tokenize("Hello world", endpoint=ref)
        plain = client.tokenize("Hello world", add_special=False)  # the only local endpoint
        assert ids[1:] == plain and len(ids) == len(plain) + 1  # BOS added
        assert client.detokenize(plain, endpoint=ref).strip() == "Hello world"
        with pytest.raises(InvalidRequestError, match="outside this vocabulary"):
            client.detokenize([10**7], endpoint=ref)
        with pytest.raises(InvalidRequestError, match="sequence of integer"):
            client.detokenize("abc", endpoint=ref)  # type: ignore[arg-type]


def test_model_info_reports_facts_and_capabilities(
    tiny_llama_path: Path, tiny_bert_path: Path
) -> None:
    header = read_model_facts(tiny_llama_path)
    with SippClient() as client:
        text = client.add("text", LocalModelDescriptor(
            tiny_llama_path, NativeRuntimeConfig(context={"n_ctx": 256})))
        embed = client.add("embed", LocalModelDescriptor(tiny_bert_path))
        info = client.model_info(text)
        assert info["architecture"] == "llama" and info["endpoint"] == "text"
        assert info["n_params"] == header.n_params and info["size"] > 0
        assert info["n_ctx_train"] == header.context_length and info["n_ctx"] == 256
        assert info["chat_template"] == header.chat_template
        assert info["capabilities"] == {"query": True, "chat": True, "embed": False,
                                        "media": False}
        assert info["source"] == str(tiny_llama_path)
        bert = client.model_info(embed)
        assert bert["capabilities"]["embed"] and not bert["capabilities"]["query"]
        assert bert["embedding_size"] == read_model_facts(tiny_bert_path).embedding_length
        with pytest.raises(AmbiguousEndpointError, match="2 local endpoints"):
            client.tokenize("x")
        remote = client.add("remote", GatewayDescriptor("t", "http://127.0.0.1:9"))
        with pytest.raises(UnsupportedOperationError, match="needs a local endpoint"):
            client.model_info(remote)
