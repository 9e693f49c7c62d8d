"""The strategy: admission against the provider's own trailing window, pure and clock-injected.

The provider (Gemini, and our simulator) admits a request arriving at ``a`` when what it admitted in
``(a - W, a]`` plus this request stays within the limit. The limiter keeps the same record: how much
each admitted request used, at its start time, in slots of ``slot_ms`` (``W / SLOTS_PER_WINDOW``).
A request may start at the earliest ``s`` (never before the latest start already granted: starts are
FIFO) where the trailing window of ``span = W + guard`` before ``s`` plus its cost fits under L'.
A slot counts until its *last* millisecond has left the span, so a slot can only over-count (by at most
one slot of time per window, 0.17 % at 60 s): never an admission the provider would refuse.

``lua/_window.lua`` mirrors this module operation for operation (all integers: bit-identical);
``ReferenceWindow`` is the in-memory twin the contract tests compare the Lua against.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from genpool.shared.ratelimit.limits import WINDOW_DIMS, ModelLimits

#: Slots per window: time resolution of the record (100 ms at 60 s) against memory (slots per model).
SLOTS_PER_WINDOW = 600
#: The most slots one acquire looks ahead for room; past it the answer is "wait" with a lower bound.
MAX_WALK = 256
#: Absorbs float noise such as 29 * 0.01 = 0.29000000000000004 before floor (same in Lua).
EPSILON = 1e-9

Costs = tuple[int, int, int]  # requests, tokens, images: the order of WINDOW_DIMS


@dataclass(frozen=True)
class WindowSpec:
    """One model's admission rule: L' per window dimension (0 = unlimited), L'rpd, span and slot size."""

    limits: Costs
    rpd: int
    span_ms: int
    slot_ms: int

    def free_at_ms(self, slot: int) -> int:
        """The first start time at which nothing in ``slot`` counts any more."""
        return (slot + 1) * self.slot_ms - 1 + self.span_ms

    def slot_of(self, at_ms: int) -> int:
        return at_ms // self.slot_ms

    def misfit(self, sums: Sequence[int], costs: Costs) -> str:
        """"" if ``costs`` fit on top of ``sums`` in every limited dimension, else the first that does not.

        A cost above L' fits only an empty window (the provider would refuse it anyway; it still gets
        one try, alone)."""
        for i, limit in enumerate(self.limits):
            if limit and costs[i] > 0 and sums[i] + min(costs[i], limit) > limit:
                return WINDOW_DIMS[i]
        return ""


def effective_limit(limit: int, safety: float) -> int:
    """L' = floor(L * safety), at least 1 for a limited dimension; 0 stays 0 (unlimited)."""
    if limit <= 0:
        return 0
    return max(1, math.floor(limit * safety + EPSILON))


def slot_ms_for(window_ms: int) -> int:
    return max(1, -(-window_ms // SLOTS_PER_WINDOW))


def spec_for(limits: ModelLimits) -> WindowSpec:
    lims = tuple(effective_limit(getattr(limits, dim), limits.safety) for dim in WINDOW_DIMS)
    return WindowSpec(limits=lims,  # type: ignore[arg-type]
                      rpd=effective_limit(limits.rpd, limits.safety),
                      span_ms=limits.window_ms + limits.guard_ms, slot_ms=slot_ms_for(limits.window_ms))


@dataclass(frozen=True)
class Outcome:
    """The reference's answer: granted with ``delay_ms``, or not with ``wait_ms``."""

    granted: bool
    delay_ms: int
    wait_ms: int
    reason: str


@dataclass
class Record:
    """What was admitted: per slot (ascending) the requests, tokens, images started in it."""

    slots: dict[int, list[int]] = field(default_factory=dict)
    sums: list[int] = field(default_factory=lambda: [0, 0, 0])
    last_ms: int = 0

    def pop_oldest(self) -> int:
        slot = next(iter(self.slots))
        for i, amount in enumerate(self.slots.pop(slot)):
            self.sums[i] -= amount
        if not self.slots:
            self.sums = [0, 0, 0]
        return slot

    def expire(self, spec: WindowSpec, at_ms: int) -> None:
        """Drop every slot that no start at or after ``at_ms`` can count."""
        if self.slots and spec.free_at_ms(next(reversed(self.slots))) <= at_ms:
            self.slots.clear()
            self.sums = [0, 0, 0]
        while self.slots and spec.free_at_ms(next(iter(self.slots))) <= at_ms:
            self.pop_oldest()

    def add(self, slot: int, costs: Sequence[int]) -> None:
        values = self.slots.setdefault(slot, [0, 0, 0])
        for i in range(3):
            values[i] += costs[i]
            self.sums[i] += costs[i]

    def adjust(self, slot: int, deltas: Costs) -> None:
        """Settle: a live slot by ``deltas`` (never below 0); a charge whose slot is missing inside the live
        range lands on the newest slot (counts longer: safe); a slot older than the oldest live one is out
        of every window a start to come can have (acquire dropped it for good)."""
        if slot in self.slots:
            values = self.slots[slot]
            for i in range(3):
                new = max(0, values[i] + deltas[i])
                self.sums[i] += new - values[i]
                values[i] = new
        elif self.slots and next(iter(self.slots)) <= slot and any(d > 0 for d in deltas):
            self.add(next(reversed(self.slots)), [max(0, d) for d in deltas])


@dataclass(frozen=True)
class Plan:
    start_ms: int
    reason: str
    fits: bool
    popped: int  # slots the walk looked past (dropped from the record only if the plan is taken)


def plan(record: Record, spec: WindowSpec, costs: Costs, now_ms: int, cooldown_until_ms: int) -> Plan:
    """The earliest start for ``costs``: no sooner than now, the latest start and the cooldown; then past
    the oldest slots until the window fits. Mutates ``record`` (the caller works on a copy)."""
    earliest = max(now_ms, record.last_ms)
    start = max(earliest, cooldown_until_ms)
    record.expire(spec, start)
    first_misfit = missing = spec.misfit(record.sums, costs)
    popped = 0
    while missing and record.slots and popped < MAX_WALK:
        start = max(start, spec.free_at_ms(record.pop_oldest()))
        popped += 1
        missing = spec.misfit(record.sums, costs)
    if missing and record.slots:  # walk capped: a lower bound
        start = max(start, spec.free_at_ms(next(iter(record.slots))))
    return Plan(start, _reason(first_misfit, popped, start, now_ms, earliest, cooldown_until_ms), not missing, popped)


def _reason(first_misfit: str, popped: int, start: int, now_ms: int, earliest: int, cooldown_until_ms: int) -> str:
    if popped:
        return first_misfit
    if start <= now_ms:
        return ""
    return "cooldown" if cooldown_until_ms > earliest else "queued"


class ReferenceWindow:
    """In-memory twin of the window part of ``acquire.lua`` / ``settle.lua`` (no day counter, no state hash)."""

    def __init__(self, limits: ModelLimits, clock: Callable[[], int]) -> None:
        self.spec = spec_for(limits)
        self.clock = clock
        self.record = Record()

    def acquire(self, costs: Costs, max_wait_ms: int, cooldown_until_ms: int = 0) -> Outcome:
        now_ms = self.clock()
        self.record.expire(self.spec, max(now_ms, self.record.last_ms))
        trial = Record(dict((k, list(v)) for k, v in self.record.slots.items()), list(self.record.sums),
                       self.record.last_ms)
        found = plan(trial, self.spec, costs, now_ms, cooldown_until_ms)
        wait_ms = found.start_ms - now_ms
        if not found.fits or wait_ms > max_wait_ms:
            return Outcome(False, 0, wait_ms, found.reason)
        trial.add(self.spec.slot_of(found.start_ms), costs)
        trial.last_ms = found.start_ms
        self.record = trial
        return Outcome(True, wait_ms, 0, found.reason)

    def settle(self, start_ms: int, deltas: Costs) -> None:
        """Like settle.lua: no clock, no expiry (the next acquire drops what no start can count)."""
        self.record.adjust(self.spec.slot_of(start_ms), deltas)

    def penalize(self) -> None:
        """A 429 (scope: every dimension): the window counts as full from the latest start on."""
        at_ms = max(self.clock(), self.record.last_ms)
        self.record.expire(self.spec, at_ms)
        fill = [max(0, limit - used) if limit else 0 for limit, used in zip(self.spec.limits, self.record.sums,
                                                                           strict=True)]
        self.record.add(self.spec.slot_of(at_ms), fill)
        self.record.last_ms = at_ms
