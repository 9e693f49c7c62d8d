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
    parts += [Text(line) for line in control_lines(data)]
    return Group(*parts)


def control_lines(data: dict[str, Any]) -> list[str]:
    """The routing in force (overrides and splits), the budgets and the response cache, one line each."""
    lines = []
    routing = data.get("routing")
    if routing:
        changed = [f"{kind} {','.join(k['chain'])}" + (" (override)" if k["override"]["chain"] is not None else "")
                   + "".join(f" split {m}={p:g}%" for m, p in k["split"].items())
                   for kind, k in routing["kinds"].items() if k["override"]["chain"] is not None or k["split"]]
        lines.append(f"routing v{routing['version']}: " + ("; ".join(changed) or "the catalog's chains"))
    budgets = (data.get("budgets") or {}).get("budgets") or {}
    if budgets:
        lines.append("budgets today: " + ", ".join(
            f"{scope} ${b['spent_usd']:,.2f} of ${b['limit_usd']:,.2f} ({b['percent']:.0f} %, {b['status']})"
            for scope, b in budgets.items()))
    cache = data.get("cache") or {}
    if cache.get("hits") or cache.get("misses"):
        ratio = cache["hit_ratio"] or 0.0
        lines.append(f"response cache: {cache['hits']:.0f} hits / {cache['misses']:.0f} paid ({ratio:.0%} hit ratio), "
                     f"saved ${cache['saved_usd']:,.4f}")
    return lines


def render_arms(data: dict[str, Any]) -> Group:
    """`genpool stats --by-arm`: each kind's arms side by side; the seed's success metrics marked (fallback
    rate under 5 %, generation time no worse than control)."""
    table = _table("per job kind and routing arm (A/B)", ("kind", "arm", "jobs", "failed %", "fallback %",
                                                          "p50 s", "p95 s", "$ / job", "p95 vs control"))
    for kind, kind_arms in data["arms"].items():
        for arm, a in kind_arms.items():
            vs = (a.get("vs_control") or {}).get("p95_le_s")
            fallback = _pct(a["fallback_rate"]) + (" !" if (a["fallback_rate"] or 0) >= 0.05 else "")
            table.add_row(kind, arm, _n(a["jobs"]), _pct(a["failure_rate"]), fallback, _bound(a["p50_le_s"]),
                          _bound(a["p95_le_s"]), f"{a['cost_per_job_usd'] or 0:.6f}",
                          "-" if vs is None else f"{vs:.2f}x" + (" !" if vs > 1 else ""))
    lines = [Text(line) for line in control_lines(data)[:1]]
    return Group(table, Text("! = fallback rate 5 % or more, or p95 above the control arm's"), *lines)


def _pct(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.1%}"


def _bound(seconds: float | None) -> str:
    return "-" if seconds is None else f"<= {seconds:g}"


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
