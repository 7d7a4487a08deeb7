#!/bin/sh
# Third-party client check: authlib + joserfc drive the broker (device grant,
# DPoP, refresh, revocation). Installs authlib into a throw-away venv.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../../../target/debug/protonpass-broker}
venv=${PROTONPASS_THIRDPARTY_VENV:-${TMPDIR:-/tmp}/protonpass-thirdparty-venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q "authlib==1.9.10" "joserfc>=1.6" "requests>=2.31"
exec "$venv/bin/python" "$here/authlib_flow.py" "$bin"
