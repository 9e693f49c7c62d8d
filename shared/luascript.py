"""Lua scripts, read from the package that owns them: the one way genpool loads them (from a checkout
or an installed wheel alike, through ``importlib.resources``)."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def read(package: str, path: str) -> str:
    """The text of ``path`` (e.g. ``"lua/acquire.lua"``) inside ``package`` (``"genpool.shared.ratelimit"``)."""
    return resources.files(package).joinpath(path).read_text()
