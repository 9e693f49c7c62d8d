"""Config loading, validation and model resolution; runtime state with an injected clock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genpool.sim import cli
from genpool.sim.config import config_from_dict, load_config
from genpool.sim.errors import ConfigError
from genpool.sim.faults import FaultBoard, parse_fault
from genpool.sim.quota import Cost
from genpool.sim.state import Simulator

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "sim.example.toml"


class FakeClock:
    def __init__(self, now_s: float = 1_000_000.0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def test_example_config_loads() -> None:
    config = load_config(EXAMPLE)
    assert "gemini-2.5-flash" in config.models


def test_json_and_toml_configs(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps({"seed": 3, "models": {"m-x": {"rpm": 2}}}))
    (tmp_path / "a.toml").write_text('seed = 3\n[models."m-x"]\nrpm = 2\n')
    assert load_config(tmp_path / "a.json") == load_config(tmp_path / "a.toml")


@pytest.mark.parametrize("raw", [
    {"nope": 1}, {"models": {"m": {"rpm": "5"}}}, {"models": {"m": {"rpm": -1}}}, {"defaults": {"rpmm": 1}},
    {"unknown_models": "maybe"}, {"api_keys": "k"}, {"faults": [{"kind": "418"}]},
    {"faults": [{"kind": "503", "rate": 2}]}, {"seed": True}, {"models": {"m": {"image": 1}}},
])
def test_invalid_configs_are_rejected(raw: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        config_from_dict(raw)


def test_defaults_latency_also_applies_to_image_models() -> None:
    sim = Simulator(config_from_dict({"defaults": {"latency_ms": 5, "jitter_ms": 0}}))
    image, _ = sim.model("gemini-2.5-flash-image")
    assert image is not None and image.latency_ms == 5
    builtin, _ = Simulator(config_from_dict({})).model("gemini-2.5-flash-image")
    assert builtin is not None and builtin.latency_ms == 1500


def test_model_lookup_served_retired_unknown() -> None:
    sim = Simulator(config_from_dict({"models": {"gemini-1.5-flash": {}, "gemini-2.5-flash": {"retired": True}}}))
    assert sim.model("gemini-1.5-flash")[0] is not None  # listing a retired id serves it
    assert sim.model("gemini-1.5-pro") == (None, "retired_model")
    assert sim.model("gemini-2.5-flash") == (None, "retired_model")
    assert sim.model("no-such-model") == (None, "unknown_model")
    served = Simulator(config_from_dict({"unknown_models": "serve"}))
    assert served.model("whatever-image")[0].image  # type: ignore[union-attr]


def test_runtime_override_and_reset() -> None:
    clock = FakeClock()
    sim = Simulator(config_from_dict({}), clock=clock)
    sim.override_models({"models": {"gemini-2.5-flash": {"rpm": 1, "window_s": 5}}})
    settings, _ = sim.model("gemini-2.5-flash")
    assert settings is not None and settings.limits.rpm == 1
    assert sim.admit(settings, clock(), Cost()) == []
    assert sim.admit(settings, clock(), Cost())[0].wait_s == pytest.approx(5.0)
    sim.reset()
    settings, _ = sim.model("gemini-2.5-flash")
    assert settings is not None and settings.limits.rpm == 0
    with pytest.raises(ConfigError):
        sim.override_models({"models": {"gemini-2.5-flash": {"rpx": 1}}})


def test_fault_windows_are_relative_to_origin() -> None:
    board = FaultBoard([parse_fault({"kind": "503", "model": "a", "start_s": 10, "end_s": 20})], 100.0, 0)
    assert board.pick("a", 105.0) is None
    assert board.pick("a", 110.0) is not None
    assert board.pick("b", 110.0) is None
    assert board.pick("a", 120.0) is None


def test_fault_rate_is_seeded() -> None:
    def rolls(seed: int) -> list[bool]:
        board = FaultBoard([parse_fault({"kind": "500", "rate": 0.5})], 0.0, seed)
        return [board.pick("m", 1.0) is not None for _ in range(200)]

    assert rolls(7) == rolls(7)
    assert 60 < sum(rolls(7)) < 140


def test_cli_rejects_a_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("rpm = [")
    assert cli.main(["--config", str(bad), "--port", "0"]) == 2
    assert "cannot read config" in capsys.readouterr().err
