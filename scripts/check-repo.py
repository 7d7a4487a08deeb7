#!/usr/bin/env python3
"""Repository checks that `make test` runs before anything is built.

1. Nothing in the repository reads or names a path outside it: a clone is the
   whole product. Every tracked text file is scanned for relative paths that
   climb above the repository root (from the file's folder and from the root)
   and for absolute paths into a developer's machine.
2. One version, one licence and one repository URL: the Cargo workspace is the
   source; the Python and Node packages (and the Node lock file) must agree.

Exit 1 with one line per problem; print a one-line summary otherwise.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tomllib
from pathlib import Path

from repo_checks import ROOT, report, tracked

# Relative paths with at least one `..` segment, e.g. `../other/x` or `../../a`.
RELATIVE = re.compile(r"(?<![\w./])((?:\.\./)+[\w.@-][\w./@-]*)")
# Absolute paths of a developer machine or CI workspace.
ABSOLUTE = re.compile(r"(?<![\w:/])(/work/[\w.-]+|/home/[\w.-]+/|/Users/[\w.-]+/)")
SKIP_SUFFIXES = {".png", ".jpg", ".lock", ".ico", ".woff", ".woff2"}
SKIP_NAMES = {"package-lock.json", "Cargo.lock"}
# A line holding a hostile input that only looks like a path says so with this.
ALLOW = "check-repo: not a path"


def escapes(base: Path, rel: str) -> bool:
    target = os.path.normpath(os.path.join(base, rel))
    return not (target == str(ROOT) or target.startswith(str(ROOT) + os.sep))


def outside_paths(files: list[Path]) -> list[str]:
    problems = []
    for f in files:
        if f.suffix in SKIP_SUFFIXES or f.name in SKIP_NAMES or "/corpus/" in str(f) or "/vectors/" in str(f):
            continue
        if f == Path(__file__).resolve():
            continue
        try:
            text = f.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError):
            continue
        rel_file = f.relative_to(ROOT)
        for n, line in enumerate(text.splitlines(), 1):
            if ALLOW in line:
                continue
            for m in RELATIVE.finditer(line):
                rel = m.group(1).rstrip(".,;:)`'\"")
                if escapes(f.parent, rel) and escapes(ROOT, rel):
                    problems.append(f"{rel_file}:{n}: refers to {rel!r}, outside the repository")
                elif (
                    f.suffix == ".md"
                    and f"]({m.group(1)}" in line
                    and not (f.parent / rel.split("#")[0]).exists()
                ):
                    problems.append(f"{rel_file}:{n}: links to {rel!r}, which does not exist")
            for m in ABSOLUTE.finditer(line):
                problems.append(f"{rel_file}:{n}: refers to the absolute path {m.group(1)!r}")
    return problems


def metadata() -> list[str]:
    problems = []
    ws = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]
    version, licence, repo = ws["version"], ws["license"], ws["repository"]
    pkg = json.loads((ROOT / "bindings-node/package.json").read_text())
    lock = json.loads((ROOT / "bindings-node/package-lock.json").read_text())
    py = tomllib.loads((ROOT / "bindings-python/pyproject.toml").read_text())["project"]
    checks = [
        ("bindings-node/package.json version", pkg.get("version"), version),
        ("bindings-node/package-lock.json version", lock.get("version"), version),
        ("bindings-node/package-lock.json packages[''].version", lock["packages"][""].get("version"), version),
        ("bindings-node/package.json license", pkg.get("license"), licence),
        ("bindings-node/package.json repository.url", (pkg.get("repository") or {}).get("url"), repo),
        ("bindings-python/pyproject.toml license", (py.get("license") or {}).get("text"), licence),
        ("bindings-python/pyproject.toml urls.Repository", (py.get("urls") or {}).get("Repository"), repo),
    ]
    urls = py.get("urls") or {}
    if not all(isinstance(v, str) for v in urls.values()) or not isinstance(py.get("dependencies", []), list):
        problems.append("bindings-python/pyproject.toml: [project.urls] holds only URL strings, dependencies is a list")
    if "version" not in py.get("dynamic", []):
        problems.append("bindings-python/pyproject.toml: the version must be dynamic (taken from Cargo)")
    for name, got, want in checks:
        if got != want:
            problems.append(f"{name} is {got!r}, the Cargo workspace says {want!r}")
    for manifest in ROOT.glob("*/Cargo.toml"):
        data = tomllib.loads(manifest.read_text()).get("package", {})
        if data and data.get("version") not in ({"workspace": True}, None) and manifest.parent.name != "fuzz":
            problems.append(f"{manifest.relative_to(ROOT)}: set version.workspace = true")
    return problems


def canonical(name: str) -> str:
    """A Python package name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(text: str) -> dict[str, str]:
    """`name==version` lines of a requirements or lock file (extras dropped)."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", line.strip())
        if m:
            out[canonical(m.group(1))] = m.group(2)
    return out


def python_locks(files: list[Path]) -> list[str]:
    """Each requirements file has a lock beside it (scripts/lock-python.sh)
    that pins its packages at the same versions, with hashes for every entry."""
    problems = []
    for req in files:
        if not re.fullmatch(r".*requirements[^/]*\.txt", req.name):
            continue
        rel = req.relative_to(ROOT)
        lock = req.with_suffix(".lock")
        fix = f"run scripts/lock-python.sh {rel}"
        if not lock.exists():
            problems.append(f"{rel}: no lock file {lock.relative_to(ROOT)}; {fix}")
            continue
        wanted, locked = pins(req.read_text()), pins(lock.read_text())
        for name, version in wanted.items():
            if locked.get(name) != version:
                problems.append(f"{lock.relative_to(ROOT)}: {name} is {locked.get(name)!r}, {rel} pins {version!r}; {fix}")
        entries = re.findall(r"^[A-Za-z0-9][^\n]*==[^\n]*\n((?:\s+--hash=[^\n]*\n)*)", lock.read_text() + "\n", re.M)
        if not entries or any("--hash=sha256:" not in e for e in entries):
            problems.append(f"{lock.relative_to(ROOT)}: every entry needs its hashes; {fix}")
    return problems


def main() -> int:
    files = tracked()
    problems = outside_paths(files) + metadata() + python_locks(files)
    return report(
        "check-repo",
        problems,
        f"{len(files)} tracked files refer to no path outside the repository; versions, licence and repository agree; Python locks match their requirements",
    )


if __name__ == "__main__":
    sys.exit(main())
