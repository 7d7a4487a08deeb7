#!/usr/bin/env bash
# Broker throughput (refresh and token exchange at 1, 16, 64 clients) next to
# node-oidc-provider doing DPoP refresh grants on the same machine; then the
# same at the highest level on PostgreSQL with one and two replicas, on a
# throwaway cluster (scripts/pg-cluster.sh), skipped with a message when the
# PostgreSQL server binaries are not installed.
# BENCH_SECONDS (default 5) per run, BENCH_LEVELS (default 1,16,64).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
cargo build --release --locked -p protonpass-broker --examples
(cd broker/bench && npm ci --no-audit --no-fund --silent)
pg=()
export PG_CLUSTER_STATE="$target/bench-pg-cluster"
if url=$(bash scripts/pg-cluster.sh start); then
    trap 'bash scripts/pg-cluster.sh stop' EXIT
    pg=(--pg "$url")
else
    echo "protonpass-broker on PostgreSQL: skipped, no throwaway cluster could be started (reason above)"
fi
# Wall-clock figures on a shared machine move with its load: print it.
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) CPUs)"
"$target/release/examples/bench" \
    --broker "$target/release/protonpass-broker" \
    --oidc broker/bench/oidc-provider.mjs \
    --seconds "${BENCH_SECONDS:-5}" --levels "${BENCH_LEVELS:-1,16,64}" "${pg[@]}"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
