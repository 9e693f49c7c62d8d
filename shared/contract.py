"""The producer/worker contract, written down once: what a queued job names, which kinds and image shapes
exist, how a prompt is counted in tokens, and how often RQ requeues a job whose worker died.

Both sides import it from here; neither imports the other. The job's JSON body is ``genpool.shared.jobs``.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

#: The RQ function every genpool job names (part of the wire format). Workers resolve only these names.
TASK = "genpool.worker.tasks.generate"
#: The same entry point under its name before genpool had one import name: jobs that producers of an
#: older release queued still run after the workers are upgraded.
LEGACY_TASKS = ("worker.tasks.generate",)  # rewrite-imports: keep
ENTRY_POINTS = frozenset((TASK, *LEGACY_TASKS))

JobKind = Literal["text", "chat", "json", "image"]
JOB_KINDS: tuple[JobKind, ...] = get_args(JobKind)
Output = Literal["text", "image"]

AspectRatio = Literal["1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"]
ASPECT_RATIOS: tuple[AspectRatio, ...] = get_args(AspectRatio)
#: Named shapes a caller may ask for instead of an aspect ratio.
Preset = Literal["video_background"]
PRESETS: dict[Preset, AspectRatio] = {"video_background": "16:9"}

#: The token estimate before a call (the limiter reserves it, the producer checks it against the chain's
#: largest input window); settled against the real usage after the call.
CHARS_PER_TOKEN = 4

#: A job whose worker died (killed, out of memory) is requeued this many times (RQ ``Retry``); the worker
#: tells a rerun from a first run by its ``retries_left``.
ABANDONED_RETRIES = 3


def output_of(kind: str) -> Output:
    """What a model must produce for a job of ``kind``."""
    return "image" if kind == "image" else "text"


def kinds_producing(output: Output) -> tuple[JobKind, ...]:
    return tuple(kind for kind in JOB_KINDS if output_of(kind) == output)


def estimate_tokens(prompt_chars: int) -> int:
    """Tokens a prompt of ``prompt_chars`` characters is counted as before the call (at least 1)."""
    return max(1, math.ceil(prompt_chars / CHARS_PER_TOKEN))


def is_rerun(retries_left: int | None) -> bool:
    """RQ requeued this job after its worker died: its retries went down from ``ABANDONED_RETRIES``."""
    return retries_left is not None and retries_left < ABANDONED_RETRIES
