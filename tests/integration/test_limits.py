"""One source of truth for the limits: the catalog wins at worker start, an operator's override is an
explicit `genpool limits set` that holds (and says so) until `genpool limits reset`."""

from __future__ import annotations

import json
import time

import pytest

from genpool.shared.ratelimit import ModelLimits, RedisLimiter
from tests.integration.test_fallback import PRIMARY, logs_hint, model_stats, write_catalog
from tests.integration.test_ops import genpool

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

WINDOW_S = 4


def _wait_for_rpm(stack, rpm: int, timeout_s: float = 30.0) -> ModelLimits:
    limiter = RedisLimiter(stack.redis)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        limits = limiter.get_limits(PRIMARY)
        if limits is not None and limits.rpm == rpm:
            return limits
        time.sleep(0.1)
    raise AssertionError(f"limits never reached rpm={rpm}: {limiter.get_limits(PRIMARY)}\n{logs_hint(stack)}")


def _wait_for_log(stack, text: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in stack.workers.logs():
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} never logged\n{logs_hint(stack)}")
        time.sleep(0.1)


def _restart_with(stack, rpm: int) -> None:
    stack.workers.stop()
    write_catalog(stack, {PRIMARY: {"rpm": rpm, "tpm": 0, "rpd": 0, "window_s": WINDOW_S, "guard_ms": 300}})
    stack.workers.start(1, concurrency=8)


def test_a_catalog_edit_and_a_restart_change_the_fleets_limits(stack):
    stack.env["GEMINI_ENABLE_FALLBACK"] = "false"
    _restart_with(stack, rpm=1000)
    _wait_for_rpm(stack, 1000)
    _restart_with(stack, rpm=20)  # lowered in the catalog file: the restart must win over Redis's 1000
    assert _wait_for_rpm(stack, 20).window_s == WINDOW_S
    time.sleep(1.0)  # let the worker finish logging its start-up
    assert f"limits {PRIMARY}: rpm 1000 -> 20 (catalog)" in stack.workers.logs()

    stack.sim.reset()
    stack.sim.models({PRIMARY: {"rpm": 20, "window_s": WINDOW_S}})  # the provider's real quota
    handles = stack.pool.submit_many([{"kind": "text", "prompt": f"pinned {i}"} for i in range(50)])
    records = stack.pool.wait_all(handles, timeout_s=60)
    assert [r.status for r in records] == ["finished"] * 50, logs_hint(stack)
    stats = model_stats(stack, PRIMARY)
    assert stats["by_status"] == {"200": 50}, stats  # the fleet ran at the new quota: not one 429
    assert stats["peak_window"]["requests"] <= 20


def test_limits_set_overrides_until_reset_across_restarts(stack):
    _restart_with(stack, rpm=1000)
    _wait_for_rpm(stack, 1000)
    out = genpool(stack.env, "limits", "set", PRIMARY, "rpm=60", "tpm=5000")
    assert out.returncode == 0, out.stderr
    assert "until `genpool limits reset" in out.stdout
    assert _wait_for_rpm(stack, 60).tpm == 5000

    _restart_with(stack, rpm=900)  # a worker starting with its catalog keeps the override on top ...
    _wait_for_log(stack, f"limits {PRIMARY}: operator override in force")  # its start-up checks come first
    shown = json.loads(genpool(stack.env, "limits", "show", PRIMARY, "--json").stdout)[PRIMARY]
    assert shown["effective"]["rpm"] == 60 and shown["catalog"]["rpm"] == 900
    assert shown["override"] == {"rpm": "60", "tpm": "5000"}
    assert f"limits {PRIMARY}: operator override in force (rpm=60 tpm=5000)" in stack.workers.logs()  # ... and says so
    stats = json.loads(genpool(stack.env, "stats", "--json").stdout)
    assert stats["models"][PRIMARY]["limiter"]["override"] == {"rpm": "60", "tpm": "5000"}
    assert "OVERRIDE rpm=60 tpm=5000" in genpool(stack.env, "limits", "show").stdout

    out = genpool(stack.env, "limits", "reset", PRIMARY)
    assert out.returncode == 0, out.stderr
    assert _wait_for_rpm(stack, 900).tpm == 0  # the catalog's, as the last worker started with it
    assert RedisLimiter(stack.redis).get_override(PRIMARY) == {}


@pytest.mark.parametrize(("args", "message"), [
    (("set", PRIMARY, "rpm=lots"), "rpm must be a number"),
    (("set", PRIMARY, "rpmm=5"), "unknown limit fields"),
    (("set", PRIMARY, "rpm"), "expected FIELD=VALUE"),
    (("set", "no-such-model", "rpm=5"), "unknown model"),
    (("set", PRIMARY, "rpm=-5"), "rpm must be an integer >= 0"),
])
def test_bad_limits_input_is_one_line_and_changes_nothing(stack, args, message):
    out = genpool(stack.env, "limits", *args)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert RedisLimiter(stack.redis).get_override(PRIMARY) == {}
