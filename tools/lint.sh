#!/usr/bin/env bash
# The style and type checks CI runs (`make lint`): ruff's linter, ruff's formatter in check mode, and mypy, all
# configured in pyproject.toml. Every check runs, so one run reports all three; the exit status is non-zero when any
# of them finds something. Tools come from the venv (.venv, or $VENV), as pinned in requirements-dev.lock.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
bin="${VENV:-.venv}/bin"
status=0
run() {
  printf '== %s\n' "$*"
  "$@" || status=1
}
run "$bin/ruff" check .
run "$bin/ruff" format --check .
run "$bin/mypy"
exit "$status"
