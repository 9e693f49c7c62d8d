"""One job: walk the model chain (acquire → call → settle), store the output, record the result."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import partial

from genpool.shared import contract
from genpool.shared import errors as e
from genpool.shared.budget import EXHAUSTED, CostEstimator, cost_micro
from genpool.shared.catalog import Catalog, ModelSpec
from genpool.shared.jobs import ChatRequest, Envelope, ImageRequest, Request, ResultRecord, StorageRef
from genpool.shared.ratelimit.limits import WINDOW_DIMS
from genpool.shared.routing import LiveRouting, Route, RoutingTable
from genpool.worker import policy
from genpool.worker.ahead import Ahead, Plan
from genpool.worker.answers import Generation
from genpool.worker.cache import CachedAnswer, ResponseCache, cache_key
from genpool.worker.gemini import Call, Turn
from genpool.worker.ports import Decision, Later, Ports
from genpool.worker.progress import Progress
from genpool.worker.stalls import InFlight
from genpool.worker.trace import Trace

#: The limiter's reasons for a wait that ends when the model's window has room (not a cooldown, a day or a
#: budget): a job deferred on one comes back ``defer_lead_s`` early.
WINDOW_ROOM = frozenset((*WINDOW_DIMS, "queued"))
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
        self.reason = reason


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
    # A deferred job is put back this much before its model's window has room, so that it is on a slot and
    # has booked its start (reservation ahead) when the room opens. On time, it comes back late: RQ's
    # scheduler moves due jobs every 0.5 s, in one pipeline for all (~1 s for 600 jobs on the loaded dev
    # box), and a backlog's second window then starts that late and loses it (bench_quota). Below
    # max_limiter_wait_s, so that it waits on its slot rather than being deferred again.
    defer_lead_s: float = 2.0
    spillover: bool = True  # when the head model has no capacity soon, use the next model in the chain
    backoff: policy.Backoff = policy.Backoff()
    budget_policy: Callable[[str], str] = lambda kind: "defer"  # per kind: a spent budget defers or fails


def estimate_tokens(request: Request) -> int:
    return contract.estimate_tokens(request.prompt_chars())


class Runner:
    def __init__(self, ports: Ports, catalog: Catalog, config: RunnerConfig | None = None,
                 routing: LiveRouting | None = None, cache: ResponseCache | None = None) -> None:
        self.ports = ports
        self.catalog = catalog
        self.config = config or RunnerConfig()
        self.routing = routing or LiveRouting(RoutingTable.from_catalog(catalog))  # kept fresh by worker/control
        self.cache = cache
        self.estimator = CostEstimator()  # what a call holds of a budget before it is made
        self.inflight = InFlight()  # this process's calls per model, shared by its job threads
        self.ahead = Ahead()  # decisions made in the jobs' start MULTIs (worker/ahead.py)

    def run(self, envelope: Envelope, rerun: bool = False, ran_before: bool = True,
            later: Later | None = None) -> ResultRecord:
        """Run the job to a terminal record; raises JobFailed (record saved) or Deferred.

        ``rerun``: this job ran before and its worker died; look for an output already stored before
        paying for a second call. ``ran_before``: it started before for any reason (a death, a deferral):
        its record, if it has one, is the answer, and it keeps the route it was pinned to. A first run
        reads neither (no Redis work before its call). ``later``: where a finished job's record may be
        queued to ride the job's end (its RQ end MULTI) instead of a round trip of its own."""
        existing, route = self._begin(envelope, ran_before or rerun)
        if existing is not None:
            return existing  # retried after the result was stored: no second call, no second object
        try:
            return self._run(envelope, route, rerun, later)
        except e.Deferred:
            self.ports.results.pin(envelope.job_id, route.to_text())  # it comes back on the chain it started
            raise

    def _run(self, envelope: Envelope, route: Route, rerun: bool, later: Later | None) -> ResultRecord:
        request = envelope.request
        progress = Progress(self.ports.events if envelope.events else None, envelope.job_id)
        if progress.enabled:  # a live client's "ended" event follows the record it announces: written at once
            later = None
        trace = Trace(envelope.job_id, request.kind, self.ports.wall(), route.chain, version=route.version,
                      arm=route.arm, progress=progress, account=envelope.account)
        progress.emit("started", rerun=rerun)
        recovered = self._recover(envelope, trace, route.chain) if rerun else None
        if recovered is not None:
            progress.ended(recovered)
            return recovered
        history = self._history(request)
        call = self.ports.gateway.build(request, history)
        if progress.enabled and getattr(request, "stream", False):
            call = replace(call, on_chunk=progress.chunk)
        deadline_at = self.ports.clock() + envelope.deadline_s
        if self.cache is not None and self.cache.wanted(request):
            return self._through_cache(self.cache, envelope, trace, call, history, deadline_at)
        return self._paid(envelope, trace, call, history, deadline_at, later)[0]

    def _begin(self, envelope: Envelope, ran_before: bool) -> tuple[ResultRecord | None, Route]:
        """The job's record if it ran before and has one; its route, resolved in memory from the routing in
        force, or the one an earlier run pinned (a deferred job finishes on the chain it started with)."""
        route = self._route(envelope)
        if not ran_before:
            return None, route
        existing, pinned = self.ports.results.begin(envelope.job_id, route.to_text())
        try:
            return existing, Route.from_text(pinned)
        except ValueError:
            log.warning("job %s: unreadable route pin %r; running on %s", envelope.job_id, pinned, route.to_text())
            return existing, route

    def _route(self, envelope: Envelope) -> Route:
        """The job's route in the routing in force (in memory): its arm's chain, as its request narrows it."""
        request = envelope.request
        route = self.routing.table.route(request.kind, envelope.job_id, request.model)
        return replace(route, chain=self.catalog.chain_for(request.kind, request.model, request.allow_fallback,
                                                           base=route.chain))

    def _paid(self, envelope: Envelope, trace: Trace, call: Call, history: list[Turn],
              deadline_at: float, later: Later | None = None) -> tuple[ResultRecord, Generation]:
        try:
            self.ports.results.check_storage()  # a bucket known to refuse genpool: fail before paying
            model, gen = self._walk(call, trace.chain, trace, deadline_at)
        except e.Deferred as exc:
            if trace.progress is not None:
                trace.progress.emit("deferred", delay_s=round(exc.delay_s, 3))
            raise
        except e.GenpoolError as exc:
            raise self.fail(envelope, trace, exc) from exc
        try:
            return self._finish(envelope, trace, model, gen, history, later), gen
        except e.ConfigError as exc:  # paid, kept in the spool, not storable: fail now, never pay again
            raise self.fail(envelope, trace, exc, paid=(model, gen)) from exc

    def _through_cache(self, cache: ResponseCache, envelope: Envelope, trace: Trace, call: Call,
                       history: list[Turn], deadline_at: float) -> ResultRecord:
        """Served from an identical request's answer, or this job leads: it pays and stores the answer."""
        request = envelope.request
        lease_s = min(max(0.1, deadline_at - self.ports.clock()), self._lease_s(trace.chain))
        found = cache.join(cache_key(request, trace.chain, history), lease_s, deadline_at)
        if isinstance(found, CachedAnswer):
            record = trace.cached(found, self.ports.wall(), _conversation(request))
            self.ports.results.save(record, trace.metrics, _new_turns(request, found.text),
                                    _state(request, found.text.encode()), notify=envelope.notify)
            if trace.progress is not None:
                trace.progress.ended(record)
            return record
        trace.metrics.inc("cache_misses_total", kind=request.kind)
        try:
            record, gen = self._paid(envelope, trace, call, history, deadline_at)
        except BaseException:
            cache.abandon(found)
            raise
        answer = CachedAnswer.of(record, request, gen.text)
        if answer is not None:
            cache.publish(found, answer)
        else:
            cache.abandon(found)
        return record

    def _lease_s(self, chain: tuple[str, ...]) -> float:
        """How long a leading job may take before an identical waiting job leads instead: one attempt on
        every model of its chain plus the longest limiter wait."""
        return sum(self._spec(m).timeout_s for m in chain) + self.config.max_limiter_wait_s

    def fail(self, envelope: Envelope, trace: Trace, exc: e.GenpoolError,
             paid: tuple[str, Generation] | None = None) -> JobFailed:
        record = trace.failure(exc, self.ports.wall())
        if paid is not None:
            model, gen = paid
            record = record.model_copy(update={
                "model_used": model, "prompt_tokens": gen.prompt_tokens, "output_tokens": gen.output_tokens,
                "cost_usd": self._spec(model).cost_usd(gen.prompt_tokens, gen.output_tokens, gen.images)})
        self.ports.results.save(record, trace.metrics, notify=envelope.notify)
        if trace.progress is not None:
            trace.progress.ended(record)
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
        self.ports.results.save(record, trace.metrics, notify=envelope.notify)
        return record

    def _spec(self, model: str) -> ModelSpec:
        return self.catalog.models.get(model) or ModelSpec(id=model)

    def _walk(self, call: Call, chain: tuple[str, ...], trace: Trace, deadline_at: float) -> tuple[str, Generation]:
        tokens = estimate_tokens(call.request)
        soon_s = min(self.config.spill_wait_s, self.config.max_limiter_wait_s)
        waits: dict[str, NoCapacity] = {}  # models with no capacity within soon_s -> their wait
        for position, model in enumerate(chain):
            if position:
                _fallback_event(trace, chain[position - 1], model)
            outcome = self._try(call, model, trace, deadline_at, tokens, soon_s)
            if isinstance(outcome, Generation):
                return model, outcome
            if outcome is not None:
                trace.skip(model, "budget" if outcome.reason == EXHAUSTED else "no_capacity")
                waits[model] = outcome
                if not self.config.spillover:
                    break
            if self.ports.clock() >= deadline_at:
                raise e.AllModelsFailed(f"job deadline passed; {trace.summary_of_failures()}")
        return self._wait_for_soonest(call, trace, deadline_at, tokens, waits)

    def _wait_for_soonest(self, call: Call, trace: Trace, deadline_at: float, tokens: int,
                          waits: dict[str, NoCapacity]) -> tuple[str, Generation]:
        """Second pass: no model can start soon; wait for the soonest one still untried, or defer the job."""
        untried = {m: w.wait_s for m, w in waits.items()
                   if not any(a.model == m and a.attempt for a in trace.attempts)}
        soonest = min(untried, key=untried.__getitem__, default=None)
        if soonest is not None and self.config.spill_wait_s < untried[soonest] <= self.config.max_limiter_wait_s:
            outcome = self._try(call, soonest, trace, deadline_at, tokens, self.config.max_limiter_wait_s)
            waits.pop(soonest)  # its first-pass skip stays in the trace: that pass did pass it over
            if isinstance(outcome, Generation):
                return soonest, outcome
            if outcome is not None:
                waits[soonest] = outcome
        if waits and not any(a.attempt and a.outcome != e.RateLimited.kind for a in trace.attempts):
            raise self._no_model_soon(call.request, trace, waits)  # only the quota said no: later, not never
        raise e.AllModelsFailed(f"all models failed: {trace.summary_of_failures()}")

    def _no_model_soon(self, request: Request, trace: Trace, waits: Mapping[str, NoCapacity]) -> e.GenpoolError:
        """Back on the queue until the soonest model has room; when every one waits for a spent budget, the
        job's budget policy decides: defer (until the budget day turns or a budget is raised) or fail."""
        soonest = min(waits.values(), key=lambda w: w.wait_s)
        lead_s = self.config.defer_lead_s if soonest.reason in WINDOW_ROOM else 0.0
        delay_s = max(0.0, soonest.wait_s - lead_s)
        why = f"no model can take the job soon: {trace.summary_of_failures()}"
        if not all(w.reason == EXHAUSTED for w in waits.values()):
            return e.Deferred(why, delay_s=delay_s)
        if (request.on_budget or self.config.budget_policy(request.kind)) == "fail":
            return e.BudgetExhausted(f"today's budget is spent for every model of the chain: {', '.join(waits)}")
        return e.BudgetDeferred(why, delay_s=delay_s)

    def _try(self, call: Call, model: str, trace: Trace, deadline_at: float, tokens: int,
             max_wait_s: float) -> Generation | NoCapacity | None:
        """One model: its answer; or its wait (no capacity within max_wait_s); or None (skipped or failed)."""
        spec = self._spec(model)
        if tokens > spec.input_token_limit:
            trace.skip(model, "context_too_long")
            return None
        try:
            return self._on_model(call, spec, trace, deadline_at, tokens, max_wait_s)
        except NoCapacity as exc:
            return exc
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
        retrying = partial(policy.retrying, spec.max_retries, deadline_at, self.config.max_limiter_wait_s,
                           clock=ports.clock, sleep=ports.sleep, backoff=self.config.backoff)
        return policy.first_then_retry(retrying, self._attempt, call, spec, trace, deadline_at, tokens, max_wait_s)

    def _attempt(self, call: Call, spec: ModelSpec, trace: Trace, deadline_at: float, tokens: int,
                 max_wait_s: float) -> Generation:
        ports, model = self.ports, spec.id
        ahead = self.ahead.take(trace.job_id, model)  # made in the job's start MULTI (worker/ahead.py)
        if ahead is not None:
            decision, wait_s = ahead.decision, ahead.delay_s(ports.clock())
        else:
            max_wait_ms = int(min(max_wait_s, max(0.0, deadline_at - ports.clock())) * 1000)
            plan = self._plan(spec, call.request, tokens, max_wait_ms)
            decision = ports.limiter.acquire(model, requests=1, tokens=plan.tokens, images=plan.images,
                                             max_wait_ms=plan.max_wait_ms, cost_micro=plan.cost_micro)
            wait_s = decision.delay_ms / 1000
        if decision.status == "unavailable":
            raise Skipped(decision.reason or "unavailable")
        if decision.status != "granted":
            raise NoCapacity(decision.wait_ms / 1000, decision.reason)
        if wait_s > 0:
            ports.sleep(wait_s)
        timeout_s = max(0.1, min(spec.timeout_s, deadline_at - ports.clock()))
        if decision.probe and spec.stall_s > 0:  # a healthy model answers within stall_s; a hung one
            timeout_s = min(timeout_s, spec.stall_s)  # should not hold the probing job for the full timeout
        started = ports.clock()
        try:
            gen = self._generate(call, model, timeout_s, decision.now_ms)
        except e.GenpoolError as exc:
            is_open = self._on_error(model, exc, decision, tokens)
            trace.attempt(model, exc.kind, ports.clock() - started, wait_s, decision.start_at_ms)
            trace.model_failed(model, exc)
            if is_open:
                raise BreakerOpen(exc) from exc
            raise
        self._after_success(spec, tokens, gen, decision, trace)
        trace.attempt(model, "ok", ports.clock() - started, wait_s, decision.start_at_ms)
        return gen

    def _plan(self, spec: ModelSpec, request: Request, tokens: int, max_wait_ms: int) -> Plan:
        """What an acquire on ``spec`` asks for ``request``: one request, its tokens, its image, and where a
        budget is set, its estimated cost (held until the call settles)."""
        images = 1 if isinstance(request, ImageRequest) else 0
        cost = self.estimator.estimate(spec, tokens, images, request.generation.max_output_tokens)
        return Plan(spec.id, tokens, images, max_wait_ms, cost)

    def first_acquire(self, envelope: Envelope) -> Plan | None:
        """The acquire a first run of ``envelope`` makes first (its chain's head model, the first pass's wait),
        for the worker to make ahead in the job's start MULTI; None where the run may make none: served from
        the cache, or its prompt too long for the head model."""
        request = envelope.request
        if self.cache is not None and self.cache.wanted(request):
            return None
        spec = self._spec(self._route(envelope).chain[0])
        tokens = estimate_tokens(request)
        if tokens > spec.input_token_limit:
            return None
        soon_s = min(self.config.spill_wait_s, self.config.max_limiter_wait_s)  # _walk's first pass
        return self._plan(spec, request, tokens, int(min(soon_s, envelope.deadline_s) * 1000))

    def release_ahead(self, job_id: str) -> None:
        """The job ended without taking the decision made ahead for it: a grant goes back to the window (and
        its budget hold). A probe's lease is not given back: it runs out on its own (``probe_ms``)."""
        grant = self.ahead.drop(job_id)
        if grant is None or grant.decision.status != "granted":
            return
        plan, decision, limiter = grant.plan, grant.decision, self.ports.limiter
        try:
            if decision.hold is not None:
                limiter.settle(plan.model, decision.start_at_ms, plan.tokens, plan.tokens, hold=decision.hold,
                               actual_micro=0)
            limiter.release(plan.model, decision.start_at_ms, requests=1, tokens=plan.tokens, images=plan.images)
        except e.ServiceUnavailable as exc:
            log.warning("job %s: could not give back its unused grant on %s (%s); it ages out of the window",
                        job_id, plan.model, exc)

    def _after_success(self, spec: ModelSpec, tokens: int, gen: Generation, decision: Decision,
                       trace: Trace) -> None:
        """Bookkeeping after a paid answer: a Redis outage here must not throw the answer away."""
        model = spec.id
        self.estimator.observe(model, gen.output_tokens)
        try:
            if decision.hold is not None or gen.prompt_tokens != tokens:  # else nothing to correct: no round trip
                used = self.ports.limiter.settle(model, decision.start_at_ms, tokens, gen.prompt_tokens,
                                                 hold=decision.hold, actual_micro=cost_micro(
                                                     spec, gen.prompt_tokens, gen.output_tokens, gen.images))
                trace.budget_alerts(used or {})
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

    def _on_error(self, model: str, exc: e.GenpoolError, decision: Decision, tokens: int) -> bool:
        """Tell the limiter / breaker; True when the model's breaker is open now.

        A failed call's reservation stays counted: the provider may have counted it (a 5xx or a timeout
        after admission), and a 429 tops the window up anyway (penalize). Its budget hold is given back:
        a failed call is not billed."""
        ports = self.ports
        if decision.hold is not None:
            ports.limiter.settle(model, decision.start_at_ms, tokens, tokens, hold=decision.hold, actual_micro=0)
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
                history: list[Turn], later: Later | None) -> ResultRecord:
        request = envelope.request
        spec = self._spec(model)
        ref = self.ports.results.store_output(envelope.job_id, request.kind, model, gen)
        cost = spec.cost_usd(gen.prompt_tokens, gen.output_tokens, gen.images)
        record = trace.success(model, gen, cost, ref, self.ports.wall(), _conversation(request))
        self.ports.results.save(record, trace.metrics, _new_turns(request, gen.text), _state(request, gen.body),
                                notify=envelope.notify, later=later)
        if trace.progress is not None:
            trace.progress.ended(record)
        return record


def _conversation(request: Request) -> str | None:
    return request.conversation_id if isinstance(request, ChatRequest) else None


def _new_turns(request: Request, answer: str) -> list[Turn] | None:
    """What a conversation gains: the turns the job sent, then the model's answer."""
    if not (isinstance(request, ChatRequest) and request.conversation_id):
        return None
    turns: list[Turn] = [(m.role, m.text) for m in request.messages or []]
    return turns + [("user", request.message or ""), ("model", answer)]


def _state(request: Request, body: bytes) -> bytes | None:
    """A structured conversation's latest reply, kept beside its history."""
    if isinstance(request, ChatRequest) and request.conversation_id and request.json_schema is not None:
        return body
    return None


def _fallback_event(trace: Trace, previous: str, model: str) -> None:
    """Tell a live client the job moves on from ``previous`` (the kind of its last error, not its text)."""
    if trace.progress is not None:
        reason = trace.last_errors.get(previous, "").split(":", 1)[0]
        trace.progress.emit("fallback", **{"from": previous, "to": model, "reason": reason})
