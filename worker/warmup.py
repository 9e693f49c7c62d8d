"""Run the SDK's call path once at start, on a local transport: no network, nothing billed.

A fresh process's first ``generate_content`` costs ~70-120 ms more than the next ones on an idle machine
(the SDK's lazy imports and first-use set-up of request building and response parsing), and several job
threads making their first call at once, on a loaded machine, stretch that to 0.3-0.6 s. Those calls left
that much after the limiter granted their start: the spread of start-to-arrival delays the limiter's guard
must cover (docs/ratelimit.md, "The guard") came from them, and an idle batch's first calls started that
much later. A worker pays it here instead, before it takes a job.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from genpool.shared.jobs import TextRequest
from genpool.shared.settings import Settings
from genpool.worker.gemini import GeminiGateway

log = logging.getLogger(__name__)

#: What the local transport answers every call with: a one-part text answer with its usage.
ANSWER = json.dumps({
    "candidates": [{"content": {"role": "model", "parts": [{"text": "ok"}]}, "finishReason": "STOP", "index": 0}],
    "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1, "totalTokenCount": 2},
    "modelVersion": "genpool-warm-up",
}).encode()
MODEL = "genpool-warm-up"
TIMEOUT_S = 30.0


def local_transport(seen: list[Any] | None = None) -> Any:
    """An httpx transport that answers in process; ``seen`` collects the requests it got."""
    import httpx2

    def answer(request: Any) -> Any:
        if seen is not None:
            seen.append(request)
        return httpx2.Response(200, content=ANSWER, headers={"content-type": "application/json"})

    return httpx2.MockTransport(answer)


def warm_up(settings: Settings, seen: list[Any] | None = None) -> float:
    """One call through a plain client and one with a config (the two paths a text job takes), answered
    locally; returns the seconds it took."""
    started = time.monotonic()
    gateway = GeminiGateway(settings, plain_timeouts_s=[TIMEOUT_S], transport=local_transport(seen))
    for request in (TextRequest(prompt="warm-up"), TextRequest(prompt="warm-up", generation={"temperature": 0.5})):
        gateway.generate(gateway.build(request), MODEL, TIMEOUT_S)
    took_s = time.monotonic() - started
    log.debug("the SDK's call path warmed up in %.3f s", took_s)
    return took_s
