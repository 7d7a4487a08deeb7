#!/usr/bin/env bash
# Node package: install (which builds the addon from source), then the
# node --test suite against the real broker and `tsc --noEmit` on the typed
# sample. Idempotent; exits non-zero on any failure. Called by the root Makefile.
#
#   bash bindings-node/run-tests.sh
#   PROTONPASS_NODE_PROFILE=release bash bindings-node/run-tests.sh   # release addon
#   PROTONPASS_BROKER_BIN=/path/to/protonpass-broker ...               # a given broker
set -euo pipefail
cd "$(dirname "$0")"

# napi builds for an explicit triple; say it for every cargo call so that they
# share target/<triple>/ (BUILD-NOTES).
CARGO_BUILD_TARGET="${CARGO_BUILD_TARGET:-$(rustc -vV | sed -n 's/^host: //p')}"
export CARGO_BUILD_TARGET
# Tests use a debug addon unless told otherwise: it shares the workspace's
# debug artifacts and builds in seconds once they are warm.
export PROTONPASS_NODE_PROFILE="${PROTONPASS_NODE_PROFILE:-debug}"

node scripts/check-version.js

if [[ -z "${PROTONPASS_BROKER_BIN:-}" ]]; then
  nice -n 10 cargo build --locked -p protonpass-broker
  PROTONPASS_BROKER_BIN="$(cargo metadata --format-version 1 --no-deps | node -e \
    'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')/${CARGO_BUILD_TARGET}/debug/protonpass-broker"
  export PROTONPASS_BROKER_BIN
fi
[[ -x "$PROTONPASS_BROKER_BIN" ]] || { echo "no broker binary at $PROTONPASS_BROKER_BIN" >&2; exit 1; }

# npm ci runs the package's install script, which builds the addon.
nice -n 10 npm ci --no-audit --no-fund

node scripts/run-node-tests.js
npx --no-install tsc -p test/types --noEmit
npx --no-install tsc -p test/types/tsconfig.langchain.json --noEmit
# The package as it travels (npm pack into an unrelated project, and the
# folder installed from another project). PROTONPASS_SKIP_PACK_TEST=1 skips it.
if [[ "${PROTONPASS_SKIP_PACK_TEST:-}" != 1 ]]; then
  bash scripts/pack-test.sh
fi
echo "bindings-node: node --test, tsc --noEmit and the pack test passed"
