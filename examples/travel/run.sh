#!/usr/bin/env bash
# The travel case study in Python and Node: a fresh broker, the travel API
# (FastAPI + the Python verifier), a LangChain agent in Python, a LangChain.js
# agent and an AutoGPT-style agent in Node (both on trip.mjs, and both run
# the step-up part after their journey), and the Python step-up agent. This script plays the person: it
# approves each device request with `protonpass-broker approve` and each
# step-up with `protonpass-broker stepup approve`, and revokes each agent when
# the story says so.
# Finally it prints the audit log and verifies its hash chain.
#   PROTONPASS_BROKER_BIN  the broker (default ${CARGO_TARGET_DIR:-target}/debug/protonpass-broker)
#   PROTONPASS_CACHE       where bindings-python/run-tests.sh keeps its venv (default ~/.cache/protonpass)
#   TRAVEL_AGENT_MODEL     (optional) a real chat model for the LangChain agent, e.g. openai:gpt-4o-mini
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../demo-kit/demo.sh
. "$here/../demo-kit/demo.sh"
suite_paths
t0=$SECONDS

missing=()
need_broker "$broker_bin"
need_python "$py" langchain_core fastapi uvicorn httpx
need_node_package
report_missing examples/travel/run.sh

make_work travel-demo

data="$work/broker"
chan="$work/owner"
mkdir -p "$chan" "$work/home-py" "$work/home-node" "$work/home-node-lc"
mkdir -p -m 700 "$data"   # the broker refuses a data directory others can read
export PROTONPASS_HOME="$work/home"   # never the user's own grants
person() { printf '[person]    %s\n' "$*"; }
cli() { "$broker_bin" --data "$data" "$@"; }

echo "== The person starts their broker (embedded SQLite, loopback only)"
start_broker --device-interval 1
echo "   broker at $issuer"

echo "== The travel API starts (FastAPI, protected by the Python verifier; follows the revocation feed)"
# Registered as a resource server first, so that it can spend budgets.
port="$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
rs="$(cli --json resource add "http://127.0.0.1:$port/travel")"
rs_id="$(json "$rs" client_id)"
TRAVEL_API_CLIENT_SECRET="$(json "$rs" client_secret)" \
  "$py" "$here/api.py" --issuer "$issuer" --port "$port" --client-id "$rs_id" >"$work/api.out" 2>"$work/api.log" &
pids+=("$!")
apiline="$(first_line "$work/api.out" "$!")" || { echo "the travel API did not start:" >&2; cat "$work/api.log" >&2; exit 1; }
api="$(json "$apiline" url)"
echo "   travel API at $api/travel (audience $api/travel)"

# The person's side: answer what the agents ask for, through the channel directory.
owner_loop() {
  while :; do
    for req in "$chan"/*.req; do
      [[ -e "$req" ]] || continue
      base="${req##*/}"; base="${base%.req}"
      action="${base%%.*}"; arg="${base#*.}"
      mv "$req" "$req.taken"
      case "$action" in
        approve)
          person "sees the code $arg on the approval page and approves it (lifetime 1 day):"
          person "\$ protonpass-broker approve $arg --ttl 1d"
          cli approve "$arg" --ttl 1d | sed 's/^/            /' ;;
        stepup)
          # The request of this agent only, never whichever comes first: a
          # person approves what they read, and so does this script.
          id="$(cli --json stepup list | "$py" -c 'import json,sys
mine = [s["id"] for s in json.load(sys.stdin) if s["agent"] == sys.argv[1]]
print(mine[0] if len(mine) == 1 else "")' "$arg")"
          if [[ -z "$id" ]]; then
            person "finds no single step-up request of $arg, and approves nothing."
            touch "$chan/$base.done"; continue
          fi
          person "is asked by $arg to approve one payment, reads it and approves:"
          cli stepup list | sed 's/^/            /'
          person "\$ protonpass-broker stepup approve $id"
          cli stepup approve "$id" | sed 's/^/            /' ;;
        revoke)
          person "has seen enough of $arg and cuts it off:"
          person "\$ protonpass-broker revoke --agent $arg"
          cli revoke --agent "$arg" | sed 's/^/            /' ;;
      esac
      touch "$chan/$base.done"
    done
    sleep 0.05
  done
}
owner_loop &
pids+=("$!")

echo
echo "== 1. A LangChain agent in Python (scripted chat model, the package's LangChain tool)"
TRAVEL_DEMO_CHANNEL="$chan" timeout 120 "$py" "$here/agent_langchain.py" \
  --broker "$issuer" --api "$api" --name travel-langchain --home "$work/home-py"

# The owner's grant for an agent's step-up part: payments under 100 EUR a
# call and 600 EUR a day; prints its enrollment code.
stepup_grant() {
  person "grants $1 payments under 100 EUR a call and 600 EUR a day:" >&2
  person "\$ protonpass-broker grant create --agent $1 --scope payment:execute:under-100 --budget payment:execute=600/EUR/day ..." >&2
  cli --json grant create --agent "$1" --scope payment:execute:under-100 \
    --audience "$api/travel" --budget payment:execute=600/EUR/day |
    "$py" -c 'import json,sys; print(json.load(sys.stdin)["enrollment_code"])'
}

echo
echo "== 2. A LangChain.js agent in Node (scripted chat model, the package's LangChain.js tool; then step-up)"
code="$(stepup_grant travel-langchain-js-pay)"
TRAVEL_DEMO_CHANNEL="$chan" timeout 120 node "$here/agent_langchain.mjs" \
  --broker "$issuer" --api "$api" --name travel-langchain-js --home "$work/home-node-lc" --stepup-code "$code"

echo
echo "== 3. An AutoGPT-style agent in Node (plan, act, observe; session.fetch; then step-up)"
code="$(stepup_grant travel-autogpt-pay)"
TRAVEL_DEMO_CHANNEL="$chan" timeout 120 node "$here/agent_autogpt.mjs" \
  --broker "$issuer" --api "$api" --name travel-autogpt --home "$work/home-node" --stepup-code "$code"

echo
echo "== 4. Step-up: a payment above the token's limit, approved once by the owner (Python, httpx)"
person "grants travel-stepup payments under 100 EUR a call and 600 EUR a day:"
person "\$ protonpass-broker grant create --agent travel-stepup --scope payment:execute:under-100 --budget payment:execute=600/EUR/day ..."
grant="$(cli --json grant create --agent travel-stepup --scope payment:execute:under-100 \
  --audience "$api/travel" --budget payment:execute=600/EUR/day)"
code="$(json "$grant" enrollment_code)"
mkdir -p "$work/home-stepup"
TRAVEL_DEMO_CHANNEL="$chan" timeout 120 "$py" "$here/agent_stepup.py" \
  --broker "$issuer" --api "$api" --code "$code" --home "$work/home-stepup"

echo
echo "== The audit log (protonpass-broker audit tail)"
cli audit tail
echo
echo "== Its hash chain (protonpass-broker audit verify)"
cli audit verify
echo
echo "The travel demo completed in $((SECONDS - t0)) s: asked, approved, granted, called, refused above the limit, stepped up once, budget spent, revoked, audited."
