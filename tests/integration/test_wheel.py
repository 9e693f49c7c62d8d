"""Acceptance: the built wheel installs one import name, ``genpool``, beside a user's own ``shared`` and
``worker`` packages, and ``pip install genpool`` (no extras) brings no Gemini SDK, boto3 or rich.

Builds the wheel from this checkout and installs it into a fresh venv from the package index (the one
network the tests use), so it takes ~30 s.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("google-genai", "boto3", "botocore", "rich")


def run(*argv: str | Path, cwd: Path) -> str:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{argv}: {done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built from a copy of the checkout (pip builds in the source tree and would leave build/ behind)."""
    out = tmp_path_factory.mktemp("wheel")
    source = out / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "tests", "bench"))
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, source, cwd=out)
    (built,) = out.glob("genpool-*.whl")
    return built


def test_the_wheel_holds_one_import_name_and_no_dev_tools(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"genpool", wheel.name.split("-py")[0] + ".dist-info"}
    packages = {n.rsplit("/", 1)[0] for n in names if n.endswith("/__init__.py")}
    assert {"genpool/shared", "genpool/producer", "genpool/worker", "genpool/ops", "genpool/cli",
            "genpool/gateway"} <= packages
    assert not [p for p in packages if p.startswith(("genpool/sim", "genpool/devstack"))]
    assert {"genpool/shared/presets/default.toml", "genpool/shared/ratelimit/lua/acquire.lua",
            "genpool/gateway/page/index.html", "genpool/gateway/lua/admit.lua", "genpool/shared/lua/turn.lua",
            "genpool/shared/ratelimit/lua/_budget.lua", "genpool/shared/lua/routing.lua",
            "genpool/worker/lua/cache_join.lua", "genpool/worker/lua/cache_release.lua"} <= set(names)


def test_installed_beside_a_users_shared_and_worker(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp_path).strip())
    for name in ("shared", "worker"):  # the user's own packages, installed beside genpool
        (site / name).mkdir()
        (site / name / "__init__.py").write_text(f"OWNER = 'user {name}'\n")
    run(python, "-m", "pip", "install", "-q", wheel, cwd=tmp_path)
    installed = run(python, "-m", "pip", "list", "--format=freeze", cwd=tmp_path).lower()
    assert [p for p in HEAVY if f"\n{p}==" in f"\n{installed}"] == []
    check = textwrap.dedent("""
        import shared, worker
        assert (shared.OWNER, worker.OWNER) == ("user shared", "user worker")
        import genpool.shared.jobs, genpool.worker, genpool.shared.contract
        from genpool import GenPool
        from genpool.producer import JobHandle
        assert "site-packages/genpool/shared/" in genpool.shared.jobs.__file__
        assert GenPool.__module__ == "genpool.producer.client"
        print("ok")
    """)
    assert run(python, "-c", check, cwd=tmp_path).strip() == "ok"
    usage = run(venv / "bin" / "genpool", "submit", "--help", cwd=tmp_path)
    assert "--kind" in usage
