"""ModelLimits: validation and the Redis hash round trip."""

from __future__ import annotations

import pytest

from genpool.shared.errors import ConfigError
from genpool.shared.ratelimit.limits import ModelLimits


def test_hash_round_trip() -> None:
    limits = ModelLimits(rpm=1000, tpm=1_000_000, rpd=10_000, ipm=10, window_s=1.5, safety=0.95,
                         burst=0.02, token_burst=0.1)
    raw = {k.encode(): v.encode() for k, v in limits.to_hash().items()}
    assert raw[b"window_ms"] == b"1500"
    assert ModelLimits.from_hash(raw) == limits


def test_missing_hash_fields_take_defaults() -> None:
    assert ModelLimits.from_hash({"rpm": "5"}) == ModelLimits(rpm=5)


@pytest.mark.parametrize("kwargs", [
    {"rpm": -1}, {"tpm": 1.5}, {"rpd": True}, {"window_s": 0}, {"safety": 0}, {"safety": 1.2},
    {"burst": 0}, {"token_burst": 2},
])
def test_invalid_limits_are_config_errors(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        ModelLimits(**kwargs)  # type: ignore[arg-type]
