"""One job: walk the model chain (acquire → call → settle), store the output, record the result."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from genpool.shared import contract
from genpool.shared import errors as e
from genpool.shared.catalog import Catalog, ModelSpec
from genpool.shared.jobs import ChatRequest, Envelope, ImageRequest, Request, ResultRecord, StorageRef
from genpool.worker import policy
from genpool.worker.answers import Generation
from genpool.worker.gemini import Call, Turn
from genpool.worker.ports import Decision, Ports
from genpool.worker.stalls import InFlight
from genpool.worker.trace import Trace

OUTAGE_DEFER_S = 2.0  # Redis (limiter, breaker state) unreachable: back on the queue (policy: "defer")
log = logging.getLogger("genpool.runner")


class JobFailed(e.Permanent):
    """The job is terminal and failed; its record is already saved."""

    kind = "job_failed"

    def __init__(self, record: ResultRecord) -> None:
        super().__init__(record.error.message if record.error else "failed")
        self.record = record


class NoCapacity(e.GenpoolError):
    """The model's bucket cannot grant within the wait we accept; try another model or defer."""

    kind = "no_capacity"

    def __init__(self, wait_s: float, reason: str) -> None:
        super().__init__(f"no capacity for {wait_s:.1f} s ({reason})")
        self.wait_s = wait_s


class Skipped(e.ModelUnavailable):
    """The limiter says the model is unavailable (retired, breaker open, being probed)."""

    kind = "skipped"


class BreakerOpen(e.ModelUnavailable):
    """The call failed and the model's breaker is open (this failure opened it, or it already was):
    fall back now; a retry would only wait for a probe slot or hang on the same outage."""

    kind = "breaker_open"

    def __init__(self, cause: e.GenpoolError) -> None:
        super().__init__(f"{cause.kind}: {cause}; the model's breaker is open")


@dataclass(frozen=True)
class RunnerConfig:
    max_limiter_wait_s: float = 5.0
    # Two passes down the chain. First: a model whose bucket can start the call within spill_wait_s,
    # so a backlog overflows into the next models instead of queueing seconds deep on the head while
    # their quota sits idle (bench_quota). Then, if none can: the soonest one, up to max_limiter_wait_s;
    # beyond that the job is deferred.
    spill_wait_s: float = 1.0
    spillover: bool = True  # when the head model has no capacity soon, use the next model in the chain
    backoff: policy.Backoff = policy.Backoff()


def estimate_tokens(request: Request) -> int:
    return contract.estimate_tokens(request.prompt_chars())


class Runner:
    def __init__(self, ports: Ports, catalog: Catalog, config: RunnerConfig | None = None) -> None:
        self.ports = ports
        self.catalog = catalog
        self.config = config or RunnerConfig()
        self.inflight = InFlight()  # this process's calls per model, shared by its job threads

    def run(self, envelope: Envelope, rerun: bool = False) -> ResultRecord:
        """Run the job to a terminal record; raises JobFailed (record saved) or Deferred.

        ``rerun``: this job ran before (its worker died); look for an output already stored before
        paying for a second call."""
        existing = self.ports.results.get(envelope.job_id)
        if existing is not None:
            return existing  # retried after the result was stored: no second call, no second object
        request = envelope.request
        chain = self.catalog.chain_for(request.kind, request.model, request.allow_fallback)
        trace = Trace(envelope.job_id, request.kind, self.ports.wall(), chain)
        recovered = self._recover(envelope, trace, chain) if rerun else None
        if recovered is not None:
            return recovered
        history = self._history(request)
        call = self.ports.gateway.build(request, history)
        deadline_at = self.ports.clock() + envelope.deadline_s
        try:
            self.ports.results.check_storage()  # a bucket known to refuse genpool: fail before paying
            model, gen = self._walk(call, chain, trace, deadline_at)
        except e.Deferred:
            raise
        except e.GenpoolError as exc:
            raise self.fail(envelope, trace, exc) from exc
        try:
            return self._finish(envelope, trace, model, gen, history)
        except e.ConfigError as exc:  # paid, kept in the spool, not storable: fail now, never pay again
            raise self.fail(envelope, trace, exc, paid=(model, gen)) from exc

    def fail(self, envelope: Envelope, trace: Trace, exc: e.GenpoolError,
             paid: tuple[str, Generation] | None = None) -> JobFailed:
        record = trace.failure(exc, self.ports.wall())
        if paid is not None:
            model, gen = paid
            record = record.model_copy(update={
                "model_used": model, "prompt_tokens": gen.prompt_tokens, "output_tokens": gen.output_tokens,
                "cost_usd": self._spec(model).cost_usd(gen.prompt_tokens, gen.output_tokens, gen.images)})
        self.ports.results.save(record, trace.metrics)
        return JobFailed(record)

    def _history(self, request: Request) -> list[Turn]:
        if isinstance(request, ChatRequest) and request.conversation_id:
            return self.ports.results.history(request.conversation_id)
        return []

    def _recover(self, envelope: Envelope, trace: Trace, chain: tuple[str, ...]) -> ResultRecord | None:
        """A job whose output reached storage but whose record did not (its worker died in between)."""
        meta = self.ports.results.find_output(envelope.job_id, envelope.request.kind)
        if meta is None:
            return None
        model = meta.get("model", chain[0])
        gen = Generation(body=b"", finish_reason=meta.get("finish-reason", "STOP"),
                         prompt_tokens=int(meta.get("prompt-tokens", 0)),
                         output_tokens=int(meta.get("output-tokens", 0)),
                         images=int(meta.get("images", 0)), model_version=meta.get("model-version", model))
        cost = self._spec(model).cost_usd(gen.prompt_tokens, gen.output_tokens, gen.images)
        ref = StorageRef(bucket=meta["bucket"], key=meta["key"])
        record = trace.success(model, gen, cost, ref, self.ports.wall(), None)
        self.ports.results.save(record, trace.metrics)
        return record

    def _spec(self, model: str) -> ModelSpec:
        return self.catalog.models.get(model) or ModelSpec(id=model)

    def _walk(self, call: Call, chain: tuple[str, ...], trace: Trace, deadline_at: float) -> tuple[str, Generation]:
        tokens = estimate_tokens(call.request)
        soon_s = min(self.config.spill_wait_s, self.config.max_limiter_wait_s)
        waits: dict[str, float] = {}  # models with no capacity within soon_s -> their wait
        for model in chain:
            outcome = self._try(call, model, trace, deadline_at, tokens, soon_s)
            if isinstance(outcome, Generation):
                return model, outcome
            if outcome is not None:
                trace.skip(model, "no_capacity")
                waits[model] = outcome
                if not self.config.spillover:
                    break
            if self.ports.clock() >= deadline_at:
                raise e.AllModelsFailed(f"job deadline passed; {trace.summary_of_failures()}")
        return self._wait_for_soonest(call, trace, deadline_at, tokens, waits)

    def _wait_for_soonest(self, call: Call, trace: Trace, deadline_at: float, tokens: int,
                          waits: dict[str, float]) -> tuple[str, Generation]:
        """Second pass: no model can start soon; wait for the soonest one still untried, or defer the job."""
        untried = {m: w for m, w in waits.items() if not any(a.model == m and a.attempt for a in trace.attempts)}
        soonest = min(untried, key=untried.__getitem__, default=None)
        if soonest is not None and self.config.spill_wait_s < untried[soonest] <= self.config.max_limiter_wait_s:
            outcome = self._try(call, soonest, trace, deadline_at, tokens, self.config.max_limiter_wait_s)
            waits.pop(soonest)  # its first-pass skip stays in the trace: that pass did pass it over
            if isinstance(outcome, Generation):
                return soonest, outcome
            if outcome is not None:
                waits[soonest] = outcome
        if waits and not any(a.attempt for a in trace.attempts):
            delay_s = min(waits.values())
            raise e.Deferred(f"no model can take the job soon: {trace.summary_of_failures()}", delay_s=delay_s)
        raise e.AllModelsFailed(f"all models failed: {trace.summary_of_failures()}")

    def _try(self, call: Call, model: str, trace: Trace, deadline_at: float, tokens: int,
             max_wait_s: float) -> Generation | float | None:
        """One model: its answer; or its wait (no capacity within max_wait_s); or None (skipped or failed)."""
        spec = self._spec(model)
        if tokens > spec.input_token_limit:
            trace.skip(model, "context_too_long")
            return None
        try:
            return self._on_model(call, spec, trace, deadline_at, tokens, max_wait_s)
        except NoCapacity as exc:
            return exc.wait_s
        except Skipped as exc:
            trace.skip(model, str(exc))
        except e.GenpoolError as exc:
            step = policy.after_model(exc)
            if step == "defer":
                raise e.Deferred(f"{exc.kind}: {exc}", delay_s=OUTAGE_DEFER_S) from exc
            trace.model_failed(model, exc)
            if step == "fail":
                raise exc
        return None

    def _on_model(self, call: Call, spec: ModelSpec, trace: Trace, deadline_at: float, tokens: int,
                  max_wait_s: float) -> Generation:
        ports = self.ports
        retrying = policy.retrying(spec.max_retries, deadline_at, self.config.max_limiter_wait_s,
                                   clock=ports.clock, sleep=ports.sleep, backoff=self.config.backoff)
        return retrying(self._attempt, call, spec, trace, deadline_at, tokens, max_wait_s)

    def _attempt(self, call: Call, spec: ModelSpec, trace: Trace, deadline_at: float, tokens: int,
                 max_wait_s: float) -> Generation:
        ports, model = self.ports, spec.id
        images = 1 if isinstance(call.request, ImageRequest) else 0
        max_wait_ms = int(min(max_wait_s, max(0.0, deadline_at - ports.clock())) * 1000)
        decision = ports.limiter.acquire(model, requests=1, tokens=tokens, images=images, max_wait_ms=max_wait_ms)
        if decision.status == "unavailable":
            raise Skipped(decision.reason or "unavailable")
        if decision.status != "granted":
            raise NoCapacity(decision.wait_ms / 1000, decision.reason)
        wait_s = decision.delay_ms / 1000
        if wait_s > 0:
            ports.sleep(wait_s)
        timeout_s = max(0.1, min(spec.timeout_s, deadline_at - ports.clock()))
        if decision.probe and spec.stall_s > 0:  # a healthy model answers within stall_s; a hung one
            timeout_s = min(timeout_s, spec.stall_s)  # should not hold the probing job for the full timeout
        started = ports.clock()
        try:
            gen = self._generate(call, model, timeout_s, decision.now_ms)
        except e.GenpoolError as exc:
            is_open = self._on_error(model, exc, decision)
            trace.attempt(model, exc.kind, ports.clock() - started, wait_s, decision.start_at_ms)
            trace.model_failed(model, exc)
            if is_open:
                raise BreakerOpen(exc) from exc
            raise
        self._after_success(model, tokens, gen, decision)
        trace.attempt(model, "ok", ports.clock() - started, wait_s, decision.start_at_ms)
        return gen

    def _after_success(self, model: str, tokens: int, gen: Generation, decision: Decision) -> None:
        """Bookkeeping after a paid answer: a Redis outage here must not throw the answer away."""
        try:
            self.ports.limiter.settle(model, decision.start_at_ms, tokens, gen.prompt_tokens)
            if decision.probe:
                self.ports.availability.record_success(model)
        except e.ServiceUnavailable as exc:
            log.warning("%s answered but its limiter/breaker update failed (%s); keeping the answer", model, exc)

    def _generate(self, call: Call, model: str, timeout_s: float, granted_at_ms: int) -> Generation:
        """The call, tracked in flight; any answer but a transient failure shows the model is answering."""
        call_id = self.inflight.start(model, self.ports.clock(), granted_at_ms)
        answered = False
        try:
            gen = self.ports.gateway.generate(call, model, timeout_s)
            answered = True
            return gen
        except e.GenpoolError as exc:
            answered = policy.model_answered(exc)
            raise
        finally:
            self.inflight.finish(call_id, answered)

    def report_stalls(self) -> int:
        """Calls to a model that stopped answering count as breaker failures before they time out
        (run by the stall watch thread, worker/stalls.py); returns how many were reported."""
        reported = 0
        for model in self.inflight.models():
            for granted_at_ms in self.inflight.take_stalled(model, self._spec(model).stall_s, self.ports.clock()):
                self.ports.availability.record_failure(model, "stalled", granted_at_ms)
                reported += 1
        return reported

    def _on_error(self, model: str, exc: e.GenpoolError, decision: Decision) -> bool:
        """Tell the limiter / breaker; True when the model's breaker is open now.

        A failed call's reservation stays counted: the provider may have counted it (a 5xx or a timeout
        after admission), and a 429 tops the window up anyway (penalize)."""
        ports = self.ports
        if isinstance(exc, e.RateLimited):
            ports.limiter.penalize(model, int(policy.retry_after_s(exc) * 1000) or 1000, exc.scope)
        signal = policy.breaker_signal(exc, decision.probe)
        if signal == "down":
            ports.availability.mark_down(model, "not_found")
        elif signal == "failure":
            return ports.availability.record_failure(model, exc.kind, decision.now_ms)
        elif signal == "answered":  # a probe's call answered (a 429, a bad request, a blocked prompt): close it
            ports.availability.record_success(model)
        return False

    def _finish(self, envelope: Envelope, trace: Trace, model: str, gen: Generation,
                history: list[Turn]) -> ResultRecord:
        request = envelope.request
        spec = self._spec(model)
        ref = self.ports.results.store_output(envelope.job_id, request.kind, model, gen)
        cost = spec.cost_usd(gen.prompt_tokens, gen.output_tokens, gen.images)
        conv = request.conversation_id if isinstance(request, ChatRequest) else None
        record = trace.success(model, gen, cost, ref, self.ports.wall(), conv)
        new_turns: list[Turn] | None = None
        if conv and isinstance(request, ChatRequest):
            new_turns = [(m.role, m.text) for m in request.messages or []]
            new_turns += [("user", request.message or ""), ("model", gen.text)]
        self.ports.results.save(record, trace.metrics, new_turns)
        return record
