#!/usr/bin/env bash
# Agents through the broker's credential-injecting gateway: a fresh broker, a
# stand-in code host API that accepts only its own key, the owner adding it as
# an upstream (`upstream add --secret-stdin`) and creating pre-authorized
# grants, then a LangChain agent (Python) and an AutoGPT-style agent (Node)
# that call the API by its real URLs. Checks that every call reached the API
# with the owner's key and never with an agent's token, that the refused call
# never reached it, and that the gateway audited each call.
#   PROTONPASS_BROKER_BIN  the broker (default ${CARGO_TARGET_DIR:-target}/debug/protonpass-broker)
#   PROTONPASS_CACHE       where bindings-python/run-tests.sh keeps its venv (default ~/.cache/protonpass)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../demo-kit/demo.sh
. "$here/../demo-kit/demo.sh"
suite_paths

missing=()
need_broker "$broker_bin"
need_python "$py" langchain_core
need_node_package
report_missing examples/gateway/run.sh

make_work gateway-demo
data="$work/broker"
mkdir -p -m 700 "$data"
export PROTONPASS_HOME="$work/home"
cli() { "$broker_bin" --data "$data" "$@"; }

key="ghp_demo$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
echo "== A code host API that accepts only its own key"
"$py" "$here/upstream.py" --key "$key" --log "$work/calls.jsonl" >"$work/up.out" 2>"$work/up.log" &
pids+=("$!")
up="$(json "$(first_line "$work/up.out" "$!")" url)" || { cat "$work/up.log" >&2; exit 1; }
echo "   listening at $up (standing in for https://api.code-host.example)"

echo "== The owner's broker"
start_broker
echo "   broker at $issuer"

echo "== The owner adds the API as an upstream; the key goes on standard input, into the vault"
{
  cat <<TOML
name = "code-host"
base_url = "$up"
audience = "https://api.code-host.example"
allow_private_network = true   # the stand-in listens on loopback
credential = { header = "Authorization", value = "Bearer {secret}" }
TOML
  cat "$here/code-host-rules.toml"
} >"$work/code-host.toml"
printf '%s\n' "$key" | cli upstream add "$work/code-host.toml" --secret-stdin
code() { cli --json grant create --agent "$1" --scope "repo:read:proj repo:write:proj" \
  --audience https://api.code-host.example | "$py" -c 'import json,sys; print(json.load(sys.stdin)["enrollment_code"])'; }

echo
echo "== 1. A LangChain agent in Python (the package's LangChain tool, real URLs)"
timeout 120 "$py" "$here/agent_langchain.py" --broker "$issuer" --code "$(code repo-summariser)"

echo
echo "== 2. An AutoGPT-style agent in Node (session.fetch, real URLs)"
timeout 120 node "$here/agent_autogpt.mjs" --broker "$issuer" --code "$(code repo-triager)"

echo
echo "== What the API received"
"$py" - "$work/calls.jsonl" <<'PY'
import json, sys
calls = [json.loads(l) for l in open(sys.argv[1])]
for c in calls:
    print(f"   {c['method']} {c['path']}  key {'ok' if c['key_ok'] else 'WRONG'}")
assert len(calls) == 4, f"expected 4 calls to reach the API (the refused ones must not): {calls}"
assert all(c["key_ok"] and not c["agent_token"] and not c["dpop_header"] for c in calls), calls
assert not any("payroll" in c["path"] for c in calls), calls
print("   every call carried the owner's key and no agent token; the refused calls never arrived")
PY
echo
echo "== The gateway's audit records"
sleep 0.5   # written just after each response has been streamed
cli audit tail --lines 100 | grep ' gateway ' || true
n="$(cli audit tail --lines 100 | grep -c ' gateway ' || true)"
((n >= 6)) || { echo "expected at least 6 gateway audit records, saw $n" >&2; exit 1; }
cli audit verify
echo
echo "The gateway demo completed: two agents used the API by its real URLs; the key never left the broker."
