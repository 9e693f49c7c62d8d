"""Fill a response schema with deterministic values: Gemini's OpenAPI-style Schema or a JSON Schema."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Callable
from typing import Any

from genpool.sim.request import field_of

_MAX_DEPTH = 8  # beyond this (recursive $refs), objects and arrays are left empty
_FORMATS: dict[str, Callable[[random.Random], str]] = {
    "date": lambda rng: (dt.date(2026, 1, 1) + dt.timedelta(days=rng.randrange(365))).isoformat(),
    "date-time": lambda rng: (dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
                              + dt.timedelta(seconds=rng.randrange(31_536_000))).isoformat().replace("+00:00", "Z"),
    "time": lambda rng: f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}",
    "email": lambda rng: f"user{rng.randrange(10_000)}@example.com",
    "uri": lambda rng: f"https://example.com/item/{rng.randrange(10_000)}",
    "url": lambda rng: f"https://example.com/item/{rng.randrange(10_000)}",
    "uuid": lambda rng: str(uuid.UUID(int=rng.getrandbits(128), version=4)),
    "hostname": lambda rng: f"host{rng.randrange(1000)}.example.com",
    "ipv4": lambda rng: f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
}


class SchemaFiller:
    """Walks a schema producing a value that validates against it; `hint` (the prompt head) seeds strings."""

    def __init__(self, root: dict[str, Any], rng: random.Random, hint: str) -> None:
        self._root = root
        self._rng = rng
        self._hint = " ".join(hint.split())[:60] or "value"
        self._fill: dict[str, Callable[[dict[str, Any], int], Any]] = {
            "object": self._object, "array": self._array, "string": self._string, "integer": self._integer,
            "number": self._number, "boolean": lambda s, d: self._rng.random() < 0.5, "null": lambda s, d: None,
        }

    def value(self, schema: dict[str, Any], depth: int = 0) -> Any:
        schema = self._flatten(schema)
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            return self._rng.choice(schema["enum"])
        return self._fill.get(self._type(schema), self._fill["string"])(schema, depth)

    def _flatten(self, schema: Any) -> dict[str, Any]:
        """Follow $ref, merge allOf, and take the first non-null branch of anyOf / oneOf."""
        for _ in range(_MAX_DEPTH):
            if not isinstance(schema, dict):
                return {}
            if "$ref" in schema:
                schema = {**self._resolve(str(schema["$ref"])), **{k: v for k, v in schema.items() if k != "$ref"}}
            elif field_of(schema, "allOf"):
                parts = [self._flatten(p) for p in field_of(schema, "allOf")]
                schema = _merge([{k: v for k, v in schema.items() if k not in ("allOf", "all_of")}, *parts])
            elif branches := (field_of(schema, "anyOf") or field_of(schema, "oneOf")):
                rest = {k: v for k, v in schema.items() if k not in ("anyOf", "any_of", "oneOf", "one_of")}
                schema = {**rest, **_first_non_null(branches)}
            else:
                return schema
        return schema if isinstance(schema, dict) else {}

    def _resolve(self, ref: str) -> dict[str, Any]:
        node: Any = self._root
        for key in ref.removeprefix("#").strip("/").split("/"):
            node = node.get(key, {}) if isinstance(node, dict) and key else node
        return node if isinstance(node, dict) else {}

    @staticmethod
    def _type(schema: dict[str, Any]) -> str:
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if str(k).lower() != "null"), "null")
        if kind:
            return str(kind).lower()
        if "properties" in schema:
            return "object"
        return "array" if "items" in schema else "string"

    def _object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties") or {}
        if depth >= _MAX_DEPTH or not isinstance(properties, dict):
            return {}
        order = field_of(schema, "propertyOrdering") or []
        names = [n for n in order if n in properties] + [n for n in properties if n not in order]
        return {name: self.value(properties[name], depth + 1) for name in names}

    def _array(self, schema: dict[str, Any], depth: int) -> list[Any]:
        low = int(field_of(schema, "minItems", 0) or 0)
        high = field_of(schema, "maxItems")
        count = max(low, 1 + self._rng.randrange(3))
        if high is not None:
            count = min(count, int(high))
        if depth >= _MAX_DEPTH:
            count = low
        items = schema.get("items") or {}
        return [self.value(items, depth + 1) for _ in range(count)]

    def _string(self, schema: dict[str, Any], depth: int) -> str:
        make = _FORMATS.get(str(schema.get("format", "")).lower())
        text = make(self._rng) if make else f"{self._hint} #{self._rng.randrange(1000)}"
        low = int(field_of(schema, "minLength", 0) or 0)
        high = field_of(schema, "maxLength")
        if len(text) < low:
            text = (text + " ") * (low // (len(text) + 1) + 1)
        return text if high is None else text[: int(high)]

    def _bounds(self, schema: dict[str, Any], step: float) -> tuple[float, float]:
        low = _as_number(schema.get("minimum"), None)
        high = _as_number(schema.get("maximum"), None)
        exclusive_low = field_of(schema, "exclusiveMinimum")
        exclusive_high = field_of(schema, "exclusiveMaximum")
        if exclusive_low is True and low is not None:  # draft 4 / OpenAPI 3.0 boolean form
            low += step
        elif _as_number(exclusive_low, None) is not None:
            low = float(exclusive_low) + step
        if exclusive_high is True and high is not None:
            high -= step
        elif _as_number(exclusive_high, None) is not None:
            high = float(exclusive_high) - step
        low = low if low is not None else (high - 100 if high is not None else 0.0)
        return low, high if high is not None else low + 100

    def _integer(self, schema: dict[str, Any], depth: int) -> int:
        low, high = self._bounds(schema, 1)
        low_i, high_i = -int(-low // 1), int(high // 1)  # ceil(low), floor(high)
        return self._rng.randint(low_i, max(low_i, high_i))

    def _number(self, schema: dict[str, Any], depth: int) -> float:
        low, high = self._bounds(schema, 1e-6)
        return min(high, max(low, round(self._rng.uniform(low, high), 2)))


def _as_number(value: Any, default: float | None) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value)


def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for part in parts:
        properties = {**merged.get("properties", {}), **part.get("properties", {})}
        merged.update(part)
        if properties:
            merged["properties"] = properties
    return merged


def _first_non_null(branches: Any) -> dict[str, Any]:
    options = [b for b in branches if isinstance(b, dict)] if isinstance(branches, list) else []
    for option in options:
        if str(option.get("type", "")).lower() != "null":
            return option
    return options[0] if options else {}


def fill_schema(schema: dict[str, Any], seed: int, hint: str) -> Any:
    return SchemaFiller(schema, random.Random(seed), hint).value(schema)
