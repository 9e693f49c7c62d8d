"""`genpool stats` as rich tables: per model, limits and state, per job kind, fallbacks and queues."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text


def render(data: dict[str, Any]) -> Group:
    parts: list[Any] = [models_table(data), limits_table(data), kinds_table(data)]
    if data["fallbacks"]:
        parts.append(Text("fallbacks: " + ", ".join(f"{k} x{v:.0f}" for k, v in data["fallbacks"].items())))
    if data["failures"]:
        parts.append(Text("failed jobs: " + ", ".join(f"{k} x{v:.0f}" for k, v in data["failures"].items())))
    parts.append(Text("queued: " + ", ".join(f"{q}={n}" for q, n in data["queues"].items())))
    return Group(*parts)


def _table(title: str, columns: tuple[str, ...]) -> Table:
    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="left" if col in ("model", "kind", "state", "cooldown") else "right")
    return table


def models_table(data: dict[str, Any]) -> Table:
    table = _table("genpool: per model", ("model", "requests", "ok", "429", "errors", "skipped", "tokens in",
                                          "tokens out", "cost $", "limiter wait s", "p50 s", "p95 s"))
    for model, m in data["models"].items():
        skipped = sum(v for k, v in m.items() if k.startswith("skipped:"))
        latency = m["latency"]
        table.add_row(model, _n(m["requests"]), _n(m.get("outcome:ok", 0)),
                      _n(m["rate_limited"]), _n(m["errors"]), _n(skipped), _n(m.get("tokens_in_total", 0)),
                      _n(m.get("tokens_out_total", 0)), f"{m.get('cost_usd_total', 0):.4f}",
                      f"{m.get('limiter_wait_seconds_total', 0):.2f}", _le(latency["p50_le_s"], latency),
                      _le(latency["p95_le_s"], latency))
    return table


def limits_table(data: dict[str, Any]) -> Table:
    table = _table("model state; limiter: used / genpool's ceiling (provider limit) in the trailing window, "
                   "rpd: today", ("model", "state", "cooldown", "rpm", "tpm", "ipm", "rpd", "booked ahead",
                                  "override"))
    for model, m in data["models"].items():
        limiter = m["limiter"]
        cells = [_window(limiter["window"].get(dim)) for dim in ("rpm", "tpm", "ipm", "rpd")]
        state = m["state"] or {}
        override = " ".join(f"{k}={v}" for k, v in sorted(limiter["override"].items())) or "-"
        table.add_row(model, state_text(m["state"]), _clock(state.get("cooldown_until_s")), *cells,
                      f"{limiter['ahead_s']:.1f} s", override)
    return table


def kinds_table(data: dict[str, Any]) -> Table:
    table = _table("per job kind", ("kind", "requests", "429", "finished", "failed", "failures", "tokens in",
                                    "tokens out", "cost $", "limiter wait s"))
    for kind, k in data["kinds"].items():
        failures = ", ".join(f"{n.split(':', 1)[1]} {v:.0f}" for n, v in k.items() if n.startswith("failures:"))
        table.add_row(kind, _n(k.get("requests", 0)), _n(k.get("outcome:rate_limited", 0)), _n(k.get("finished", 0)),
                      _n(k.get("failed", 0)), failures or "-", _n(k.get("tokens_in_total", 0)),
                      _n(k.get("tokens_out_total", 0)), f"{k.get('cost_usd_total', 0):.4f}",
                      f"{k.get('limiter_wait_seconds_total', 0):.2f}")
    return table


def state_text(state: dict[str, Any] | None) -> str:
    if not state:
        return "-"
    until = f" until {_clock(state['until_s'])}" if state["until_s"] else ""
    reason = f" ({state['reason']})" if state["reason"] else ""
    return f"{state['state']}{until}{reason}"


def _window(window: dict[str, Any] | None) -> str:
    if not window:
        return "-"
    return f"{window['used']} / {window['effective']} ({window['limit']})"


def _clock(at_s: float | None) -> str:
    return time.strftime("%m-%d %H:%M:%SZ", time.gmtime(at_s)) if at_s else "-"


def _le(bound: float | None, latency: dict[str, Any]) -> str:
    if not latency["count"]:
        return "-"
    return f"<= {bound:g}" if bound is not None else "> 60"


def _n(value: float) -> str:
    return f"{value:.0f}"
