"""Metadata filters: equality, ``$in`` / ``$nin``, ``$ne`` and ranges, ANDed over keys.

    {"lang": "en"}                                  equality
    {"lang": {"$in": ["en", "fr"]}}                 membership
    {"year": {"$gte": 2000, "$lt": 2010}}           range (numbers, or strings with strings)

A document without the key never matches (not even ``$ne`` / ``$nin``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sipp.errors import InvalidRequestError

__all__ = ["Predicate", "compile_filter"]

Predicate = Callable[[Mapping[str, Any] | None], bool]

_MISSING = object()
_RANGE_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": lambda a, b: bool(a > b),
    "$gte": lambda a, b: bool(a >= b),
    "$lt": lambda a, b: bool(a < b),
    "$lte": lambda a, b: bool(a <= b),
}
_OPERATORS = ("$eq", "$ne", "$in", "$nin", *_RANGE_OPS)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _scalar(value: Any, path: str) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise InvalidRequestError(
        f"{path} must be a JSON scalar (string, number, bool or null), "
        f"got {type(value).__name__}"
    )


def _equal(a: Any, b: Any) -> bool:
    # JSON semantics: True is not 1, 1 == 1.0
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _test(op: str, operand: Any, value: Any) -> bool:
    """Whether ``value`` passes one validated ``op`` / ``operand`` pair."""
    if op == "$eq":
        return _equal(value, operand)
    if op == "$ne":
        return not _equal(value, operand)
    if op in ("$in", "$nin"):
        member = any(_equal(value, item) for item in operand)
        return member if op == "$in" else not member
    if _is_number(operand):
        return _is_number(value) and _RANGE_OPS[op](value, operand)
    return isinstance(value, str) and _RANGE_OPS[op](value, operand)


def _condition(key: str, spec: Any) -> list[tuple[str, Any]]:
    """The ``(operator, operand)`` pairs of one field, validated."""
    path = f"filter.{key}"
    if not isinstance(spec, Mapping):
        return [("$eq", _scalar(spec, path))]
    if not spec:
        raise InvalidRequestError(f"{path} must not be an empty operator object")
    pairs: list[tuple[str, Any]] = []
    for op, operand in spec.items():
        where = f"{path}.{op}"
        if op not in _OPERATORS:
            raise InvalidRequestError(
                f"{where}: unknown filter operator (use one of {', '.join(_OPERATORS)})"
            )
        if op in ("$eq", "$ne"):
            pairs.append((op, _scalar(operand, where)))
        elif op in ("$in", "$nin"):
            if isinstance(operand, str) or not isinstance(operand, list | tuple):
                raise InvalidRequestError(f"{where} must be a list of JSON scalars")
            pairs.append((op, [_scalar(item, f"{where}[{i}]") for i, item in enumerate(operand)]))
        else:
            if not (_is_number(operand) or isinstance(operand, str)):
                raise InvalidRequestError(f"{where} must be a number or a string")
            pairs.append((op, operand))
    return pairs


def compile_filter(spec: Mapping[str, Any] | None) -> Predicate | None:
    """A predicate over one document's metadata, or None for "no filter"."""
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise InvalidRequestError(f"filter must be a dict, got {type(spec).__name__}")
    conditions: list[tuple[str, list[tuple[str, Any]]]] = []
    for key, value in spec.items():
        if not isinstance(key, str) or not key:
            raise InvalidRequestError(f"filter keys must be non-empty strings, got {key!r}")
        if key.startswith("$"):
            raise InvalidRequestError(
                f"filter.{key}: operators go inside a field, e.g. {{'year': {{'$gte': 2000}}}}"
            )
        conditions.append((key, _condition(key, value)))

    def predicate(metadata: Mapping[str, Any] | None) -> bool:
        if metadata is None:
            return False
        for key, pairs in conditions:
            value = metadata.get(key, _MISSING)
            if value is _MISSING or not all(_test(op, arg, value) for op, arg in pairs):
                return False
        return True

    return predicate
