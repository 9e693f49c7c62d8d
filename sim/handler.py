"""HTTP plumbing: routes a request, reads the body, then sleeps and writes (or hangs, or resets) per Outcome."""

from __future__ import annotations

import json
import re
import select
import socket
import struct
import time
import traceback
from dataclasses import replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from genpool.sim.admin import handle_admin
from genpool.sim.errors import ApiError, invalid_argument, route_not_found
from genpool.sim.models_api import get_model, list_models
from genpool.sim.pipeline import Call, Outcome, count_tokens, generate

if TYPE_CHECKING:
    from genpool.sim.server import SimServer

IDLE_TIMEOUT_S = 120.0  # idle keep-alive connections are closed after this
MAX_BODY_BYTES = 64 * 1024 * 1024
FIRST_CHUNK_SHARE = 0.6  # streaming: this share of the latency passes before the first chunk
_API_PATH = re.compile(r"^/(?P<version>v\d+[a-z0-9]*)/(?P<rest>.+)$")
_MODEL_PATH = re.compile(r"^(?:models/)?(?P<model>[^:]+?)(?::(?P<method>[A-Za-z]+))?$")
_POST_METHODS = {"generateContent": generate, "streamGenerateContent": generate, "countTokens": count_tokens}


class BadBody(Exception):
    """The body could not be framed (bad Content-Length or chunking): answer 400 and close."""


class SimHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT_S
    server: SimServer

    def setup(self) -> None:
        super().setup()
        self.server.sim.gauges.add("open_connections", 1)

    def finish(self) -> None:
        self.server.sim.gauges.add("open_connections", -1)
        super().finish()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Malformed HTTP (bad request line, huge headers, unknown verb) also gets a Google-shaped JSON error."""
        self.close_connection = True
        phrase = HTTPStatus(code).phrase if code in HTTPStatus._value2member_map_ else "Error"
        self._send_json(code, ApiError(code, message or phrase, "bad_http").body())

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silence the per-request stderr line: it costs CPU and the request log covers it."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- routing --------------------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        arrived_s = self.server.sim.clock()
        split = urlsplit(self.path)
        try:
            body = self._read_body()
        except BadBody as exc:
            self.close_connection = True
            self._send_json(400, invalid_argument(str(exc)).body())
            return
        if split.path.startswith("/_sim/"):
            status, payload = handle_admin(self.server.sim, method, split.path[len("/_sim/"):].strip("/"), body)
            self._send_json(status, payload)
            return
        try:
            outcome = self._route_api(method, split.path, split.query, body, arrived_s)
        except Exception:  # a simulator bug: answer 500 rather than drop the connection, and say so once
            traceback.print_exc()
            outcome = Outcome(500, body=ApiError(500, "Internal error in the simulator.", "sim_bug").body())
        self._finish(outcome)

    def _api_key(self, query: str) -> str | None:
        return self.headers.get("x-goog-api-key") or (parse_qs(query).get("key") or [None])[0]

    def _route_api(self, method: str, path: str, query: str, body: bytes, arrived_s: float) -> Outcome:
        sim = self.server.sim
        match = _API_PATH.match(path)
        rest = match["rest"].strip("/") if match else ""
        if match and method == "GET" and rest == "models":
            return list_models(sim, self._api_key(query), query)
        model = _MODEL_PATH.match(rest) if match else None
        if model is None:
            return _not_found(path)
        handler = _POST_METHODS.get(model["method"] or "") if method == "POST" else None
        if method == "GET" and model["method"] is None:
            handler = get_model
        if handler is None:
            return _not_found(path)
        call = Call(model["method"] or "get", match["version"], unquote(model["model"]).removeprefix("models/"),
                    self._api_key(query), body, arrived_s)
        return handler(sim, call)

    # -- body -----------------------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        if not raw.strip().isdigit() or int(raw) > MAX_BODY_BYTES:
            raise BadBody(f"Invalid Content-Length: {raw[:20]!r}")
        return self.rfile.read(int(raw))

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            try:
                size = int(self.rfile.readline(100).split(b";")[0].strip() or b"x", 16)
            except ValueError as exc:
                raise BadBody("Invalid chunked request body") from exc
            total += size
            if size < 0 or total > MAX_BODY_BYTES:
                raise BadBody("Invalid chunked request body")
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(8)

    # -- answering ------------------------------------------------------------------------------------

    def _finish(self, outcome: Outcome) -> None:
        if outcome.action == "reset":
            self._record(outcome, None)
            self._reset()
            return
        if outcome.action == "hang":
            self._record(outcome, None)
            self.server.sim.gauges.add("hanging", 1)
            try:
                self._hold(outcome.delay_s)
            finally:
                self.server.sim.gauges.add("hanging", -1)
            self.close_connection = True
            return
        if outcome.action == "sse":
            self._send_stream(outcome)
        else:
            self._sleep(outcome.delay_s)
            self._send_json(outcome.status, outcome.body or {})
        self._record(outcome, self.server.sim.clock())

    def _record(self, outcome: Outcome, done_s: float | None) -> None:
        record = outcome.record
        if record is None:
            return
        if done_s is not None:
            record = replace(record, latency_ms=(done_s - record.t) * 1000.0)
        self.server.sim.record(record)

    def _hold(self, delay_s: float) -> None:
        """Hold a hung request for `delay_s`, but free the thread as soon as the client gives up and closes."""
        deadline_s = time.monotonic() + delay_s
        poller = select.poll()
        poller.register(self.connection, select.POLLIN)
        while (remaining_s := deadline_s - time.monotonic()) > 0 and not self.server.stopping.is_set():
            if not poller.poll(min(remaining_s, 1.0) * 1000):
                continue
            if not self._peer_closed():  # the client sent more bytes: no EOF to watch for, just wait
                self.server.stopping.wait(remaining_s)
            return

    def _peer_closed(self) -> bool:
        try:
            return self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _sleep(self, delay_s: float) -> None:
        if delay_s > 0:
            self.server.stopping.wait(delay_s)

    def _head(self, status: int, content_type: str, extra: str) -> bytes:
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Unknown"
        close = "Connection: close\r\n" if self.close_connection else ""
        return (f"HTTP/1.1 {status} {phrase}\r\nContent-Type: {content_type}\r\n{extra}{close}"
                f"Date: {self.date_time_string()}\r\nServer: genpool-sim\r\n\r\n").encode("latin-1")

    def _send_json(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        head = self._head(status, "application/json; charset=UTF-8", f"Content-Length: {len(payload)}\r\n")
        self._write(head + payload)  # one write: headers and body in the same segment

    def _send_stream(self, outcome: Outcome) -> None:
        """SSE over chunked encoding: `data: {...}\\r\\n\\r\\n` per chunk, the latency spread across them."""
        events = [f"data: {json.dumps(c, ensure_ascii=False)}\r\n\r\n".encode() for c in outcome.chunks]
        first_s = outcome.delay_s * (FIRST_CHUNK_SHARE if len(events) > 1 else 1.0)
        self._sleep(first_s)
        gap_s = (outcome.delay_s - first_s) / max(1, len(events) - 1)
        head = self._head(200, "text/event-stream", "Transfer-Encoding: chunked\r\n")
        for i, event in enumerate(events):
            if i:
                self._sleep(gap_s)
            if i and outcome.cut:  # a stream broken mid-answer: the first chunk went out, then an RST
                self._reset()
                return
            framed = b"%x\r\n%s\r\n" % (len(event), event)
            last = b"0\r\n\r\n" if i == len(events) - 1 else b""
            if not self._write((head if i == 0 else b"") + framed + last):
                return

    def _write(self, data: bytes) -> bool:
        try:
            self.wfile.write(data)
            return True
        except OSError:  # the client went away (timed out); nothing left to do on this connection
            self.close_connection = True
            return False

    def _reset(self) -> None:
        """Drop the connection with a TCP RST and no response."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()  # the makefile() reference would otherwise keep the socket open
            self.connection.close()
        except OSError:
            pass


def _not_found(path: str) -> Outcome:
    err: ApiError = route_not_found(path)
    return Outcome(err.code, body=err.body())
