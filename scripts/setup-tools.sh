#!/usr/bin/env bash
# Install what `make test` needs and a fresh machine lacks, or stop at once
# with the exact command to run. Idempotent: on a machine that has everything
# it only checks. Needs: cargo-fuzz and cargo-deny (crates.io), Node.js and npm, Debian's
# Chromium (the dashboard's browser tests), PostgreSQL's server binaries (the
# e2e suite against PostgreSQL), nginx (the round-robin proxy in front of two
# replicas in that suite), and Python's venv module.
#   scripts/setup-tools.sh          everything `make test` needs
#   scripts/setup-tools.sh demo     only what `make demo` needs (Node.js, npm, venv)
#   scripts/setup-tools.sh postgres only what `make test-postgres` needs (PostgreSQL, nginx)
#   PROTONPASS_NO_INSTALL=1         only check, never install
set -euo pipefail
mode="${1:-test}"

apt_missing=()
if [ "$mode" != postgres ]; then
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || apt_missing+=(nodejs npm)
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || apt_missing+=(python3-venv)
fi
need_fuzz=0
need_deny=0
if [ "$mode" = test ] || [ "$mode" = postgres ]; then
  # The server binaries for `make test-postgres`'s throwaway cluster, and
  # nginx for its replica tests (broker/tests/e2e/replicas.rs).
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || apt_missing+=(postgresql)
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || apt_missing+=(nginx)
fi
if [ "$mode" = test ]; then
  [ -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ] || apt_missing+=(chromium)
  cargo fuzz --version >/dev/null 2>&1 || need_fuzz=1
  cargo deny --version >/dev/null 2>&1 || need_deny=1
fi

can_install=0
if [ "${PROTONPASS_NO_INSTALL:-0}" != 1 ] && [ "$(id -u)" = 0 ]; then can_install=1; fi

if [ ${#apt_missing[@]} -gt 0 ]; then
  if [ $can_install = 1 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian packages: ${apt_missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_missing[@]}" >/dev/null
  else
    echo "setup: missing ${apt_missing[*]}. Run:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${apt_missing[*]}" >&2
    exit 1
  fi
fi
if [ $need_fuzz = 1 ]; then
  if [ "${PROTONPASS_NO_INSTALL:-0}" != 1 ]; then
    echo "setup: installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    cargo install --quiet cargo-fuzz --locked
  else
    echo "setup: cargo-fuzz is missing. Run:  cargo install cargo-fuzz --locked" >&2
    exit 1
  fi
fi
if [ $need_deny = 1 ]; then
  if [ "${PROTONPASS_NO_INSTALL:-0}" != 1 ]; then
    echo "setup: installing cargo-deny (cargo install cargo-deny --locked --version 0.20.2)"
    cargo install --quiet cargo-deny --locked --version 0.20.2
  else
    echo "setup: cargo-deny is missing. Run:  cargo install cargo-deny --locked --version 0.20.2" >&2
    exit 1
  fi
fi
if [ "$mode" = postgres ]; then
  echo "setup: $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1), $( (command -v nginx || echo /usr/sbin/nginx) | head -n 1)"
elif [ "$mode" = test ]; then
  echo "setup: cargo-deny $(cargo deny --version 2>/dev/null | awk '{print $2}')"
  echo "setup: cargo-fuzz $(cargo fuzz --version 2>/dev/null | awk '{print $2}'), node $(node --version), npm $(npm --version), $("${CHROMIUM_PATH:-/usr/bin/chromium}" --version 2>/dev/null | head -n 1)"
else
  echo "setup: node $(node --version), npm $(npm --version)"
fi
