"""The report's rate charts as one PNG (matplotlib, optional: imported only for ``--out *.png``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from genpool.ops.report import Report


def render_png(report: Report, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genpool.ops.report import CALLS_COLOR, LIMITED_COLOR, quotas

    models = list(report.rates) or ["(no calls)"]
    fig, axes = plt.subplots(len(models), 1, figsize=(10, 2.6 * len(models)), squeeze=False)
    for ax, model in zip(axes[:, 0], models, strict=True):
        r = report.rates.get(model)
        if r is not None:
            ax.plot([_dt(t) for t, _ in r.calls], [v for _, v in r.calls], color=CALLS_COLOR, label="calls/min")
            ax.plot([_dt(t) for t, _ in r.limited], [v for _, v in r.limited], color=LIMITED_COLOR, label="429/min")
            for q in quotas(report.snap, model):
                if q.per_minute <= 4 * max(r.peak, 1.0):
                    ax.axhline(q.per_minute, color=q.color, linestyle="--", label=f"{q.label} {q.per_minute:g}/min")
        ax.set_title(model, fontsize=10)
        ax.set_ylabel("req/min")
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def _dt(at_s: float) -> datetime:
    return datetime.fromtimestamp(at_s, tz=UTC)
