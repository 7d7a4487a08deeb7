# What the suites' run scripts share (sourced by bindings-python/run-*.sh,
# tests/*/run.sh and examples/demo-kit/demo.sh): where things are, a venv
# holding a locked set of packages, pytest run so that a suite which collects no test fails, and the
# report of what a script needs and does not find.

# The places every suite finds its things at, set for the caller: `root` (the
# repository), `cache` (PROTONPASS_CACHE, default ~/.cache/protonpass), `py`
# (the Python of the venv bindings-python/run-tests.sh keeps there), `target`
# (CARGO_TARGET_DIR, default target/) and `broker_bin` (PROTONPASS_BROKER_BIN,
# default the debug build there).
# Usage: suite_paths
suite_paths() {
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  cache="${PROTONPASS_CACHE:-$HOME/.cache/protonpass}"
  py="$cache/py-venv/bin/python"
  target="${CARGO_TARGET_DIR:-$root/target}"
  broker_bin="${PROTONPASS_BROKER_BIN:-$target/debug/protonpass-broker}"
}

# What a script needs, each added to the caller's `missing` array when absent:
# the broker binary BIN; the Python package with MODULE... importable by PY;
# the Node package (installed, or built in bindings-node).
# Usage: need_broker BIN; need_python PY MODULE...; need_node_package
need_broker() {
  [[ -x "$1" ]] ||
    missing+=("the broker binary $1 (cargo build -p protonpass-broker, or set PROTONPASS_BROKER_BIN)")
}
need_python() {
  local py="$1" modules
  shift
  modules="$(IFS=,; echo "protonpass_agent,$*")"
  "$py" -c "import $modules" >/dev/null 2>&1 ||
    missing+=("the Python package and ${*} in $py (bash bindings-python/run-tests.sh installs them)")
}
need_node_package() {
  (cd "$(dirname "${BASH_SOURCE[0]}")/../examples/travel" && node -e 'require(require("./node-package.cjs"))') >/dev/null 2>&1 ||
    missing+=("the Node package (npm install ./bindings-node, or bash bindings-node/run-tests.sh)")
}

# Exit 2 listing what the caller put in its `missing` array, if anything.
# Usage: report_missing path/to/run.sh
report_missing() {
  ((${#missing[@]})) || return 0
  echo "$1: cannot run, missing:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 2
}

# A venv at VENV (made again when its Python does not run) holding the lock
# of REQUIREMENTS.txt (scripts/pip-locked.sh: installed only when it changed).
# Usage: locked_venv VENV REQUIREMENTS.txt
locked_venv() {
  if ! "$1/bin/python" -c 'import sys' >/dev/null 2>&1; then
    rm -rf "$1"
    mkdir -p "$(dirname "$1")"
    python3 -m venv "$1"
  fi
  "$(dirname "${BASH_SOURCE[0]}")/pip-locked.sh" "$1/bin/python" "$2"
}

# pytest with PYTHON in DIR (with PYTEST_ARGS, and ARG... first); its status,
# where "collected no test" (5) is a failure (1) named after WHO.
# Usage: run_pytest WHO PYTHON DIR [ARG...]
run_pytest() {
  local who="$1" py="$2" dir="$3" rc
  shift 3
  set +e
  # shellcheck disable=SC2086 # PYTEST_ARGS is a list of words
  (cd "$dir" && "$py" -m pytest "$@" ${PYTEST_ARGS:-})
  rc=$?
  set -e
  if [[ $rc -eq 5 ]]; then
    echo "$who: pytest collected no test" >&2
    rc=1
  fi
  return "$rc"
}
