"""chat(documents=...): the system block format, templates with a documents variable, and
validation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sipp import ChatMessage, LocalModelDescriptor, SippClient, SippTextOptions
from sipp.documents import DOCUMENTS_PREAMBLE, coerce_documents, with_documents
from sipp.engine.chat_template import ChatTemplate
from sipp.errors import BackendError, InvalidRequestError

DOCS = [{"id": "a", "text": "Alpha text.", "year": 2024}, {"id": "b", "text": "Beta."}]
PLAIN = (
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>"
    "{% endfor %}<assistant>"
)
WITH_DOCS = (
    "{% for d in documents or [] %}[{{ d['id'] }}] {{ d['text'] }}\n{% endfor %}" + PLAIN
)


def test_system_block_format() -> None:
    messages = with_documents([ChatMessage("user", "q")], coerce_documents(DOCS))
    assert messages[0] == ChatMessage("system", (
        f"{DOCUMENTS_PREAMBLE}\n\n<document id=\"a\" year=\"2024\">\nAlpha text.\n</document>"
        "\n<document id=\"b\">\nBeta.\n</document>"))
    merged = with_documents([ChatMessage("system", "Be brief."), ChatMessage("user", "q")],
                            coerce_documents(DOCS))
    assert merged[0].content.startswith(f"Be brief.\n\n{DOCUMENTS_PREAMBLE}")
    assert len(merged) == 2


@pytest.mark.parametrize(
    ("documents", "message"),
    [
        ({"id": "a", "text": "x"}, "documents must be a list"),
        ([{"text": "x"}], r"documents\[0\].id must be a non-empty string"),
        ([{"id": "a"}], r"documents\[0\].text must be a string"),
        ([{"id": "a", "text": ""}, {"id": "a", "text": ""}], r"documents\[1\].id 'a' appears"),
    ],
)
def test_bad_documents_name_the_field(documents: object, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        coerce_documents(documents)  # type: ignore[arg-type]


def test_templates_that_read_documents_are_recognised() -> None:
    assert ChatTemplate(WITH_DOCS).takes_documents
    assert not ChatTemplate(PLAIN).takes_documents


@pytest.fixture(scope="module")
def client() -> Iterator[SippClient]:
    from sipp.native import get_native

    try:
        get_native()
    except BackendError as exc:
        pytest.skip(f"no native backend: {exc}")
    with SippClient() as c:
        yield c


@pytest.mark.parametrize("template", [WITH_DOCS, PLAIN])
def test_local_chat_renders_documents(
    client: SippClient, tiny_llama_no_template_path: Path, template: str
) -> None:
    ref = client.add("t", LocalModelDescriptor(tiny_llama_no_template_path,
                                               chat_template=template))
    messages = [ChatMessage("user", "q")]
    if template == WITH_DOCS:
        expected = ChatTemplate(template).render(messages, documents=DOCS)
        assert expected.startswith("[a] Alpha text.\n[b] Beta.\n<user>q</user>")
    else:
        expected = ChatTemplate(template).render(with_documents(messages, DOCS))
    result = client.chat(messages, endpoint=ref, documents=DOCS,
                         options=SippTextOptions(max_tokens=1)).result(60)
    assert result["usage"] is not None
    assert result["usage"]["input_tokens"] == len(client.tokenize(expected, endpoint=ref))
