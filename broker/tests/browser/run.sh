#!/usr/bin/env bash
# The dashboard's browser tests: headless Debian Chromium driven by
# playwright-core (no browser download) against the real broker binary.
# Idempotent; exits non-zero when anything fails.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
chromium="${CHROMIUM_PATH:-/usr/bin/chromium}"

if [ ! -x "$chromium" ]; then
  echo "Chromium is not installed at $chromium." >&2
  echo "Install Debian's package:  apt-get install -y chromium   (or set CHROMIUM_PATH)" >&2
  exit 1
fi

cd "$root"
# `make test` passes the broker it built; alone, build it here.
if [ -z "${PROTONPASS_BROKER_BIN:-}" ] || [ ! -x "$PROTONPASS_BROKER_BIN" ]; then
  cargo build --locked -p protonpass-broker
fi

cd "$here"
if [ ! -d node_modules/playwright-core ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund
fi
exec node --test --test-concurrency=1 dashboard.test.mjs passkey.test.mjs
