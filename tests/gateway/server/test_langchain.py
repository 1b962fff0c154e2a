"""LangChain's OpenAI integration (``langchain-openai``) against the OpenAI-compatible routes,
unchanged: chat, streaming and embeddings with ``model`` = target name."""

from __future__ import annotations

import pytest

from tests.gateway.server.conftest import TOKEN, RunningGateway, Script

langchain_openai = pytest.importorskip(
    "langchain_openai", reason="langchain-openai is not installed (pip install langchain-openai)")


def test_langchain_chat_stream_and_embeddings(gateway: RunningGateway, script: Script) -> None:
    from langchain_core.messages import HumanMessage, SystemMessage

    chat = langchain_openai.ChatOpenAI(model="alpha", base_url=gateway.url + "/v1",
                                       api_key=TOKEN, max_retries=0, temperature=0,
                                       max_tokens=8)
    reply = chat.invoke([SystemMessage("brief"), HumanMessage("hello")])
    assert reply.content == "Hello"
    assert reply.usage_metadata is not None and reply.usage_metadata["total_tokens"] == 5
    sent = script.requests[-1]
    assert [m.role for m in sent.messages] == ["system", "user"]  # type: ignore[union-attr]
    assert "".join(str(chunk.content) for chunk in chat.stream("hello")) == "Hello"

    embeddings = langchain_openai.OpenAIEmbeddings(
        model="alpha", base_url=gateway.url + "/v1", api_key=TOKEN, max_retries=0,
        check_embedding_ctx_length=False)  # no tiktoken download: send the text as is
    assert embeddings.embed_query("abc") == [0.25, -0.5, 3.0]
    assert [v[2] for v in embeddings.embed_documents(["a", "abcd"])] == [1.0, 4.0]
