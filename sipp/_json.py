"""JSON from untrusted peers: parse errors that are the sender's fault raise one error type.

``json.loads`` lets through what later breaks a server in ways that look like its own
bugs: ``RecursionError`` for deeply nested input, ``ValueError`` for integers over 4,300
digits, ``NaN``/``Infinity`` literals and floats that overflow to infinity, and lone UTF-16
surrogates (``"\\ud800"``) that only fail when the text is encoded for the tokenizer.
:func:`loads_untrusted` refuses all of them with :class:`UntrustedJsonError` (a
``ValueError``) naming the problem and, where there is one, the JSON path.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

__all__ = ["MAX_DEPTH", "MAX_INT", "UntrustedJsonError", "loads_untrusted"]

MAX_DEPTH = 128
"""Deepest nesting of arrays/objects accepted."""
MAX_INT = 2**64
"""Largest integer magnitude accepted (every numeric field is far smaller)."""


class UntrustedJsonError(ValueError):
    """The JSON text is malformed or holds something no field accepts; the message says what."""


def _constant(name: str) -> Any:
    raise UntrustedJsonError(f"{name} is not a JSON number")


def loads_untrusted(data: bytes | bytearray | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``data`` and check the result (depth, integer size, finite numbers, no lone
    surrogates); raises :class:`UntrustedJsonError`."""
    try:
        value = _DECODER.decode(_text(data))
    except UntrustedJsonError:
        raise
    except RecursionError:
        raise UntrustedJsonError(f"JSON nested deeper than {max_depth} levels") from None
    except UnicodeDecodeError as exc:
        raise UntrustedJsonError(f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise UntrustedJsonError(f"not valid JSON: {exc}") from None
    except ValueError as exc:  # an integer over sys.get_int_max_str_digits() digits
        raise UntrustedJsonError(f"not accepted JSON: {exc}") from None
    if not _fine(value, max_depth):
        _check(value, max_depth)  # the slow walk finds the problem and names its path
    return value


# One decoder for every call: ``json.loads`` with a keyword builds a decoder and its
# scanner each time.
_DECODER = json.JSONDecoder(parse_constant=_constant)
_SCALARS = (bool, type(None))
_UTF8_STARTS = (b"{", b"[")


def _text(data: bytes | bytearray | str) -> str:
    """What ``json.loads`` decodes: a BOM-less str, or bytes in their detected encoding."""
    if isinstance(data, str):
        if data.startswith("\ufeff"):
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", data, 0)
        return data
    if not isinstance(data, bytes | bytearray):
        raise TypeError(f"the JSON object must be str, bytes or bytearray, "
                        f"not {type(data).__name__}")
    if data[:1] in _UTF8_STARTS and data[1:2] != b"\x00":
        # no BOM and no zero byte in the first two: json.detect_encoding says UTF-8
        return data.decode("utf-8", "surrogatepass")
    return data.decode(json.detect_encoding(data), "surrogatepass")


def _fine(value: Any, max_depth: int) -> bool:
    """Whether ``value`` passes every check of :func:`_check` (no paths kept: the common,
    valid case is walked at the cost of a type test per value)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    children: Iterable[Any]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is dict:
            if depth >= max_depth:
                return False
            for key in item:
                if not key.isascii() and not _encodes(key):
                    return False
            children = item.values()
        elif kind is list:
            if depth >= max_depth:
                return False
            children = item
        else:
            children = (item,)
            depth -= 1
        for child in children:
            kind = type(child)
            if kind is str:
                if not child.isascii() and not _encodes(child):
                    return False
            elif kind is int:
                if not -MAX_INT <= child <= MAX_INT:
                    return False
            elif kind is float:
                if not math.isfinite(child):
                    return False
            elif kind is dict or kind is list:
                stack.append((child, depth + 1))
            elif not isinstance(child, _SCALARS):
                return False
    return True


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check(value: Any, max_depth: int) -> None:
    stack: list[tuple[Any, str, int]] = [(value, "$", 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item, path)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if abs(item) > MAX_INT:
                raise UntrustedJsonError(f"{path}: integer out of range (more than 2**64)")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise UntrustedJsonError(f"{path}: number out of range (not finite)")
        else:
            if depth >= max_depth:
                raise UntrustedJsonError(f"JSON nested deeper than {max_depth} levels at {path}")
            if isinstance(item, dict):
                for key, child in item.items():
                    _check_text(key, f"{path} key {key[:20]!r}")
                    stack.append((child, f"{path}.{key}", depth + 1))
            else:
                stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item))


def _check_text(text: str, path: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UntrustedJsonError(
            f"{path}: string holds a lone UTF-16 surrogate (\\u{ord(text[exc.start]):04x}) "
            f"at index {exc.start}, which is not text"
        ) from None
