#!/usr/bin/env bash
# `make test`: every suite in order, each timed; stops at the first failure
# and prints the wall time of every suite that ran.
#   scripts/run-suites.sh SUITE...   (make targets)
set -uo pipefail
names=() times=() results=()
start_all=$(date +%s)
report() {
  echo
  echo "make test: wall time per suite"
  for i in "${!names[@]}"; do
    printf '  %-18s %4ss  %s\n' "${names[$i]}" "${times[$i]}" "${results[$i]}"
  done
  printf '  %-18s %4ss\n' "total" "$(( $(date +%s) - start_all ))"
}
for suite in "$@"; do
  echo "==== make $suite"
  t0=$(date +%s)
  make --no-print-directory "$suite"
  rc=$?
  names+=("$suite") times+=("$(( $(date +%s) - t0 ))")
  if [ $rc -ne 0 ]; then
    results+=("FAILED (exit $rc)")
    report
    echo "make test: $suite failed" >&2
    exit $rc
  fi
  results+=("passed")
done
report
echo "make test: all suites passed"
