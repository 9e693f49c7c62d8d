"""Where genpool's import names come from: every package is installed under the one name ``genpool``.

The repository keeps its top-level folders (shared/, producer/, worker/, ops/, sim/, devstack/); the
mapping below installs them as genpool.shared, genpool.producer, ... (``package_dir``). A wheel holds the
library only: genpool, its shared contract, the producer client, the worker, the operator tools, the HTTP
gateway and the CLI. The Gemini simulator and the local dev stack are development tools: an editable
install of a checkout (``pip install -e .``, what ``make test`` does) maps them too, as genpool.sim and
genpool.devstack, through setuptools' editable finder; a built wheel never contains them. Everything
else (metadata, dependencies, extras, scripts) is in pyproject.toml.
"""

import sys

from setuptools import find_packages, setup

LIBRARY = ("shared", "producer", "worker", "ops", "gateway")
DEV_ONLY = ("sim", "devstack")


def packages(folders: tuple[str, ...]) -> tuple[list[str], dict[str, str]]:
    names, dirs = [], {}
    for folder in folders:
        found = [folder, *(f"{folder}.{p}" for p in find_packages(folder))]
        names += [f"genpool.{name}" for name in found]
        dirs[f"genpool.{folder}"] = folder
    return names, dirs


editable = "editable_wheel" in sys.argv  # the PEP 660 build of a checkout (pip install -e .)
names, dirs = packages(LIBRARY + (DEV_ONLY if editable else ()))
names += ["genpool", *(f"genpool.{p}" for p in find_packages("genpool"))]
setup(packages=sorted(names), package_dir={"genpool": "genpool", **dirs})
