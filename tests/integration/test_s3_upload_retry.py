"""An upload S3 refuses is tried genpool's number of times in all, not that times botocore's own retries,
then spooled (a real boto3 client against a local HTTP endpoint that answers 503 and counts PUTs)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import fakeredis
import pytest

from genpool.shared.settings import Settings
from genpool.shared.storage import S3Store
from genpool.worker.answers import Generation
from genpool.worker.results import ResultStore
from genpool.worker.spool import Spool

pytestmark = pytest.mark.integration
SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code>'
             b"<Message>try later</Message></Error>")


class Unavailable(BaseHTTPRequestHandler):
    puts = 0

    def do_PUT(self) -> None:  # noqa: N802 - http.server's name
        type(self).puts += 1
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(503)
        self.send_header("Content-Length", str(len(SLOW_DOWN)))
        self.end_headers()
        self.wfile.write(SLOW_DOWN)

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def endpoint() -> Iterator[str]:
    Unavailable.puts = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Unavailable)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_refused_upload_is_tried_three_times_then_spooled(endpoint: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")  # boto3 reads its credentials itself
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    settings = Settings.from_env({"S3_ENDPOINT_URL": endpoint, "GENPOOL_S3_TIMEOUT_S": "2"}, dotenv_path=None)
    store = S3Store.from_settings(settings)
    spool = Spool(tmp_path / "spool")
    results = ResultStore(fakeredis.FakeRedis(), store, spool, "genpool", 60, upload_attempts=3,
                          upload_backoff_s=0.01)
    gen = Generation(body=b"hi", finish_reason="STOP", prompt_tokens=1, output_tokens=1, images=0, model_version="m")
    ref = results.store_output("0" * 32, "text", "m", gen)
    assert Unavailable.puts == 3  # was 9: botocore's own 3 attempts under each of genpool's 3
    assert [p.name for p in spool.pending()] == [ref.key.replace("/", "__") + ".json"]
