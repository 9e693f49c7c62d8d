"""The gateway on a real uvicorn server (a thread of the test process, a free port), real HTTP (httpx2)
and WebSocket (websockets) clients, an SSE reader, and token helpers."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from unittest import mock

import httpx2
import redis
import uvicorn
from websockets.sync.client import ClientConnection, connect

from genpool.devstack.services import free_port
from genpool.gateway.app import create_app
from genpool.gateway.settings import ApiSettings
from genpool.gateway.tokens import TokenStore
from genpool.shared.settings import Settings

if TYPE_CHECKING:
    from tests.conftest import Stack

TIMEOUT_S = 60.0


class ServerThread:
    """uvicorn.Server on its own thread and event loop, like `genpool api` but in-process."""

    def __init__(self, settings: Settings, api: ApiSettings) -> None:
        self.port = free_port()
        config = uvicorn.Config(create_app(settings, api), host="127.0.0.1", port=self.port, log_level="warning",
                                ws_max_size=4 * api.max_message_bytes, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}", daemon=True)

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return self

    @staticmethod
    def default_api() -> ApiSettings:
        return ApiSettings()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Api:
    """A client of one gateway with one token."""

    url: str
    token: str
    http: httpx2.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx2.Client(base_url=self.url, timeout=TIMEOUT_S,
                                  headers={"Authorization": f"Bearer {self.token}"})

    def close(self) -> None:
        self.http.close()

    def submit(self, body: Any, **kwargs: Any) -> httpx2.Response:
        return self.http.post("/v1/jobs", json=body, **kwargs)

    def events(self, job_id: str, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Every SSE event of the job until the stream ends (after finished / failed)."""
        return list(sse(self.http, f"/v1/jobs/{job_id}/events", headers))

    def wait(self, job_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            body = self.http.get(f"/v1/jobs/{job_id}").json()
            if body["status"] in ("finished", "failed"):
                return dict(body)
            time.sleep(0.05)
        raise TimeoutError(job_id)

    def socket(self, conversation_id: str, **kwargs: Any) -> ClientConnection:
        ws_url = self.url.replace("http://", "ws://") + f"/v1/conversations/{conversation_id}"
        headers = kwargs.pop("additional_headers", {"Authorization": f"Bearer {self.token}"})
        return connect(ws_url, additional_headers=headers, proxy=None, open_timeout=TIMEOUT_S, **kwargs)


def sse(http: httpx2.Client, path: str, headers: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """Server-Sent Events parsed from a real streamed response: {id, event, data}."""
    with http.stream("GET", path, headers=headers) as reply:
        assert reply.status_code == 200, reply.read()
        assert reply.headers["content-type"].startswith("text/event-stream")
        event: dict[str, Any] = {}
        for line in reply.iter_lines():
            if line.startswith(":"):
                continue
            if not line:
                if event:
                    event["data"] = json.loads(event.get("data", "{}"))
                    yield event
                    event = {}
                continue
            name, _, value = line.partition(": ")
            event[name] = value


def turn(ws: ClientConnection, text: str, timeout_s: float = TIMEOUT_S, **fields: Any) -> list[dict[str, Any]]:
    """Send one message; what comes back until its typing off (or an error refusing it), in order."""
    ws.send(json.dumps({"type": "message", "message": text, **fields}))
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while True:
        message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        out.append(message)
        typing_off = message["type"] == "typing" and message["on"] is False
        refused = message["type"] == "error" and "job_id" not in message
        if typing_off or refused:
            return out


def make_token(redis_url: str, name: str, rpm: int = 10_000, usd_per_day: float = 100.0) -> str:
    client = redis.Redis.from_url(redis_url)
    try:
        return TokenStore(client).create(name, rpm, usd_per_day)
    finally:
        client.close()


@contextlib.contextmanager
def running_gateway(stack: Stack, **api: Any) -> Iterator[ServerThread]:
    """The gateway of ``stack`` (its credentials for the S3 server come from the environment, like boto3's
    anywhere else)."""
    aws = {k: v for k, v in stack.env.items() if k.startswith("AWS_")}
    with mock.patch.dict(os.environ, aws):
        server = ServerThread(stack.settings, ApiSettings(**api)).start()
        try:
            yield server
        finally:
            server.stop()
