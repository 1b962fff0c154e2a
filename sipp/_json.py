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
        value = json.loads(data, parse_constant=_constant)
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
    _check(value, max_depth)
    return value


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
