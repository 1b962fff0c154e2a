"""JSON Schema → GBNF, the grammar dialect of llama.cpp's grammar sampler.

``json_schema_to_gbnf(schema)`` turns a JSON Schema (a dict, its JSON text, or a boolean)
into a grammar whose ``root`` rule matches exactly the JSON documents the converter can
express for that schema. ``JSON_GBNF`` is the grammar of any JSON value.

Supported: ``type`` (one name or a list), ``properties``, ``required``,
``additionalProperties`` (false, true or a schema), ``enum``, ``const``, ``items``,
``prefixItems`` (and draft-7 tuple ``items`` with ``additionalItems``), ``minItems``,
``maxItems``, ``$ref`` to any ``#/...`` pointer of the same document (``#/$defs/X``,
``#/definitions/X``, ``#``; recursion allowed), ``anyOf``, ``oneOf``, ``allOf`` (merged),
``minLength``, ``maxLength``, ``pattern`` (a regex subset), ``format`` (date, time,
date-time, uuid, email, uri), integer ``minimum``/``maximum``/``exclusiveMinimum``/
``exclusiveMaximum``. Annotations (``title``, ``description``, ``default``, ``examples``,
``$schema``, ``$id``, ``$comment``, ``x-*`` ...) are ignored. Anything else raises
:class:`SchemaError` naming the keyword and the JSON pointer where it occurs.

Choices made for generation (documented, not bugs):

- Objects are closed by default: a schema that declares ``properties`` admits only those
  keys unless ``additionalProperties`` is ``true`` or a schema (OpenAI's ``strict`` flag
  never loosens this). An object schema without ``properties`` (``{"type": "object"}``)
  admits any object.
- Properties are emitted in a fixed order: required properties first (in ``properties``
  order, then any required names that ``properties`` does not declare), then the optional
  ones in declared order, each of which may be left out, then additional properties.
  Additional property names never repeat a declared name (as spelled, without escapes).
- Whitespace between tokens is bounded: at most one space, or one newline followed by at
  most 20 spaces/tabs, so generation cannot loop on whitespace.
- Numbers have at most 19 integer digits, 20 fraction digits and 3 exponent digits.
  ``minimum``/``maximum`` are enforced exactly for ``integer``; for ``number`` only the
  sign is enforced (a lower bound >= 0 forbids ``-``).
- ``oneOf`` is treated as ``anyOf`` (exclusivity is not expressible in a grammar).
- ``minLength``/``maxLength`` are not enforced together with ``pattern`` or ``format``.
- ``pattern`` anchors ``^``/``$`` apply to the whole pattern; without them the match may
  be surrounded by any characters, as JSON Schema specifies.
- With ``prefixItems`` (or draft-7 tuple ``items``) and no ``items`` (``additionalItems``)
  schema, no items beyond the tuple are generated.
- Repetition upper bounds above 2000 (llama.cpp's repetition limit) are not enforced.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from sipp.errors import JsonSchemaError

__all__ = ["JSON_GBNF", "SchemaError", "gbnf_escape_literal", "json_schema_to_gbnf"]


class SchemaError(JsonSchemaError):
    """An invalid JSON Schema, or one using a feature the converter does not support.

    ``keyword`` is the offending keyword (or ``None``), ``pointer`` the JSON pointer of the
    schema where it occurs (``""`` is the root).
    """

    def __init__(
        self,
        message: str,
        *,
        keyword: str | None = None,
        pointer: str = "",
        code: str | None = None,
    ) -> None:
        where = "#" + pointer
        at = f"keyword '{keyword}' at {where}" if keyword is not None else f"at {where}"
        super().__init__(f"{message} ({at})", code=code)
        self.keyword = keyword
        self.pointer = pointer


# --------------------------------------------------------------------------- GBNF text

_MAX_REPEAT = 2000  # llama.cpp rejects repetition counts above this
_INT_DIGITS = 19

_SIMPLE_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(ch: str, in_class: bool) -> str:
    code = ord(ch)
    if 0xD800 <= code <= 0xDFFF and not in_class:
        raise ValueError(f"lone surrogate U+{code:04X} cannot appear in a grammar literal")
    if ch in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[ch]
    if in_class and ch in "[]-^":
        return f"\\x{code:02X}"
    if ch.isprintable() and code != 0x7F:
        return ch
    if code <= 0xFF:
        return f"\\x{code:02X}"
    return f"\\u{code:04X}" if code <= 0xFFFF else f"\\U{code:08X}"


def gbnf_escape_literal(text: str) -> str:
    """Return ``text`` as a quoted GBNF string literal (``"..."``) matching it exactly."""
    return '"' + "".join(_escape_char(ch, in_class=False) for ch in text) + '"'


def _class(ranges: list[tuple[int, int]], negated: bool = False) -> str:
    """A GBNF character class for sorted, disjoint code point ranges."""
    parts = []
    for lo, hi in ranges:
        first = _escape_char(chr(lo), in_class=True)
        parts.append(first if lo == hi else f"{first}-{_escape_char(chr(hi), in_class=True)}")
    return "[" + ("^" if negated else "") + "".join(parts) + "]"


def _group(expr: str) -> str:
    """Parenthesize ``expr`` unless it is already one symbol."""
    if re.fullmatch(r'[A-Za-z0-9-]+|"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]', expr):
        return expr
    return f"({expr})"


def _repeat(symbol: str, lo: int, hi: int | None) -> str:
    """``symbol`` repeated ``lo`` to ``hi`` times (``None``: unbounded), within llama's limits.

    ``symbol`` must be one symbol (a rule name, literal or class), so that llama.cpp counts
    one rule per repetition.
    """
    parts: list[str] = []
    while lo > _MAX_REPEAT:
        parts.append(f"{symbol}{{{_MAX_REPEAT}}}")
        lo -= _MAX_REPEAT
        hi = None if hi is None else hi - _MAX_REPEAT
    if hi is not None and hi > _MAX_REPEAT:
        hi = None
    if hi is None:
        parts.append({0: f"{symbol}*", 1: f"{symbol}+"}.get(lo, f"{symbol}{{{lo},}}"))
    elif hi == lo:
        if lo == 1:
            parts.append(symbol)
        elif lo > 1:
            parts.append(f"{symbol}{{{lo}}}")
    elif lo == 0 and hi == 1:
        parts.append(f"{symbol}?")
    else:
        parts.append(f"{symbol}{{{lo},{hi}}}")
    return " ".join(parts)


# Shared rules, added to a grammar on first use together with what they reference.
_PRIMITIVES: dict[str, str] = {
    "ws": r'(" " | "\n" [ \t]{0,20})?',
    "char": r'[^"\\\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})',
    "string": r'"\"" char* "\"" ws',
    "integer": r'"-"? ("0" | [1-9] [0-9]{0,18}) ws',
    "number": r'"-"? ("0" | [1-9] [0-9]{0,18}) ("." [0-9]{1,20})? ([eE] [-+]? [0-9]{1,3})? ws',
    "boolean": r'("true" | "false") ws',
    "null": r'"null" ws',
    "value": "object | array | string | number | boolean | null",
    "object": r'"{" ws (member ("," ws member)*)? "}" ws',
    "member": r'string ":" ws value',
    "array": r'"[" ws (value ("," ws value)*)? "]" ws',
    "date": r'[0-9]{4} "-" ("0" [1-9] | "1" [0-2]) "-" ("0" [1-9] | [12] [0-9] | "3" [01])',
    "time": (
        r'([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" ([0-5] [0-9] | "60") ("." [0-9]{1,9})? '
        r'([Zz] | [-+] ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9])'
    ),
    "date-time": r"date [Tt] time",
    "uuid": (
        r'[0-9a-fA-F]{8} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" '
        r"[0-9a-fA-F]{12}"
    ),
    "email": r'[A-Za-z0-9._%+\-]{1,64} "@" email-label ("." email-label){1,8}',
    "email-label": r"[A-Za-z0-9] ([A-Za-z0-9\-]{0,61} [A-Za-z0-9])?",
    "uri": r'[A-Za-z] [A-Za-z0-9+.\-]{0,31} ":" [^"\\\x00-\x20\x7F]{1,2000}',
}
_NAME_RE = re.compile(r"[A-Za-z0-9-]+(?:-[A-Za-z0-9]+)*")
_FORMATS = ("date", "time", "date-time", "uuid", "email", "uri")


def _primitive_deps(name: str) -> list[str]:
    body = re.sub(r'"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]|\{[0-9,]*\}', " ", _PRIMITIVES[name])
    return [tok for tok in re.findall(r"[A-Za-z][A-Za-z0-9-]*", body) if tok in _PRIMITIVES]


# --------------------------------------------------------------------------- keywords

_ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "$schema",
        "$id",
        "$comment",
        "$anchor",
        "deprecated",
        "readOnly",
        "writeOnly",
        "contentMediaType",
        "contentEncoding",
        "discriminator",
        "$defs",
        "definitions",
    }
)
_SUPPORTED = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "enum",
        "const",
        "items",
        "prefixItems",
        "additionalItems",
        "minItems",
        "maxItems",
        "$ref",
        "anyOf",
        "oneOf",
        "allOf",
        "minLength",
        "maxLength",
        "pattern",
        "format",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "uniqueItems",
    }
)
_UNSUPPORTED = frozenset(
    {
        "not",
        "if",
        "then",
        "else",
        "patternProperties",
        "propertyNames",
        "dependentRequired",
        "dependentSchemas",
        "dependencies",
        "unevaluatedProperties",
        "unevaluatedItems",
        "contains",
        "minContains",
        "maxContains",
        "minProperties",
        "maxProperties",
        "multipleOf",
        "$dynamicRef",
        "$dynamicAnchor",
        "$recursiveRef",
        "$recursiveAnchor",
    }
)
_TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")
_OBJECT_KEYS = ("properties", "required", "additionalProperties")
_ARRAY_KEYS = ("items", "prefixItems", "additionalItems", "minItems", "maxItems")
_STRING_KEYS = ("minLength", "maxLength", "pattern", "format")
_NUMBER_KEYS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def _child(pointer: str, *parts: str | int) -> str:
    for part in parts:
        pointer += "/" + str(part).replace("~", "~0").replace("/", "~1")
    return pointer


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _matches_type(value: Any, type_name: str) -> bool:
    checks: dict[str, Callable[[Any], bool]] = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "number": _is_number,
        "integer": lambda v: _is_number(v) and float(v).is_integer(),
        "boolean": lambda v: isinstance(v, bool),
        "null": lambda v: v is None,
    }
    return checks[type_name](value)


def _json_text(value: Any, pointer: str, keyword: str) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"value is not JSON: {exc}", keyword=keyword, pointer=pointer) from exc


# --------------------------------------------------------------------------- integer ranges


def _same_length_range(lo: str, hi: str) -> str:
    """Digits strings of equal length ``lo <= hi``: an expression matching exactly that range."""
    n = len(lo)
    if lo == hi:
        return f'"{lo}"'
    if n == 1:
        return f"[{lo}-{hi}]"
    if lo[0] == hi[0]:
        return f'"{lo[0]}" {_group(_same_length_range(lo[1:], hi[1:]))}'
    alts = []
    low_full = lo[1:] == "0" * (n - 1)
    high_full = hi[1:] == "9" * (n - 1)
    first = int(lo[0]) + (0 if low_full else 1)
    last = int(hi[0]) - (0 if high_full else 1)
    if not low_full:
        alts.append(f'"{lo[0]}" {_group(_same_length_range(lo[1:], "9" * (n - 1)))}')
    if first <= last:
        head = f'"{first}"' if first == last else f"[{first}-{last}]"
        alts.append(f"{head} [0-9]{{{n - 1}}}" if n > 2 else f"{head} [0-9]")
    if not high_full:
        alts.append(f'"{hi[0]}" {_group(_same_length_range("0" * (n - 1), hi[1:]))}')
    return " | ".join(alts)


def _natural_range(lo: int, hi: int | None, max_digits: int) -> list[str]:
    """Alternatives matching canonical decimals in ``[lo, hi]`` (``lo >= 0``)."""
    alts = []
    top = len(str(hi)) if hi is not None else len(str(lo))
    for length in range(len(str(lo)), top + 1):
        start = max(lo, 10 ** (length - 1) if length > 1 else 0)
        end = 10**length - 1 if hi is None else min(hi, 10**length - 1)
        if start <= end:
            alts.append(_same_length_range(str(start), str(end)))
    if hi is None and top < max_digits:
        alts.append(f"[1-9] [0-9]{{{top},{max_digits - 1}}}")
    return alts


def _integer_range(lo: int | None, hi: int | None) -> str:
    digits = max([_INT_DIGITS] + [len(str(abs(b))) for b in (lo, hi) if b is not None])
    alts: list[str] = []
    if lo is None or lo < 0:
        neg_lo = 1 if hi is None or hi >= 0 else -hi
        neg = _natural_range(neg_lo, None if lo is None else -lo, digits)
        alts.append('"-" ' + _group(" | ".join(neg)))
    if hi is None or hi >= 0:
        alts.extend(
            _group(a) if "|" in a else a for a in _natural_range(max(lo or 0, 0), hi, digits)
        )
    return " | ".join(alts)


# --------------------------------------------------------------------------- regex patterns

_CONTROL = [(0x00, 0x1F)]
_JSON_SPECIAL = [(0x00, 0x1F), (0x22, 0x22), (0x5C, 0x5C)]
_MAX_CODE = 0x10FFFF


def _normalize(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _complement(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out, start = [], 0
    for lo, hi in _normalize(ranges):
        if lo > start:
            out.append((start, lo - 1))
        start = hi + 1
    if start <= _MAX_CODE:
        out.append((start, _MAX_CODE))
    return out


def _intersect(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    return _normalize(
        [(max(x, y), min(p, q)) for x, p in a for y, q in b if max(x, y) <= min(p, q)]
    )


_SHORTHAND = {
    "d": [(0x30, 0x39)],
    "w": [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
    "s": [(0x09, 0x0D), (0x20, 0x20)],
}
_CHAR_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "0": "\0"}


class _RegexToGbnf:
    """Recursive-descent translation of a regex subset into a GBNF expression matching the
    JSON-encoded form of the strings the regex matches."""

    def __init__(self, pattern: str, conv: _Converter, hint: str, pointer: str) -> None:
        self.src = pattern
        self.pattern = pattern
        self.base = 0  # offset of self.src inside the original pattern
        self.pos = 0
        self.conv = conv
        self.hint = hint
        self.pointer = pointer

    def fail(self, what: str) -> SchemaError:
        return SchemaError(
            f"unsupported regex in pattern {self.pattern!r}: {what}"
            f" at offset {self.base + self.pos}",
            keyword="pattern",
            pointer=self.pointer,
        )

    def translate(self) -> str:
        src = self.src
        anchored_start = src.startswith("^")
        anchored_end = src.endswith("$") and not src.endswith("\\$")
        self.base = 1 if anchored_start else 0
        self.src = src[self.base : len(src) - (1 if anchored_end else 0)]
        body = self.alternation()
        if self.pos != len(self.src):
            raise self.fail(f"unexpected {self.src[self.pos]!r}")
        body = body or '""'
        if anchored_start and anchored_end:
            return body
        self.conv.use("char")
        parts = [] if anchored_start else ["char*"]
        parts.append(_group(body) if "|" in body else body)
        if not anchored_end:
            parts.append("char*")
        return " ".join(parts)

    def peek(self) -> str:
        return self.src[self.pos] if self.pos < len(self.src) else ""

    def alternation(self) -> str:
        alts = [self.sequence()]
        while self.peek() == "|":
            self.pos += 1
            alts.append(self.sequence())
        return " | ".join(a if a else '""' for a in alts)

    def sequence(self) -> str:
        items: list[tuple[str, str]] = []  # (gbnf, kind: "lit" | "sym" | "group")
        while self.pos < len(self.src) and self.peek() not in "|)":
            atom, kind = self.atom()
            quant = self.quantifier()
            if quant is not None:
                symbol = self.conv.add_rule(self.hint, atom) if kind == "group" else atom
                atom, kind = _repeat(symbol, *quant), "sym"
                if not atom:
                    continue
            items.append((atom, kind))
        merged: list[tuple[str, str]] = []
        for atom, kind in items:
            if kind == "lit" and merged and merged[-1][1] == "lit":
                merged[-1] = (merged[-1][0][:-1] + atom[1:], "lit")
            else:
                merged.append((atom, kind))
        return " ".join(_group(atom) if "|" in atom else atom for atom, _ in merged)

    def quantifier(self) -> tuple[int, int | None] | None:
        ch = self.peek()
        quant: tuple[int, int | None] | None = None
        if ch and ch in "*+?":
            self.pos += 1
            quant = {"*": (0, None), "+": (1, None), "?": (0, 1)}[ch]
        elif ch == "{":
            match = re.compile(r"\{(\d+)(,(\d*))?\}").match(self.src, self.pos)
            if match is None:
                return None
            self.pos = match.end()
            lo = int(match.group(1))
            hi = lo if match.group(2) is None else (int(match.group(3)) if match.group(3) else None)
            if hi is not None and hi < lo:
                raise self.fail("quantifier maximum below its minimum")
            quant = (lo, hi)
        if quant is not None:
            if self.peek() == "+":
                raise self.fail("possessive quantifier")
            if self.peek() == "?":
                self.pos += 1  # lazy: same language
            if self.peek() and self.peek() in "*+?":
                raise self.fail("repeated quantifier")
        return quant

    def atom(self) -> tuple[str, str]:
        ch = self.peek()
        if ch == "(":
            self.pos += 1
            if self.src.startswith("?:", self.pos):
                self.pos += 2
            elif self.peek() == "?":
                raise self.fail("group extension (lookaround, named group or flags)")
            inner = self.alternation()
            if self.peek() != ")":
                raise self.fail("missing ')'")
            self.pos += 1
            return (inner or '""'), "group"
        if ch == "[":
            return self.char_set(*self.bracket()), "sym"
        if ch == ".":
            self.pos += 1
            return self.char_set([(0x0A, 0x0A)], True), "sym"
        if ch in "*+?":
            raise self.fail("quantifier without a preceding item")
        if ch in "^$":
            raise self.fail(f"anchor {ch!r} inside the pattern")
        if ch == "\\":
            ranges, negated = self.escape(in_class=False)
            if len(ranges) == 1 and ranges[0][0] == ranges[0][1] and not negated:
                return self.literal(chr(ranges[0][0]))
            return self.char_set(ranges, negated), "sym"
        self.pos += 1
        return self.literal(ch)

    def literal(self, ch: str) -> tuple[str, str]:
        encoded = json.dumps(ch, ensure_ascii=False)[1:-1]
        return gbnf_escape_literal(encoded), "lit"

    def escape(self, in_class: bool) -> tuple[list[tuple[int, int]], bool]:
        self.pos += 1
        ch = self.peek()
        if not ch:
            raise self.fail("trailing backslash")
        self.pos += 1
        if ch.lower() in _SHORTHAND:
            if ch.isupper() and in_class:
                raise self.fail(f"negated shorthand \\{ch} inside a class")
            return _SHORTHAND[ch.lower()], ch.isupper()
        if ch in _CHAR_ESCAPES:
            code = ord(_CHAR_ESCAPES[ch])
            return [(code, code)], False
        if ch in "xu":
            size = 2 if ch == "x" else 4
            digits = self.src[self.pos : self.pos + size]
            if len(digits) != size or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise self.fail(f"\\{ch} needs {size} hex digits")
            self.pos += size
            code = int(digits, 16)
            return [(code, code)], False
        if ch.isalnum():
            raise self.fail(f"escape \\{ch}")
        return [(ord(ch), ord(ch))], False

    def bracket(self) -> tuple[list[tuple[int, int]], bool]:
        self.pos += 1
        negated = self.peek() == "^"
        if negated:
            self.pos += 1
        ranges: list[tuple[int, int]] = []
        first = True
        while True:
            ch = self.peek()
            if not ch:
                raise self.fail("missing ']'")
            if ch == "]" and not first:
                self.pos += 1
                break
            first = False
            if ch == "\\":
                item, _ = self.escape(in_class=True)
            elif ch == "[" and self.src.startswith("[:", self.pos):
                raise self.fail("POSIX character class")
            else:
                self.pos += 1
                item = [(ord(ch), ord(ch))]
            if (
                len(item) == 1
                and item[0][0] == item[0][1]
                and self.peek() == "-"
                and self.pos + 1 < len(self.src)
                and self.src[self.pos + 1] != "]"
            ):
                self.pos += 1
                if self.peek() == "\\":
                    end, _ = self.escape(in_class=True)
                    if len(end) != 1 or end[0][0] != end[0][1]:
                        raise self.fail("class range ending in a shorthand")
                    high = end[0][0]
                else:
                    high = ord(self.peek())
                    self.pos += 1
                if high < item[0][0]:
                    raise self.fail("class range out of order")
                item = [(item[0][0], high)]
            ranges.extend(item)
        return _normalize(ranges), negated

    def char_set(self, ranges: list[tuple[int, int]], negated: bool) -> str:
        """Characters in (or out of) ``ranges``, written as JSON string content."""
        chars = _complement(ranges) if negated else _normalize(ranges)
        raw = _intersect(chars, _complement(_JSON_SPECIAL))
        special = _intersect(chars, _JSON_SPECIAL)
        alts = []
        if raw:
            if negated:
                alts.append(_class(_normalize(ranges + _JSON_SPECIAL), negated=True))
            else:
                alts.append(_class(raw))
        for lo, hi in special:
            for code in range(lo, hi + 1):
                alts.append(gbnf_escape_literal(json.dumps(chr(code))[1:-1]))
        if not alts:
            raise self.fail("empty character class")
        body = " | ".join(alts)
        return body if len(alts) == 1 else self.conv.add_rule(self.hint + "-chars", body)


# --------------------------------------------------------------------------- converter


class _Converter:
    def __init__(self, root: Any) -> None:
        self.root = root
        self.rules: dict[str, str] = {}
        self.by_body: dict[str, str] = {}
        self.refs: dict[str, str] = {}
        self.reserved = set(_PRIMITIVES) | {"root"}

    # -- rules

    def use(self, name: str) -> str:
        if name not in self.rules:
            self.rules[name] = _PRIMITIVES[name]
            self.by_body.setdefault(_PRIMITIVES[name], name)
            for dep in _primitive_deps(name):
                self.use(dep)
        return name

    def fresh_name(self, hint: str) -> str:
        base = "-".join(re.findall(r"[A-Za-z0-9]+", hint)) or "rule"
        name, n = base, 1
        while name in self.rules or (name in self.reserved and name != "root"):
            n += 1
            name = f"{base}-{n}"
        self.rules[name] = ""
        return name

    def add_rule(self, hint: str, body: str) -> str:
        if body in self.by_body:
            return self.by_body[body]
        if _NAME_RE.fullmatch(body) and body in self.rules:
            return body
        name = self.fresh_name(hint)
        self.rules[name] = body
        self.by_body[body] = name
        return name

    def text(self) -> str:
        return "".join(f"{name} ::= {body}\n" for name, body in self.rules.items())

    # -- schemas

    def rule(self, schema: Any, hint: str, pointer: str) -> str:
        """A rule name matching ``schema``."""
        return self.add_rule(hint, self.expr(schema, hint, pointer))

    def expr(self, schema: Any, hint: str, pointer: str) -> str:
        """A GBNF expression (maybe with alternatives) matching ``schema``."""
        if schema is True:
            return self.use("value")
        if schema is False:
            raise SchemaError("schema 'false' matches nothing here", pointer=pointer)
        if not isinstance(schema, dict):
            raise SchemaError(
                f"expected a schema object or boolean, got {type(schema).__name__}",
                pointer=pointer,
            )
        self.check_keywords(schema, pointer)
        constraints = {k: v for k, v in schema.items() if k not in _ANNOTATIONS}
        if "$ref" in constraints:
            ref = constraints.pop("$ref")
            if constraints:
                merged = self.merge_all([{"$ref": ref}, constraints], pointer)
                return self.expr(merged, hint, pointer)
            return self.ref(ref, pointer)
        if "allOf" in constraints:
            branches = self.schema_list(constraints.pop("allOf"), "allOf", pointer)
            merged = self.merge_all([*branches, constraints], _child(pointer, "allOf"))
            return self.expr(merged, hint, pointer)
        for key in ("anyOf", "oneOf"):
            if key in constraints:
                branches = self.schema_list(constraints.pop(key), key, pointer)
                alts = []
                for i, branch in enumerate(branches):
                    sub = (
                        self.merge_all([constraints, branch], _child(pointer, key, i))
                        if constraints
                        else branch
                    )
                    alts.append(self.rule(sub, f"{hint}-{i}", _child(pointer, key, i)))
                return " | ".join(dict.fromkeys(alts))
        types = self.types(constraints, pointer)
        if "const" in constraints or "enum" in constraints:
            return self.enum(constraints, types, pointer)
        if types is None:
            types = self.infer_types(constraints)
        if types is None:
            return self.use("value")
        if len(types) > 1:
            alts = [self.rule({**constraints, "type": t}, f"{hint}-{t}", pointer) for t in types]
            return " | ".join(dict.fromkeys(alts))
        return self.typed(constraints, types[0], hint, pointer)

    def check_keywords(self, schema: dict[str, Any], pointer: str) -> None:
        for key in schema:
            if not isinstance(key, str):
                raise SchemaError("schema keys must be strings", pointer=pointer)
            if key in _SUPPORTED or key in _ANNOTATIONS or key.startswith("x-"):
                continue
            if key in _UNSUPPORTED:
                raise SchemaError("unsupported JSON Schema keyword", keyword=key, pointer=pointer)
            raise SchemaError("unknown JSON Schema keyword", keyword=key, pointer=pointer)
        if schema.get("uniqueItems", False) is not False:
            raise SchemaError(
                "uniqueItems: true cannot be enforced by a grammar",
                keyword="uniqueItems",
                pointer=pointer,
            )

    def schema_list(self, value: Any, key: str, pointer: str) -> list[Any]:
        if not isinstance(value, list) or not value:
            raise SchemaError("expected a non-empty array of schemas", keyword=key, pointer=pointer)
        return value

    def types(self, schema: dict[str, Any], pointer: str) -> list[str] | None:
        if "type" not in schema:
            return None
        value = schema["type"]
        names = value if isinstance(value, list) else [value]
        if not names or not all(isinstance(n, str) and n in _TYPES for n in names):
            raise SchemaError(
                f"expected one of {', '.join(_TYPES)} or a non-empty list of them, got {value!r}",
                keyword="type",
                pointer=pointer,
            )
        return list(dict.fromkeys(names))

    def infer_types(self, schema: dict[str, Any]) -> list[str] | None:
        for keys, name in (
            (_OBJECT_KEYS, "object"),
            (_ARRAY_KEYS, "array"),
            (_STRING_KEYS, "string"),
            (_NUMBER_KEYS, "number"),
        ):
            if any(k in schema for k in keys):
                return [name]
        return None

    # -- $ref and allOf

    def resolve(self, ref: Any, pointer: str) -> tuple[Any, str]:
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise SchemaError(
                f"only local references ('#/...') are supported, got {ref!r}",
                keyword="$ref",
                pointer=pointer,
            )
        path = unquote(ref[1:])
        if path and not path.startswith("/"):
            raise SchemaError(
                f"anchor references are not supported: {ref!r}", keyword="$ref", pointer=pointer
            )
        target = self.root
        for raw in path.split("/")[1:]:
            part = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(target, dict) and part in target:
                target = target[part]
            elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
                target = target[int(part)]
            else:
                raise SchemaError(
                    f"unresolvable reference {ref!r}", keyword="$ref", pointer=pointer
                )
        return target, path

    def ref(self, ref: Any, pointer: str) -> str:
        if isinstance(ref, str) and ref in self.refs:
            return self.refs[ref]
        target, target_pointer = self.resolve(ref, pointer)
        hint = target_pointer.rsplit("/", 1)[-1] or "root"
        name = self.fresh_name(hint if target_pointer else "root-ref")
        self.refs[ref] = name
        body = self.expr(target, name, target_pointer)
        if name in {a.strip() for a in body.split("|")}:
            raise SchemaError(
                f"reference {ref!r} refers to itself without consuming input",
                keyword="$ref",
                pointer=pointer,
            )
        self.rules[name] = body
        self.by_body.setdefault(body, name)
        return name

    def deref(self, schema: Any, pointer: str, seen: tuple[str, ...] = ()) -> tuple[Any, str]:
        """Follow ``$ref`` chains and flatten ``allOf`` for merging."""
        if isinstance(schema, dict) and isinstance(schema.get("$ref"), str):
            ref = schema["$ref"]
            if ref in seen:
                raise SchemaError(
                    f"circular reference {ref!r} in allOf", keyword="$ref", pointer=pointer
                )
            target, target_pointer = self.resolve(ref, pointer)
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            target, target_pointer = self.deref(target, target_pointer, (*seen, ref))
            if not rest:
                return target, target_pointer
            return self.merge_all([target, rest], pointer), pointer
        return schema, pointer

    def merge_all(self, schemas: list[Any], pointer: str) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for i, schema in enumerate(schemas):
            schema, where = self.deref(schema, _child(pointer, i))
            if schema is True:
                continue
            if not isinstance(schema, dict):
                raise SchemaError(
                    "allOf branches must be schema objects", keyword="allOf", pointer=where
                )
            self.check_keywords(schema, where)
            if "allOf" in schema:
                inner = self.schema_list(schema["allOf"], "allOf", where)
                rest = {k: v for k, v in schema.items() if k != "allOf"}
                schema = self.merge_all([*inner, rest], _child(where, "allOf"))
            merged = self.merge_two(merged, schema, where)
        return merged

    def merge_two(self, a: dict[str, Any], b: dict[str, Any], pointer: str) -> dict[str, Any]:
        out = dict(a)
        for key, value in b.items():
            if key in _ANNOTATIONS or key not in out:
                out.setdefault(key, value)
                continue
            old = out[key]
            if old == value:
                continue
            if key == "properties" and isinstance(old, dict) and isinstance(value, dict):
                props = dict(old)
                for name, sub in value.items():
                    props[name] = {"allOf": [props[name], sub]} if name in props else sub
                out[key] = props
            elif key == "required" and isinstance(old, list) and isinstance(value, list):
                out[key] = list(dict.fromkeys([*old, *value]))
            elif key == "type":
                left = old if isinstance(old, list) else [old]
                right = value if isinstance(value, list) else [value]
                both = [t for t in left if t in right or (t == "integer" and "number" in right)]
                both += [t for t in right if t == "integer" and "number" in left and t not in both]
                if not both:
                    raise SchemaError(
                        f"allOf branches have disjoint types {old!r} and {value!r}",
                        keyword="type",
                        pointer=pointer,
                    )
                out[key] = both
            elif key == "additionalProperties":
                if old is False or value is False:
                    out[key] = False
                else:
                    out[key] = (
                        value if old is True else old if value is True else {"allOf": [old, value]}
                    )
            elif (
                key in ("minLength", "minItems", "minimum", "exclusiveMinimum")
                and _is_number(old)
                and _is_number(value)
            ):
                out[key] = max(old, value)
            elif (
                key in ("maxLength", "maxItems", "maximum", "exclusiveMaximum")
                and _is_number(old)
                and _is_number(value)
            ):
                out[key] = min(old, value)
            elif key == "items" and isinstance(old, dict) and isinstance(value, dict):
                out[key] = {"allOf": [old, value]}
            else:
                raise SchemaError(
                    "allOf branches disagree and cannot be merged", keyword=key, pointer=pointer
                )
        return out

    # -- values

    def enum(self, schema: dict[str, Any], types: list[str] | None, pointer: str) -> str:
        if "const" in schema:
            values, keyword = [schema["const"]], "const"
        else:
            values, keyword = schema["enum"], "enum"
            if not isinstance(values, list) or not values:
                raise SchemaError("expected a non-empty array", keyword="enum", pointer=pointer)
        if types is not None:
            values = [v for v in values if any(_matches_type(v, t) for t in types)]
            if not values:
                raise SchemaError(
                    f"no {keyword} value matches the declared type",
                    keyword=keyword,
                    pointer=pointer,
                )
        self.use("ws")
        alts = dict.fromkeys(self.const(v, pointer, keyword) for v in values)
        body = " | ".join(_group(a) if len(alts) > 1 else a for a in alts)
        return f"({body}) ws" if len(alts) > 1 else f"{body} ws"

    def const(self, value: Any, pointer: str, keyword: str) -> str:
        """Exactly ``value``, allowing whitespace inside objects and arrays."""
        if isinstance(value, dict):
            members = [
                f"{gbnf_escape_literal(_json_text(k, pointer, keyword))} ws "
                f'":" ws {self.const(v, pointer, keyword)} ws'
                for k, v in value.items()
            ]
            return '"{" ws ' + ' "," ws '.join(members) + (' "}"' if members else '"}"')
        if isinstance(value, list):
            items = [f"{self.const(v, pointer, keyword)} ws" for v in value]
            return '"[" ws ' + ' "," ws '.join(items) + (' "]"' if items else '"]"')
        return gbnf_escape_literal(_json_text(value, pointer, keyword))

    def typed(self, schema: dict[str, Any], type_name: str, hint: str, pointer: str) -> str:
        if type_name == "object":
            return self.object(schema, hint, pointer)
        if type_name == "array":
            return self.array(schema, hint, pointer)
        if type_name == "string":
            return self.string(schema, hint, pointer)
        if type_name == "integer":
            return self.integer(schema, pointer)
        if type_name == "number":
            return self.number(schema, pointer)
        return self.use(type_name)

    def count(self, schema: dict[str, Any], key: str, pointer: str) -> int | None:
        if key not in schema:
            return None
        value = schema[key]
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise SchemaError(
                f"expected a non-negative integer, got {value!r}", keyword=key, pointer=pointer
            )
        return value

    def bounds(
        self, schema: dict[str, Any], low: str, high: str, pointer: str
    ) -> tuple[int, int | None]:
        lo, hi = self.count(schema, low, pointer) or 0, self.count(schema, high, pointer)
        if hi is not None and hi < lo:
            raise SchemaError(f"{high} ({hi}) is below {low} ({lo})", keyword=high, pointer=pointer)
        return lo, hi

    def string(self, schema: dict[str, Any], hint: str, pointer: str) -> str:
        self.use("ws")
        quote = r'"\""'
        if "pattern" in schema and "format" in schema:
            raise SchemaError(
                "pattern and format cannot be combined", keyword="pattern", pointer=pointer
            )
        if "pattern" in schema:
            pattern = schema["pattern"]
            if not isinstance(pattern, str):
                raise SchemaError("expected a regex string", keyword="pattern", pointer=pointer)
            inner = _RegexToGbnf(pattern, self, hint + "-pattern", pointer).translate()
            return f"{quote} {self.add_rule(hint + '-pattern', inner)} {quote} ws"
        if "format" in schema:
            fmt = schema["format"]
            if fmt not in _FORMATS:
                raise SchemaError(
                    f"unsupported format {fmt!r} (supported: {', '.join(_FORMATS)})",
                    keyword="format",
                    pointer=pointer,
                )
            return f"{quote} {self.use(fmt)} {quote} ws"
        lo, hi = self.bounds(schema, "minLength", "maxLength", pointer)
        if lo == 0 and hi is None:
            return self.use("string")
        repeated = _repeat(self.use("char"), lo, hi)
        return f"{quote} {repeated} {quote} ws" if repeated else f"{quote} {quote} ws"

    def limit(self, schema: dict[str, Any], key: str, pointer: str) -> float | None:
        value = schema.get(key)
        if value is None:
            return None
        if isinstance(value, bool) and key.startswith("exclusive"):
            return None  # draft-4 flag form, applied to minimum/maximum below
        if not _is_number(value):
            raise SchemaError(
                f"expected a finite number, got {value!r}", keyword=key, pointer=pointer
            )
        return float(value) if isinstance(value, float) else value

    def integer(self, schema: dict[str, Any], pointer: str) -> str:
        self.use("ws")
        minimum, maximum = (
            self.limit(schema, "minimum", pointer),
            self.limit(schema, "maximum", pointer),
        )
        ex_min = self.limit(schema, "exclusiveMinimum", pointer)
        ex_max = self.limit(schema, "exclusiveMaximum", pointer)
        lows, highs = [], []
        if minimum is not None:
            lows.append(
                math.floor(minimum) + 1
                if schema.get("exclusiveMinimum") is True and float(minimum).is_integer()
                else math.ceil(minimum)
            )
        if ex_min is not None:
            lows.append(math.floor(ex_min) + 1)
        if maximum is not None:
            highs.append(
                math.ceil(maximum) - 1
                if schema.get("exclusiveMaximum") is True and float(maximum).is_integer()
                else math.floor(maximum)
            )
        if ex_max is not None:
            highs.append(math.ceil(ex_max) - 1)
        lo, hi = (max(lows) if lows else None), (min(highs) if highs else None)
        if lo is None and hi is None:
            return self.use("integer")
        if lo is not None and hi is not None and lo > hi:
            raise SchemaError(
                f"no integer lies between the bounds {lo} and {hi}",
                keyword="minimum",
                pointer=pointer,
            )
        return f"({_integer_range(lo, hi)}) ws"

    def number(self, schema: dict[str, Any], pointer: str) -> str:
        for key in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
            self.limit(schema, key, pointer)
        low = [schema[k] for k in ("minimum", "exclusiveMinimum") if _is_number(schema.get(k))]
        if low and max(low) >= 0:
            self.use("ws")
            return r'("0" | [1-9] [0-9]{0,18}) ("." [0-9]{1,20})? ([eE] [-+]? [0-9]{1,3})? ws'
        return self.use("number")

    def object(self, schema: dict[str, Any], hint: str, pointer: str) -> str:
        props = schema.get("properties", {})
        if not isinstance(props, dict):
            raise SchemaError(
                "expected an object mapping names to schemas", keyword="properties", pointer=pointer
            )
        required = schema.get("required", [])
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise SchemaError(
                "expected an array of property names", keyword="required", pointer=pointer
            )
        # Closed by default: an object that declares properties takes only those (as
        # llama.cpp's converter and OpenAI's strict mode do); no properties: any object.
        additional = schema.get("additionalProperties", "properties" not in schema)
        if not isinstance(additional, (bool, dict)):
            raise SchemaError(
                "expected a boolean or a schema", keyword="additionalProperties", pointer=pointer
            )
        self.use("ws")
        names = [n for n in props if n in required] + [
            n for n in dict.fromkeys(required) if n not in props
        ]
        names += [n for n in props if n not in required and props[n] is not False]
        n_required = sum(1 for n in names if n in required)
        members: list[str] = []
        for name in names:
            if name in props:
                if props[name] is False:
                    raise SchemaError(
                        f"required property {name!r} has schema false",
                        keyword="required",
                        pointer=pointer,
                    )
                sub_pointer = _child(pointer, "properties", name)
                value = self.rule(props[name], f"{hint}-{name}", sub_pointer)
            elif additional is False and "additionalProperties" not in schema:
                # closed by default, but a required name must be producible: any value
                value = self.use("value")
            elif additional is False:
                raise SchemaError(
                    f"required property {name!r} is not in properties"
                    " and additionalProperties is false",
                    keyword="required",
                    pointer=pointer,
                )
            else:
                value = self.rule(
                    additional, f"{hint}-{name}", _child(pointer, "additionalProperties")
                )
            key = gbnf_escape_literal(json.dumps(name, ensure_ascii=False))
            members.append(self.add_rule(f"{hint}-{name}-kv", f'{key} ws ":" ws {value}'))
        optional = members[n_required:]
        repeated: str | None = None
        if additional is not False:
            value = self.rule(
                additional, f"{hint}-additional", _child(pointer, "additionalProperties")
            )
            key = self.other_key(list(props), f"{hint}-additional-key")
            repeated = self.add_rule(f"{hint}-additional-kv", f'{key} ":" ws {value}')
        tail: str | None = None
        if repeated is not None:
            tail = self.add_rule(f"{hint}-additional-list", f'{repeated} ("," ws {repeated})*')
        for member in reversed(optional):
            tail = (
                member
                if tail is None
                else self.add_rule(f"{hint}-rest", f'{member} ("," ws {tail})? | {tail}')
            )
        parts = ['"{" ws']
        if n_required:
            parts.append(' "," ws '.join(members[:n_required]))
            if tail is not None:
                parts.append(f'("," ws {tail})?')
        elif tail is not None:
            parts.append(f"{tail}?")
        parts.append('"}" ws')
        return " ".join(parts)

    def other_key(self, excluded: list[str], hint: str) -> str:
        """A JSON string (with trailing ws) that is none of ``excluded``, as spelled."""
        self.use("ws")
        if not excluded:
            return self.use("string")
        self.use("char")
        trie: dict[str, Any] = {}
        for name in excluded:
            node = trie
            for unit in re.findall(
                r"\\u[0-9a-fA-F]{4}|\\.|.", json.dumps(name, ensure_ascii=False)[1:-1], re.S
            ):
                node = node.setdefault(unit, {})
            node[""] = {}
        return self.add_rule(hint, rf'"\"" {self.trie_rule(trie, hint)} ws')

    def trie_rule(self, node: dict[str, Any], hint: str) -> str:
        alts = [] if "" in node else [r'"\""']
        raw_children, escapes = [], []
        for unit, child in node.items():
            if not unit:
                continue
            alts.append(f"{gbnf_escape_literal(unit)} {self.trie_rule(child, hint)}")
            if unit.startswith("\\"):
                escapes.append(unit[1])
            else:
                raw_children.append((ord(unit), ord(unit)))
        other = [_class(_normalize(raw_children + _JSON_SPECIAL), negated=True)]
        simple = [c for c in '"\\/bfnrt' if c not in escapes]
        esc_alts = ([_class(_normalize([(ord(c), ord(c)) for c in simple]))] if simple else []) + [
            '"u" [0-9a-fA-F]{4}'
        ]
        other.append(r'"\\" ' + _group(" | ".join(esc_alts)))
        alts.append(f'({" | ".join(other)}) char* "\\""')
        return self.add_rule(hint, " | ".join(alts))

    def array(self, schema: dict[str, Any], hint: str, pointer: str) -> str:
        self.use("ws")
        prefix: list[Any] = []
        rest: Any = schema.get("items", True)
        rest_key = "items"
        if "prefixItems" in schema:
            prefix = schema["prefixItems"]
            if not isinstance(prefix, list):
                raise SchemaError(
                    "expected an array of schemas", keyword="prefixItems", pointer=pointer
                )
            rest = schema.get("items", False)
            prefix_key = "prefixItems"
        elif isinstance(rest, list):
            prefix, prefix_key = rest, "items"
            rest, rest_key = schema.get("additionalItems", False), "additionalItems"
        else:
            prefix_key = "prefixItems"
        lo, hi = self.bounds(schema, "minItems", "maxItems", pointer)
        items = [
            self.rule(s, f"{hint}-{i}", _child(pointer, prefix_key, i))
            for i, s in enumerate(prefix)
        ]
        rest_rule = (
            None if rest is False else self.rule(rest, f"{hint}-item", _child(pointer, rest_key))
        )
        if rest_rule is None:
            hi = len(items) if hi is None else min(hi, len(items))
        if lo > (hi if hi is not None else lo):
            raise SchemaError(
                f"minItems ({lo}) cannot be met with at most {hi} items",
                keyword="minItems",
                pointer=pointer,
            )
        # items[k] for k < len(items), then rest_rule; positions >= lo are optional, nested.
        tail = ""
        if rest_rule is not None and (hi is None or hi > len(items)):
            extra_lo = max(0, lo - len(items))
            extra_hi = None if hi is None else hi - len(items)
            sep = self.add_rule(f"{hint}-next", f'"," ws {rest_rule}')
            if not items:
                first = rest_rule
                more = _repeat(
                    sep, max(0, extra_lo - 1), None if extra_hi is None else extra_hi - 1
                )
                tail = f"{first} {more}".strip()
                if extra_lo == 0:
                    tail = f"{_group(tail)}?"
            else:
                tail = _repeat(sep, extra_lo, extra_hi)
        for k in range(min(len(items), hi if hi is not None else len(items)) - 1, -1, -1):
            lead = items[k] if k == 0 else f'"," ws {items[k]}'
            seq = f"{lead} {tail}".strip()
            tail = seq if k < lo else f"({seq})?"
        return f'"[" ws {tail} "]" ws' if tail else '"[" ws "]" ws'


@functools.lru_cache(maxsize=256)
def _convert_text(text: str) -> str:
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"schema is not valid JSON: {exc}") from exc
    if schema is False:
        raise SchemaError("schema 'false' matches nothing")
    conv = _Converter(schema)
    conv.rules["root"] = ""
    conv.refs["#"] = "root"
    body = conv.expr(schema, "root", "")
    if "root" in {alt.strip() for alt in body.split("|")}:
        raise SchemaError("reference '#' refers to itself without consuming input", keyword="$ref")
    conv.rules["root"] = body
    return conv.text()


def json_schema_to_gbnf(schema: dict[str, Any] | str | bool) -> str:
    """Convert a JSON Schema (dict, JSON text or boolean) into GBNF text with a ``root`` rule.

    Raises :class:`SchemaError` (a ``ValueError``, code ``invalid_json_schema``) naming the
    keyword and JSON pointer of anything invalid or unsupported. Results are cached.
    """
    try:
        if isinstance(schema, str):
            text = schema
        elif isinstance(schema, (dict, bool)):
            text = _json_text(schema, "", "schema")
        else:
            raise SchemaError(
                f"expected a dict, JSON text or boolean, got {type(schema).__name__}"
            )
        return _convert_text(text)
    except RecursionError:
        # deep nesting, or allOf/$ref expanding into themselves (allOf: [{$ref: "#"}])
        raise SchemaError(
            "schema nests too deeply, or refers to itself through allOf/$ref in a cycle"
        ) from None


JSON_GBNF: str = json_schema_to_gbnf(True)
"""GBNF grammar for any JSON value (bounded whitespace and number lengths)."""
