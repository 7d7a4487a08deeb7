#!/usr/bin/env bash
# Broker throughput (refresh and token exchange at 1, 16, 64 clients) next to
# node-oidc-provider doing DPoP refresh grants on the same machine.
# BENCH_SECONDS (default 5) per run, BENCH_LEVELS (default 1,16,64).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
cargo build --release --locked -p protonpass-broker --examples
(cd broker/bench && npm ci --no-audit --no-fund --silent)
exec "$target/release/examples/bench" \
    --broker "$target/release/protonpass-broker" \
    --oidc broker/bench/oidc-provider.mjs \
    --seconds "${BENCH_SECONDS:-5}" --levels "${BENCH_LEVELS:-1,16,64}"
