"""What ``acquire`` answers, parsed from the Lua reply."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

Status = Literal["granted", "wait", "unavailable"]


@dataclass(frozen=True)
class BudgetHold:
    """What a grant holds of the budgets that were set: ``micro`` USD in each record of ``keys`` (one per
    ``scopes``: a model id or "pool"); settle swaps it for the real cost."""

    keys: tuple[bytes, ...]
    scopes: tuple[str, ...]
    micro: int


@dataclass(frozen=True)
class Decision:
    """``granted``: sleep ``delay_ms`` then call. ``wait``: nothing taken, retry in ``wait_ms`` or fall
    back. ``unavailable``: the model is down/retired/being probed for ``wait_ms``; fall back.

    ``reason`` names the binding constraint (rpm, tpm, ipm, rpd, cooldown, probing or the recorded
    unavailable reason; "" if none), or "probe" when ``probe`` is set: this caller is the circuit
    breaker's half-open probe and must report its outcome. ``now_ms`` is Redis's clock at the decision.
    """

    status: Status
    delay_ms: int = 0
    wait_ms: int = 0
    reason: str = ""
    now_ms: int = 0
    probe: bool = False
    hold: BudgetHold | None = None  # granted while a budget is set: settle with it

    @property
    def granted(self) -> bool:
        return self.status == "granted"

    @property
    def start_at_ms(self) -> int:
        """When a granted call may start, on Redis's clock."""
        return self.now_ms + self.delay_ms


def is_unconfigured(reply: bytes) -> bool:
    """The model has no limits in Redis yet (``acquire.lua`` answers before touching anything)."""
    return reply.startswith(b"unconfigured|")


def from_reply(reply: bytes) -> Decision:
    """Parse ``acquire.lua``'s ``status|delay_ms|wait_ms|now_ms|probe|reason``."""
    status, delay_ms, wait_ms, now_ms, probe, reason = reply.decode().split("|", 5)
    return Decision(cast(Status, status), int(delay_ms), int(wait_ms), reason, int(now_ms), probe == "1")
