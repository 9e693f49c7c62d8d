"""Checks that a JSON schema is one Gemini's structured output accepts, before anything is enqueued.

Two layers: is it a valid JSON Schema at all, and does it keep to what genpool and Gemini need (a typed top
level, ``required`` naming defined properties, a non-empty ``enum``, bounded nesting). Validity is
``jsonschema``'s own meta-schema check wherever jsonschema is installed (every worker; a producer with the
``worker`` extra); the light client install, which has no jsonschema, falls back to a small hand-written
subset of it (type names, numeric keywords), so it still rejects the usual mistakes before enqueueing.
The worker validates the model's answer against the schema with ``jsonschema``.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

TYPES = {"object", "array", "string", "integer", "number", "boolean", "null"}
_NUMERIC_KEYS = ("minimum", "maximum", "minItems", "maxItems", "minLength", "maxLength", "minProperties",
                 "maxProperties")
MAX_DEPTH = 16


def schema_problems(schema: Any) -> list[str]:
    """Every reason ``schema`` is not a usable JSON schema; empty when it is fine."""
    if not isinstance(schema, Mapping):
        return ["$: a schema must be an object"]
    return _validity_problems(schema) + _genpool_problems(schema, "$", 0)


def _validity_problems(schema: Mapping[str, Any]) -> list[str]:
    try:
        from jsonschema.validators import validator_for
    except ImportError:  # the light client install
        return _subset_validity_problems(schema, "$", 0)
    from jsonschema import Draft202012Validator

    meta = _meta_validator(validator_for(schema, default=Draft202012Validator))
    errors = sorted(meta.iter_errors(schema), key=lambda err: list(map(str, err.path)))
    return [f"{_path(err.path)}: {err.message}" for err in errors]


@cache
def _meta_validator(cls: Any) -> Any:
    return cls(cls.META_SCHEMA)


def _path(parts: Any) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


def _genpool_problems(schema: Mapping[str, Any], path: str, depth: int) -> list[str]:
    """What Gemini's structured output (and genpool) needs beyond being valid."""
    if depth > MAX_DEPTH:
        return [f"{path}: nested deeper than {MAX_DEPTH} levels"]
    problems: list[str] = []
    has_combinator = any(k in schema for k in ("anyOf", "oneOf", "allOf", "enum", "$ref", "const"))
    if path == "$" and "type" not in schema and not has_combinator:
        problems.append(f"{path}: the top level needs a 'type'")
    if "enum" in schema and (not isinstance(schema["enum"], list) or not schema["enum"]):
        problems.append(f"{path}.enum: must be a non-empty list")
    props = schema.get("properties", {})
    required = schema.get("required", [])
    if isinstance(props, Mapping) and (not isinstance(required, list) or any(r not in props for r in required)):
        problems.append(f"{path}.required: must list names defined in properties")
    for sub_path, sub in _children(schema, path):
        problems += _genpool_problems(sub, sub_path, depth + 1)
    return problems


def _children(schema: Mapping[str, Any], path: str) -> list[tuple[str, Mapping[str, Any]]]:
    props = schema.get("properties", {})
    found = [(f"{path}.properties.{name}", sub) for name, sub in props.items()] if isinstance(props, Mapping) else []
    if "items" in schema:
        found.append((f"{path}.items", schema["items"]))
    for key in ("anyOf", "oneOf", "allOf"):
        subs = schema.get(key, [])
        found += [(f"{path}.{key}[{i}]", sub) for i, sub in enumerate(subs if isinstance(subs, list) else [])]
    return [(p, sub) for p, sub in found if isinstance(sub, Mapping)]


def _subset_validity_problems(schema: Any, path: str, depth: int) -> list[str]:
    """Without jsonschema: the usual ways a schema is invalid (not an object, unknown type, non-numeric bound)."""
    if not isinstance(schema, Mapping):
        return [f"{path}: a schema must be an object"]
    if depth > MAX_DEPTH:
        return []
    declared = schema.get("type")
    names = declared if isinstance(declared, list) else [] if declared is None else [declared]
    problems = [f"{path}.type: unknown type {n!r}" for n in names if not isinstance(n, str) or n.lower() not in TYPES]
    problems += [f"{path}.{key}: must be a number" for key in _NUMERIC_KEYS
                 if key in schema and (isinstance(schema[key], bool) or not isinstance(schema[key], int | float))]
    if not isinstance(schema.get("properties", {}), Mapping):
        problems.append(f"{path}.properties: must be an object")
    props = schema.get("properties", {}) if isinstance(schema.get("properties", {}), Mapping) else {}
    subs = [(f"{path}.properties.{name}", sub) for name, sub in props.items()]
    subs += [(f"{path}.items", schema["items"])] if "items" in schema else []
    for key in ("anyOf", "oneOf", "allOf"):
        subs += [(f"{path}.{key}[{i}]", sub) for i, sub in enumerate(schema.get(key, []) or [])]
    for sub_path, sub in subs:
        problems += _subset_validity_problems(sub, sub_path, depth + 1)
    return problems
