"""Importing a package of another checkout (an earlier commit, checked out as a git worktree)
beside this checkout's, so that a benchmark can run both in one process (`match_ab.py`,
`watermark_ab.py`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType


def load_other(path: Path, package: str) -> ModuleType:
    """``package`` (a dotted name) of the checkout at ``path``: its modules are imported afresh
    under the same names, then this checkout's are put back (so an import made inside one of
    its functions when called finds this checkout's module)."""
    top = package.split(".")[0]

    def mine(name: str) -> bool:
        return name == top or name.startswith(top + ".")

    ours = {k: m for k, m in sys.modules.items() if mine(k)}
    for name in ours:
        del sys.modules[name]
    sys.path.insert(0, str(path))
    try:
        __import__(package)
        other = sys.modules[package]
    finally:
        sys.path.remove(str(path))
        for name in [k for k in sys.modules if mine(k)]:
            del sys.modules[name]
        sys.modules.update(ours)
    here = Path(__file__).resolve().parents[1]
    if Path(other.__file__ or "").resolve().is_relative_to(here):
        raise SystemExit(f"{path} holds this checkout's {package} package, not another's")
    return other


def commit(root: Path, folder: str) -> str:
    """The commit checked out at ``root`` (``+ changes`` when ``folder`` differs from it)."""
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", folder],
                           capture_output=True, text=True).stdout.strip()
    return f"{head} + changes" if dirty else head
