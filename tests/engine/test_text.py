"""Incremental detokenization and stop strings (no model needed)."""

from __future__ import annotations

import pytest

from sipp.engine.text import StopMatcher, TextStream, Utf8Assembler, normalize_stops


def test_multibyte_character_split_across_pieces_is_held_back() -> None:
    utf8 = Utf8Assembler()
    data = "é€😀".encode()
    out = [utf8.feed(data[i : i + 1]) for i in range(len(data))]
    # Nothing is emitted until a character is complete, and every emission is whole.
    assert "".join(out) == "é€😀"
    assert [s for s in out if s] == ["é", "€", "😀"]
    assert utf8.flush() == ""


def test_truncated_character_at_end_becomes_replacement_not_broken_bytes() -> None:
    utf8 = Utf8Assembler()
    assert utf8.feed("€".encode()[:2]) == ""
    assert utf8.flush() == "\ufffd"


def test_normalize_stops_dedupes_and_drops_empty() -> None:
    assert normalize_stops(["ab", "", "ab", "abc"]) == ("abc", "ab")
    assert normalize_stops(None) == ()


def test_stop_string_across_pieces_is_never_emitted() -> None:
    stream = TextStream(["END"])
    emitted = [stream.feed(p) for p in (b"Hello E", b"N", b"D and more")]
    assert "".join(emitted) == "Hello "
    assert stream.stopped
    assert stream.text == "Hello "
    assert stream.feed(b"ignored") == ""


def test_partial_stop_prefix_is_released_when_it_does_not_match() -> None:
    stream = TextStream(["END"])
    assert stream.feed(b"an E") == "an "
    assert stream.feed(b"x") == "Ex"
    assert not stream.stopped


def test_withheld_text_is_released_at_finish() -> None:
    stream = TextStream(["STOP"])
    assert stream.feed(b"go ST") == "go "
    assert stream.finish() == "ST"
    assert stream.text == "go ST"


def test_earliest_stop_wins() -> None:
    matcher = StopMatcher(["world", "o w"])
    text, stopped = matcher.feed("hello world")
    assert (text, stopped) == ("hell", True)


def test_holdback_never_exceeds_longest_stop_minus_one() -> None:
    matcher = StopMatcher(["abcd"])
    matcher.feed("xxabc")
    assert matcher.held == "abc"
    matcher.feed("x")
    assert matcher.held == ""


@pytest.mark.parametrize("split", range(1, 8))
def test_stop_inside_multibyte_text_at_any_split(split: int) -> None:
    data = "día—fin".encode()
    stream = TextStream(["—"])
    out = stream.feed(data[:split]) + stream.feed(data[split:])
    assert out == "día"
    assert stream.stopped


def test_no_stops_streams_everything() -> None:
    stream = TextStream()
    assert stream.feed(b"abc") == "abc"
    assert stream.finish() == ""
    assert stream.text == "abc"
