"""Property tests of the JSON-schema compiler: random schemas give a grammar that accepts
their valid instances (checked with the test recognizer), or a clear JsonSchemaError; no
schema, however odd, raises anything else or yields a grammar llama.cpp could not parse."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import assume, given
from hypothesis import strategies as st

from sipp.engine.json_schema import json_schema_to_gbnf
from sipp.errors import JsonSchemaError
from tests.engine.gbnf_recognizer import GbnfError, parse_gbnf

Pair = tuple[dict[str, Any], Any]
SAFE_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=6)


@st.composite
def leaf(draw: st.DrawFn) -> Pair:
    kind = draw(st.sampled_from(["string", "integer", "number", "boolean", "null", "enum",
                                 "const"]))  # fmt: skip
    if kind == "string":
        lo = draw(st.integers(0, 3))
        hi = draw(st.integers(lo, 6))
        return {"type": "string", "minLength": lo, "maxLength": hi}, draw(
            st.text(
                st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=lo, max_size=hi
            )
        )
    if kind == "integer":
        lo = draw(st.integers(-1000, 1000))
        hi = draw(st.integers(lo, lo + 5000))
        return {"type": "integer", "minimum": lo, "maximum": hi}, draw(st.integers(lo, hi))
    if kind == "number":
        return {"type": "number"}, draw(st.floats(-1e6, 1e6, allow_nan=False) | st.integers())
    if kind == "boolean":
        return {"type": "boolean"}, draw(st.booleans())
    if kind == "null":
        return {"type": "null"}, None
    values = draw(st.lists(SAFE_TEXT | st.integers(-50, 50) | st.booleans(), min_size=1,
                           max_size=4, unique_by=json.dumps))  # fmt: skip
    if kind == "enum":
        return {"enum": values}, draw(st.sampled_from(values))
    return {"const": values[0]}, values[0]


@st.composite
def pair(draw: st.DrawFn, depth: int = 0) -> Pair:
    if depth >= 2 or draw(st.booleans()):
        return draw(leaf())
    kind = draw(st.sampled_from(["array", "object", "anyOf"]))
    if kind == "array":
        item_schema, _ = draw(pair(depth + 1))
        n = draw(st.integers(0, 3))
        items = [draw(_instance_of(item_schema, depth)) for _ in range(n)]
        return {"type": "array", "items": item_schema, "maxItems": 3}, items
    if kind == "object":
        keys = draw(st.lists(st.text("abcdefgh_", min_size=1, max_size=5), min_size=1,
                             max_size=3, unique=True))  # fmt: skip
        props: dict[str, Any] = {}
        present: dict[str, Any] = {}
        optional: dict[str, Any] = {}
        required = []
        for key in keys:
            schema, inst = draw(pair(depth + 1))
            props[key] = schema
            if draw(st.booleans()):
                required.append(key)
                present[key] = inst
            elif draw(st.booleans()):
                optional[key] = inst
        # the grammar fixes one key order, as llama.cpp's converter does: required first
        value = {**present, **optional}
        schema = {
            "type": "object",
            "properties": props,
            "required": required,
            "additionalProperties": False,
        }
        return schema, value
    (a, va), (b, _) = draw(pair(depth + 1)), draw(pair(depth + 1))
    return {"anyOf": [a, b]}, va


def _instance_of(schema: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
    # an array's items share one schema: draw fresh instances of it
    return st.just(None).flatmap(lambda _: _fresh(schema))


def _fresh(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "string":
        return st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)),
                       min_size=schema["minLength"], max_size=schema["maxLength"])  # fmt: skip
    if kind == "integer":
        return st.integers(schema["minimum"], schema["maximum"])
    if kind == "number":
        return st.integers(-100, 100)
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        return st.lists(_fresh(schema["items"]), max_size=schema["maxItems"])
    if kind == "object":
        return st.fixed_dictionaries(
            {k: _fresh(v) for k, v in schema["properties"].items() if k in schema["required"]}
        )
    if "anyOf" in schema:
        return _fresh(schema["anyOf"][0])
    return st.none()


@given(pair())
def test_valid_instances_are_accepted(case: Pair) -> None:
    schema, value = case
    grammar = parse_gbnf(json_schema_to_gbnf(schema))
    compact = json.dumps(value, ensure_ascii=False)
    assume(len(compact) < 120)  # the test recognizer is an Earley parser: keep it quick
    assert grammar.accepts(compact), (schema, compact)


ODD = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda c: (
        st.lists(c, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "type",
                    "properties",
                    "items",
                    "enum",
                    "const",
                    "anyOf",
                    "oneOf",
                    "allOf",
                    "$ref",
                    "minimum",
                    "maximum",
                    "minLength",
                    "maxLength",
                    "pattern",
                    "format",
                    "required",
                    "additionalProperties",
                    "$defs",
                    "minItems",
                    "maxItems",
                    "prefixItems",
                    "not",
                    "x",
                ]
            ),
            c,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@given(ODD)
def test_any_schema_compiles_or_raises_json_schema_error(schema: Any) -> None:
    try:
        text = json_schema_to_gbnf(schema)
    except JsonSchemaError as exc:
        assert str(exc)
        return
    try:
        parse_gbnf(text)
    except GbnfError as exc:  # a grammar llama.cpp would refuse is a compiler bug
        raise AssertionError(f"schema {schema!r} compiled to an invalid grammar: {exc}") from exc


def test_self_referencing_all_of_is_a_schema_error() -> None:
    # found by the property test above: it recursed until RecursionError (a 500 upstream)
    for schema in ({"allOf": [{"$ref": "#"}]}, {"$defs": {"a": {"allOf": [{"$ref": "#/$defs/a"}]}},
                                                 "$ref": "#/$defs/a"}):  # fmt: skip
        try:
            json_schema_to_gbnf(schema)
        except JsonSchemaError as exc:
            assert "refers to itself" in str(exc) or "circular" in str(exc), exc
        else:
            raise AssertionError(f"{schema} compiled")
