"""The built-in detectors find each entity type exactly, and skip look-alikes."""

from __future__ import annotations

import pytest

from sipp.errors import ConfigurationError
from sipp.pii import PatternDetector
from tests.pii.samples import COUNTRIES, SAMPLES, sentence

DETECTOR = PatternDetector(countries=COUNTRIES)


@pytest.mark.parametrize(("entity", "value"), SAMPLES)
def test_each_sample_is_found_exactly(entity: str, value: str) -> None:
    from sipp.pii._spans import resolve_overlaps
    from sipp.pii.masking import PRIORITY

    text = sentence(value)
    spans = resolve_overlaps(DETECTOR.detect(text), PRIORITY)
    assert [(text[s.start:s.end], s.entity) for s in spans] == [(value, entity)]


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112 fails Luhn",
        "IBAN DE89 3704 0044 0532 0130 01 has a bad checksum",
        "SSN 999-45-6789 and 000-12-3456 are not issued",
        "meeting at 10:30:45 on 2024-01-15",
        "version 256.1.1.1 is no address",
        "order 12345 shipped, ticket #884512",
        "DNI 12345678A has the wrong letter",
    ],
)
def test_look_alikes_are_not_reported(text: str) -> None:
    assert DETECTOR.detect(text) == []


def test_national_ids_follow_the_chosen_countries() -> None:
    us_only = PatternDetector(["NATIONAL_ID"], countries=["US"])
    assert len(us_only.detect(sentence("123-45-6789"))) == 1
    assert us_only.detect(sentence("12345678Z")) == []
    es = PatternDetector(["NATIONAL_ID"], countries=["ES"])
    assert len(es.detect(sentence("12345678Z"))) == 1


def test_bad_configuration_names_the_field() -> None:
    with pytest.raises(ConfigurationError, match="'SSN' is not a built-in type"):
        PatternDetector(["SSN"])
    with pytest.raises(ConfigurationError, match="no national-ID pattern for 'XX'"):
        PatternDetector(countries=["XX"])
