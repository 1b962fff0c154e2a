"""The local-model detector on the tiny generated llama: the JSON schema forces the answer's
structure (the random model picks the content, so only structure is asserted)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from sipp import EndpointRef, LocalModelDescriptor, SippClient
from sipp.errors import BackendError, ConfigurationError, InvalidRequestError
from sipp.pii import LocalModelDetector, PiiPolicy, Span

TEXT = "Customer Ada Lovelace, 12 St James's Square, London, account AX-99183, a@example.com"


@pytest.fixture(scope="module")
def local(tiny_llama_path: Path) -> Iterator[tuple[SippClient, EndpointRef]]:
    from sipp.native import get_native

    try:
        get_native()
    except BackendError as exc:
        pytest.skip(f"no native backend: {exc}")
    with SippClient() as client:
        yield client, client.add("detector", LocalModelDescriptor(tiny_llama_path))


def test_answer_is_schema_shaped_and_spans_are_verbatim(
    local: tuple[SippClient, EndpointRef],
) -> None:
    client, ref = local
    detector = LocalModelDetector(client, ref, max_entities=3, max_chars=8, max_tokens=1024)
    findings = detector.extract(TEXT)
    assert isinstance(findings, list) and len(findings) <= 3
    for item in findings:
        assert set(item) == {"type", "text"}
        assert item["type"] in ("PERSON", "ADDRESS", "IDENTIFIER")
        assert 1 <= len(item["text"]) <= 8
    for span in detector.detect(TEXT):
        assert span.entity in ("PERSON", "ADDRESS", "IDENTIFIER")
        assert TEXT[span.start:span.end].strip()


def test_policy_with_the_local_detector_masks_and_restores(
    local: tuple[SippClient, EndpointRef],
) -> None:
    client, ref = local
    detector = LocalModelDetector(client, ref, max_entities=2, max_chars=8, max_tokens=1024)
    policy = PiiPolicy(detector=detector)
    session = policy.session()
    masked = session.mask(TEXT)
    assert "a@example.com" not in masked and "<EMAIL_1>" in masked
    assert session.restore(masked) == TEXT


def test_spans_cover_every_verbatim_occurrence() -> None:
    text = "Ada met Ada at 5 Main St"
    spans = LocalModelDetector.spans(text, [{"type": "PERSON", "text": " Ada "},
                                            {"type": "ADDRESS", "text": "5 Main St"},
                                            {"type": "PERSON", "text": "Grace"}])
    assert spans == [Span(0, 3, "PERSON"), Span(8, 11, "PERSON"), Span(15, 24, "ADDRESS")]


def test_parse_refuses_cut_off_or_foreign_answers(
    local: tuple[SippClient, EndpointRef],
) -> None:
    client, ref = local
    detector = LocalModelDetector(client, ref)
    answer = json.dumps({"entities": [{"type": "PERSON", "text": "Ada"},
                                      {"type": "ALIEN", "text": "x"}]})
    assert detector.parse(answer) == [{"type": "PERSON", "text": "Ada"}]
    with pytest.raises(InvalidRequestError, match="cut off at max_tokens"):
        detector.parse('{"entities": [', "length")
    with pytest.raises(InvalidRequestError, match="not JSON"):
        detector.parse("{")


def test_remote_endpoints_are_refused(local: tuple[SippClient, EndpointRef]) -> None:
    client, _ = local
    with pytest.raises(ConfigurationError, match="needs a local endpoint"):
        LocalModelDetector(client, EndpointRef.provider("openai"))
