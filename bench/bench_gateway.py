"""The HTTP / WebSocket gateway (issue #15): what it adds per job, how soon a streamed answer reaches a
client, and what one gateway process holds.

    .venv/bin/python -m bench.bench_gateway

One stack (redis-server, moto S3, the simulator, one worker process) and one `genpool api` process on
loopback. Three measurements:

1. **Overhead per job**: jobs one at a time, alternating the Python API and the gateway in the same run.
   Both on the high queue (see PRIORITY). Python: ``submit(events=True)``, a blocking XREAD on the job's event stream until ``finished``, then
   the record (the quickest a Python service can learn of a result). Gateway: ``POST /v1/jobs``, the job's
   SSE stream until ``finished``, then ``GET /v1/jobs/{id}``. Submit-to-record p50/p95 of each. The
   default ``handle.wait()`` (polling) is shown beside them.
2. **Time to first streamed chunk**: a chat message over the WebSocket until its first ``chunk``, against
   a direct ``generate_content_stream`` call to the same simulator until its first chunk (the model's own
   first-chunk latency), both with the same latency setting, one at a time.
3. **1,000 WebSockets** held by one gateway process (a client process of its own opens them): the
   gateway's RSS before and with them open; then, for a stated time, pings at a stated rate (round trip
   through the gateway) and chat messages at a stated rate (send to typing / first chunk / answer).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import workerkit
from genpool.devstack.stack import SimAdmin

TITLE = "HTTP / WebSocket gateway: overhead per job, first streamed chunk, 1,000 sockets (issue #15)"
OVERHEAD_JOBS = 150
OVERHEAD_LATENCY_MS = 50
# An idle worker blocks on the high queue and looks at the others every 0.2 s (worker/rqcompat/dequeue.py):
# on the default queue each job would wait a phase-dependent 0-200 ms, on both sides, swamping the gap.
PRIORITY = "high"
TTFC_COUNT = 30
TTFC_LATENCY_MS = 1000  # the simulator streams 60 % of its latency before the first chunk
SOCKETS = 1000
PING_RATE = 200.0  # per second, over all sockets
CHAT_RATE = 10.0  # per second, over all sockets
LOAD_S = 30.0
SOCKET_LATENCY_MS = 500


def quantiles_ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)

    return {"n": len(ordered), "p50_ms": at(0.50), "p95_ms": at(0.95), "mean_ms": round(statistics.mean(ordered) * 1000, 1)}


class GatewayProcess:
    def __init__(self, st: workerkit.Stack) -> None:
        from genpool.devstack.services import free_port

        self.port = free_port()
        env = {**os.environ, **st.env, "GENPOOL_API_MAX_PENDING": "4"}
        self.log = open(st.workdir / "api.log", "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen([sys.executable, "-m", "genpool.gateway.serve", "--port", str(self.port),
                                      "--log-level", "warning"], env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=st.workdir, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"
        self._wait_ready()

    def _wait_ready(self) -> None:
        import httpx2

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx2.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return
            except httpx2.TransportError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("genpool api exited while starting")
            time.sleep(0.1)
        raise RuntimeError("genpool api did not become ready")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def python_job(pool: Any, conn: Any, prompt: str) -> tuple[float, float]:
    """(submit -> record through the event stream, submit -> record with handle.wait())."""
    from genpool.shared import keys
    from genpool.shared.events import parse_entry

    started = time.perf_counter()
    handle = pool.submit({"kind": "text", "prompt": prompt}, events=True, priority=PRIORITY)
    cursor, done = "0-0", False
    while not done:
        for _, entries in conn.xread({keys.job_events(handle.id): cursor}, block=30_000) or []:
            for entry_id, fields in entries:
                cursor = entry_id
                done = done or parse_entry(entry_id, fields).terminal
    assert handle.result() is not None
    streamed = time.perf_counter() - started
    started = time.perf_counter()
    pool.submit({"kind": "text", "prompt": prompt + " (polled)"}, priority=PRIORITY).wait(timeout_s=60)
    return streamed, time.perf_counter() - started


def gateway_job(http: Any, prompt: str) -> float:
    started = time.perf_counter()
    job_id = http.post("/v1/jobs", json={"kind": "text", "prompt": prompt}, params={"priority": PRIORITY}).json()["id"]
    with http.stream("GET", f"/v1/jobs/{job_id}/events") as events:
        for line in events.iter_lines():
            if line in ("event: finished", "event: failed"):
                break
    record = http.get(f"/v1/jobs/{job_id}").json()
    assert record["status"] == "finished", record
    return time.perf_counter() - started


def overhead(st: workerkit.Stack, gateway: GatewayProcess, token: str) -> dict[str, Any]:
    import httpx2

    from genpool.producer.client import GenPool
    from genpool.shared.settings import Settings

    conn = st.connection()
    pool = GenPool(conn, settings=Settings.from_env(environ=st.env, dotenv_path=None))
    http = httpx2.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    py_events, py_wait, gw = [], [], []
    for i in range(10):  # warm both paths (connections, imports, the worker's first calls)
        python_job(pool, conn, f"warm {i}")
        gateway_job(http, f"warm {i}")
    for i in range(OVERHEAD_JOBS):
        streamed, polled = python_job(pool, conn, f"Job {i}: one line about queues.")
        py_events.append(streamed)
        py_wait.append(polled)
        gw.append(gateway_job(http, f"Job {i}: one line about queues."))
    http.close()
    python_q, gateway_q = quantiles_ms(py_events), quantiles_ms(gw)
    return {"python_events": python_q, "python_wait": quantiles_ms(py_wait), "gateway": gateway_q,
            "overhead_p50_ms": round(gateway_q["p50_ms"] - python_q["p50_ms"], 1),
            "overhead_p95_ms": round(gateway_q["p95_ms"] - python_q["p95_ms"], 1),
            "latency_ms": OVERHEAD_LATENCY_MS}


def sim_first_chunk(st: workerkit.Stack, count: int) -> dict[str, Any]:
    """The model's own first-chunk latency: generate_content_stream straight to the simulator."""
    from google import genai
    from google.genai import types

    client = genai.Client(api_key=st.env["GEMINI_API_KEY"], http_options=types.HttpOptions(
        base_url=st.env["GEMINI_BASE_URL"], timeout=60_000))
    firsts = []
    for _ in range(count):
        started = time.perf_counter()
        stream = client.models.generate_content_stream(
            model=workerkit.MODEL, contents=[{"role": "user", "parts": [{"text": "Describe a lighthouse at dusk."}]}])
        for _chunk in stream:
            firsts.append(time.perf_counter() - started)
            break
        for _rest in stream:
            pass
    return quantiles_ms(firsts)


def clients(gateway: GatewayProcess, token: str, mode: str, **options: Any) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "bench.gateway_clients", mode, "--url", gateway.url.replace("http", "ws"),
            "--token", token] + [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=workerkit.ROOT,
                            env={**os.environ, "PYTHONPATH": str(workerkit.ROOT)})


def first_chunk(st: workerkit.Stack, gateway: GatewayProcess, token: str) -> dict[str, Any]:
    SimAdmin(st.sim.url).call("models", {"defaults": {"latency_ms": TTFC_LATENCY_MS, "jitter_ms": 0}, "models": {}})
    model = sim_first_chunk(st, TTFC_COUNT)
    proc = clients(gateway, token, "first-chunk", count=TTFC_COUNT)
    out, _ = proc.communicate(timeout=600)
    through = json.loads(out.strip().splitlines()[-1])
    return {"simulator": model, "gateway": through, "latency_ms": TTFC_LATENCY_MS,
            "added_p50_ms": round(through["first_chunk"]["p50_ms"] - model["p50_ms"], 1),
            "added_p95_ms": round(through["first_chunk"]["p95_ms"] - model["p95_ms"], 1)}


def sockets(st: workerkit.Stack, gateway: GatewayProcess, token: str) -> dict[str, Any]:
    SimAdmin(st.sim.url).call("models", {"defaults": {"latency_ms": SOCKET_LATENCY_MS, "jitter_ms": 0}, "models": {}})
    pid = gateway.proc.pid
    rss_idle = workerkit.proc_rss_bytes(pid)
    proc = clients(gateway, token, "sockets", count=SOCKETS, ping_rate=PING_RATE, chat_rate=CHAT_RATE,
                   seconds=LOAD_S)
    assert proc.stdout is not None and proc.stdin is not None
    opened = json.loads(proc.stdout.readline())
    time.sleep(2)
    rss_open = workerkit.proc_rss_bytes(pid)
    cpu_before = workerkit.proc_cpu_s(pid)
    proc.stdin.write("go\n")
    proc.stdin.flush()
    peak = rss_open
    while proc.poll() is None:
        peak = max(peak, workerkit.proc_rss_bytes(pid))
        time.sleep(0.5)
    result = json.loads(proc.stdout.read().strip().splitlines()[-1])
    cpu_s = workerkit.proc_cpu_s(pid) - cpu_before
    return {**result, "connect_s": opened["connect_s"], "rss_idle_mib": round(rss_idle / 2**20, 1),
            "rss_open_mib": round(rss_open / 2**20, 1), "rss_peak_mib": round(peak / 2**20, 1),
            "rss_per_socket_kib": round((rss_open - rss_idle) / 1024 / max(1, opened["opened"]), 1),
            "gateway_cpu_pct": round(100 * cpu_s / LOAD_S, 1), "latency_ms": SOCKET_LATENCY_MS}


def bench(workdir: Path) -> dict[str, Any]:
    from genpool.gateway.tokens import TokenStore

    sim = {"latency_ms": OVERHEAD_LATENCY_MS, "jitter_ms": 0}
    with workerkit.stack(workdir / "gateway", sim, rpm=1_000_000) as st:
        workers = st.workers()
        workers.start(count=1, concurrency=64)
        gateway = None
        try:
            workerkit.wait_for_workers(st.connection(), 1, workers.procs)
            token = TokenStore(st.connection()).create("bench", rpm=10_000_000, usd_per_day=1e9)
            gateway = GatewayProcess(st)
            figures: dict[str, Any] = {}
            for name, part in (("overhead", overhead), ("first_chunk", first_chunk), ("sockets", sockets)):
                figures[name] = part(st, gateway, token)
                print(name, json.dumps(figures[name]), file=sys.stderr, flush=True)
            return figures
        finally:
            if gateway is not None:
                gateway.stop()
            workers.stop()


def markdown(f: dict[str, Any]) -> str:
    o, c, s = f["overhead"], f["first_chunk"], f["sockets"]
    rows = [
        "| measurement | Python API | gateway | added by the gateway |", "|---|---|---|---|",
        f"| submit to record, p50 (one job at a time, {o['python_events']['n']} each, model latency "
        f"{o['latency_ms']} ms) | {o['python_events']['p50_ms']} ms | {o['gateway']['p50_ms']} ms | "
        f"{o['overhead_p50_ms']} ms |",
        f"| submit to record, p95 | {o['python_events']['p95_ms']} ms | {o['gateway']['p95_ms']} ms | "
        f"{o['overhead_p95_ms']} ms |",
        f"| (Python `handle.wait()`, polling: p50 / p95) | {o['python_wait']['p50_ms']} / "
        f"{o['python_wait']['p95_ms']} ms | | |",
        "", "| first streamed chunk | the model alone (SDK straight to the simulator) | through the gateway "
        "(WebSocket send to first chunk) | added |", "|---|---|---|---|",
        f"| p50 (latency {c['latency_ms']} ms, first chunk at 60 %) | {c['simulator']['p50_ms']} ms | "
        f"{c['gateway']['first_chunk']['p50_ms']} ms | {c['added_p50_ms']} ms |",
        f"| p95 | {c['simulator']['p95_ms']} ms | {c['gateway']['first_chunk']['p95_ms']} ms | "
        f"{c['added_p95_ms']} ms |",
        "", f"**{s['sockets']} WebSockets held by one gateway process** (opened in {s['connect_s']} s; "
        f"{s['still_open']} still open after {s['seconds']:g} s of load):", "",
        "| figure | value |", "|---|---|",
        f"| gateway RSS idle / with the sockets open / peak under load | {s['rss_idle_mib']} / {s['rss_open_mib']} / "
        f"{s['rss_peak_mib']} MiB ({s['rss_per_socket_kib']} KiB a socket) |",
        f"| ping round trip at {s['ping_rate']:g} messages/s over all sockets: p50 / p95 / p99 | "
        f"{s['ping_rtt']['p50_ms']} / {s['ping_rtt']['p95_ms']} / {s['ping_rtt']['p99_ms']} ms |",
        f"| chat at {s['chat_rate']:g} messages/s (model latency {s['latency_ms']} ms): send to typing p50 / p95 | "
        f"{s['chat_typing']['p50_ms']} / {s['chat_typing']['p95_ms']} ms |",
        f"| ... send to first chunk p50 / p95 | {s['chat_first_chunk']['p50_ms']} / {s['chat_first_chunk']['p95_ms']} ms |",
        f"| ... send to whole answer p50 / p95 | {s['chat_answer']['p50_ms']} / {s['chat_answer']['p95_ms']} ms |",
        f"| gateway CPU during the load | {s['gateway_cpu_pct']} % of one core |",
    ]
    note = ("Where the gateway's time goes: a job over HTTP is three requests (submit, its SSE events, the "
            "record), each with the token lookup and the rate script (two Redis round trips), plus the "
            "producer's enqueue on a thread and the hub's relay of the stream. The first chunk adds the queue "
            "hop (dequeue, limiter) and the relay. Everything ran on one 2-core machine (clients, gateway, "
            "worker, simulator, Redis, moto), so the figures include that contention.")
    return "\n".join(rows) + "\n\n" + note + "\n"


if __name__ == "__main__":
    import pprint

    result = bench(workerkit.ROOT / "bench" / "results")
    pprint.pprint(result)
    print(markdown(result))
