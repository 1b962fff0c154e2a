"""Value checks for config settings: each turns an input into the stored value or raises
:class:`~sipp.errors.ConfigurationError` naming the field path and what was expected."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Mapping
from typing import Final

from sipp.errors import ConfigurationError

__all__ = [
    "INT32_MAX",
    "INT64_MAX",
    "UINT32_MAX",
    "Rule",
    "as_bool",
    "as_choice",
    "as_choice_int",
    "as_float",
    "as_gpu_layers",
    "as_int",
    "as_list",
    "as_logit_bias",
    "as_non_empty",
    "as_path",
    "as_text",
    "show",
]

Rule = Callable[[object, str], object]
"""A check: ``rule(value, path)`` returns the value to store or raises naming ``path``."""

INT32_MAX: Final = 2**31 - 1
UINT32_MAX: Final = 2**32 - 1
INT64_MAX: Final = 2**63 - 1
_FLOAT32_MAX: Final = 3.4028234663852886e38


def show(value: object) -> str:
    """A short description of ``value`` for error messages."""
    if value is None or isinstance(value, bool | int | float | str):
        text = repr(value)
        return text if len(text) <= 80 else text[:77] + "..."
    name = type(value).__name__
    return f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name}"


def _num(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else repr(bound)


def _integral(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return None
    return int(value)


def as_int(lo: int, hi: int = INT32_MAX, *, note: str = "", what: str = "") -> Rule:
    """An integer in ``[lo, hi]``; ``note`` explains special values such as -1."""
    if not what:
        if lo == 1:
            what = "a positive integer"
        elif lo == 0:
            what = "a non-negative integer"
        else:
            what = f"an integer >= {lo}"
    what += note

    def check(value: object, path: str) -> int:
        number = _integral(value)
        if number is None or number < lo:
            raise ConfigurationError(f"{path} must be {what}, got {show(value)}")
        if number > hi:
            raise ConfigurationError(f"{path} must be at most {hi}, got {number}")
        return number

    return check


def as_float(
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    allow_neg_inf: bool = False,
) -> Rule:
    """A finite number (32-bit float range) within the given bounds."""
    if lo is not None and hi is not None:
        what = f"a finite number in [{_num(lo)}, {_num(hi)}]"
    elif lo is not None:
        what = f"a finite number {'>' if lo_open else '>='} {_num(lo)}"
    else:
        what = "a finite number"
    if allow_neg_inf:
        what += " or -inf"

    def check(value: object, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigurationError(f"{path} must be {what}, got {show(value)}")
        number = float(value)
        if allow_neg_inf and number == -math.inf:
            return number
        if (
            not math.isfinite(number)
            or abs(number) > _FLOAT32_MAX
            or (lo is not None and (number <= lo if lo_open else number < lo))
            or (hi is not None and number > hi)
        ):
            raise ConfigurationError(f"{path} must be {what}, got {show(value)}")
        return number

    return check


def as_bool(value: object, path: str) -> bool:
    """``True`` or ``False`` only (no 0/1, no strings)."""
    if not isinstance(value, bool):
        raise ConfigurationError(f"{path} must be a bool (true or false), got {show(value)}")
    return value


def as_text(value: object, path: str) -> str:
    """A string with something besides whitespace (a name)."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{path} must be a non-empty string, got {show(value)}")
    return value


def as_non_empty(value: object, path: str) -> str:
    """Any non-empty string (whitespace counts: a sequence breaker may be a newline)."""
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{path} must be a non-empty string, got {show(value)}")
    return value


def as_path(value: object, path: str) -> str:
    """A file path (``str`` or path object), stored as ``str``."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{path} must be a non-empty file path, got {show(value)}")
    return value


def as_choice(options: tuple[str, ...]) -> Rule:
    """One of ``options`` (the values of a ``Literal``)."""
    def check(value: object, path: str) -> str:
        if not isinstance(value, str) or value not in options:
            raise ConfigurationError(
                f"{path} must be one of: {', '.join(options)}; got {show(value)}"
            )
        return value

    return check


def as_list(
    item: Rule, what: str, *, unique: bool = False
) -> Callable[[object, str], tuple[object, ...]]:
    """A list (or tuple) of items, each checked by ``item``; stored as a tuple."""

    def check(value: object, path: str) -> tuple[object, ...]:
        if isinstance(value, str | bytes | Mapping) or not isinstance(value, list | tuple):
            raise ConfigurationError(f"{path} must be a list of {what}, got {show(value)}")
        items = tuple(item(entry, f"{path}[{index}]") for index, entry in enumerate(value))
        if unique:
            for index, entry in enumerate(items):
                if entry in items[:index]:
                    raise ConfigurationError(f"{path} lists {show(entry)} more than once")
        return items

    return check


def as_gpu_layers(value: object, path: str) -> str | int:
    """``"auto"``, ``"all"``, a layer count or ``{"count": n}`` (stored as the count)."""
    expected = f'{path} must be "auto", "all", a layer count or {{"count": int}}'
    if isinstance(value, str):
        if value in ("auto", "all"):
            return value
        raise ConfigurationError(f"{expected}; got {show(value)}")
    if isinstance(value, Mapping):
        if set(value) != {"count"}:
            keys = ", ".join(sorted(repr(key) for key in value))
            raise ConfigurationError(f"{expected}; got a dict with keys {keys}")
        value = value["count"]
    count = _integral(value)
    if count is None:
        raise ConfigurationError(f"{expected}; got {show(value)}")
    if count < 0:
        raise ConfigurationError(
            f'{path} count must be a non-negative integer (use "all" for every layer), got {count}'
        )
    return count


def as_choice_int(options: tuple[int, ...]) -> Rule:
    """One of the integers ``options``."""
    def check(value: object, path: str) -> int:
        number = _integral(value)
        if number is None or number not in options:
            shown = ", ".join(str(option) for option in options)
            raise ConfigurationError(f"{path} must be one of: {shown}; got {show(value)}")
        return number

    return check


def _logit_bias_entry(value: object, path: str) -> tuple[int, float]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ConfigurationError(f"{path} must be a [token_id, bias] pair, got {show(value)}")
    token = as_int(0)(value[0], f"{path}[0]")
    bias = as_float(allow_neg_inf=True)(value[1], f"{path}[1]")
    assert isinstance(token, int) and isinstance(bias, float)
    return token, bias


def as_logit_bias(value: object, path: str) -> tuple[object, ...]:
    """``[token_id, bias]`` pairs, or a ``{token_id: bias}`` dict; ``-inf`` bans a token."""
    if isinstance(value, Mapping):
        value = list(value.items())
    return as_list(_logit_bias_entry, "[token_id, bias] pairs")(value, path)


