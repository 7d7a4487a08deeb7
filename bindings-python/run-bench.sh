#!/usr/bin/env bash
# Python benchmark (issue: headers and verification against joserfc and PyJWT),
# on a release build of the package in its own venv, against the real broker.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../scripts/suite-lib.sh
. "$here/../scripts/suite-lib.sh"
suite_paths
venv="$cache/py-bench-venv"
# Share target/ with the other builds: honour CARGO_BUILD_TARGET when the caller sets it.
tdir="$target/${CARGO_BUILD_TARGET:+$CARGO_BUILD_TARGET/}"
locked_venv "$venv" "$here/requirements-bench.txt"
nice -n 10 "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$here"
if [[ -z "${PROTONPASS_BROKER_BIN:-}" ]]; then
  (cd "$root" && cargo build --quiet --locked --release -p protonpass-broker)
  export PROTONPASS_BROKER_BIN="${tdir}release/protonpass-broker"
fi
"$venv/bin/python" "$here/bench/bench.py"
