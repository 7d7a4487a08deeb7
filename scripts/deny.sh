#!/usr/bin/env bash
# Supply-chain checks of the Rust dependency graph with cargo-deny (deny.toml):
# licences, banned crates and sources always; security advisories when the
# RustSec advisory database can be fetched (or a copy fetched before exists),
# otherwise a clear message that they were not checked.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo deny --version >/dev/null 2>&1; then
  echo "deny: cargo-deny is missing. Run:  cargo install cargo-deny --locked" >&2
  exit 1
fi
cargo deny --log-level error check --hide-inclusion-graph licenses bans sources
echo "deny: licences, bans and sources ok"
if timeout 90 cargo deny --log-level error fetch db >/dev/null 2>&1; then
  cargo deny --log-level error check --disable-fetch --hide-inclusion-graph advisories
  echo "deny: advisories ok (database fetched now)"
elif cargo deny --log-level error check --disable-fetch --hide-inclusion-graph advisories 2>/dev/null; then
  echo "deny: advisories ok against the copy of the advisory database fetched before (it could not be updated now)"
else
  # Either findings against an old copy, or no copy at all: tell which.
  if cargo deny --log-level error check --disable-fetch --hide-inclusion-graph advisories 2>&1 | grep -q "advisory database"; then
    echo "deny: advisories NOT checked: the RustSec advisory database cannot be reached from this machine and no copy exists; run 'cargo deny check advisories' where it can" >&2
  else
    cargo deny --log-level error check --disable-fetch --hide-inclusion-graph advisories
  fi
fi
