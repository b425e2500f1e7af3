"""Which JSON Schema keywords llama-cpp-python's grammar converter would skip unenforced."""

from __future__ import annotations

import pytest

from raylane.workers.llamacpp_schema import skipped

PERSON = {"type": "object", "additionalProperties": False, "required": ["name", "age"],
          "title": "Person", "properties": {"name": {"type": "string", "maxLength": 20},
                                            "age": {"type": "integer", "description": "years"}}}


@pytest.mark.parametrize("schema", [
    PERSON,
    {"anyOf": [{"type": "string"}, {"type": "null"}], "description": "optional text"},
    {"enum": ["a", "b"], "type": "string"},
    {"type": "string", "format": "date-time"},
    {"type": "string", "format": "uuid4"},
    {"type": "object", "additionalProperties": True},
    {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
    {"type": "array", "prefixItems": [{"type": "integer"}, {"const": "x"}]},
    {"$defs": {"P": PERSON}, "type": "array", "items": {"$ref": "#/$defs/P"}},
    {"allOf": [{"$ref": "#/$defs/P"}, {"properties": {"id": {"type": "integer"}}}],
     "$defs": {"P": PERSON}},
    {},
])
def test_what_the_converter_enforces_passes(schema: dict) -> None:
    assert skipped(schema) is None


@pytest.mark.parametrize(("schema", "keyword"), [
    ({"type": "object", "properties": {"a": {"type": "integer", "maximum": 9}}},
     "properties.a.maximum"),
    ({"type": "string", "format": "email"}, "format"),
    ({"type": "string", "pattern": "^a+$", "maxLength": 3}, "maxLength"),
    ({"type": "array", "items": {"type": "string"}, "uniqueItems": True}, "uniqueItems"),
    ({"$defs": {"X": {"type": "number", "minimum": 0}}, "$ref": "#/$defs/X"},
     "$defs.X.minimum"),
    ({"type": ["string", "null"], "maxLength": 5}, "maxLength"),
    ({"type": "object", "required": ["a"]}, "required"),
    ({"type": "object", "minProperties": 1, "properties": {}}, "minProperties"),
    ({"anyOf": [{"type": "string", "minLength": 2, "pattern": "x"}]}, "anyOf[0].minLength"),
    ({"$ref": "#/$defs/X", "maxLength": 2, "$defs": {"X": {"type": "string"}}}, "maxLength"),
    ({"type": "array", "prefixItems": [{"type": "integer"}], "minItems": 1}, "minItems"),
    ({"type": "object", "properties": {"a": {}},
      "additionalProperties": {"type": "integer", "multipleOf": 2}},
     "additionalProperties.multipleOf"),
])
def test_a_keyword_the_converter_skips_is_named(schema: dict, keyword: str) -> None:
    assert skipped(schema) == keyword
