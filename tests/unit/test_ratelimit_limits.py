"""ModelLimits: validation, the Redis hash round trip, and the change log line."""

from __future__ import annotations

import pytest

from genpool.shared.errors import ConfigError
from genpool.shared.ratelimit.limits import ModelLimits, format_changes


def test_hash_round_trip() -> None:
    limits = ModelLimits(rpm=1000, tpm=1_000_000, rpd=10_000, ipm=10, window_s=1.5, safety=0.95, guard_ms=250)
    raw = {k.encode(): v.encode() for k, v in limits.to_hash().items()}
    assert raw[b"window_ms"] == b"1500"
    assert ModelLimits.from_hash(raw) == limits


def test_missing_hash_fields_take_defaults_and_old_fields_are_ignored() -> None:
    assert ModelLimits.from_hash({"rpm": "5", "burst": "0.01", "token_burst": "0.05"}) == ModelLimits(rpm=5)


@pytest.mark.parametrize("kwargs", [
    {"rpm": -1}, {"tpm": 1.5}, {"rpd": True}, {"window_s": 0}, {"safety": 0}, {"safety": 1.2},
    {"guard_ms": -1}, {"guard_ms": 0.5},
])
def test_invalid_limits_are_config_errors(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        ModelLimits(**kwargs)  # type: ignore[arg-type]


def test_non_numbers_in_a_hash_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="rpm must be a number"):
        ModelLimits.from_hash({"rpm": "lots"})


def test_changes_name_each_field_that_moved() -> None:
    new = ModelLimits(rpm=60, tpm=5)
    assert new.changes_from(ModelLimits(rpm=1000, tpm=5)) == {"rpm": (1000, 60)}
    assert format_changes(new.changes_from(ModelLimits(rpm=1000, tpm=5))) == "rpm 1000 -> 60"
    assert format_changes({"rpm": (None, 60)}) == "rpm - -> 60"
