"""Refuse GBNF terminals that no token can produce, before libllama sees the grammar.

llama.cpp treats code point 0 as the end of a partial UTF-8 sequence, so a terminal that
can only match NUL (``"\\x00"``, ``[\\x00]``) -- or nothing at all (``[]``, an inverted range
such as ``[\\U0010FFFF-\\x00]``) -- leaves the grammar with no way forward: the first sampled
token empties its stacks and libllama throws ``Unexpected empty grammar stack`` from a C
call, which aborts the process. :func:`check_terminals` scans the literals and character
classes (the syntax of llama.cpp's ``grammars/README.md``) and raises ``GrammarError``
naming the terminal instead. Everything else is left to llama.cpp's own parser.
"""

from __future__ import annotations

from sipp.errors import GrammarError

__all__ = ["check_terminals"]

_SIMPLE_ESCAPES = {"t": 9, "r": 13, "n": 10, "\\": 92, '"': 34, "[": 91, "]": 93}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}
_MAX_CODE_POINT = 0x10FFFF


def _char(text: str, i: int) -> tuple[int, int]:
    """The code point at ``text[i]`` (escapes decoded) and the index after it."""
    if text[i] != "\\":
        return ord(text[i]), i + 1
    if i + 1 >= len(text):
        return -1, i + 1  # llama.cpp reports the unterminated escape
    kind = text[i + 1]
    if kind in _HEX_ESCAPES:
        end = i + 2
        value = 0
        for ch in text[end : end + _HEX_ESCAPES[kind]]:
            if ch not in "0123456789abcdefABCDEF":
                break
            value = value * 16 + int(ch, 16)
            end += 1
        return value, end
    return _SIMPLE_ESCAPES.get(kind, -1), i + 2


def _where(text: str, start: int, end: int) -> str:
    shown = text[start:end]
    return shown if len(shown) <= 40 else shown[:37] + "..."


def _matches_some(ranges: list[tuple[int, int]], negated: bool) -> bool:
    """Whether a class of ``ranges`` (NUL removed) matches a code point in 1..0x10FFFF."""
    ranges = sorted((lo, hi) for lo, hi in ranges if lo <= hi)
    if not negated:
        return bool(ranges)
    covered = 0  # every code point in 1..covered is excluded
    for lo, hi in ranges:
        if lo > covered + 1:
            return True
        covered = max(covered, hi)
    return covered < _MAX_CODE_POINT


def check_terminals(text: str) -> None:
    """Raise ``GrammarError`` for a literal holding NUL or a class that matches only NUL or
    nothing; other syntax errors are left to llama.cpp."""
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "#":
            while i < n and text[i] not in "\r\n":
                i += 1
        elif ch == '"':
            start = i
            i += 1
            while i < n and text[i] != '"':
                code, i = _char(text, i)
                if code == 0:
                    raise GrammarError(
                        f"Invalid GBNF grammar: the literal {_where(text, start, i)}... holds "
                        "a NUL character (\\x00), which no token can produce"
                    )
            i += 1
        elif ch == "[":
            start = i
            i += 1
            negated = i < n and text[i] == "^"
            if negated:
                i += 1
            ranges: list[tuple[int, int]] = []
            while i < n and text[i] != "]":
                lo, i = _char(text, i)
                hi = lo
                if i + 1 < n and text[i] == "-" and text[i + 1] != "]":
                    hi, i = _char(text, i + 1)
                if lo < 0 or hi < 0:
                    return  # a bad escape: llama.cpp's parser reports it
                if lo <= hi:
                    ranges.append((max(lo, 1), hi))
            if i >= n:
                return  # unterminated class: llama.cpp's parser reports it
            i += 1
            if not _matches_some(ranges, negated):
                raise GrammarError(
                    f"Invalid GBNF grammar: the character class {_where(text, start, i)} "
                    "matches no character a token can produce (only NUL, or nothing)"
                )
        else:
            i += 1
