"""Untrusted JSON: every input parses to what ``json`` gives, or raises UntrustedJsonError."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipp._json import MAX_DEPTH, UntrustedJsonError, loads_untrusted

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)


def _has_surrogate(value: object) -> bool:
    text = json.dumps(value, ensure_ascii=False)
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


@given(JSON_VALUES)
def test_round_trip_or_named_refusal(value: object) -> None:
    text = json.dumps(value)
    try:
        assert loads_untrusted(text) == value
    except UntrustedJsonError as exc:
        assert _has_surrogate(value) or "out of range" in str(exc), exc


@given(st.binary(max_size=200))
def test_random_bytes_never_raise_anything_else(data: bytes) -> None:
    try:
        loads_untrusted(data)
    except UntrustedJsonError as exc:
        assert str(exc)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested deeper than"),
        ('{"a":' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1), "nested deeper than 128"),
        ('{"max_tokens": ' + "9" * 5000 + "}", "not accepted JSON"),
        ('{"n": ' + str(2**65) + "}", "$.n: integer out of range"),
        ('{"t": 1e400}', "$.t: number out of range"),
        ('{"t": NaN}', "NaN is not a JSON number"),
        ('{"prompt": "a\\ud800b"}', "$.prompt: string holds a lone UTF-16 surrogate (\\ud800)"),
        ('{"\\udfff": 1}', "lone UTF-16 surrogate"),
        ('{"a": [1, 2', "not valid JSON"),
    ],
)
def test_hostile_inputs_are_named(text: str, message: str) -> None:
    with pytest.raises(UntrustedJsonError) as info:
        loads_untrusted(text)
    assert message in str(info.value)


def test_paired_surrogates_are_text() -> None:
    assert loads_untrusted('"\\ud83d\\ude00"') == "\U0001f600"
    assert math.isclose(loads_untrusted("1.5e300"), 1.5e300)


def test_the_limits_are_exact_however_the_text_looks() -> None:
    """The bounds hold exactly, with plain, non-ASCII and escaped text around them."""
    for prefix in ('{"p": "plain", ', '{"p": "caf\u00e9", ', '{"p": "\\u00e9", '):
        assert loads_untrusted(prefix + f'"n": {2**64}}}')["n"] == 2**64
        assert loads_untrusted(prefix + f'"n": {-(2**64)}}}')["n"] == -(2**64)
        with pytest.raises(UntrustedJsonError, match="integer out of range"):
            loads_untrusted(prefix + f'"n": {2**64 + 1}}}')
        assert loads_untrusted(prefix + '"t": 1.5e300}')["t"] == 1.5e300
    deepest = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert loads_untrusted(deepest) == loads_untrusted('["\u00e9", ' + deepest[1:])[1:]
    with pytest.raises(UntrustedJsonError, match="nested deeper"):
        loads_untrusted("[" + deepest + "]")
