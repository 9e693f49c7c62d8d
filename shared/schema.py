"""Checks that a JSON schema is one Gemini's structured output accepts, without third-party packages.

The producer validates schemas before enqueueing (so a bad schema costs nothing); the worker validates
the model's answer against the schema with ``jsonschema``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TYPES = {"object", "array", "string", "integer", "number", "boolean", "null"}
_NUMERIC_KEYS = ("minimum", "maximum", "minItems", "maxItems", "minLength", "maxLength", "minProperties",
                 "maxProperties")
MAX_DEPTH = 16


def schema_problems(schema: Any, path: str = "$", depth: int = 0) -> list[str]:
    """Every reason ``schema`` is not a usable JSON schema; empty when it is fine."""
    if not isinstance(schema, Mapping):
        return [f"{path}: a schema must be an object"]
    if depth > MAX_DEPTH:
        return [f"{path}: nested deeper than {MAX_DEPTH} levels"]
    problems = _type_problems(schema, path) + _number_problems(schema, path)
    problems += _enum_problems(schema, path)
    problems += _children_problems(schema, path, depth)
    return problems


def _type_problems(schema: Mapping[str, Any], path: str) -> list[str]:
    declared = schema.get("type")
    if declared is None:
        has_combinator = any(k in schema for k in ("anyOf", "oneOf", "allOf", "enum", "$ref", "const"))
        return [] if has_combinator or path != "$" else [f"{path}: the top level needs a 'type'"]
    names = declared if isinstance(declared, list) else [declared]
    bad = [n for n in names if not isinstance(n, str) or n.lower() not in TYPES]
    return [f"{path}.type: unknown type {b!r}" for b in bad]


def _number_problems(schema: Mapping[str, Any], path: str) -> list[str]:
    return [f"{path}.{key}: must be a number" for key in _NUMERIC_KEYS
            if key in schema and (isinstance(schema[key], bool) or not isinstance(schema[key], int | float))]


def _enum_problems(schema: Mapping[str, Any], path: str) -> list[str]:
    if "enum" in schema and (not isinstance(schema["enum"], list) or not schema["enum"]):
        return [f"{path}.enum: must be a non-empty list"]
    return []


def _children_problems(schema: Mapping[str, Any], path: str, depth: int) -> list[str]:
    problems: list[str] = []
    props = schema.get("properties", {})
    if not isinstance(props, Mapping):
        return [f"{path}.properties: must be an object"]
    for name, sub in props.items():
        problems += schema_problems(sub, f"{path}.properties.{name}", depth + 1)
    required = schema.get("required", [])
    if not isinstance(required, list) or any(r not in props for r in required):
        problems.append(f"{path}.required: must list names defined in properties")
    if "items" in schema:
        problems += schema_problems(schema["items"], f"{path}.items", depth + 1)
    for key in ("anyOf", "oneOf", "allOf"):
        for i, sub in enumerate(schema.get(key, [])):
            problems += schema_problems(sub, f"{path}.{key}[{i}]", depth + 1)
    return problems
