"""JSON Schema → GBNF: every grammar parses (in llama.cpp's parser when a backend is
installed, and always in the test recognizer), accepts documents valid for the schema and
rejects invalid ones."""

from __future__ import annotations

import functools
import json
import re
from typing import Any

import pytest

from sipp.engine.json_schema import (
    JSON_GBNF,
    SchemaError,
    gbnf_escape_literal,
    json_schema_to_gbnf,
)
from sipp.errors import InvalidRequestError, JsonSchemaError
from tests.engine.gbnf_recognizer import GbnfError, Grammar, parse_gbnf


@functools.cache
def _grammar(text: str) -> Grammar:
    return parse_gbnf(text)


def _accepts(schema: Any, doc: str) -> bool:
    return _grammar(json_schema_to_gbnf(schema)).accepts(doc)


def _docs(*values: Any) -> list[str]:
    """Each value as compact JSON and as indented JSON."""
    out = []
    for v in values:
        out.append(json.dumps(v, ensure_ascii=False))
        out.append(json.dumps(v, ensure_ascii=False, indent=2))
    return out


TREE = {
    "$defs": {
        "node": {
            "type": "object",
            "properties": {
                "value": {"type": "integer"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
            },
            "required": ["value"],
            "additionalProperties": False,
        }
    },
    "$ref": "#/$defs/node",
}

# (id, schema, valid documents, invalid documents)
CASES: list[tuple[str, Any, list[str], list[str]]] = [
    (
        "required-and-optional",
        {
            "type": "object",
            "properties": {
                "a": {"type": "integer"},
                "b": {"type": "string"},
                "c": {"type": "boolean"},
            },
            "required": ["a"],
            "additionalProperties": False,
        },
        _docs({"a": 1}, {"a": 1, "b": "x"}, {"a": 1, "c": True}, {"a": -5, "b": "", "c": False}),
        [
            "{}",
            '{"b":"x"}',
            '{"a":1,"d":2}',
            '{"a":1,}',
            '{"a":"1"}',
            '{"a":1,"b":"x","b":"y"}',
            "[]",
        ],
    ),
    (
        "all-optional-combinations",
        {
            "type": "object",
            "properties": {
                "x": {"type": "integer"},
                "y": {"type": "integer"},
                "z": {"type": "integer"},
            },
            "additionalProperties": False,
        },
        _docs(
            {},
            {"x": 1},
            {"y": 2},
            {"z": 3},
            {"x": 1, "y": 2},
            {"x": 1, "z": 3},
            {"y": 2, "z": 3},
            {"x": 1, "y": 2, "z": 3},
        ),
        ['{,"y":1}', '{"x":1,"x":1}', '{"x":1,}', '{"w":1}', '{"x":1 "y":2}'],
    ),
    (
        "additional-properties-schema",
        {
            "type": "object",
            "properties": {"id": {"type": "integer"}},
            "additionalProperties": {"type": "number"},
        },
        _docs({}, {"id": 1}, {"w": 1.5}, {"id": 1, "w": 2.5, "idx": 3, "i": 4, "": 5}),
        ['{"w":"s"}', '{"id":1,"id":2}', '{"id":"x"}', '{"w":1,"id":2}'],
    ),
    (
        "additional-properties-default-closed",
        {"properties": {"a": {"type": "null"}}},
        _docs({}, {"a": None}),
        [
            '{"a":1}',
            '{"a":null,"a":null}',
            "null",
            '{"a":null,"zz":1}',
            '{"other":{"deep":[true]}}',
        ],
    ),
    (
        "additional-properties-true-opens",
        {"properties": {"a": {"type": "null"}}, "additionalProperties": True},
        _docs(
            {"a": None},
            {"a": None, "zz": [1, {"q": "r"}]},
            {"other": {"deep": [True, None, -1.5e3]}},
        ),
        ['{"a":1}', '{"a":null,"a":null}', "null"],
    ),
    (
        "object-without-properties-is-any-object",
        {"type": "object"},
        _docs({}, {"k": [1, {"q": None}]}),
        ["[]", "null"],
    ),
    (
        "closed-nested-objects",
        {
            "type": "object",
            "properties": {"inner": {"type": "object", "properties": {"x": {"type": "integer"}}}},
            "required": ["inner"],
        },
        _docs({"inner": {}}, {"inner": {"x": 3}}),
        ['{"inner":{"x":3,"y":4}}', '{"inner":{},"extra":1}'],
    ),
    (
        "required-name-outside-properties-stays-producible",
        {"properties": {"a": {"type": "integer"}}, "required": ["b"]},
        _docs({"b": "anything"}, {"b": [1], "a": 2}),
        ['{"a":2}', '{"b":1,"c":2}'],
    ),
    (
        "enum-mixed-types",
        {"enum": ["red", 1, 2.5, None, True, {"k": [1]}, ["x"], 'é"q']},
        [
            json.dumps(v, ensure_ascii=False)
            for v in ["red", 1, 2.5, None, True, {"k": [1]}, ["x"], 'é"q']
        ],
        ['"blue"', "3", "false", '{"k":[2]}', '"red" "red"', '"é"'],
    ),
    (
        "const-with-escapes",
        {"const": 'a"b\\c\n\u00e9\U0001f600'},
        [json.dumps('a"b\\c\n\u00e9\U0001f600', ensure_ascii=False)],
        ['"a"', '"a\\"b\\\\c\\n"'],
    ),
    (
        "type-list-with-string-bounds",
        {"type": ["string", "null"], "maxLength": 3},
        _docs("abc", "", None, "é☃"),
        ['"abcd"', "1", "true"],
    ),
    (
        "array-min-max",
        {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 4},
        _docs([1, 2], [1, 2, 3], [1, 2, 3, 4]),
        ["[]", "[1]", "[1,2,3,4,5]", '[1,"2"]', "[1,2,]"],
    ),
    (
        "array-any-items",
        {"type": "array"},
        _docs([], [1, "a", None, [], {}]),
        ["[", "[,]", "{}"],
    ),
    (
        "tuple-prefix-items",
        {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "minItems": 1},
        _docs(["a"], ["a", 1]),
        ["[]", "[1]", '["a","b"]', '["a",1,2]'],
    ),
    (
        "tuple-prefix-then-items",
        {"prefixItems": [{"const": "head"}], "items": {"type": "boolean"}, "maxItems": 3},
        _docs([], ["head"], ["head", True], ["head", True, False]),
        ["[true]", '["head",true,false,true]', '["head",1]'],
    ),
    (
        "draft7-tuple-items",
        {
            "items": [{"type": "integer"}, {"type": "integer"}],
            "additionalItems": {"type": "string"},
        },
        _docs([], [1], [1, 2], [1, 2, "x", "y"]),
        ['["x"]', "[1,2,3]"],
    ),
    (
        "recursive-ref-tree",
        TREE,
        _docs(
            {"value": 1},
            {"value": 1, "children": []},
            {"value": 1, "children": [{"value": 2, "children": [{"value": 3}]}, {"value": 4}]},
        ),
        [
            '{"value":1,"children":[{}]}',
            '{"children":[]}',
            '{"value":1,"children":[{"value":"x"}]}',
        ],
    ),
    (
        "definitions-linked-list",
        {
            "definitions": {
                "cell": {
                    "type": "object",
                    "properties": {
                        "head": {"type": "string"},
                        "tail": {"anyOf": [{"$ref": "#/definitions/cell"}, {"type": "null"}]},
                    },
                    "required": ["head", "tail"],
                    "additionalProperties": False,
                }
            },
            "$ref": "#/definitions/cell",
        },
        _docs({"head": "a", "tail": None}, {"head": "a", "tail": {"head": "b", "tail": None}}),
        ['{"head":"a"}', '{"head":"a","tail":{"head":"b"}}'],
    ),
    (
        "root-recursion",
        {"type": "object", "properties": {"next": {"$ref": "#"}}, "additionalProperties": False},
        _docs({}, {"next": {}}, {"next": {"next": {"next": {}}}}),
        ['{"next":1}', '{"next":{"x":1}}'],
    ),
    (
        "any-of",
        {
            "anyOf": [
                {"type": "integer"},
                {
                    "type": "object",
                    "properties": {"x": {"type": "string"}},
                    "required": ["x"],
                    "additionalProperties": False,
                },
            ]
        },
        _docs(5, -3, {"x": "y"}),
        ["1.5", '{"x":1}', '"x"', "{}"],
    ),
    (
        "one-of-with-sibling-properties",
        {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "additionalProperties": False,
            "oneOf": [{"required": ["a"]}, {"required": ["b"]}],
        },
        _docs({"a": 1}, {"b": 2}, {"a": 1, "b": 2}),
        ["{}", '{"c":1}'],
    ),
    (
        "all-of-merge-with-ref",
        {
            "$defs": {
                "base": {
                    "type": "object",
                    "properties": {"id": {"type": "string"}},
                    "required": ["id"],
                }
            },
            "allOf": [
                {"$ref": "#/$defs/base"},
                {
                    "properties": {"extra": {"type": "integer"}},
                    "required": ["extra"],
                    "additionalProperties": False,
                },
            ],
        },
        _docs({"id": "a", "extra": 1}),
        ['{"id":"a"}', '{"extra":1}', '{"id":"a","extra":1,"z":0}'],
    ),
    (
        "string-escapes-and-unicode",
        {"type": "string"},
        [
            json.dumps("héllo ☃ 𝄞", ensure_ascii=False),
            json.dumps("héllo ☃ 𝄞"),
            json.dumps('"quoted" \\ / \n\t\r\b\f \x01'),
            '"\\ud834\\udd1e \\/"',
            '""',
        ],
        ['"a\nb"', '"a"b"', '"\\x41"', '"\\u12"', '"abc', "abc", '"\t"'],
    ),
    (
        "string-length-counts-characters",
        {"type": "string", "minLength": 2, "maxLength": 3},
        [json.dumps("éé", ensure_ascii=False), '"\\n\\n"', '"a\\u00e9c"', '"ab"'],
        ['"a"', '"abcd"', '""'],
    ),
    (
        "formats",
        {
            "type": "object",
            "properties": {
                "d": {"type": "string", "format": "date"},
                "t": {"type": "string", "format": "time"},
                "dt": {"type": "string", "format": "date-time"},
                "u": {"type": "string", "format": "uuid"},
                "e": {"type": "string", "format": "email"},
                "w": {"type": "string", "format": "uri"},
            },
            "required": ["d", "t", "dt", "u", "e", "w"],
            "additionalProperties": False,
        },
        _docs(
            {
                "d": "2024-02-29",
                "t": "23:59:60.123+05:30",
                "dt": "1999-12-31T00:00:00Z",
                "u": "123e4567-e89b-12d3-a456-426614174000",
                "e": "first.last+tag@mail.example.co",
                "w": "https://example.com/a?b=c#d",
            }
        ),
        [
            json.dumps(
                {
                    "d": "2024-13-01",
                    "t": "00:00:00Z",
                    "dt": "1999-12-31T00:00:00Z",
                    "u": "123e4567-e89b-12d3-a456-426614174000",
                    "e": "a@b.c",
                    "w": "x:y",
                }
            ),
            json.dumps(
                {
                    "d": "2024-01-01",
                    "t": "24:00:00Z",
                    "dt": "1999-12-31T00:00:00Z",
                    "u": "123e4567-e89b-12d3-a456-426614174000",
                    "e": "a@b.c",
                    "w": "x:y",
                }
            ),
            json.dumps(
                {
                    "d": "2024-01-01",
                    "t": "00:00:00Z",
                    "dt": "1999-12-31 00:00:00Z",
                    "u": "123e4567-e89b-12d3-a456-426614174000",
                    "e": "a@b.c",
                    "w": "x:y",
                }
            ),
            json.dumps(
                {
                    "d": "2024-01-01",
                    "t": "00:00:00Z",
                    "dt": "1999-12-31T00:00:00Z",
                    "u": "123e4567e89b12d3a456426614174000",
                    "e": "a@b.c",
                    "w": "x:y",
                }
            ),
            json.dumps(
                {
                    "d": "2024-01-01",
                    "t": "00:00:00Z",
                    "dt": "1999-12-31T00:00:00Z",
                    "u": "123e4567-e89b-12d3-a456-426614174000",
                    "e": "no-at-sign",
                    "w": "x:y",
                }
            ),
            json.dumps(
                {
                    "d": "2024-01-01",
                    "t": "00:00:00Z",
                    "dt": "1999-12-31T00:00:00Z",
                    "u": "123e4567-e89b-12d3-a456-426614174000",
                    "e": "a@b.c",
                    "w": "no scheme",
                }
            ),
        ],
    ),
    (
        "numbers",
        {"type": "array", "items": {"type": "number"}},
        ["[0, -0.5, 1e10, 2.5E-3, 123456789, -0, 1E+2]"],
        ["[01]", "[1.]", "[.5]", "[+1]", "[NaN]", "[1e]", "[--1]"],
    ),
    (
        "non-negative-number",
        {"type": "number", "minimum": 0},
        ["0", "1.5", "3e2"],
        ["-1", "-0.5"],
    ),
    (
        "nested-objects-and-arrays",
        {
            "type": "object",
            "properties": {
                "people": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "age": {"type": "integer", "minimum": 0, "maximum": 150},
                            "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2},
                        },
                        "required": ["name", "age"],
                        "additionalProperties": False,
                    },
                }
            },
            "required": ["people"],
            "additionalProperties": False,
        },
        _docs(
            {"people": []},
            {"people": [{"name": "Ann", "age": 0, "tags": ["a", "b"]}, {"name": "Bo", "age": 150}]},
        ),
        [
            '{"people":[{"name":"","age":1}]}',
            '{"people":[{"name":"x","age":151}]}',
            '{"people":[{"name":"x","age":1,"tags":["c"]}]}',
            '{"people":[{"name":"x","age":1,"tags":["a","a","a"]}]}',
        ],
    ),
    (
        "true-schema-any-json",
        True,
        _docs(None, 1, "s", [1, [2, [3]]], {"a": {"b": {"c": []}}}),
        ["", "nul", "[1,]", "{'a':1}", "1 2"],
    ),
    (
        "property-names-needing-escapes",
        {
            "type": "object",
            "properties": {'we"ird\\key': {"type": "integer"}, "ünï": {"type": "integer"}},
            "additionalProperties": {"type": "string"},
        },
        [json.dumps({'we"ird\\key': 1, "ünï": 2, "other": "x"}, ensure_ascii=False), '{"we":"x"}'],
        [json.dumps({'we"ird\\key': "x"}), json.dumps({"ünï": 1, "ünï2": 3}, ensure_ascii=False)],
    ),
]


@pytest.mark.parametrize(
    ("schema", "valid", "invalid"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_grammar_accepts_valid_and_rejects_invalid_documents(
    schema: Any, valid: list[str], invalid: list[str]
) -> None:
    grammar = _grammar(json_schema_to_gbnf(schema))
    for doc in valid:
        assert grammar.accepts(doc), f"rejected valid document {doc!r}"
    for doc in invalid:
        assert not grammar.accepts(doc), f"accepted invalid document {doc!r}"


def _llama_parser() -> Any:
    """llama.cpp's grammar parser (through the native layer), or skip when no backend loads."""
    try:
        from sipp.native import get_native

        native = get_native()
    except Exception as exc:  # no backend installed / not built in this environment
        pytest.skip(f"no native backend to run llama.cpp's grammar parser: {exc}")

    def parses(text: str) -> bool:
        ptr = native.lib.llama_sampler_init_grammar(native.ffi.NULL, text.encode(), b"root")
        if ptr == native.ffi.NULL:
            return False
        native.lib.llama_sampler_free(ptr)
        return True

    return parses


@pytest.mark.parametrize("schema", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_grammar_parses_in_llama_cpp(schema: Any) -> None:
    parses = _llama_parser()
    assert parses(json_schema_to_gbnf(schema))


def test_llama_cpp_parser_rejects_what_the_recognizer_rejects() -> None:
    parses = _llama_parser()
    for bad in ['root ::= root "a"', "root ::= undefined-rule", 'rot ::= "a"', 'root ::= "a" |']:
        ok_here = True
        try:
            parse_gbnf(bad)
        except GbnfError:
            ok_here = False
        assert parses(bad) == ok_here, bad


def test_json_gbnf_accepts_any_json_document() -> None:
    grammar = _grammar(JSON_GBNF)
    values: list[Any] = [
        {"a": [1, 2.5, -3e-7, True, False, None], "b": {"c": 'd\n"e"', "é": []}},
        [[[[]]], {}],
        "just a string",
        0,
    ]
    for value in values:
        for indent in (None, 2, "\t"):
            assert grammar.accepts(json.dumps(value, indent=indent))
    for bad in ["{", '{"a" 1}', "[1 2]", "tru", '{"a":1}}', "'x'"]:
        assert not grammar.accepts(bad)


def test_whitespace_is_bounded() -> None:
    grammar = _grammar(JSON_GBNF)
    assert grammar.accepts('{"a":' + "\n" + " " * 20 + "1}")
    assert not grammar.accepts('{"a":' + "\n" + " " * 21 + "1}")
    assert not grammar.accepts('{"a":' + "  " + "1}")
    assert not grammar.accepts('{"a":1}' + "\n\n")


def test_properties_come_in_declared_order_required_first() -> None:
    schema = {
        "type": "object",
        "properties": {"opt": {"type": "integer"}, "req": {"type": "integer"}},
        "required": ["req"],
        "additionalProperties": False,
    }
    assert _accepts(schema, '{"req":1,"opt":2}')
    assert not _accepts(schema, '{"opt":2,"req":1}')


@pytest.mark.parametrize(
    ("minimum", "maximum", "extra"),
    [
        (0, 150, {}),
        (-17, 23, {}),
        (5, None, {}),
        (None, -3, {}),
        (None, 99, {}),
        (-100, -10, {}),
        (7, 7, {}),
        (1, 100, {"exclusiveMinimum": 9, "exclusiveMaximum": 90}),
        (0.5, 20.5, {}),
    ],
)
def test_integer_bounds_are_exact(minimum: Any, maximum: Any, extra: dict[str, Any]) -> None:
    schema: dict[str, Any] = {"type": "integer", **extra}
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    grammar = _grammar(json_schema_to_gbnf(schema))
    big = 10**9
    lo = max(minimum if minimum is not None else -big, extra.get("exclusiveMinimum", -big) + 1e-9)
    hi = min(maximum if maximum is not None else big, extra.get("exclusiveMaximum", big) - 1e-9)
    for n in range(-220, 221):
        assert grammar.accepts(str(n)) == (lo <= n <= hi), n
    assert not grammar.accepts("007")
    if maximum is None:
        assert grammar.accepts("123456789012")
    if minimum is None:
        assert grammar.accepts("-123456789012")


def test_integer_has_no_leading_zeros_or_fractions() -> None:
    schema = {"type": "integer"}
    for ok in ["0", "-7", "1234567890123456789"]:
        assert _accepts(schema, ok)
    for bad in ["00", "01", "1.0", "-", "1e3", "12345678901234567890"]:
        assert not _accepts(schema, bad)


PATTERNS = [
    ("^[a-z]+(-[a-z0-9]+)*$", ["abc", "a-b1-c", "x-0"], ["", "-a", "a-", "A", "a--b"]),
    (r"^\d{3}-\d{4}$", ["555-1234"], ["5551234", "55-1234", "555-12345", "abc-defg"]),
    (r"^(cat|dog)s?$", ["cat", "dogs"], ["cats!", "bird", "catdog"]),
    (r"^a.c$", ["abc", 'a"c', "a\\c", "a c", "aéc"], ["ac", "a\nc", "abbc"]),
    (r"^[^0-9]{2,3}$", ["ab", '"\\x', "a\tb"], ["a", "a1", "abcd"]),
    (r"^\w+@\w+\.com$", ["me@site.com"], ["me@site.org", "@site.com"]),
    ("^colou?r$", ["color", "colour"], ["colouur"]),
    (r"^x{2,}y?$", ["xx", "xxxxxy"], ["x", "xy", "xxyy"]),
    (r"^\s*$", ["", "  ", "\t\n"], ["a"]),
    (r"^[\]\-a]+$", ["]-a", "a"], ["b", ""]),
    ("^(?:ab){2}$", ["abab"], ["ab", "ababab"]),
    (r"^\u00e9\x41$", ["éA"], ["eA"]),
    ("ab", ["ab", "xxabyy", "ab\n"], ["a", "ba"]),
    ("^ab", ["ab", "abzz"], ["zab"]),
    ("ab$", ["ab", "zzab"], ["abz"]),
    (r"^\$\.\*$", ["$.*"], ["$x*"]),
]


@pytest.mark.parametrize(("pattern", "matching", "non_matching"), PATTERNS)
def test_pattern_matches_like_python_re(
    pattern: str, matching: list[str], non_matching: list[str]
) -> None:
    schema = {"type": "string", "pattern": pattern}
    grammar = _grammar(json_schema_to_gbnf(schema))
    for text in [*matching, *non_matching]:
        expected = re.search(pattern, text) is not None
        assert expected == (text in matching), f"bad test data {text!r}"
        doc = json.dumps(text, ensure_ascii=False)
        assert grammar.accepts(doc) == expected, (pattern, text)


@pytest.mark.parametrize(
    ("pattern", "what"),
    [
        (r"^(a)\1$", "escape \\1"),
        ("^(?=a)a$", "lookaround"),
        (r"^\bword$", "escape \\b"),
        ("^a++$", "possessive"),
        ("^a**$", "repeated quantifier"),
        ("^[abc$", "missing ']'"),
        ("^(ab$", "missing ')'"),
        ("^a^b$", "anchor"),
        ("^[[:alpha:]]$", "POSIX"),
        ("^*a$", "quantifier without"),
        (r"^\p{L}$", "escape \\p"),
        ("^a{3,1}$", "below its minimum"),
    ],
)
def test_unsupported_patterns_raise_naming_the_pattern(pattern: str, what: str) -> None:
    with pytest.raises(SchemaError, match=re.escape(what)) as info:
        json_schema_to_gbnf(
            {"type": "object", "properties": {"p": {"type": "string", "pattern": pattern}}}
        )
    assert info.value.keyword == "pattern"
    assert info.value.pointer == "/properties/p"
    assert repr(pattern) in str(info.value)


@pytest.mark.parametrize(
    ("schema", "keyword", "pointer"),
    [
        (
            {"type": "object", "properties": {"a": {"not": {"type": "string"}}}},
            "not",
            "/properties/a",
        ),
        (
            {"type": "array", "items": {"type": "object", "patternProperties": {}}},
            "patternProperties",
            "/items",
        ),
        (
            {"anyOf": [{"type": "string"}, {"type": "number", "multipleOf": 2}]},
            "multipleOf",
            "/anyOf/1",
        ),
        ({"properties": {"a~b/c": {"frobnicate": 1}}}, "frobnicate", "/properties/a~0b~1c"),
        ({"type": "strin"}, "type", ""),
        ({"type": "string", "format": "hostname"}, "format", ""),
        ({"$ref": "#/$defs/missing"}, "$ref", ""),
        ({"$ref": "https://example.com/schema.json"}, "$ref", ""),
        ({"type": "string", "minLength": -1}, "minLength", ""),
        ({"type": "array", "minItems": 3, "maxItems": 2}, "maxItems", ""),
        ({"type": "integer", "minimum": 5, "maximum": 4}, "minimum", ""),
        ({"enum": []}, "enum", ""),
        ({"type": "string", "enum": [1, 2]}, "enum", ""),
        ({"type": "array", "uniqueItems": True}, "uniqueItems", ""),
        ({"allOf": [{"type": "string"}, {"type": "integer"}]}, "type", "/allOf/1"),
        ({"type": "object", "required": ["x"], "additionalProperties": False}, "required", ""),
        ({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}, "$ref", ""),
        ({"$ref": "#"}, "$ref", ""),
        ({"type": "object", "properties": []}, "properties", ""),
    ],
)
def test_schema_errors_name_keyword_and_pointer(schema: Any, keyword: str, pointer: str) -> None:
    with pytest.raises(SchemaError) as info:
        json_schema_to_gbnf(schema)
    err = info.value
    assert err.keyword == keyword
    assert err.pointer == pointer
    assert f"'{keyword}'" in str(err)
    assert f"#{pointer}" in str(err)


def test_schema_error_is_a_value_error_with_stable_code() -> None:
    with pytest.raises(SchemaError) as info:
        json_schema_to_gbnf("{not json")
    err = info.value
    assert isinstance(err, ValueError)
    assert isinstance(err, JsonSchemaError)
    assert isinstance(err, InvalidRequestError)
    assert err.code == "invalid_json_schema"
    assert "not valid JSON" in str(err)
    with pytest.raises(SchemaError, match="matches nothing"):
        json_schema_to_gbnf(False)
    with pytest.raises(SchemaError, match="expected a dict, JSON text or boolean"):
        json_schema_to_gbnf(42)  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match="expected a schema object or boolean"):
        json_schema_to_gbnf({"items": 3})


def test_json_text_and_dict_give_the_same_grammar_and_results_are_cached() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    first = json_schema_to_gbnf(schema)
    assert json_schema_to_gbnf(json.dumps(schema)) == first
    assert json_schema_to_gbnf(dict(schema)) is first


def test_annotations_and_extensions_are_ignored() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "T",
        "description": "d",
        "x-vendor": {"anything": True},
        "type": "object",
        "properties": {"a": {"type": "integer", "default": 1, "examples": [1], "deprecated": True}},
        "required": ["a"],
        "additionalProperties": False,
    }
    assert _accepts(schema, '{"a":3}')


def test_large_bounds_stay_within_llama_repetition_limit() -> None:
    schema = {"type": "string", "minLength": 4500, "maxLength": 4600}
    text = json_schema_to_gbnf(schema)
    grammar = _grammar(text)
    assert grammar.accepts('"' + "a" * 4500 + '"')
    assert not grammar.accepts('"' + "a" * 4499 + '"')


def test_rule_names_are_readable_and_root_comes_first() -> None:
    text = json_schema_to_gbnf(TREE)
    lines = text.splitlines()
    assert lines[0].startswith("root ::= ")
    assert any(line.startswith("node ::= ") for line in lines)
    names = [line.split(" ::= ")[0] for line in lines]
    assert len(names) == len(set(names))


@pytest.mark.parametrize(
    ("text", "literal"),
    [
        ("plain", '"plain"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("tab\tnl\ncr\r", '"tab\\tnl\\ncr\\r"'),
        ("\x00\x1f\x7f", '"\\x00\\x1F\\x7F"'),
        ("é☃😀", '"é☃😀"'),
        ("[a-b]", '"[a-b]"'),
        ("", '""'),
    ],
)
def test_gbnf_escape_literal(text: str, literal: str) -> None:
    assert gbnf_escape_literal(text) == literal
    assert parse_gbnf(f"root ::= {literal}\n").accepts(text)


def test_gbnf_escape_literal_rejects_lone_surrogates() -> None:
    with pytest.raises(ValueError, match="surrogate"):
        gbnf_escape_literal("\ud800")


def test_pattern_range_and_format_grammars_parse_in_llama_cpp() -> None:
    parses = _llama_parser()
    schemas: list[Any] = [{"type": "string", "pattern": p} for p, _, _ in PATTERNS]
    schemas += [
        {"type": "integer", "minimum": lo, "maximum": hi}
        for lo, hi in [(0, 150), (-17, 23), (5, None), (None, -3), (-100, -10), (7, 7)]
    ]
    schemas += [
        {"type": "string", "format": f}
        for f in ("date", "time", "date-time", "uuid", "email", "uri")
    ]
    schemas += [{"type": "string", "minLength": 4500, "maxLength": 4600}]
    for schema in schemas:
        assert parses(json_schema_to_gbnf(schema)), schema
    assert parses(JSON_GBNF)
