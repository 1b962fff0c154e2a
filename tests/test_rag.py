"""retrieve_and_chat: the index's best documents go to the chat, and their ids come back."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipp import (
    ContextRuntimeConfig,
    LocalModelDescriptor,
    NativeRuntimeConfig,
    SippClient,
    SippTextOptions,
    VectorIndex,
)
from sipp.errors import BackendError, InvalidRequestError

TEMPLATE = (
    "{% for d in documents or [] %}[{{ d['id'] }}] {{ d['text'] }}\n{% endfor %}"
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}<assistant>"
)


def test_retrieve_and_chat_returns_the_ids_it_used(
    tiny_bert_path: Path, tiny_llama_no_template_path: Path
) -> None:
    from sipp.engine.chat_template import ChatTemplate
    from sipp.native import get_native
    from sipp.types import ChatMessage

    try:
        get_native()
    except BackendError as exc:
        pytest.skip(f"no native backend: {exc}")
    embed = NativeRuntimeConfig(context=ContextRuntimeConfig(embeddings=True))
    with SippClient() as client:
        emb = client.add("emb", LocalModelDescriptor(tiny_bert_path, embed))
        chat = client.add("chat", LocalModelDescriptor(tiny_llama_no_template_path,
                                                       chat_template=TEMPLATE))
        index = VectorIndex()
        texts = ["red apples grow on trees", "the train leaves at noon",
                 "bananas are yellow", "the ferry crosses the bay"]
        index.add_texts(texts, client=client, endpoint=emb, ids=["r", "t", "b", "f"])
        question = "when does the train leave?"
        expected_hits = index.search_text(question, k=2)
        answer = client.retrieve_and_chat(question, index=index, k=2, endpoint=chat,
                                          options=SippTextOptions(max_tokens=2))
        assert answer.ids == [h.id for h in expected_hits]
        assert answer.hits == expected_hits
        assert isinstance(answer.text, str) and answer.text == answer.response["text"]
        prompt = ChatTemplate(TEMPLATE).render(
            [ChatMessage("user", question)],
            documents=[{"id": h.id, "text": h.text} for h in expected_hits])
        usage = answer.response["usage"]
        assert usage is not None
        assert usage["input_tokens"] == len(client.tokenize(prompt, endpoint=chat))
        with pytest.raises(InvalidRequestError, match="question must be a non-empty string"):
            client.retrieve_and_chat(" ", index=index, endpoint=chat)
