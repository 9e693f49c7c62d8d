"""Rewrite genpool's old top-level imports (``shared``, ``producer``, ``worker``, ``ops``, ``sim``,
``devstack``) to the one import name ``genpool``, in code and in text.

    python devstack/rewrite_imports.py            # every tracked file of the checkout, in place
    python devstack/rewrite_imports.py PATH ...   # only these files / folders
    python devstack/rewrite_imports.py --check    # list what would change; exit 1 if anything would

What it rewrites (only names that resolve to a module of the checkout, so ``worker.name`` or
``sim.json`` stay as they are):
- ``from shared.x import y`` / ``import worker.y as z`` → ``from genpool.shared.x import y`` / ...,
  in .py files and in code lines of Markdown;
- dotted module paths inside Python string literals (``"worker.tasks.generate"``, ``patch("worker.x.y")``),
  and a bare package name where it can only be one: after ``"-m",`` (``[sys.executable, "-m", "sim"]``)
  or as the argument of ``resources.files(...)`` / ``import_module(...)``;
- in other text (Markdown, Makefile, Procfile, TOML, shell): ``python -m devstack.demo``,
  ``shared.errors.ValidationError`` and the like.
Modules that moved in the restructure (``MOVES``) are renamed on the way. Standalone: it imports nothing
of genpool, so it runs on a branch still in the old layout. Running it twice changes nothing. A line
that must keep an old name (a compatibility alias) carries the comment ``rewrite-imports: keep``; a file
that must (this script's own tests) carries ``rewrite-imports: skip-file``.
"""

from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path

PACKAGES = ("shared", "producer", "worker", "ops", "sim", "devstack")
NEW_ROOT = "genpool"
#: Modules whose home changed in the restructure (old dotted path → new one, without the ``genpool.``).
MOVES: dict[str, str] = {
    "producer.cli": "genpool.cli.main",
    "producer.batch": "genpool.cli.batch",
    "worker.dequeue": "genpool.worker.rqcompat.dequeue",
    "shared.availability": "genpool.shared.ratelimit.availability",
}
TEXT_SUFFIXES = {".md", ".toml", ".txt", ".cfg", ".ini", ".sh", ".yml", ".yaml", ".example"}
TEXT_NAMES = {"Makefile", "Procfile", "run"}
SELF = Path(__file__).resolve()
#: Calls whose first argument is a package name (``resources.files("shared")``).
PACKAGE_ARGUMENT_CALLS = {"files", "import_module", "find_spec", "import_string"}

_PKG = "|".join(PACKAGES)
_FROM = re.compile(rf"^(\s*from\s+)((?:{_PKG})(?:\.\w+)*)(\s+import\b)", re.MULTILINE)
_IMPORT = re.compile(rf"^(\s*import\s+)((?:{_PKG})(?:\.\w+)*)(\s+as\s+\w+\s*$)", re.MULTILINE)
_DOTTED = re.compile(rf"(?<![\w./-])((?:{_PKG})(?:\.\w+)+)")
_DASH_M = re.compile(rf"(-m\s+)((?:{_PKG})(?:\.\w+)*)\b")


class Tree:
    """Which dotted names are modules or packages of the checkout at ``root`` (or were, before a move)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def is_module(self, dotted: str) -> bool:
        if dotted in MOVES:
            return True
        path = self.root.joinpath(*dotted.split("."))
        return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()

    def module_prefix(self, dotted: str) -> str | None:
        """The longest leading part of ``dotted`` that names a module (at least ``pkg.module``), or None."""
        parts = dotted.split(".")
        for end in range(len(parts), 1, -1):
            if self.is_module(".".join(parts[:end])):
                return ".".join(parts[:end])
        return None


def new_name(module: str) -> str:
    for old, new in sorted(MOVES.items(), key=lambda kv: -len(kv[0])):
        if module == old or module.startswith(old + "."):
            module = new + module[len(old):]
            break
    return module if module.startswith(NEW_ROOT + ".") or module == NEW_ROOT else f"{NEW_ROOT}.{module}"


def _dotted(match: re.Match[str], tree: Tree) -> str:
    text = match.group(1)
    prefix = tree.module_prefix(text)
    return text if prefix is None else new_name(prefix) + text[len(prefix):]


def rewrite_imports(text: str, tree: Tree) -> str:
    text = _FROM.sub(lambda m: m.group(1) + _module_or_same(m.group(2), tree) + m.group(3), text)
    return _IMPORT.sub(lambda m: m.group(1) + _module_or_same(m.group(2), tree) + m.group(3), text)


def _module_or_same(module: str, tree: Tree) -> str:
    return new_name(module) if module in PACKAGES or tree.is_module(module) else module


def rewrite_text(text: str, tree: Tree) -> str:
    """Markdown, Makefile, Procfile, TOML: import lines, ``-m pkg.mod`` and dotted module paths."""
    text = rewrite_imports(text, tree)
    text = _DASH_M.sub(lambda m: m.group(1) + _module_or_same(m.group(2), tree), text)
    return _DOTTED.sub(lambda m: _dotted(m, tree), text)


def rewrite_python(source: str, tree: Tree) -> str:
    """Import statements, and module paths inside string literals (never identifiers or attributes)."""
    source = rewrite_imports(source, tree)
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return source
    starts = [0]  # offset of each line's first character
    for line in source.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    significant = [t for t in tokens if t.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT,
                                                       tokenize.INDENT, tokenize.DEDENT)]
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement) as offsets into the source
    for i, tok in enumerate(significant):
        if tok.type == tokenize.STRING:
            new = _rewrite_string(tok.string, tree, bare_package=_names_a_package(significant, i))
            if new != tok.string:
                edits.append((starts[tok.start[0] - 1] + tok.start[1], starts[tok.end[0] - 1] + tok.end[1], new))
    for start, end, new in sorted(edits, reverse=True):
        source = source[:start] + new + source[end:]
    return source


def _names_a_package(tokens: list[tokenize.TokenInfo], i: int) -> bool:
    """The string at ``i`` is a bare package name by position: ``"-m", "sim"``, ``files("shared")``,
    ``import_module("worker")`` (elsewhere ``"worker"`` may be any word: a dict key, a label)."""
    after_dash_m = i >= 2 and tokens[i - 1].string == "," and tokens[i - 2].string in ('"-m"', "'-m'")
    call_arg = i >= 2 and tokens[i - 1].string == "(" and tokens[i - 2].string in PACKAGE_ARGUMENT_CALLS
    return after_dash_m or call_arg


def _rewrite_string(literal: str, tree: Tree, bare_package: bool) -> str:
    quote_at = min(literal.find(q) for q in ("'", '"') if q in literal)
    prefix, body = literal[:quote_at], literal[quote_at:]
    quote = body[:3] if body[:3] in ('"""', "'''") else body[0]
    inner = body[len(quote):-len(quote)]
    if bare_package and inner in PACKAGES:
        return f"{prefix}{quote}{new_name(inner)}{quote}"
    inner = _DASH_M.sub(lambda m: m.group(1) + _module_or_same(m.group(2), tree), inner)
    inner = _DOTTED.sub(lambda m: _dotted(m, tree), inner)
    return f"{prefix}{quote}{inner}{quote}"


KEEP = "rewrite-imports: keep"
SKIP_FILE = "rewrite-imports: skip-file"


def rewritten(text: str, path: Path, tree: Tree) -> str:
    if SKIP_FILE in text:
        return text
    new = rewrite_python(text, tree) if path.suffix == ".py" else rewrite_text(text, tree)
    if KEEP not in text:
        return new
    old_lines, new_lines = text.splitlines(keepends=True), new.splitlines(keepends=True)
    if len(old_lines) != len(new_lines):
        return new
    return "".join(o if KEEP in o else n for o, n in zip(old_lines, new_lines, strict=True))


def candidates(root: Path, paths: list[Path]) -> list[Path]:
    if not paths:
        listed = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True).stdout
        paths = [root / line for line in listed.splitlines()]
    files: list[Path] = []
    for path in paths:
        files += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [f for f in files if f.resolve() != SELF and _wanted(f)]


def _wanted(path: Path) -> bool:
    return path.suffix == ".py" or path.suffix in TEXT_SUFFIXES or path.name in TEXT_NAMES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", type=Path, help="files or folders (default: every tracked file)")
    parser.add_argument("--root", type=Path, default=SELF.parents[1], help="the checkout (default: this one)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file would change")
    args = parser.parse_args(argv)
    tree = Tree(args.root.resolve())
    changed = []
    for path in candidates(tree.root, args.paths):
        old = path.read_text()
        new = rewritten(old, path, tree)
        if new != old:
            changed.append(path)
            if not args.check:
                path.write_text(new)
    for path in changed:
        print(path.relative_to(tree.root) if path.is_relative_to(tree.root) else path)
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
