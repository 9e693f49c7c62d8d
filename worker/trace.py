"""What happened to one job: every attempt, skip and fallback, turned into its result record."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from genpool.shared.errors import GenpoolError
from genpool.shared.jobs import AttemptRecord, ErrorInfo, ResultRecord, StorageRef
from genpool.shared.metrics import MetricsBatch
from genpool.worker.answers import Generation
from genpool.worker.cache import CachedAnswer
from genpool.worker.progress import Progress

log = logging.getLogger("genpool.attempt")
budget_log = logging.getLogger("genpool.budget")


@dataclass
class Trace:
    job_id: str
    kind: str
    started_at: float
    chain: tuple[str, ...]
    attempts: list[AttemptRecord] = field(default_factory=list)
    last_errors: dict[str, str] = field(default_factory=dict)
    metrics: MetricsBatch = field(default_factory=MetricsBatch)
    progress: Progress | None = None  # the job's live events (only jobs submitted with events)
    account: str | None = None
    version: int = 0  # the routing version and arm the job runs on (shared/routing.py)
    arm: str = "control"

    def attempt(self, model: str, outcome: str, latency_s: float, wait_s: float, start_ms: int = 0) -> None:
        number = sum(1 for a in self.attempts if a.model == model and a.outcome != "skipped") + 1
        self.attempts.append(AttemptRecord(model=model, attempt=number, outcome=outcome,
                                           latency_s=round(latency_s, 4), wait_s=round(wait_s, 4),
                                           start_ms=start_ms))
        self.metrics.inc("attempts_total", model=model, kind=self.kind, outcome=outcome)
        log.info("job %s %s attempt %d: %s (wait %.3f s, latency %.3f s)", self.job_id, model, number, outcome,
                 wait_s, latency_s, extra={"job_id": self.job_id, "model": model, "attempt": number,
                                            "outcome": outcome, "wait_s": round(wait_s, 4),
                                            "latency_s": round(latency_s, 4)})
        if latency_s:
            self.metrics.observe_latency(model, latency_s)
        if wait_s:
            self.metrics.inc("limiter_wait_seconds_total", wait_s, model=model, kind=self.kind)
        self.metrics.timeline_call(model, outcome)
        if self.progress is not None:
            self.progress.attempt(model, number, outcome, latency_s)

    def skip(self, model: str, reason: str) -> None:
        self.attempts.append(AttemptRecord(model=model, attempt=0, outcome=f"skipped:{reason}"))
        self.last_errors[model] = f"skipped ({reason})"
        self.metrics.inc("skipped_total", model=model, reason=reason)

    def budget_alerts(self, settled: Mapping[str, float]) -> None:
        """A settle whose spend crossed 50 / 80 / 100 % of a budget (once fleet-wide): one line, one count."""
        for name, level in settled.items():
            if name.startswith("alert:"):
                scope = name.removeprefix("alert:")
                budget_log.warning("budget %s: %d %% of today's budget spent%s", scope, level,
                            "; its calls wait for the budget day to turn (genpool budget set raises it)"
                            if level >= 100 else "", extra={"budget": scope, "level": int(level)})
                self.metrics.inc("budget_alerts_total", budget=scope, level=str(int(level)))

    def model_failed(self, model: str, exc: GenpoolError) -> None:
        self.last_errors[model] = f"{exc.kind}: {exc}"

    @property
    def models_tried(self) -> list[str]:
        seen: list[str] = []
        for a in self.attempts:
            if a.attempt > 0 and a.model not in seen:
                seen.append(a.model)
        return seen

    @property
    def calls(self) -> int:
        return sum(1 for a in self.attempts if a.attempt > 0)

    def summary_of_failures(self) -> str:
        return "; ".join(f"{m}: {err}" for m, err in self.last_errors.items())

    def success(self, model: str, gen: Generation, cost_usd: float, storage: StorageRef, now: float,
                conversation_id: str | None) -> ResultRecord:
        fallbacks = self.chain.index(model) if model in self.chain else 0
        if fallbacks:
            self.metrics.inc("fallbacks_total", 1.0, **{"from": self.chain[0], "to": model, "kind": self.kind})
        self.metrics.inc("jobs_total", kind=self.kind, status="finished", model=model)
        self.metrics.inc("tokens_in_total", gen.prompt_tokens, model=model, kind=self.kind)
        self.metrics.inc("tokens_out_total", gen.output_tokens, model=model, kind=self.kind)
        self.metrics.inc("images_total", gen.images, model=model)
        self.metrics.inc("cost_usd_total", cost_usd, model=model, kind=self.kind)
        self.metrics.add_spend(model, round(cost_usd * 1_000_000))
        self._arm_metrics("finished", now, cost_usd, fallbacks)
        return ResultRecord(
            id=self.job_id, status="finished", kind=self.kind, model_used=model, models_tried=self.models_tried,
            attempts=self.calls, fallbacks_used=fallbacks, finish_reason=gen.finish_reason,
            prompt_tokens=gen.prompt_tokens, output_tokens=gen.output_tokens, cost_usd=cost_usd,
            duration_s=round(now - self.started_at, 4), storage=storage, model_version=gen.model_version,
            attempt_log=self.attempts, conversation_id=conversation_id, account=self.account,
            routing_version=self.version, arm=self.arm,
        )

    def cached(self, answer: CachedAnswer, now: float, conversation_id: str | None) -> ResultRecord:
        """Served from an identical request's stored answer: no call, no cost (what it saved is counted)."""
        self.metrics.inc("jobs_total", kind=self.kind, status="finished", model=answer.model)
        self.metrics.inc("cache_hits_total", kind=self.kind)
        self.metrics.inc("cache_saved_usd_total", answer.cost_usd, kind=self.kind)
        return ResultRecord(
            id=self.job_id, status="finished", kind=self.kind, model_used=answer.model,
            finish_reason=answer.finish_reason, prompt_tokens=answer.prompt_tokens,
            output_tokens=answer.output_tokens, cost_usd=0.0, duration_s=round(now - self.started_at, 4),
            storage=StorageRef(bucket=answer.bucket, key=answer.key), model_version=answer.model_version,
            conversation_id=conversation_id, routing_version=self.version, arm=self.arm, cache_hit=True,
            cached_from=answer.job_id, account=self.account,
        )

    def _arm_metrics(self, status: str, now: float, cost_usd: float = 0.0, fallbacks: int = 0) -> None:
        """Per job kind and routing arm: what `genpool stats --by-arm` compares (cache hits stay out)."""
        kind, arm = self.kind, self.arm
        self.metrics.inc("arm_jobs_total", kind=kind, arm=arm, status=status)
        if fallbacks:
            self.metrics.inc("arm_fallback_jobs_total", kind=kind, arm=arm)
        if cost_usd:
            self.metrics.inc("arm_cost_usd_total", cost_usd, kind=kind, arm=arm)
        self.metrics.observe_duration(self.kind, self.arm, now - self.started_at)

    def failure(self, exc: GenpoolError, now: float) -> ResultRecord:
        self.metrics.inc("jobs_total", kind=self.kind, status="failed", model="none")
        self.metrics.inc("job_failures_total", kind=self.kind, error=exc.kind)
        self._arm_metrics("failed", now)
        return ResultRecord(
            id=self.job_id, status="failed", kind=self.kind, models_tried=self.models_tried,
            attempts=self.calls, duration_s=round(now - self.started_at, 4),
            error=ErrorInfo(type=exc.kind, message=str(exc)), attempt_log=self.attempts, account=self.account,
            routing_version=self.version, arm=self.arm,
        )
