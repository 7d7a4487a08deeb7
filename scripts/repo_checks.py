"""What the repository checks (scripts/check-repo.py, scripts/check-snippets.py)
share: the repository root, its tracked files, and how a check reports.

Standard library only; the checks import it from their own folder.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def tracked(*patterns: str) -> list[Path]:
    """The files git tracks in the repository (those matching `patterns`, if any)."""
    out = subprocess.run(["git", "ls-files", "-z", *patterns], cwd=ROOT, capture_output=True, check=True).stdout
    return [ROOT / p for p in out.decode().split("\0") if p]


def report(check: str, problems: list[str], summary: str) -> int:
    """Print each problem (stderr) or else the one-line summary, prefixed with
    the check's name; the exit status (1 if there is any problem)."""
    for p in problems:
        print(f"{check}: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"{check}: {summary}")
    return 0
