#!/usr/bin/env bash
# Build and install the Python package into a fresh-enough venv, then run its
# tests against the real broker binary. Idempotent: the venv lives in the cache
# and its test dependencies are reinstalled only when requirements-test.txt
# changes; the package itself is rebuilt (incrementally) on every run.
#   PROTONPASS_CACHE     where the venv lives (default ~/.cache/protonpass)
#   PROTONPASS_BROKER_BIN  the broker binary (default: built here)
#   PYTEST_ARGS          extra pytest arguments
#   PROTONPASS_PY_INSTALL_ONLY=1  stop once the package is installed
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../scripts/suite-lib.sh
. "$here/../scripts/suite-lib.sh"
suite_paths
venv="$cache/py-venv"
# Share target/ with the other builds: honour CARGO_BUILD_TARGET when the caller sets it.
tdir="$target/${CARGO_BUILD_TARGET:+$CARGO_BUILD_TARGET/}"

locked_venv "$venv" "$here/requirements-test.txt"

# The package, exactly as a user installs it (maturin as the PEP 517 backend),
# reusing the debug artifacts of the workspace.
echo "== python: pip install ./bindings-python"
MATURIN_PEP517_ARGS="${MATURIN_PEP517_ARGS:---profile dev}" nice -n 10 \
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$here"
# `make demo` only needs the package installed.
[[ "${PROTONPASS_PY_INSTALL_ONLY:-0}" == 1 ]] && exit 0

# The real broker.
if [[ -z "${PROTONPASS_BROKER_BIN:-}" ]]; then
  (cd "$root" && nice -n 10 cargo build --quiet --locked -p protonpass-broker)
  export PROTONPASS_BROKER_BIN="${tdir}debug/protonpass-broker"
fi

echo "== python: ruff, mypy --strict"
(cd "$here" && "$venv/bin/ruff" check python tests bench && "$venv/bin/ruff" format --check python tests bench)
(cd "$here" && "$venv/bin/python" -m mypy python/protonpass_agent)

echo "== python: stub check (mypy.stubtest)"
(cd "$cache" && "$venv/bin/python" -m mypy.stubtest protonpass_agent._native)

# The source distribution too, installed into a fresh venv outside the repository.
if [[ "${PROTONPASS_PY_SDIST:-1}" != 0 ]]; then
  echo "== python: maturin sdist, installed in a fresh venv"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  "$venv/bin/maturin" sdist -m "$here/Cargo.toml" -o "$work/dist" >/dev/null 2>&1
  python3 -m venv "$work/venv"
  (cd "$work" && CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}" \
    MATURIN_PEP517_ARGS="${MATURIN_PEP517_ARGS:---profile dev}" nice -n 10 \
    "$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$work"/dist/*.tar.gz &&
    "$work/venv/bin/python" -c 'import protonpass_agent as p, sys; assert p.Session and p.Verifier; print("sdist install ok:", p.__version__)')
fi

# The same abi3 wheel on the oldest and newest CPython found here.
if [[ "${PROTONPASS_PY_ABI3:-1}" != 0 ]]; then
  pys=()
  for v in 3.9 3.13; do
    for py in "python$v" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v".*/bin/python"$v"; do
      if "$py" -c 'import sys' >/dev/null 2>&1; then pys+=("$py"); break; fi
    done
  done
  if (( ${#pys[@]} > 0 )); then
    echo "== python: abi3 wheel on ${pys[*]}"
    work3="$(mktemp -d)"
    MATURIN_PEP517_ARGS="${MATURIN_PEP517_ARGS:---profile dev}" nice -n 10 \
      "$venv/bin/python" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$work3/wheel" "$here"
    n=0
    for py in "${pys[@]}"; do
      n=$((n + 1))
      "$py" -m venv "$work3/venv$n"
      "$work3/venv$n/bin/python" -m pip install --quiet --disable-pip-version-check "$work3"/wheel/*.whl httpx requests
      "$work3/venv$n/bin/python" "$here/tests/abi3_smoke.py"
    done
    rm -rf "$work3"
  fi
fi

echo "== python: pytest"
# Run from the tests folder so that the installed package, not the source tree, is imported.
run_pytest run-tests.sh "$venv/bin/python" "$here" -p no:cacheprovider
