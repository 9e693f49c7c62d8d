"""devstack/rewrite_imports.py turns code written in the old layout into the genpool.<pkg> form, leaves
everything else alone, and changes nothing the second time. (rewrite-imports: skip-file)"""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("rewrite_imports", ROOT / "devstack" / "rewrite_imports.py")
assert spec is not None and spec.loader is not None
rewrite_imports = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rewrite_imports)
TREE = rewrite_imports.Tree(ROOT)

OLD = '''from shared.errors import ConfigError
from shared import keys
import worker.runner as runner
from producer.cli import main
from shared.availability import Availability
from worker.dequeue import SafeDequeue

TASK = "worker.tasks.generate"
ARGV = [sys.executable, "-m", "sim", "--port", "1"]
WORKER = [sys.executable, "-m", "worker.main"]
LUA = resources.files("shared").joinpath("x.lua")
labels = {"worker": 1, "sim": 2}
worker.name, sim.json, worker.work(burst=True)
PATH = "shared/presets/default.toml"
'''
NEW = '''from genpool.shared.errors import ConfigError
from genpool.shared import keys
import genpool.worker.runner as runner
from genpool.cli.main import main
from genpool.shared.ratelimit.availability import Availability
from genpool.worker.rqcompat.dequeue import SafeDequeue

TASK = "genpool.worker.tasks.generate"
ARGV = [sys.executable, "-m", "genpool.sim", "--port", "1"]
WORKER = [sys.executable, "-m", "genpool.worker.main"]
LUA = resources.files("genpool.shared").joinpath("x.lua")
labels = {"worker": 1, "sim": 2}
worker.name, sim.json, worker.work(burst=True)
PATH = "shared/presets/default.toml"
'''


def test_python_is_rewritten_and_only_module_names_change() -> None:
    assert rewrite_imports.rewrite_python(OLD, TREE) == NEW
    assert rewrite_imports.rewrite_python(NEW, TREE) == NEW


def test_text_is_rewritten() -> None:
    old = "run `python -m devstack.demo`; errors are `shared.errors.ValidationError`; see sim.example.toml\n"
    new = "run `python -m genpool.devstack.demo`; errors are `genpool.shared.errors.ValidationError`; see sim.example.toml\n"
    assert rewrite_imports.rewrite_text(old, TREE) == new
    assert rewrite_imports.rewrite_text(new, TREE) == new


def test_a_kept_line_keeps_its_old_name() -> None:
    source = 'LEGACY = ("worker.tasks.generate",)  # rewrite-imports: keep\nNEW = "worker.tasks.generate"\n'
    out = rewrite_imports.rewritten(source, Path("x.py"), TREE)
    assert out == 'LEGACY = ("worker.tasks.generate",)  # rewrite-imports: keep\nNEW = "genpool.worker.tasks.generate"\n'


def test_the_checkout_has_nothing_left_to_rewrite() -> None:
    assert rewrite_imports.main(["--check"]) == 0
