#!/usr/bin/env bash
# Cross-language end-to-end tests: a token from the Python SDK is accepted by
# the Node and Rust verifiers, one from the Node SDK by the Python and Rust
# verifiers, and a revocation from the broker's CLI reaches every running
# verifier (Python, Node, Rust), each its own process following the feed.
# Also the AutoGPT plugin adapter (examples/travel/autogpt_plugin), loaded and
# called the way AutoGPT loads and calls plugins.
#   PROTONPASS_BROKER_BIN  the broker (default ${CARGO_TARGET_DIR:-target}/debug/protonpass-broker)
#   PROTONPASS_CACHE       where bindings-python/run-tests.sh keeps its venv (default ~/.cache/protonpass)
#   PYTEST_ARGS            extra pytest arguments
# Needs the Python package (bash bindings-python/run-tests.sh) and the Node
# package (npm install ./bindings-node, or bash bindings-node/run-tests.sh).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../../scripts/suite-lib.sh
. "$here/../../scripts/suite-lib.sh"
suite_paths
export PROTONPASS_BROKER_BIN="$broker_bin"

missing=()
need_broker "$PROTONPASS_BROKER_BIN"
need_python "$py" fastapi uvicorn httpx pytest pytest_timeout
need_node_package
report_missing tests/cross/run.sh

# The Rust verifier: a small axum server over the core's Verifier (its own
# workspace, built into the shared target directory).
echo "== cross: cargo build (tests/cross/rust-verifier)"
# It starts from the workspace's Cargo.lock, so it builds exactly the versions
# the workspace locked (cargo only drops what it does not use).
cp "$root/Cargo.lock" "$here/rust-verifier/Cargo.lock"
(cd "$here/rust-verifier" && CARGO_TARGET_DIR="$target" nice -n 10 cargo build --quiet)
export CROSS_VERIFIER_BIN="$target/${CARGO_BUILD_TARGET:+$CARGO_BUILD_TARGET/}debug/cross-verifier"
[[ -x "$CROSS_VERIFIER_BIN" ]] || { echo "tests/cross/run.sh: $CROSS_VERIFIER_BIN was not built" >&2; exit 1; }

# AutoGPT's plugin interface (pure Python), kept apart from the package's venv.
deps="$cache/autogpt-plugin-deps"
echo "== cross: AutoGPT plugin interface (locked) in $deps"
"$root/scripts/pip-locked.sh" "$py" "$here/requirements-autogpt.txt" --target "$deps" --upgrade
export PYTHONPATH="$deps${PYTHONPATH:+:$PYTHONPATH}"

echo "== cross: pytest (Python, Node and Rust verifiers against each other's SDKs)"
run_pytest tests/cross/run.sh "$py" "$here"
