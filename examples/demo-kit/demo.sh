# What the example scripts share (sourced by examples/*/run.sh, which then set
# `broker_bin` and `py` with `suite_paths`): stopping with the list of what is missing (from
# scripts/suite-lib.sh), a work directory removed on exit with the background
# processes, the first line a background process prints, and starting the
# broker.

# shellcheck source=../../scripts/suite-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/suite-lib.sh"

# A fresh directory in `work`, and `pids`, the background processes to stop:
# on exit they are killed and waited for, and `work` is removed.
# Usage: make_work NAME
make_work() {
  work="$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")"
  pids=()
  trap demo_cleanup EXIT
  trap 'exit 130' INT TERM
}
demo_cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
  exit "$rc"
}

# The first line a background process writes to FILE (within 30 s, while PID lives).
# Usage: first_line FILE PID
first_line() {
  local i
  for ((i = 0; i < 600; i++)); do
    if [[ -s "$1" ]] && IFS= read -r line <"$1" && [[ -n "$line" ]]; then printf '%s\n' "$line"; return 0; fi
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# One field of a JSON object. Usage: json TEXT FIELD
json() { "$py" -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

# Start `protonpass-broker serve` on a free loopback port with its data in
# `data` (global options in the arguments); sets `issuer`.
# Usage: start_broker [GLOBAL OPTION...]
start_broker() {
  "$broker_bin" --data "$data" "$@" serve --addr 127.0.0.1:0 >"$work/broker.out" 2>"$work/broker.log" &
  pids+=("$!")
  local first
  first="$(first_line "$work/broker.out" "$!")" || { echo "the broker did not start:" >&2; cat "$work/broker.log" >&2; exit 1; }
  issuer="$(json "$first" issuer)"
}
