"""The code an issue was filed against, runnable beside the current one: a same-run baseline (#17).

``materialize(commit, into)`` writes that commit's tree (``git archive``) and a site folder whose ``genpool``
package maps the tree's top-level packages the way the editable install maps the checkout's. A process
started with ``PYTHONPATH=<site>`` imports that commit's genpool, with today's dependencies. The
``PRODUCER`` script, run that way, submits and waits with that commit's own client.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCER = Path(__file__).resolve().parent / "filed_producer.py"
NOT_MAPPED = frozenset(("genpool", "tests", "bench"))  # the package itself, and what is never installed


def materialize(commit: str, into: Path) -> Path | None:
    """The site folder to put on PYTHONPATH for ``commit``'s code; None without the git history."""
    site = into / f"site-{commit}"
    if (site / "genpool").is_dir():
        return site
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], check=True, capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    tree = into / f"tree-{commit}"
    tree.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    package = site / "genpool"
    package.mkdir(parents=True)
    for entry in (tree / "genpool").iterdir():
        (package / entry.name).symlink_to(entry)
    for folder in tree.iterdir():  # each top-level package becomes genpool.<folder>, as the editable install maps it
        if folder.name not in NOT_MAPPED and (folder / "__init__.py").is_file():
            (package / folder.name).symlink_to(folder, target_is_directory=True)
    return site
