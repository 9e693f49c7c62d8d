"""Tiny inline-SVG charts for the HTML report: no JavaScript, no plotting library on the worker side.

Every element a reader (or a test) may want carries its numbers as ``data-*`` attributes, so the chart is
checkable without reading pixels.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

WIDTH, HEIGHT = 760, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 24, 28
NS = "http://www.w3.org/2000/svg"


@dataclass(frozen=True)
class Series:
    name: str
    css: str  # class on the polyline: "calls", "rate-limited"
    color: str
    points: Sequence[tuple[float, float]]  # (unix seconds, requests per minute)
    calls: int  # total calls the series stands for


@dataclass(frozen=True)
class Quota:
    label: str
    per_minute: float
    color: str


def _attrs(**values: object) -> str:
    return " ".join(f"{k.rstrip('_').replace('_', '-')}={quoteattr(str(v))}" for k, v in values.items())


class Frame:
    """Maps (time, value) to the plot area."""

    def __init__(self, start_s: float, end_s: float, y_max: float) -> None:
        self.start_s, self.span_s = start_s, max(1.0, end_s - start_s)
        self.y_max = max(y_max, 1e-9)

    def x(self, at_s: float) -> float:
        return LEFT + (at_s - self.start_s) / self.span_s * (WIDTH - LEFT - RIGHT)

    def y(self, value: float) -> float:
        return HEIGHT - BOTTOM - min(value, self.y_max) / self.y_max * (HEIGHT - TOP - BOTTOM)


def y_limit(peak: float, quotas: Sequence[Quota]) -> float:
    """Show the quota when it is in reach of the traffic; otherwise zoom on the traffic, quota off scale."""
    top = max([q.per_minute for q in quotas if q.per_minute <= 4 * max(peak, 1.0)], default=0.0)
    return max(peak * 1.2, top * 1.1, 1.0)


def rate_chart(title: str, model: str, series: Sequence[Series], quotas: Sequence[Quota], start_s: float,
               end_s: float) -> str:
    peak = max((v for s in series for _, v in s.points), default=0.0)
    frame = Frame(start_s, end_s, y_limit(peak, quotas))
    off_scale = [q for q in quotas if q.per_minute > frame.y_max]
    shown = [q for q in quotas if q not in off_scale]
    body = [_axes(frame), *(_quota(frame, q, i) for i, q in enumerate(shown)),
            *(_quota_note(q, i) for i, q in enumerate(off_scale)), *(_series(frame, s) for s in series),
            f'<text x="{LEFT}" y="16" font-size="13">{escape(title)}</text>']
    return (f'<svg xmlns="{NS}" {_attrs(class_="rate-chart", data_model=model, width=WIDTH, height=HEIGHT)} '
            f'viewBox="0 0 {WIDTH} {HEIGHT}">' + "".join(body) + "</svg>")


def _series(frame: Frame, s: Series) -> str:
    points = " ".join(f"{frame.x(t):.1f},{frame.y(v):.1f}" for t, v in s.points)
    peak = max((v for _, v in s.points), default=0.0)
    return (f"<polyline {_attrs(class_='series ' + s.css, data_name=s.name, data_calls=s.calls, data_peak=peak)}"
            f' points="{points}" fill="none" stroke="{s.color}" stroke-width="1.6"/>')


def _quota(frame: Frame, q: Quota, index: int) -> str:
    y = frame.y(q.per_minute)
    # quota and ceiling lie close together: their labels go to opposite ends of the line
    x, anchor = (WIDTH - RIGHT - 4, "end") if index % 2 == 0 else (LEFT + 4, "start")
    return (f"<g {_attrs(class_='quota', data_limit=q.per_minute, data_label=q.label)}>"
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{q.color}" '
            f'stroke-dasharray="6 4"/><text x="{x}" y="{y - 4:.1f}" font-size="11" '
            f'text-anchor="{anchor}" fill="{q.color}">{escape(f"{q.label} {q.per_minute:g}/min")}</text></g>')


def _quota_note(q: Quota, index: int) -> str:
    """A quota far above the traffic: named in a corner instead of flattening the series to the axis."""
    label = f"{q.label} {q.per_minute:g}/min: above the chart"
    return (f"<g {_attrs(class_='quota off-scale', data_limit=q.per_minute, data_label=q.label)}>"
            f'<text x="{WIDTH - RIGHT - 4}" y="{TOP + 12 + 13 * index}" font-size="11" text-anchor="end" '
            f'fill="{q.color}">{escape(label)}</text></g>')


def _axes(frame: Frame) -> str:
    x0, x1, y0 = LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM
    parts = [f'<line x1="{x0}" x2="{x1}" y1="{y0}" y2="{y0}" stroke="#888"/>',
             f'<line x1="{x0}" x2="{x0}" y1="{TOP}" y2="{y0}" stroke="#888"/>']
    for i in range(5):
        at_s = frame.start_s + frame.span_s * i / 4
        label = time.strftime("%H:%M:%S", time.gmtime(at_s))
        parts.append(f'<text x="{frame.x(at_s):.1f}" y="{HEIGHT - 10}" font-size="10" '
                     f'text-anchor="middle">{label}</text>')
    for i in range(3):
        value = frame.y_max * i / 2
        parts.append(f'<text x="{LEFT - 6}" y="{frame.y(value) + 3:.1f}" font-size="10" '
                     f'text-anchor="end">{value:.3g}</text>')
    return "".join(parts)


def bar_chart(css: str, rows: Sequence[tuple[str, float]], unit: str) -> str:
    """Horizontal bars, one per (label, value)."""
    height, bar_h = 20 + 22 * len(rows), 16
    top = max((v for _, v in rows), default=0.0) or 1.0
    bars = []
    for i, (label, value) in enumerate(rows):
        y, w = 10 + 22 * i, value / top * (WIDTH - 330)
        bars.append(f"<g {_attrs(class_='bar', data_label=label, data_value=value)}>"
                    f'<text x="250" y="{y + 12}" font-size="11" text-anchor="end">{escape(label)}</text>'
                    f'<rect x="256" y="{y}" width="{w:.1f}" height="{bar_h}" fill="#4a78b5"/>'
                    f'<text x="{262 + w:.1f}" y="{y + 12}" font-size="11">{value:.6g} {escape(unit)}</text></g>')
    return (f'<svg xmlns="{NS}" {_attrs(class_=css, width=WIDTH, height=height)} viewBox="0 0 {WIDTH} {height}">'
            + "".join(bars) + "</svg>")
