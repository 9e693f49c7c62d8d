"""The client stays light: importing it (or ``genpool`` itself) pulls in no worker, CLI or vendor SDK."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("google.genai", "boto3", "botocore", "rich", "tenacity", "jsonschema", "genpool.worker", "genpool.cli",
         "genpool.ops", "genpool.sim", "genpool.devstack", "genpool.gateway", "fastapi", "starlette", "uvicorn")


def imported_after(code: str) -> list[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    return list(json.loads(out.stdout.splitlines()[-1]))


@pytest.mark.parametrize("code", [
    "from genpool import GenPool",
    "from genpool.producer import GenPool, JobHandle",
    "import genpool.producer.client",
    "from genpool.shared.contract import TASK",
])
def test_the_client_imports_nothing_heavy(code: str) -> None:
    loaded = imported_after(code)
    heavy = [m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert heavy == []


def test_the_client_imports_only_rq_redis_pydantic_and_dotenv() -> None:
    """Everything the client loads is genpool's own, the standard library's, or what rq, redis, pydantic and
    python-dotenv load themselves."""
    allowed = {m.split(".")[0] for m in imported_after("import rq, rq.job, rq.queue, redis, pydantic, dotenv")}
    loaded = {m.split(".")[0] for m in imported_after("from genpool import GenPool\nGenPool.__name__")}
    allowed |= {"genpool", "annotated_types", "typing_inspection", "pydantic_settings"}  # pydantic's, on demand
    extra = {m for m in loaded - allowed - set(sys.stdlib_module_names) if not m.startswith("_sysconfigdata")}
    assert extra == set()


@pytest.mark.parametrize("module", ["genpool.producer.cli", "genpool.producer.batch"])
def test_the_command_line_is_not_part_of_the_client(module: str) -> None:
    import importlib.util

    assert importlib.util.find_spec(module) is None
    assert importlib.util.find_spec("genpool.cli.main") is not None
