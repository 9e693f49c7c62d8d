"""Runner: walking the model chain with in-memory fakes for every port (no Redis, network or clock)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pytest

from genpool.shared import errors as e
from genpool.shared.catalog import Catalog, parse_catalog
from genpool.shared.jobs import Envelope, ResultRecord, StorageRef, new_job_id, parse_request
from genpool.shared.metrics import MetricsBatch
from genpool.worker.answers import Generation
from genpool.worker.gemini import Call, Turn
from genpool.worker.policy import Backoff
from genpool.worker.ports import Later, Ports
from genpool.worker.runner import JobFailed, Runner, RunnerConfig, estimate_tokens

LEAD_S = RunnerConfig().defer_lead_s

# --- fakes --------------------------------------------------------------------------------------------


@dataclass
class Decision:
    status: str = "granted"
    delay_ms: int = 0
    wait_ms: int = 0
    reason: str = ""
    probe: bool = False
    now_ms: int = 0
    hold: Any = None

    @property
    def start_at_ms(self) -> int:
        return self.now_ms + self.delay_ms


class FakeLimiter:
    def __init__(self, decisions: dict[str, list[Decision]] | None = None) -> None:
        self.decisions = decisions or {}
        self.acquired: list[tuple[str, int, int, int]] = []
        self.costs: list[int] = []  # the cost_micro each acquire asked to hold
        self.settled: list[tuple[str, int, int]] = []
        self.money: list[tuple[Any, int]] = []  # (hold, actual_micro) of each settle
        self.penalized: list[tuple[str, int, str]] = []

    def acquire(self, model: str, requests: int = 1, tokens: int = 0, images: int = 0,
                max_wait_ms: int = 0, cost_micro: int = 0) -> Decision:
        self.acquired.append((model, tokens, images, max_wait_ms))
        self.costs.append(cost_micro)
        script = self.decisions.get(model)
        if script:
            return script.pop(0) if len(script) > 1 else script[0]
        return Decision()

    def settle(self, model: str, start_ms: int, reserved_tokens: int, actual_tokens: int, hold: Any = None,
               actual_micro: int = 0) -> dict[str, float]:
        self.settled.append((model, reserved_tokens, actual_tokens))
        self.money.append((hold, actual_micro))
        return {}

    def release(self, model: str, start_ms: int, requests: int = 1, tokens: int = 0, images: int = 0) -> None:
        pass

    def penalize(self, model: str, retry_after_ms: int, scope: str = "minute") -> None:
        self.penalized.append((model, retry_after_ms, scope))


def gen(text: str = "hello", prompt_tokens: int = 10, output_tokens: int = 20, images: int = 0) -> Generation:
    return Generation(body=text.encode(), finish_reason="STOP", prompt_tokens=prompt_tokens,
                      output_tokens=output_tokens, images=images, model_version="v-test", text=text)


class FakeGateway:
    """generate() pops the next scripted outcome for the model; an empty script answers successfully."""

    def __init__(self, scripts: dict[str, list[Generation | BaseException]] | None = None,
                 time: FakeTime | None = None, latency_s: float = 0.0) -> None:
        self.scripts = scripts or {}
        self.time = time
        self.latency_s = latency_s
        self.calls: list[tuple[str, float]] = []
        self.histories: list[list[Turn]] = []

    def build(self, request: Any, history: list[Turn] | None = None) -> Call:
        self.histories.append(list(history or []))
        return Call(request=request, contents=[], config_kwargs={})

    def generate(self, call: Call, model: str, timeout_s: float) -> Generation:
        self.calls.append((model, timeout_s))
        if self.time is not None:
            self.time.now += self.latency_s
        script = self.scripts.get(model, [])
        outcome = script.pop(0) if script else gen()
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def models_called(self) -> list[str]:
        return [m for m, _ in self.calls]


@dataclass
class FakeAvailability:
    calls: list[tuple[str, ...]] = field(default_factory=list)
    open_after: int = 0  # the breaker is open from this many failures on (0: never)
    granted_at_ms: list[int] = field(default_factory=list)  # per failure: when the failed call was granted

    def record_success(self, model: str) -> None:
        self.calls.append(("success", model))

    def record_failure(self, model: str, reason: str, granted_at_ms: int = 0) -> bool:
        self.calls.append(("failure", model, reason))
        self.granted_at_ms.append(granted_at_ms)
        failures = sum(1 for c in self.calls if c[0] == "failure" and c[1] == model)
        return 0 < self.open_after <= failures

    def mark_down(self, model: str, reason: str, open_s: float | None = None) -> None:
        self.calls.append(("down", model, reason))


@dataclass
class FakeResults:
    records: dict[str, ResultRecord] = field(default_factory=dict)
    histories: dict[str, list[Turn]] = field(default_factory=dict)
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    stored: list[tuple[str, str, str]] = field(default_factory=list)
    saved: list[tuple[ResultRecord, list[Turn] | None]] = field(default_factory=list)
    states: list[bytes | None] = field(default_factory=list)
    notified: list[str | None] = field(default_factory=list)
    later: list[bool] = field(default_factory=list)  # each save: queued for the job's end (``later``) or not
    pins: dict[str, str] = field(default_factory=dict)

    began: list[str] = field(default_factory=list)

    def begin(self, job_id: str, route: str) -> tuple[ResultRecord | None, str]:
        self.began.append(job_id)
        return self.records.get(job_id), self.pins.setdefault(job_id, route)

    def pin(self, job_id: str, route: str) -> None:
        self.pins.setdefault(job_id, route)

    def history(self, conversation_id: str) -> list[Turn]:
        return list(self.histories.get(conversation_id, []))

    def store_output(self, job_id: str, kind: str, model: str, generation: Generation) -> StorageRef:
        self.stored.append((job_id, kind, model))
        return StorageRef(bucket="b", key=f"out/{job_id}")

    def check_storage(self) -> None:
        return None

    def find_output(self, job_id: str, kind: str) -> dict[str, str] | None:
        return self.outputs.get(job_id)

    def save(self, record: ResultRecord, metrics: MetricsBatch, new_turns: list[Turn] | None = None,
             state: bytes | None = None, notify: str | None = None, later: Later | None = None) -> None:
        self.records[record.id] = record  # written at once here: ``later`` is the real store's way to batch it
        self.later.append(later is not None)
        self.saved.append((record, new_turns))
        self.states.append(state)
        self.notified.append(notify)


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1.7e9 + self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


CATALOG = {
    "models": {
        "m1": {"max_retries": 2, "timeout_s": 30, "price_input_per_mtok": 1.0, "price_output_per_mtok": 2.0},
        "m2": {"max_retries": 1, "timeout_s": 20, "price_input_per_mtok": 0.5, "price_output_per_mtok": 1.0},
        "m3": {"max_retries": 0, "timeout_s": 10},
        "img": {"kind": "image", "price_per_image": 0.04},
    },
    "chains": {"text": ["m1", "m2", "m3"], "chat": ["m1", "m2", "m3"], "json": ["m1", "m2", "m3"],
               "image": ["img"]},
}


@dataclass
class World:
    gateway: FakeGateway = field(default_factory=FakeGateway)
    limiter: FakeLimiter = field(default_factory=FakeLimiter)
    availability: FakeAvailability = field(default_factory=FakeAvailability)
    results: FakeResults = field(default_factory=FakeResults)
    time: FakeTime = field(default_factory=FakeTime)
    catalog: Catalog = field(default_factory=lambda: parse_catalog(CATALOG))
    config: RunnerConfig = field(default_factory=lambda: RunnerConfig(backoff=Backoff(0.5, 8.0, 0.0)))

    def runner(self) -> Runner:
        ports = Ports(gateway=self.gateway, limiter=self.limiter, availability=self.availability,
                      results=self.results, clock=self.time.clock, wall=self.time.wall, sleep=self.time.sleep)
        return Runner(ports, self.catalog, self.config)

    def run(self, envelope: Envelope | None = None, rerun: bool = False, ran_before: bool = True) -> ResultRecord:
        return self.runner().run(envelope or envelope_for(), rerun=rerun, ran_before=ran_before)


def envelope_for(request: dict[str, Any] | None = None, deadline_s: float = 300.0) -> Envelope:
    req = parse_request(request or {"kind": "text", "prompt": "Write a haiku about queues."})
    return Envelope(job_id=new_job_id(), request=req, deadline_s=deadline_s)


# --- scenarios ----------------------------------------------------------------------------------------


def test_success_on_the_primary_model() -> None:
    w = World()
    env = envelope_for()
    record = w.run(env)
    assert record.status == "finished"
    assert record.id == env.job_id
    assert record.model_used == "m1"
    assert record.models_tried == ["m1"]
    assert record.attempts == 1
    assert record.fallbacks_used == 0
    assert record.prompt_tokens == 10 and record.output_tokens == 20
    assert record.cost_usd == pytest.approx((10 * 1.0 + 20 * 2.0) / 1e6)
    assert record.storage == StorageRef(bucket="b", key=f"out/{env.job_id}")
    assert record.model_version == "v-test"
    assert record.error is None
    assert w.gateway.calls == [("m1", 30.0)]
    assert w.results.stored == [(env.job_id, "text", "m1")]
    assert w.results.saved == [(record, None)]
    assert w.time.sleeps == []


def test_the_record_is_announced_to_the_producer_the_envelope_names() -> None:
    """A job submitted with notify: its record's save tells the waiting producer (shared/notify.py), on
    success and on failure; a job without it tells no one."""
    waiter = new_job_id()
    w = World(gateway=FakeGateway({"m1": [gen()], "m2": [gen()], "m3": [gen()]}))
    w.run(envelope_for().model_copy(update={"notify": waiter}))
    w.run(envelope_for())
    failing = World(gateway=FakeGateway({"m1": [e.AuthError("bad key")]}))
    with pytest.raises(JobFailed):
        failing.run(envelope_for().model_copy(update={"notify": waiter}))
    assert w.results.notified == [waiter, None]
    assert failing.results.notified == [waiter]


def test_settle_gets_the_estimate_and_the_actual_prompt_tokens() -> None:
    w = World(gateway=FakeGateway({"m1": [gen(prompt_tokens=9)]}))
    env = envelope_for()
    w.run(env)
    estimate = math.ceil(len(env.request.prompt) / 4)
    assert estimate_tokens(env.request) == estimate
    assert w.limiter.settled == [("m1", estimate, 9)]
    assert w.limiter.acquired[0][:3] == ("m1", estimate, 0)


def test_an_answer_that_used_what_was_reserved_is_not_settled() -> None:
    """Nothing to correct (no budget hold, the estimate was right): no settle round trip."""
    env = envelope_for()
    w = World(gateway=FakeGateway({"m1": [gen(prompt_tokens=estimate_tokens(env.request))]}))
    assert w.run(env).status == "finished"
    assert w.limiter.settled == []


def test_server_errors_then_success_on_the_same_model() -> None:
    w = World(gateway=FakeGateway({"m1": [e.ServerError("503"), e.ServerError("503"), gen()]}))
    record = w.run()
    assert record.model_used == "m1"
    assert record.attempts == 3
    assert record.fallbacks_used == 0
    assert [a.outcome for a in record.attempt_log] == ["server_error", "server_error", "ok"]
    assert [a.attempt for a in record.attempt_log] == [1, 2, 3]
    assert w.time.sleeps == [0.5, 1.0]
    assert w.availability.calls == [("failure", "m1", "server_error")] * 2
    # Only the answered call settles: a failed one stays counted as reserved (the provider may have
    # counted a 5xx or a timeout; a 429 tops the window up through penalize anyway).
    assert [s[2] for s in w.limiter.settled] == [10]


def test_model_not_found_marks_down_and_falls_back() -> None:
    w = World(gateway=FakeGateway({"m1": [e.ModelNotFound("404 retired")]}))
    record = w.run()
    assert record.model_used == "m2"
    assert record.fallbacks_used == 1
    assert record.models_tried == ["m1", "m2"]
    assert record.attempts == 2
    assert ("down", "m1", "not_found") in w.availability.calls
    assert w.gateway.models_called() == ["m1", "m2"]  # no retry of a missing model
    assert record.cost_usd == pytest.approx((10 * 0.5 + 20 * 1.0) / 1e6)


def test_auth_error_fails_at_once() -> None:
    w = World(gateway=FakeGateway({"m1": [e.AuthError("401 bad key")]}))
    env = envelope_for()
    with pytest.raises(JobFailed) as info:
        w.run(env)
    record = info.value.record
    assert record.status == "failed"
    assert record.error is not None and record.error.type == "auth"
    assert "bad key" in record.error.message
    assert w.gateway.models_called() == ["m1"]
    assert w.results.records[env.job_id] == record
    assert w.time.sleeps == []


def test_rate_limited_penalizes_and_waits_at_least_the_retry_delay() -> None:
    w = World(gateway=FakeGateway({"m1": [e.RateLimited("429", retry_after_s=3.0, scope="minute"), gen()]}))
    record = w.run()
    assert record.model_used == "m1"
    assert record.attempts == 2
    assert w.limiter.penalized == [("m1", 3000, "minute")]
    assert len(w.time.sleeps) == 1 and w.time.sleeps[0] >= 3.0


def test_rate_limited_without_delay_penalizes_one_second() -> None:
    w = World(gateway=FakeGateway({"m1": [e.RateLimited("429"), gen()]}))
    w.run()
    assert w.limiter.penalized == [("m1", 1000, "minute")]


def test_daily_quota_falls_back_without_retrying() -> None:
    w = World(gateway=FakeGateway({"m1": [e.RateLimited("429", retry_after_s=20, scope="day")]}))
    record = w.run()
    assert record.model_used == "m2"
    assert w.limiter.penalized == [("m1", 20000, "day")]
    assert w.gateway.models_called() == ["m1", "m2"]
    assert w.time.sleeps == []


def test_all_models_failing() -> None:
    always = {m: [e.ServerError(f"503 from {m}") for _ in range(10)] for m in ("m1", "m2", "m3")}
    w = World(gateway=FakeGateway(always))
    with pytest.raises(JobFailed) as info:
        w.run()
    record = info.value.record
    assert record.error is not None
    assert record.error.type == "all_models_failed"
    for model in ("m1", "m2", "m3"):
        assert model in record.error.message
    # 1 + max_retries per model: 3 + 2 + 1
    assert w.gateway.models_called() == ["m1"] * 3 + ["m2"] * 2 + ["m3"]
    assert record.attempts == 6
    assert record.models_tried == ["m1", "m2", "m3"]


def test_unavailable_model_is_skipped_without_a_call() -> None:
    w = World(limiter=FakeLimiter({"m1": [Decision(status="unavailable", reason="breaker_open")]}))
    record = w.run()
    assert w.gateway.models_called() == ["m2"]
    assert record.model_used == "m2"
    assert record.models_tried == ["m2"]
    assert record.attempts == 1
    assert any(a.model == "m1" and a.outcome.startswith("skipped") for a in record.attempt_log)


def test_no_capacity_anywhere_defers_with_the_smallest_wait() -> None:
    waits = {"m1": 9000, "m2": 3000, "m3": 6000}
    w = World(limiter=FakeLimiter({m: [Decision(status="wait", wait_ms=ms, reason="rpm")]
                                   for m, ms in waits.items()}))
    with pytest.raises(e.Deferred) as info:
        w.run()
    assert info.value.delay_s == pytest.approx(3.0 - LEAD_S)  # back before the room opens
    assert w.gateway.calls == []
    assert w.results.saved == []


def test_no_capacity_on_the_head_spills_over() -> None:
    w = World(limiter=FakeLimiter({"m1": [Decision(status="wait", wait_ms=60_000, reason="rpm")]}))
    record = w.run()
    assert record.model_used == "m2"
    assert w.gateway.models_called() == ["m2"]


def test_no_capacity_without_spillover_defers() -> None:
    w = World(limiter=FakeLimiter({"m1": [Decision(status="wait", wait_ms=8000, reason="rpm")]}),
              config=RunnerConfig(spillover=False, backoff=Backoff(0.5, 8.0, 0.0)))
    with pytest.raises(e.Deferred) as info:
        w.run()
    assert info.value.delay_s == pytest.approx(8.0 - LEAD_S)
    assert [a[0] for a in w.limiter.acquired] == ["m1"]


def test_limiter_delay_is_slept_and_recorded() -> None:
    w = World(limiter=FakeLimiter({"m1": [Decision(status="granted", delay_ms=250)]}))
    record = w.run()
    assert w.time.sleeps == [0.25]
    assert record.attempt_log[0].wait_s == 0.25


def test_max_wait_passed_to_the_limiter() -> None:
    w = World(config=RunnerConfig(max_limiter_wait_s=2.0, spill_wait_s=0.5, backoff=Backoff(0.5, 8.0, 0.0)))
    w.run(envelope_for(deadline_s=300))
    assert w.limiter.acquired[0][3] == 500  # the first pass asks for a start within spill_wait_s


def test_a_busy_head_spills_over_to_a_model_that_can_start_soon() -> None:
    w = World(limiter=FakeLimiter({"m1": [Decision(status="wait", wait_ms=3000, reason="rpm")]}))
    record = w.run()
    assert [(a[0], a[3]) for a in w.limiter.acquired] == [("m1", 1000), ("m2", 1000)]
    assert record.model_used == "m2" and w.time.sleeps == []
    assert [a.outcome for a in record.attempt_log] == ["skipped:no_capacity", "ok"]


def test_when_no_model_can_start_soon_the_job_waits_for_the_soonest() -> None:
    waits = {"m1": 4000, "m2": 2000, "m3": 3000}
    script = {m: [Decision(status="wait", wait_ms=ms, reason="rpm")] for m, ms in waits.items()}
    script["m2"].append(Decision(status="granted", delay_ms=2000))
    w = World(limiter=FakeLimiter(script))
    record = w.run()
    assert [(a[0], a[3]) for a in w.limiter.acquired] == [("m1", 1000), ("m2", 1000), ("m3", 1000), ("m2", 5000)]
    assert record.model_used == "m2" and w.time.sleeps == [2.0]
    assert [a.outcome for a in record.attempt_log] == ["skipped:no_capacity"] * 3 + ["ok"]


def test_a_second_pass_never_waits_beyond_the_max_wait() -> None:
    w = World(limiter=FakeLimiter({m: [Decision(status="wait", wait_ms=6000, reason="rpm")] for m in ("m1", "m2", "m3")}))
    with pytest.raises(e.Deferred) as info:
        w.run()
    assert [a[0] for a in w.limiter.acquired] == ["m1", "m2", "m3"]  # 6 s > max_limiter_wait_s: no second ask
    assert info.value.delay_s == pytest.approx(6.0 - LEAD_S)


def test_call_timeout_is_capped_by_the_deadline() -> None:
    w = World()
    w.run(envelope_for(deadline_s=5))
    assert w.gateway.calls == [("m1", 5.0)]


def test_prompt_too_long_for_a_model_skips_it() -> None:
    data = {**CATALOG, "models": {**CATALOG["models"], "m1": {"input_token_limit": 2}}}
    w = World(catalog=parse_catalog(data))
    record = w.run()
    assert w.gateway.models_called() == ["m2"]
    assert record.model_used == "m2"
    assert any(a.outcome == "skipped:context_too_long" for a in record.attempt_log)


def test_existing_result_is_returned_without_a_call() -> None:
    w = World()
    env = envelope_for()
    earlier = ResultRecord(id=env.job_id, status="finished", kind="text", model_used="m2", attempts=1)
    w.results.records[env.job_id] = earlier
    assert w.run(env) == earlier
    assert w.gateway.calls == []
    assert w.limiter.acquired == []
    assert w.results.saved == []


def test_rerun_rebuilds_the_record_from_stored_output() -> None:
    w = World()
    env = envelope_for()
    w.results.outputs[env.job_id] = {"model": "m2", "finish-reason": "STOP", "prompt-tokens": "100",
                                     "output-tokens": "200", "images": "0", "model-version": "m2-001",
                                     "bucket": "bkt", "key": "k/1.txt"}
    record = w.run(env, rerun=True)
    assert w.gateway.calls == []
    assert w.limiter.acquired == []
    assert record.status == "finished"
    assert record.model_used == "m2"
    assert record.prompt_tokens == 100 and record.output_tokens == 200
    assert record.cost_usd == pytest.approx((100 * 0.5 + 200 * 1.0) / 1e6)
    assert record.storage == StorageRef(bucket="bkt", key="k/1.txt")
    assert record.model_version == "m2-001"
    assert w.results.records[env.job_id] == record


def test_rerun_without_stored_output_calls_the_model() -> None:
    w = World()
    record = w.run(rerun=True)
    assert w.gateway.models_called() == ["m1"]
    assert record.model_used == "m1"


def test_chat_with_conversation_id_saves_new_turns() -> None:
    w = World(gateway=FakeGateway({"m1": [gen(text="I am fine")]}))
    w.results.histories["conv-1"] = [("user", "hi"), ("model", "hello")]
    env = envelope_for({"kind": "chat", "conversation_id": "conv-1", "message": "how are you?"})
    record = w.run(env)
    assert w.gateway.histories == [[("user", "hi"), ("model", "hello")]]
    assert record.conversation_id == "conv-1"
    assert w.results.saved[-1][1] == [("user", "how are you?"), ("model", "I am fine")]


def test_chat_without_conversation_saves_no_turns() -> None:
    w = World()
    record = w.run(envelope_for({"kind": "chat", "messages": [{"role": "user", "text": "hi"}]}))
    assert record.conversation_id is None
    assert w.results.saved[-1][1] is None
    assert w.gateway.histories == [[]]


def test_image_job_asks_for_an_image_and_pays_per_image() -> None:
    w = World(gateway=FakeGateway({"img": [gen(prompt_tokens=0, output_tokens=0, images=1)]}))
    record = w.run(envelope_for({"kind": "image", "prompt": "a red square"}))
    assert w.limiter.acquired[0][2] == 1
    assert record.cost_usd == pytest.approx(0.04)


def test_probe_success_is_reported_to_availability() -> None:
    w = World(limiter=FakeLimiter({"m1": [Decision(status="granted", reason="probe", probe=True)]}))
    w.run()
    assert ("success", "m1") in w.availability.calls


def test_a_probe_the_model_answers_with_an_error_still_closes_the_breaker() -> None:
    w = World(limiter=FakeLimiter({"m1": [Decision(status="granted", reason="probe", probe=True), Decision()]}),
              gateway=FakeGateway({"m1": [e.RateLimited("429", retry_after_s=1.0)]}))
    record = w.run()
    assert record.model_used == "m1" and record.attempts == 2
    assert w.availability.calls == [("success", "m1")]


def test_a_probe_that_fails_transiently_is_a_failure_not_a_success() -> None:
    w = World(limiter=FakeLimiter({"m1": [Decision(status="granted", reason="probe", probe=True), Decision()]}),
              gateway=FakeGateway({"m1": [e.ServerError("503")]}))
    w.run()
    assert ("success", "m1") not in w.availability.calls
    assert ("failure", "m1", "server_error") in w.availability.calls


def test_a_failure_that_finds_the_breaker_open_falls_back_without_retrying() -> None:
    w = World(gateway=FakeGateway({"m1": [e.ServerError("503") for _ in range(3)]}),
              availability=FakeAvailability(open_after=2))
    record = w.run()
    assert w.gateway.models_called() == ["m1", "m1", "m2"]  # max_retries 2, cut short when it opened
    assert w.time.sleeps == [0.5]  # one backoff: none before the fallback
    assert record.model_used == "m2" and record.fallbacks_used == 1
    assert [a.outcome for a in record.attempt_log] == ["server_error", "server_error", "ok"]


def test_a_probe_call_times_out_at_stall_s() -> None:
    w = stall_world()
    w.limiter.decisions["m1"] = [Decision(status="granted", reason="probe", probe=True), Decision()]
    w.run()
    w.run()
    assert w.gateway.calls == [("m1", 2.0), ("m1", 30.0)]


def test_failures_carry_their_grant_time_so_the_breaker_can_tell_stragglers() -> None:
    w = stall_world()
    w.limiter.decisions["m1"] = [Decision(now_ms=1111), Decision(now_ms=2222)]
    w.gateway.scripts["m1"] = [e.ServerError("503")]
    runner = w.runner()
    runner.run(envelope_for())  # fails once (granted at 1111), then answers
    w.time.now += 0.1
    runner.inflight.start("m1", w.time.now, granted_at_ms=3333)  # made after that answer, then hangs
    w.time.now += 2.5
    runner.report_stalls()
    assert w.availability.granted_at_ms == [1111, 3333]


def test_a_plain_grant_reports_no_success() -> None:
    w = World()
    w.run()
    assert w.availability.calls == []


def stall_world() -> World:
    data = {**CATALOG, "models": {**CATALOG["models"], "m1": {**CATALOG["models"]["m1"], "stall_s": 2.0}}}
    return World(catalog=parse_catalog(data))


def test_a_stalled_call_is_reported_once_as_a_breaker_failure() -> None:
    w = stall_world()
    runner = w.runner()
    runner.inflight.start("m1", w.time.now)  # a job thread's call that never comes back
    w.time.now += 1.5
    assert runner.report_stalls() == 0
    w.time.now += 1.0
    assert runner.report_stalls() == 1
    assert runner.report_stalls() == 0
    assert w.availability.calls == [("failure", "m1", "stalled")]
    runner.run(envelope_for())
    assert runner.inflight.in_flight("m1") == 1  # the job's call left the table; the hanging one is still in


def test_a_slow_call_is_no_stall_while_later_calls_answer() -> None:
    w = stall_world()
    runner = w.runner()
    runner.inflight.start("m1", w.time.now)
    w.time.now += 0.5
    runner.run(envelope_for())  # started after the slow call, and answered
    w.time.now += 5.0
    assert runner.report_stalls() == 0
    assert w.availability.calls == []


def test_transient_failures_do_not_count_as_answers_for_stalls() -> None:
    w = stall_world()
    w.gateway.scripts["m1"] = [e.ServerError("503") for _ in range(3)]
    runner = w.runner()
    runner.inflight.start("m1", w.time.now)
    w.time.now += 0.5
    runner.run(envelope_for())  # m1 fails three times (later calls, no answer), m2 answers
    w.time.now += 2.0
    assert runner.report_stalls() == 1
    assert ("failure", "m1", "stalled") in w.availability.calls
    assert runner.inflight.in_flight("m1") == 1  # the failed calls left the table


def test_unusable_answer_retries_then_falls_back() -> None:
    w = World(gateway=FakeGateway({"m1": [e.UnusableAnswer("bad json") for _ in range(3)]}))
    record = w.run()
    assert w.gateway.models_called() == ["m1"] * 3 + ["m2"]
    assert record.model_used == "m2"
    assert record.attempts == 4


def test_deadline_passing_stops_the_chain() -> None:
    t = FakeTime()
    w = World(gateway=FakeGateway({"m1": [e.ServerError("503") for _ in range(3)]}, time=t, latency_s=1.5),
              time=t)
    with pytest.raises(JobFailed) as info:
        w.run(envelope_for(deadline_s=1.0))
    record = info.value.record
    assert record.error is not None and record.error.type == "all_models_failed"
    assert "deadline" in record.error.message
    assert w.gateway.models_called() == ["m1"]


def test_latency_is_recorded_in_the_attempt_log() -> None:
    t = FakeTime()
    w = World(gateway=FakeGateway(time=t, latency_s=0.75), time=t)
    record = w.run()
    assert record.attempt_log[0].latency_s == 0.75
    assert record.duration_s == 0.75


@pytest.mark.parametrize(("exc", "kind"), [(e.InvalidRequest("400 bad temperature"), "invalid_argument"),
                                           (e.ContentBlocked("answer blocked: SAFETY"), "blocked"),
                                           (e.OutputTruncated("MAX_TOKENS"), "max_tokens")])
def test_permanent_errors_fail_without_fallback(exc: e.GenpoolError, kind: str) -> None:
    w = World(gateway=FakeGateway({"m1": [exc]}))
    with pytest.raises(JobFailed) as info:
        w.run()
    assert info.value.record.error is not None and info.value.record.error.type == kind
    assert w.gateway.models_called() == ["m1"]


def test_context_too_long_from_the_model_falls_back_at_once() -> None:
    w = World(gateway=FakeGateway({"m1": [e.ContextTooLong("400 input token count exceeds")]}))
    record = w.run()
    assert w.gateway.models_called() == ["m1", "m2"]
    assert record.model_used == "m2"
    assert w.time.sleeps == []


def test_no_capacity_after_real_attempts_is_a_failure_not_a_deferral() -> None:
    always = [e.ServerError("503") for _ in range(10)]
    wait = [Decision(status="wait", wait_ms=4000, reason="rpm")]
    w = World(gateway=FakeGateway({"m1": always}), limiter=FakeLimiter({"m2": wait, "m3": list(wait)}))
    with pytest.raises(JobFailed) as info:
        w.run()
    assert info.value.record.error is not None
    assert info.value.record.error.type == "all_models_failed"
    assert "no_capacity" in info.value.record.error.message


def test_a_429_then_no_capacity_anywhere_defers_the_job() -> None:
    """A quota 429 is the provider's "no capacity": with every other model full too, the job waits for
    room (deferred), it does not fail (seen in bench_quota: 2 of 900 jobs failed 'all models failed')."""
    wait = [Decision(status="wait", wait_ms=8000, reason="rpm")]
    w = World(gateway=FakeGateway({"m1": [e.RateLimited("429", retry_after_s=30.0)]}),
              limiter=FakeLimiter({"m2": wait, "m3": list(wait)}))
    with pytest.raises(e.Deferred) as info:
        w.run()
    assert info.value.delay_s == pytest.approx(8.0 - LEAD_S)
    assert w.gateway.models_called() == ["m1"]


def test_allow_fallback_false_uses_only_the_override() -> None:
    w = World(gateway=FakeGateway({"m2": [e.ModelNotFound("404")]}))
    with pytest.raises(JobFailed):
        w.run(envelope_for({"kind": "text", "prompt": "hi", "model": "m2", "allow_fallback": False}))
    assert w.gateway.models_called() == ["m2"]


@pytest.mark.parametrize(("reason", "early_s"), [("rpm", LEAD_S), ("tpm", LEAD_S), ("queued", LEAD_S),
                                                 ("cooldown", 0.0), ("day", 0.0)])
def test_a_job_deferred_for_a_window_room_comes_back_before_it_opens(reason: str, early_s: float) -> None:
    """On time is late: RQ's scheduler moves due jobs every 0.5 s, all in one pipeline, and a backlog's
    second window started ~0.6 s after its room opened (bench_quota). A cooldown (RetryInfo) or the
    day's quota is not a room the job should queue for early."""
    w = World(limiter=FakeLimiter({m: [Decision(status="wait", wait_ms=30_000, reason=reason)]
                                   for m in ("m1", "m2", "m3")}))
    with pytest.raises(e.Deferred) as info:
        w.run()
    assert info.value.delay_s == pytest.approx(30.0 - early_s)
    assert 0 < LEAD_S < RunnerConfig().max_limiter_wait_s  # back on a slot, it waits there for its booked start
