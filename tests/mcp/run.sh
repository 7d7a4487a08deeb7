#!/usr/bin/env bash
# MCP end to end: the example MCP server (examples/mcp) protected by the broker's
# tokens, and agents reaching it through the official SDKs, in Python and Node.
# The two Python lines each get their own venv, as users have them today:
#   mcp1  mcp 1.x (FastMCP, streamable_http_client on httpx) + langchain-mcp-adapters 0.3
#   mcp2  mcp 2.x (MCPServer, streamable_http_client on httpx2)
# and Node runs @modelcontextprotocol/sdk + @langchain/mcp-adapters (examples/mcp/package.json).
#   PROTONPASS_BROKER_BIN  the broker (default ${CARGO_TARGET_DIR:-target}/debug/protonpass-broker)
#   PROTONPASS_CACHE       where the venvs live (default ~/.cache/protonpass)
#   PYTEST_ARGS            extra pytest arguments
# `run.sh bench` runs the benchmark instead: tests/mcp/bench.py in both venvs, then
# tests/mcp/bench_node.py (the Node SDK's client and server, bench_client.mjs and
# bench_server.mjs).
# Needs the Node package built in bindings-node (bash bindings-node/run-tests.sh, or npm ci there).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../../scripts/suite-lib.sh
. "$here/../../scripts/suite-lib.sh"
suite_paths
export PROTONPASS_BROKER_BIN="$broker_bin"
[[ -x "$PROTONPASS_BROKER_BIN" ]] || (cd "$root" && nice -n 10 cargo build --quiet --locked -p protonpass-broker)

for line in mcp1 mcp2; do
  echo "== mcp: the $line environment (tests/mcp/requirements-$line.lock)"
  locked_venv "$cache/$line-venv" "$here/requirements-$line.txt"
done

# The package, built once (maturin, the workspace's debug artifacts) and installed in both.
echo "== mcp: pip wheel ./bindings-python"
wheels="$(mktemp -d)"
trap 'rm -rf "$wheels"' EXIT
MATURIN_PEP517_ARGS="${MATURIN_PEP517_ARGS:---profile dev}" nice -n 10 \
  "$cache/mcp1-venv/bin/python" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$wheels" "$root/bindings-python"
for line in mcp1 mcp2; do
  "$cache/$line-venv/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$wheels"/*.whl
done

# Node: the SDKs at the versions of examples/mcp/package-lock.json, next to the
# example; the package itself comes from bindings-node (examples/travel/node-package.cjs).
if ! (cd "$root/bindings-node" && node -e 'require("./index.js")') >/dev/null 2>&1; then
  echo "tests/mcp/run.sh: the Node package is not built in bindings-node (bash bindings-node/run-tests.sh, or npm ci there)" >&2
  exit 2
fi
ex="$root/examples/mcp"
want="$(sha256sum "$ex/package-lock.json" | cut -d' ' -f1)"
if [[ "$(cat "$ex/node_modules/.lock.sha256" 2>/dev/null)" != "$want" ]]; then
  echo "== mcp: npm ci (examples/mcp)"
  (cd "$ex" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" >"$ex/node_modules/.lock.sha256"
fi

if [[ "${1:-}" == bench ]]; then
  for line in mcp1 mcp2; do
    (cd "$here" && "$cache/$line-venv/bin/python" bench.py)
  done
  # The same interval with @modelcontextprotocol/sdk against the Node server.
  # Its broker helpers come from the Python test kit, which imports the
  # package: any of the two environments has it.
  (cd "$here" && "$cache/mcp2-venv/bin/python" bench_node.py)
  exit 0
fi

rc=0
for line in mcp1 mcp2; do
  echo "== mcp: pytest ($line)"
  MCP_LINE="$line" run_pytest "tests/mcp/run.sh ($line)" "$cache/$line-venv/bin/python" "$here" -p no:cacheprovider || rc=$?
done
exit $rc
