#!/usr/bin/env bash
# Install a requirements file's lock into a Python environment, every package
# checked against the lock's hashes (`pip install --require-hashes`), and only
# when the lock changed since the last install (a marker beside the packages).
#   scripts/pip-locked.sh PYTHON REQUIREMENTS.txt            into PYTHON's venv
#   scripts/pip-locked.sh PYTHON REQUIREMENTS.txt --target DIR
set -euo pipefail
py="$1"; req="$2"; shift 2
lock="${req%.txt}.lock"
if [ ! -f "$lock" ]; then
  echo "pip-locked: $lock is missing; run scripts/lock-python.sh $req" >&2
  exit 1
fi
marker_dir="$("$py" -c 'import sys; print(sys.prefix)')"
if [ "${1:-}" = --target ]; then marker_dir="$2"; mkdir -p "$marker_dir"; fi
marker="$marker_dir/.lock-$(basename "$lock").sha256"
want="$(sha256sum "$lock" | cut -d' ' -f1)"
if [ "$(cat "$marker" 2>/dev/null)" != "$want" ]; then
  "$py" -m pip install --quiet --disable-pip-version-check --require-hashes -r "$lock" "$@"
  echo "$want" >"$marker"
fi
