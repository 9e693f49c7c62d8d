"""`genpool report` after a run with known outcomes: the HTML is self-contained, parses, and its charts and
tables carry the run's models, quota lines, calls, 429s, fallbacks and cost."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from tests.integration.test_ops import PRIMARY, PRO, SECOND, calls_to, genpool, run_known_outcomes

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
SVG = "{http://www.w3.org/2000/svg}"


class Tables(HTMLParser):
    """Rows of every <table class=...>, keyed by the row's data-key; also notes any <script>."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, dict[str, list[str]]] = {}
        self.scripts = 0
        self._table = self._row = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script":
            self.scripts += 1
        elif tag == "table":
            self._table = self.tables.setdefault(a.get("class") or "", {})
        elif tag == "tr" and self._table is not None and a.get("data-key"):
            self._row = self._table.setdefault(a["data-key"], [])
        elif tag == "td" and self._row is not None:
            self._cell = []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr":
            self._row = None
        elif tag == "table":
            self._table = None


def svgs(html: str) -> list[ET.Element]:
    """Every inline SVG, parsed as XML (a malformed one raises)."""
    return [ET.fromstring(m) for m in re.findall(r"<svg\b.*?</svg>", html, flags=re.S)]


def polyline(chart: ET.Element, css: str) -> ET.Element:
    (line,) = [p for p in chart.iter(f"{SVG}polyline") if css in p.get("class", "").split()]
    return line


def test_html_report_has_the_runs_models_quotas_series_fallbacks_and_cost(stack, tmp_path):
    from genpool.shared.ratelimit import RedisLimiter

    records = run_known_outcomes(stack)
    RedisLimiter(stack.redis).set_limits(PRIMARY, safety=0.9)  # an operator's override: the ceiling moves
    out = tmp_path / "report.html"
    run = genpool(stack.env, "report", "--out", str(out))
    assert run.returncode == 0, run.stderr
    html = out.read_text(encoding="utf-8")
    parser = Tables()
    parser.feed(html)
    parser.close()
    assert html.startswith("<!doctype html>") and parser.scripts == 0 and "src=" not in html  # self-contained

    charts = {c.get("data-model"): c for c in svgs(html) if c.get("class") == "rate-chart"}
    assert set(charts) == {PRIMARY, SECOND, PRO}  # exactly the models the run called
    for model, chart in charts.items():
        calls, limited = polyline(chart, "calls"), polyline(chart, "rate-limited")
        assert int(calls.get("data-calls")) == calls_to(records, model)
        assert int(limited.get("data-calls")) == calls_to(records, model, "rate_limited")
        points = [tuple(map(float, p.split(","))) for p in calls.get("points").split()]
        assert len(points) >= 2 and 1 <= float(calls.get("data-peak")) <= calls_to(records, model)
        assert len({y for _, y in points}) > 1  # the series moves: not a flat line
    assert int(polyline(charts[PRIMARY], "rate-limited").get("data-calls")) == 1

    def quota_lines(model: str) -> dict[str, float]:
        return {g.get("data-label"): float(g.get("data-limit")) for g in charts[model].iter(f"{SVG}g")
                if "quota" in g.get("class", "").split()}

    assert quota_lines(PRIMARY) == {"quota": 1000, "genpool ceiling": 900}  # catalog rpm, overridden safety
    assert quota_lines(SECOND) == {"quota": 1000, "genpool ceiling": 1000}
    assert quota_lines(PRO) == {"quota": 150, "genpool ceiling": 150}

    models = parser.tables["models"]
    assert models[PRIMARY][2:6] == ["2", "1", "1", "0"]  # calls, ok, 429, errors
    assert models[SECOND][2:6] == ["3", "3", "0", "0"]
    assert models[PRO][1].startswith("down until")
    assert parser.tables["fallbacks"] == {f"text:{PRIMARY}->{SECOND}": [f"{PRIMARY} → {SECOND}", "text", "3"]}

    bars = {c.get("class"): {b.get("data-label"): float(b.get("data-value")) for b in c.iter(f"{SVG}g")}
            for c in svgs(html) if c.get("class") in ("cost-chart", "fallback-chart")}
    assert bars["fallback-chart"] == {f"{PRIMARY} → {SECOND}": 3}
    cost = {m: sum(r.cost_usd for r in records if r.model_used == m) for m in (PRIMARY, SECOND)}
    assert bars["cost-chart"] == pytest.approx(cost)
    total = re.search(r"class='total-cost' data-usd='([^']+)'", html)
    assert total and float(total.group(1)) == pytest.approx(sum(cost.values()))


def test_png_report_when_matplotlib_is_installed(stack, tmp_path):
    pytest.importorskip("matplotlib")
    run_known_outcomes(stack)
    out = tmp_path / "report.png"
    run = genpool(stack.env, "report", "--out", str(out))
    assert run.returncode == 0, run.stderr
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 300 and height > 3 * 150  # one panel per model called: three
