#!/usr/bin/env bash
# Regenerate the Python lock files: for each requirements file (the direct,
# pinned dependencies of a test or tool environment), a `.lock` beside it with
# the exact version and the hashes of every package, transitive ones included.
# Environments install from the lock with `pip install --require-hashes`
# (scripts/pip-locked.sh), so a changed or substituted download is refused.
# `make check-repo` checks that each lock agrees with its requirements file.
#   scripts/lock-python.sh            every lock
#   scripts/lock-python.sh FILE...    the locks of these requirements files
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${PROTONPASS_CACHE:-$HOME/.cache/protonpass}"
tools="$cache/lock-tools"
if ! "$tools/bin/uv" --version >/dev/null 2>&1; then
  rm -rf "$tools"
  python3 -m venv "$tools"
  "$tools/bin/python" -m pip install --quiet --disable-pip-version-check uv==0.13.8
fi
if [ $# -gt 0 ]; then files=("$@"); else mapfile -t files < <(git ls-files '*requirements*.txt'); fi
py="$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
for req in "${files[@]}"; do
  lock="${req%.txt}.lock"
  "$tools/bin/uv" pip compile --quiet --generate-hashes --python-version "$py" \
    --no-header --output-file "$lock" "$req"
  # uv names the input file with the path it was given; keep it relative.
  echo "lock: $lock"
done
