"""Placeholders are stable per request, restoration is exact, streams included."""

from __future__ import annotations

import logging

import pytest

from sipp.errors import ConfigurationError, PiiBlockedError
from sipp.pii import PiiPolicy
from tests.pii.samples import COUNTRIES, SAMPLES

POLICY = PiiPolicy(countries=COUNTRIES)
TEXT = " | ".join(f"{entity.lower()}: {value}" for entity, value in SAMPLES)


def test_every_type_is_masked_and_restored() -> None:
    session = POLICY.session()
    masked = session.mask(TEXT)
    for _, value in SAMPLES:
        assert value not in masked
    assert "<EMAIL_1>" in masked and "<PHONE_5>" in masked and "<NATIONAL_ID_5>" in masked
    assert session.found == {"EMAIL": 1, "PHONE": 5, "PAYMENT_CARD": 3, "IBAN": 3,
                             "IP_ADDRESS": 2, "NATIONAL_ID": 5}
    assert session.restore(masked) == TEXT


def test_same_value_same_placeholder_within_a_request() -> None:
    session = POLICY.session()
    first = session.mask("mail a@example.com or b@example.com")
    second = session.mask("again: b@example.com")
    assert first == "mail <EMAIL_1> or <EMAIL_2>"
    assert second == "again: <EMAIL_2>"
    assert POLICY.session().mask("b@example.com") == "<EMAIL_1>"  # a new request


def test_unknown_placeholders_are_left_alone() -> None:
    session = POLICY.session()
    session.mask("a@example.com")
    assert session.restore("<EMAIL_1> <EMAIL_7> <PHONE_1>") == "a@example.com <EMAIL_7> <PHONE_1>"


def _stream(session: object, pieces: list[str]) -> str:
    restorer = session.stream()  # type: ignore[attr-defined]
    return "".join(restorer.feed(p) for p in pieces) + restorer.flush()


def test_every_split_position_restores_exactly() -> None:
    session = POLICY.session()
    masked = session.mask(TEXT)
    want = session.restore(masked)
    for i in range(len(masked) + 1):
        assert _stream(session, [masked[:i], masked[i:]]) == want, i
    assert _stream(session, list(masked)) == want
    for i in range(0, len(masked), 7):  # three pieces: every cut pair near each other
        for j in range(i, min(i + 24, len(masked) + 1)):
            assert _stream(session, [masked[:i], masked[i:j], masked[j:]]) == want


def test_held_back_text_is_released_when_it_breaks_off() -> None:
    session = POLICY.session()
    session.mask("x@example.com")
    restorer = session.stream()
    assert restorer.feed("a <EMA") == "a "
    assert restorer.feed("X> b") == "<EMAX> b"
    assert restorer.feed("<EMAIL_") == ""
    assert restorer.flush() == "<EMAIL_"


def test_block_mode_names_the_types_and_not_the_values() -> None:
    policy = PiiPolicy(mode="block", countries=COUNTRIES)
    with pytest.raises(PiiBlockedError, match="contains EMAIL, IBAN") as info:
        policy.check(policy.session(), ["a@example.com", "DE89 3704 0044 0532 0130 00"])
    assert "a@example.com" not in str(info.value)
    assert policy.check(policy.session(), ["nothing here"]) == ["nothing here"]


def test_entities_limit_what_is_masked() -> None:
    policy = PiiPolicy(entities=["EMAIL"])
    assert policy.session().mask("a@example.com 192.168.1.20") == "<EMAIL_1> 192.168.1.20"
    with pytest.raises(ConfigurationError, match="unknown entity type 'PERSON'"):
        PiiPolicy(entities=["PERSON"])
    with pytest.raises(ConfigurationError, match=r"pii\.mode must be"):
        PiiPolicy(mode="redact")  # type: ignore[arg-type]


def test_policy_applies_to_remote_endpoints_only_by_default() -> None:
    assert POLICY.applies_to("provider") and POLICY.applies_to("gateway")
    assert not POLICY.applies_to("local")
    assert PiiPolicy(local=True).applies_to("local")
    assert not PiiPolicy(mode="off").applies_to("provider")


def test_mapping_never_shows_in_repr_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    session = POLICY.session()
    masked = session.mask(TEXT)
    session.restore(masked)
    _stream(session, list(masked))
    shown = repr(session) + repr(POLICY) + caplog.text
    for _, value in SAMPLES:
        assert value not in shown
