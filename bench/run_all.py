"""`make bench`: run every benchmark in `bench/`, write `BENCHMARKS.md` and the figures' JSON and plots.

    .venv/bin/python -m bench.run_all [--only NAME ...] [--soak] [--out BENCHMARKS.md]

``bench_soak`` (worker memory over 20 minutes) is not in a plain run: ``--soak`` adds it, ``make soak`` runs
it alone (its section then goes to bench/results/SOAK.md and its figures into RELIABILITY.md by hand).

Each benchmark module exposes the same small contract:

- ``TITLE: str`` — the section heading;
- ``bench(workdir: Path) -> dict`` — starts the real services it needs (redis-server, moto's S3 server,
  the simulator) on loopback, runs, stops them, and returns JSON-able figures; ``workdir`` is scratch
  space (git-ignored); plots (PNG) go under ``PLOTS`` (committed, linked from BENCHMARKS.md by
  ``bench/plots/<name>.png``);
- ``markdown(figures: dict) -> str`` — the section body: a table of ratios measured in this run, the
  target, and whether it was met (or the gap and what explains it).

A benchmark that fails is reported as failed in its section; the others still run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PLOTS = ROOT / "bench" / "plots"

# Run order: cheap and quiet first, so a slow one cannot spoil another's timing.
BENCHMARKS = ("bench_limiter", "bench_cpu", "bench_redis", "bench_failover", "bench_window", "bench_quota",
              "bench_density", "bench_observability", "bench_gateway", "bench_control")
# Long runs, only when asked for: `--soak` adds them to a full run, `--only` runs them alone (`make soak`).
LONG = ("bench_soak",)


def machine() -> str:
    import os

    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
            f"{mem_kib / 2**20:.0f} GiB RAM, Python {platform.python_version()}")


def run_alone(bench: Callable[[Path, Any], dict[str, Any]], markdown: Callable[[dict[str, Any]], str],
              config: Any, json_path: Path | None) -> int:
    """A benchmark's own entry point (``python -m bench.NAME``) with a config from its arguments: its
    section on stdout, and its figures as JSON when ``json_path`` is given."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    figures = bench(RESULTS, config)
    if json_path:
        json_path.write_text(json.dumps(figures, indent=2, default=str))
    print(markdown(figures))
    return 0


def run_one(name: str) -> tuple[str, str, dict[str, Any]]:
    module = importlib.import_module(f"bench.{name}")
    title = getattr(module, "TITLE", name)
    started = time.monotonic()
    try:
        figures = module.bench(RESULTS)
        figures["elapsed_s"] = round(time.monotonic() - started, 1)
        body = module.markdown(figures)
    except Exception:  # noqa: BLE001 - one failed benchmark is reported, the rest still run
        figures = {"error": traceback.format_exc(), "elapsed_s": round(time.monotonic() - started, 1)}
        body = f"**Failed in this run:**\n\n```\n{figures['error']}\n```"
    return title, body, figures


def document(sections: list[tuple[str, str, dict[str, Any]]], command: str) -> str:
    head = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m bench.run_all`); every figure below comes from the same run, and every",
        "target is a ratio against a baseline measured in that run, on real parts: redis-server, moto's S3 server,",
        "and the offline Gemini simulator through the unmodified google-genai SDK.",
        "",
        f"- Machine: {machine()}",
        f"- Command: `{command}`",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "- Raw figures: `bench/results/*.json`",
        "",
    ]
    parts = head
    for title, body, figures in sections:
        parts += [f"## {title}", "", body.rstrip(), "", f"_Ran in {figures.get('elapsed_s', '?')} s._", ""]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=BENCHMARKS + LONG, help="run just these (default: all)")
    parser.add_argument("--soak", action="store_true", help="also the 20-minute soak (bench_soak, ~22 min)")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    PLOTS.mkdir(parents=True, exist_ok=True)
    sections = []
    for name in args.only or BENCHMARKS + (LONG if args.soak else ()):
        print(f"== {name}", flush=True)
        title, body, figures = run_one(name)
        (RESULTS / f"{name}.json").write_text(json.dumps(figures, indent=2, default=str))
        print(body, flush=True)
        sections.append((title, body, figures))
    command = "make bench" if not args.only else f"python -m bench.run_all --only {' '.join(args.only)}"
    args.out.write_text(document(sections, command))
    print(f"wrote {args.out}")
    return 1 if any("error" in f for _, _, f in sections) else 0


if __name__ == "__main__":
    sys.exit(main())
