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
dbs="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs"
if timeout 90 cargo deny --log-level error fetch db >/dev/null 2>&1; then
  cargo deny --log-level error --offline check --hide-inclusion-graph advisories
  echo "deny: advisories ok (the RustSec database, fetched now)"
elif compgen -G "$dbs/*/crates" >/dev/null; then
  cargo deny --log-level error --offline check --hide-inclusion-graph advisories
  echo "deny: advisories ok against the copy of the RustSec database fetched before (it could not be updated now)"
else
  echo "deny: advisories NOT checked: the RustSec advisory database cannot be fetched from this machine and no earlier copy exists in $dbs; run 'cargo deny check advisories' where it can be fetched"
fi
