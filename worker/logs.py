"""Logging set-up for worker processes: text for people, JSON lines for log pipelines.

At INFO a worker writes one line per attempt (``genpool.attempt``) and a few at start and stop; RQ's
per-job lines, httpx's per-request line and the SDK's per-call line are kept to warnings (DEBUG shows them).
"""

from __future__ import annotations

import json
import logging
import sys
import time

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"t": round(record.created, 3), "level": record.levelname, "logger": record.name,
               "msg": record.getMessage()}
        out.update({k: v for k, v in vars(record).items() if k not in _RESERVED})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in CHATTY:
        logging.getLogger(name).setLevel(rq_level(level))


#: Loggers that write a line per job or per HTTP request at INFO: RQ (job start/finish, dequeue), httpx /
#: httpx2 ("HTTP Request: POST ..."), google-genai ("AFC is enabled ..."), botocore's credential lookups.
CHATTY = ("rq.worker", "rq.job", "rq.scheduler", "rq.queue", "rq.intermediate_queue", "httpx", "httpx2",
          "httpcore", "google_genai", "google_genai.models", "botocore", "boto3", "urllib3")


def rq_level(level: str | int) -> int:
    """The level for the chatty loggers: WARNING, unless genpool itself logs at DEBUG."""
    numeric = level if isinstance(level, int) else logging.getLevelName(str(level).upper())
    return logging.DEBUG if numeric == logging.DEBUG else max(logging.WARNING, int(numeric))
