"""Failure policy: backoff math, the retry / fall back / fail table, and the per-model retry loop."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from genpool.shared import errors as e
from genpool.worker import policy
from genpool.worker.policy import Backoff, after_model, retry_after_s, retrying, same_model_retryable


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Script:
    """A callable that raises the scripted errors in order, then returns "ok"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def always(exc_factory: Callable[[], BaseException]) -> Script:
    return Script(*[exc_factory() for _ in range(100)])


# --- Backoff ------------------------------------------------------------------------------------------

def test_backoff_is_exponential_without_jitter() -> None:
    b = Backoff(initial_s=0.5, max_s=8.0, jitter_s=0.5)
    assert [b.wait_s(n, rng=lambda: 0.0) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 8.0]


def test_backoff_is_capped() -> None:
    b = Backoff(initial_s=0.5, max_s=8.0, jitter_s=0.5)
    assert b.wait_s(6, rng=lambda: 0.0) == 8.0
    assert b.wait_s(30, rng=lambda: 0.0) == 8.0


@pytest.mark.parametrize("attempt", [1, 3, 10])
def test_backoff_jitter_bounds(attempt: int) -> None:
    b = Backoff(initial_s=1.0, max_s=4.0, jitter_s=0.25)
    low = b.wait_s(attempt, rng=lambda: 0.0)
    high = b.wait_s(attempt, rng=lambda: 0.999999)
    assert low == min(4.0, 2 ** (attempt - 1))
    assert low < high < low + 0.25
    assert b.wait_s(attempt, rng=lambda: 0.5) == pytest.approx(low + 0.125)


def test_backoff_default_rng_stays_in_bounds() -> None:
    b = Backoff()
    for _ in range(200):
        assert 1.0 <= b.wait_s(2) < 1.5


# --- the table ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("exc", "retry"), [
    (e.ServerError("503"), True),
    (e.CallTimeout("t"), True),
    (e.ConnectionFailed("c"), True),
    (e.UnusableAnswer("no image"), True),
    (e.RateLimited("429", retry_after_s=3, scope="minute"), True),
    (e.RateLimited("429", retry_after_s=None, scope="minute"), True),
    (e.RateLimited("429", retry_after_s=5, scope="minute"), True),  # exactly the max wait
    (e.RateLimited("429", retry_after_s=6, scope="minute"), False),  # longer than we wait: fall back
    (e.RateLimited("429", retry_after_s=1, scope="day"), False),
    (e.AuthError("401"), False),
    (e.InvalidRequest("400"), False),
    (e.ContentBlocked("SAFETY"), False),
    (e.OutputTruncated("MAX_TOKENS"), False),
    (e.ModelNotFound("404"), False),
    (e.ContextTooLong("big"), False),
    (e.LimiterUnavailable("redis down"), False),
    (ValueError("bug"), False),
])
def test_same_model_retryable(exc: BaseException, retry: bool) -> None:
    assert same_model_retryable(exc, max_wait_s=5.0) is retry


@pytest.mark.parametrize(("exc", "action"), [
    (e.AuthError("401"), "fail"),
    (e.InvalidRequest("400"), "fail"),
    (e.ContentBlocked("SAFETY"), "fail"),
    (e.OutputTruncated("MAX_TOKENS"), "fail"),
    (e.ConfigError("bad"), "fail"),
    (e.ModelNotFound("404"), "fallback"),
    (e.ContextTooLong("big"), "fallback"),
    (e.RateLimited("429", scope="day"), "fallback"),
    (e.RateLimited("429", scope="minute"), "fallback"),
    (e.ServerError("503"), "fallback"),
    (e.CallTimeout("t"), "fallback"),
    (e.UnusableAnswer("bad json"), "fallback"),
    (ValueError("a bug, not a model failure"), "fail"),
    (KeyError("x"), "fail"),
])
def test_after_model(exc: BaseException, action: str) -> None:
    assert after_model(exc) == action


def test_retry_after_s() -> None:
    assert retry_after_s(None) == 0.0
    assert retry_after_s(ValueError()) == 0.0
    assert retry_after_s(e.ServerError("x")) == 0.0
    assert retry_after_s(e.RateLimited("x", retry_after_s=2.5)) == 2.5


# --- retrying -----------------------------------------------------------------------------------------

NO_JITTER = Backoff(initial_s=0.5, max_s=8.0, jitter_s=0.0)


def loop(t: FakeTime, max_retries: int = 2, deadline_at: float = 1000.0, max_wait_s: float = 5.0,
         backoff: Backoff = NO_JITTER):
    return retrying(max_retries, deadline_at, max_wait_s, clock=t.clock, sleep=t.sleep, backoff=backoff,
                    rng=lambda: 0.0)


def test_transient_error_is_retried_max_retries_times_then_reraised() -> None:
    t = FakeTime()
    fn = always(lambda: e.ServerError("503"))
    with pytest.raises(e.ServerError):
        loop(t, max_retries=2)(fn)
    assert fn.calls == 3
    assert t.sleeps == [0.5, 1.0]


def test_success_after_retries_returns_the_value() -> None:
    t = FakeTime()
    fn = Script(e.CallTimeout("t"), e.UnusableAnswer("no image"))
    assert loop(t, max_retries=3)(fn) == "ok"
    assert fn.calls == 3
    assert t.sleeps == [0.5, 1.0]


def test_zero_retries_means_one_attempt() -> None:
    t = FakeTime()
    fn = always(lambda: e.ServerError("503"))
    with pytest.raises(e.ServerError):
        loop(t, max_retries=0)(fn)
    assert fn.calls == 1
    assert t.sleeps == []


def test_never_sleeps_less_than_retry_after() -> None:
    t = FakeTime()
    fn = Script(e.RateLimited("429", retry_after_s=3.0), e.RateLimited("429", retry_after_s=0.2))
    assert loop(t, max_retries=2)(fn) == "ok"
    assert t.sleeps[0] >= 3.0
    assert t.sleeps[1] == 1.0  # backoff (attempt 2) is longer than the 0.2 s asked for


def test_rate_limit_longer_than_max_wait_is_not_retried() -> None:
    t = FakeTime()
    fn = always(lambda: e.RateLimited("429", retry_after_s=30.0))
    with pytest.raises(e.RateLimited):
        loop(t, max_retries=5, max_wait_s=5.0)(fn)
    assert fn.calls == 1
    assert t.sleeps == []


def test_day_quota_is_not_retried() -> None:
    t = FakeTime()
    fn = always(lambda: e.RateLimited("429", retry_after_s=1.0, scope="day"))
    with pytest.raises(e.RateLimited):
        loop(t, max_retries=5)(fn)
    assert fn.calls == 1


def test_stops_at_the_deadline() -> None:
    t = FakeTime(now=100.0)
    fn = always(lambda: e.ServerError("503"))
    with pytest.raises(e.ServerError):
        loop(t, max_retries=50, deadline_at=102.0)(fn)
    # sleeps 0.5 (t=100.5), 1.0 (t=101.5); the next 2.0 s sleep would cross 102 → stop
    assert t.sleeps == [0.5, 1.0]
    assert fn.calls == 3
    assert t.now <= 102.0


def test_deadline_already_passed_means_one_attempt() -> None:
    t = FakeTime(now=10.0)
    fn = always(lambda: e.ServerError("503"))
    with pytest.raises(e.ServerError):
        loop(t, max_retries=5, deadline_at=10.0)(fn)
    assert fn.calls == 1
    assert t.sleeps == []


def test_retry_after_that_would_cross_the_deadline_stops() -> None:
    t = FakeTime()
    fn = always(lambda: e.RateLimited("429", retry_after_s=4.0))
    with pytest.raises(e.RateLimited):
        loop(t, max_retries=5, deadline_at=3.0)(fn)
    assert fn.calls == 1
    assert t.sleeps == []


@pytest.mark.parametrize("exc", [e.AuthError("401"), e.InvalidRequest("400"), e.ContentBlocked("SAFETY"),
                                 e.ModelNotFound("404"), ValueError("bug")])
def test_permanent_and_model_errors_are_not_retried(exc: BaseException) -> None:
    t = FakeTime()
    fn = always(lambda: exc)
    with pytest.raises(type(exc)):
        loop(t, max_retries=5)(fn)
    assert fn.calls == 1
    assert t.sleeps == []


def test_jitter_is_applied_through_rng() -> None:
    t = FakeTime()
    fn = Script(e.ServerError("503"))
    r = retrying(2, 1000.0, 5.0, clock=t.clock, sleep=t.sleep, backoff=Backoff(0.5, 8.0, 1.0), rng=lambda: 0.5)
    assert r(fn) == "ok"
    assert t.sleeps == [1.0]


@pytest.mark.parametrize(("exc", "step"), [
    (e.LimiterUnavailable("redis down"), "defer"),
    (e.StorageUnavailable("s3 down"), "defer"),
    (e.AuthError("bad key"), "fail"),
    (e.ModelNotFound("404"), "fallback"),
    (e.ServerError("503"), "fallback"),
])
def test_after_model_decides_defer_fail_or_fallback(exc: Exception, step: str) -> None:
    assert policy.after_model(exc) == step


@pytest.mark.parametrize(("exc", "probe", "signal"), [
    (e.ModelNotFound("404"), False, "down"),
    (e.ServerError("503"), False, "failure"),
    (e.CallTimeout("slow"), True, "failure"),
    (e.RateLimited("429"), True, "answered"),
    (e.InvalidRequest("400"), True, "answered"),
    (e.InvalidRequest("400"), False, None),
])
def test_breaker_signal(exc: Exception, probe: bool, signal: str | None) -> None:
    assert policy.breaker_signal(exc, probe) == signal
    assert policy.model_answered(exc) is (signal != "failure")


# --- first_then_retry: the loop is built only for a failed first attempt --------------------------------

class Builds:
    """Counts how often the retry loop is built."""

    def __init__(self, t: FakeTime, **kwargs: float) -> None:
        self.t, self.kwargs, self.count = t, kwargs, 0

    def __call__(self):
        self.count += 1
        return loop(self.t, **self.kwargs)  # type: ignore[arg-type]


def test_a_first_attempt_that_succeeds_builds_no_loop() -> None:
    builds = Builds(FakeTime())
    fn = Script()
    assert policy.first_then_retry(builds, fn) == "ok"
    assert (fn.calls, builds.count) == (1, 0)


def test_first_then_retry_passes_the_arguments_on_every_attempt() -> None:
    seen: list[tuple[int, str]] = []

    def fn(n: int, s: str) -> str:
        seen.append((n, s))
        if len(seen) < 3:
            raise e.ServerError("503")
        return s * n

    assert policy.first_then_retry(Builds(FakeTime(), max_retries=3), fn, 2, "a") == "aa"
    assert seen == [(2, "a")] * 3


SCRIPTS = [
    lambda: Script(e.CallTimeout("t"), e.UnusableAnswer("no image")),
    lambda: always(lambda: e.ServerError("503")),
    lambda: Script(e.RateLimited("429", retry_after_s=3.0), e.RateLimited("429", retry_after_s=0.2)),
    lambda: always(lambda: e.RateLimited("429", retry_after_s=30.0)),
    lambda: always(lambda: e.AuthError("401")),
    lambda: always(lambda: e.RateLimited("429", retry_after_s=4.0)),
]


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize(("max_retries", "deadline_at"), [(0, 1000.0), (2, 1000.0), (5, 3.0), (50, 2.0)])
def test_first_then_retry_does_what_the_loop_does(script: Callable[[], Script], max_retries: int,
                                                  deadline_at: float) -> None:
    """Same attempts, same sleeps (never sooner than RetryInfo), same outcome as the loop making every attempt."""
    def run(through_first: bool) -> tuple[object, int, list[float]]:
        t, fn = FakeTime(), script()
        builds = Builds(t, max_retries=max_retries, deadline_at=deadline_at)
        try:
            out: object = policy.first_then_retry(builds, fn) if through_first else builds()(fn)
        except e.GenpoolError as exc:
            out = type(exc)
        return out, fn.calls, t.sleeps

    assert run(through_first=True) == run(through_first=False)
