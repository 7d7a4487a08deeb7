#!/usr/bin/env bash
# Cross-implementation tests: Python (joserfc, PyJWT) and Node (jose, dpop)
# against the core, through the core's `interop` example. Idempotent: the
# Python venv lives in the cache and is reinstalled only when
# requirements.txt changes; `npm ci` installs exactly package-lock.json.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache="${PROTONPASS_CACHE:-$HOME/.cache/protonpass}"
venv="$cache/interop-venv"

# shellcheck source=../../scripts/suite-lib.sh
. "$root/scripts/suite-lib.sh"

# Python venv with the pinned libraries.
locked_venv "$venv" "$here/requirements.txt"

# Node packages, exactly as locked.
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error)

# The core's interop CLI.
INTEROP_BIN="$(cd "$root" && cargo build --locked -p protonpass-agent --example interop \
  --message-format=json-render-diagnostics |
  "$venv/bin/python" -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "interop":
        print(m["executable"])')"
[[ -x "$INTEROP_BIN" ]] || { echo "run.sh: interop CLI was not built" >&2; exit 1; }
export INTEROP_BIN

echo "== interop: Python (joserfc, PyJWT)"
(cd "$here" && "$venv/bin/ruff" check python && "$venv/bin/ruff" format --check python)
(cd "$here" && "$venv/bin/python" -m pytest)

echo "== interop: Node (jose, dpop)"
shopt -s nullglob
files=("$here"/node/*.test.mjs)
(( ${#files[@]} > 0 )) || { echo "run.sh: no Node test files matched" >&2; exit 1; }
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
(cd "$here" && node --test --test-reporter=tap "${files[@]}") | tee "$log"
tests="$(sed -n 's/^# tests \([0-9]*\)$/\1/p' "$log")"
(( ${tests:-0} > 0 )) || { echo "run.sh: node --test ran no test" >&2; exit 1; }
echo "interop: all suites passed"
