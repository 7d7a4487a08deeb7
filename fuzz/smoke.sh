#!/usr/bin/env bash
# Run each fuzz target for SECONDS (default 20) and print how many inputs it
# executed. Targets: proof_verify, token_verify and scope_parse (the core),
# token_request (the broker's token endpoint request parsing), gateway_rules
# (the gateway's rules files and path normal form), budget_amount (spend
# budgets' amounts, periods and request bodies), client_metadata (RFC 7591
# client registrations and the redirect URI rule), authorization_details
# (step-up requests' RFC 9396 details and binding messages).
# Installs nothing: it needs cargo-fuzz (`cargo install cargo-fuzz --locked`)
# and a C++ compiler for libFuzzer. Works on stable Rust: RUSTC_BOOTSTRAP
# lets cargo-fuzz pass the unstable flags it needs.
#
# New inputs libFuzzer finds go to a temporary folder; the committed seeds in
# corpus/<target>/ are only read (regenerate the core's with
#   cargo test -p protonpass-agent --test protocol -- --ignored write_fuzz_seeds;
# corpus/token_request/ holds small literal files: the Content-Type line, then
# the body).
# A crash leaves its input in fuzz/artifacts/<target>/ and fails this script.
#
# Environment: FUZZ_TARGETS (default: all of them), FUZZ_SANITIZER (default:
# address; `none` builds and runs faster).
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-20}"
targets=(${FUZZ_TARGETS:-proof_verify token_verify scope_parse token_request gateway_rules budget_amount client_metadata authorization_details})
sanitizer="${FUZZ_SANITIZER:-address}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cargo fuzz build --sanitizer "$sanitizer" >&2 \
  || { echo "fuzz build failed" >&2; exit 1; }

summary=()
for t in "${targets[@]}"; do
  mkdir -p "$work/$t" "corpus/$t"
  log="$work/$t.log"
  echo "== $t: ${seconds}s" >&2
  if ! cargo fuzz run --sanitizer "$sanitizer" "$t" "$work/$t" "corpus/$t" -- \
      -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "$t: FAILED (see fuzz/artifacts/$t/)" >&2
    exit 1
  fi
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
  [ -n "$runs" ] || runs="$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)"
  cov="$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 || true)"
  summary+=("$t: ${runs:-?} executions in ${seconds}s (${cov:-cov: ?}, corpus $(ls "$work/$t" | wc -l) new inputs)")
done
printf '%s\n' "${summary[@]}"
