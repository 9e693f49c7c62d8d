"""The operator commands exit like every genpool command: 2 for a setting or input to fix, 1 otherwise."""

from __future__ import annotations

import importlib

import pytest
import redis

from genpool.ops.command import run_tool
from genpool.shared.errors import (
    EXIT_FAILED,
    EXIT_USAGE,
    ConfigError,
    LimiterUnavailable,
    ValidationError,
    exit_code,
)


@pytest.mark.parametrize("tool, argv", [("limits", ["show"]), ("models", ["show"]), ("budget", ["show"])])
def test_a_bad_setting_is_a_usage_error_in_one_line(tool: str, argv: list[str], monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("REDIS_URL", "notaurl")
    code = importlib.import_module(f"genpool.ops.{tool}").main(argv)
    err = capsys.readouterr().err
    assert code == EXIT_USAGE, err
    assert err.startswith(f"genpool {tool}: REDIS_URL=") and err.count("\n") == 1


def test_exit_codes_by_error() -> None:
    assert exit_code(ConfigError("x")) == exit_code(ValidationError("x")) == EXIT_USAGE
    assert exit_code(LimiterUnavailable("x")) == exit_code(RuntimeError("x")) == EXIT_FAILED


def test_redis_unreachable_is_a_failure(capsys: pytest.CaptureFixture[str]) -> None:
    def body() -> int:
        raise redis.ConnectionError("refused")

    assert run_tool("models", body) == EXIT_FAILED
    assert capsys.readouterr().err == "genpool models: cannot reach Redis at REDIS_URL: refused\n"
