#!/usr/bin/env bash
# The gateway's overhead against a direct call to the same local upstream and
# against nginx (Debian's package) proxying it in the same run, p50 and p99,
# and proxied requests per second with 64 concurrent agents.
# Installs nginx with apt-get when it is missing and this runs as root;
# otherwise it says the command and runs without nginx.
#   BENCH_SECONDS (default 5), BENCH_SAMPLES (default 3000), BENCH_AGENTS (default 64)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
nginx=$(command -v nginx || true)
[[ -z "$nginx" && -x /usr/sbin/nginx ]] && nginx=/usr/sbin/nginx
if [[ -z "$nginx" ]]; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    echo "gateway bench: installing nginx (apt-get install nginx-light)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null ||
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null || true
    nginx=$(command -v nginx || true)
    [[ -z "$nginx" && -x /usr/sbin/nginx ]] && nginx=/usr/sbin/nginx
  fi
  [[ -n "$nginx" ]] || echo "gateway bench: no nginx; for the comparison run: sudo apt-get install nginx-light" >&2
fi
cargo build --release --locked -p protonpass-broker --bins --examples
exec "$target/release/examples/gateway_bench" \
    --broker "$target/release/protonpass-broker" --nginx "$nginx" \
    --samples "${BENCH_SAMPLES:-3000}" --seconds "${BENCH_SECONDS:-5}" --agents "${BENCH_AGENTS:-64}"
