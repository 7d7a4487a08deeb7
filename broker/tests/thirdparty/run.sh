#!/bin/sh
# Third-party client check: authlib + joserfc drive the broker (device grant,
# DPoP, refresh, revocation). Installs pinned packages into a cached venv.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-${PROTONPASS_BROKER_BIN:-${CARGO_TARGET_DIR:-$here/../../../target}/debug/protonpass-broker}}
venv=${PROTONPASS_THIRDPARTY_VENV:-${PROTONPASS_CACHE:-$HOME/.cache/protonpass}/thirdparty-venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$here/../../../scripts/pip-locked.sh" "$venv/bin/python" "$here/requirements.txt"
exec "$venv/bin/python" "$here/authlib_flow.py" "$bin"
