#!/usr/bin/env python3
"""README code is taken from tested files.

A fenced block in a Markdown file preceded by the comment
`<!-- snippet: NAME FILE -->` must equal, line for line, the region NAME of
FILE: the lines between `readme:begin NAME` and `readme:end NAME` comment
markers (`//` or `#`; inside a Rust doc comment, `//! # // readme:begin NAME`,
whose hidden `# ` lines are left out), with their common indentation removed.
FILE is relative to the repository root and is compiled or run by `make test`.

    python3 scripts/check-snippets.py          # check
    python3 scripts/check-snippets.py --write  # rewrite the blocks from the regions
"""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

from repo_checks import ROOT, report, tracked

MARK = re.compile(r"^<!-- snippet: (\S+) (\S+) -->$")
BEGIN = re.compile(r"(?://|#) readme:begin (\S+)")
END = re.compile(r"(?://|#) readme:end (\S+)")


def region(path: Path, name: str) -> list[str]:
    out: list[str] | None = None
    for raw in path.read_text().splitlines():
        line = raw
        doc = line.lstrip().startswith("//!")
        if doc:
            line = line.lstrip()[3:].removeprefix(" ")
        m_begin, m_end = BEGIN.search(line), END.search(line)
        if m_begin and m_begin.group(1) == name:
            out = []
            continue
        if m_end and m_end.group(1) == name:
            if out is None:
                break
            return textwrap.dedent("\n".join(out)).splitlines()
        if out is not None:
            if doc and (line == "#" or line.startswith("# ")):
                continue
            out.append(line)
    raise SystemExit(f"check-snippets: {path.relative_to(ROOT)} has no complete region {name!r}")


def main() -> int:
    write = "--write" in sys.argv[1:]
    problems, checked = [], 0
    for md in tracked("*.md"):
        lines = md.read_text().splitlines()
        changed = False
        i = 0
        while i < len(lines):
            m = MARK.search(lines[i])
            if not m:
                i += 1
                continue
            name, src = m.group(1), ROOT / m.group(2)
            if not src.is_file():
                problems.append(f"{md.relative_to(ROOT)}:{i + 1}: {m.group(2)} does not exist")
                i += 1
                continue
            start = i + 1
            if start >= len(lines) or not lines[start].startswith("```"):
                problems.append(f"{md.relative_to(ROOT)}:{i + 1}: the snippet marker is not followed by a code block")
                i += 1
                continue
            end = start + 1
            while end < len(lines) and not lines[end].startswith("```"):
                end += 1
            want = region(src, name)
            have = lines[start + 1 : end]
            checked += 1
            if have != want:
                if write:
                    lines[start + 1 : end] = want
                    changed = True
                    end = start + 1 + len(want)
                else:
                    problems.append(
                        f"{md.relative_to(ROOT)}:{start + 1}: the block differs from region {name!r} of {m.group(2)}"
                        " (run `python3 scripts/check-snippets.py --write`)"
                    )
            i = end + 1
        if changed:
            md.write_text("\n".join(lines) + "\n")
    return report("check-snippets", problems, f"{checked} README code blocks are taken verbatim from tested files")


if __name__ == "__main__":
    sys.exit(main())
