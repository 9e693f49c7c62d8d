"""Schema filling: values validate against the JSON Schema / OpenAPI schema they were made from."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from genpool.sim.schemafill import fill_schema

JSON_SCHEMAS: list[dict[str, Any]] = [
    {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 18,
                                                                            "maximum": 30}},
     "required": ["name", "age"], "additionalProperties": False},
    {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
     "minItems": 4, "maxItems": 6},
    {"type": "object", "properties": {
        "when": {"type": "string", "format": "date"}, "at": {"type": "string", "format": "date-time"},
        "mail": {"type": "string", "format": "email"}, "id": {"type": "string", "format": "uuid"},
        "colour": {"type": "string", "enum": ["red", "green"]}, "flag": {"type": "boolean"},
        "short": {"type": "string", "minLength": 50, "maxLength": 60}, "fixed": {"const": 7},
        "maybe": {"type": ["string", "null"]}, "either": {"anyOf": [{"type": "null"}, {"type": "integer"}]},
    }, "required": ["when", "at", "mail", "id", "colour", "flag", "short", "fixed", "maybe", "either"]},
    {  # pydantic-style: $defs and $ref, nested lists of objects
        "$defs": {"Item": {"type": "object", "properties": {"sku": {"type": "string"},
                                                             "qty": {"type": "integer", "minimum": 1}},
                           "required": ["sku", "qty"]}},
        "type": "object", "properties": {"items": {"type": "array", "items": {"$ref": "#/$defs/Item"},
                                                   "minItems": 1}},
        "required": ["items"],
    },
    {"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
               {"properties": {"b": {"type": "integer"}}, "required": ["b"]}]},
]


@pytest.mark.parametrize("schema", JSON_SCHEMAS)
def test_json_schema_values_validate(schema: dict[str, Any]) -> None:
    for seed in range(20):
        value = fill_schema(schema, seed, "hello prompt")
        jsonschema.validate(value, schema, format_checker=jsonschema.FormatChecker())
        json.dumps(value)


def test_openapi_schema_with_upper_case_types_and_snake_keys() -> None:
    schema = {"type": "OBJECT", "properties": {
        "title": {"type": "STRING"}, "tags": {"type": "ARRAY", "items": {"type": "STRING"}, "min_items": 2},
        "score": {"type": "NUMBER", "minimum": 1.5, "maximum": 2.5}, "ok": {"type": "BOOLEAN"},
        "kind": {"type": "STRING", "enum": ["a", "b"]}},
        "required": ["title"], "property_ordering": ["ok", "title"]}
    value = fill_schema(schema, 3, "my prompt")
    assert list(value)[:2] == ["ok", "title"]
    assert "my prompt" in value["title"]
    assert len(value["tags"]) >= 2
    assert 1.5 <= value["score"] <= 2.5
    assert value["kind"] in ("a", "b")


def test_fill_is_deterministic_per_seed() -> None:
    schema = JSON_SCHEMAS[2]
    assert fill_schema(schema, 5, "x") == fill_schema(schema, 5, "x")


def test_recursive_schema_terminates() -> None:
    schema = {"$defs": {"Node": {"type": "object", "properties": {
        "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}}}, "$ref": "#/$defs/Node"}
    assert isinstance(fill_schema(schema, 1, "x"), dict)
