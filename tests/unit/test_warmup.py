"""The start-up warm-up (worker/warmup.py): the real SDK builds and parses both call paths a text job takes,
answered in process; nothing reaches the network. And a worker runs it before it takes a job."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from genpool.shared.settings import Settings
from genpool.worker import main
from genpool.worker.warmup import warm_up


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"  # closed once the with block ends


def test_warm_up_takes_both_call_paths_without_the_network() -> None:
    settings = Settings.from_env({"GEMINI_API_KEY": "k", "GEMINI_BASE_URL": _closed_port_url()}, dotenv_path=None)
    seen: list[Any] = []
    warm_up(settings, seen)  # a closed port: any real connection would fail the call
    bodies = [json.loads(request.content) for request in seen]
    assert [request.url.path.rsplit(":", 1)[1] for request in seen] == ["generateContent", "generateContent"]
    assert "temperature" not in bodies[0].get("generationConfig", {})  # the plain client: no config
    assert bodies[1]["generationConfig"]["temperature"] == 0.5  # the config path
    assert all(body["safetySettings"] for body in bodies)


def test_a_worker_warms_up_after_its_checks_and_before_its_first_job(monkeypatch: pytest.MonkeyPatch) -> None:
    steps: list[str] = []

    class FakeRuntime:
        redis = catalog = limiter = routes = None
        control = type("Control", (), {"poll": lambda self: steps.append("poll")})()

        @classmethod
        def build(cls, settings: Settings) -> FakeRuntime:
            return cls()

    monkeypatch.setattr(main, "Runtime", FakeRuntime)
    for name in ("check_redis", "check_bucket", "check_key", "sync_limits", "sync_routing", "warm_up",
                 "set_runtime"):
        monkeypatch.setattr(main, name, lambda *args, _name=name: steps.append(_name))
    main.prepare(Settings.from_env({"GEMINI_API_KEY": "k"}, dotenv_path=None))
    assert steps.index("warm_up") > steps.index("check_key")  # a refused key: no time spent warming up
    assert steps.index("warm_up") < steps.index("set_runtime")  # before the worker can take a job
