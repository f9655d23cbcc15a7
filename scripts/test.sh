#!/usr/bin/env bash
# Set up a virtual environment and run every check: lint, the import contracts, the types, the tests.
# This is the README's test command and what CI (.ci/run) calls.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh --tests
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test,train]"
bash scripts/install-command.sh .venv/bin/priorsync

.venv/bin/ruff check app tests benchmarks packaging
.venv/bin/ruff format --check app tests benchmarks packaging
.venv/bin/lint-imports
# Types: strict on app.core and app.io, checked everywhere else ([tool.mypy] in pyproject.toml).
.venv/bin/mypy
# Caches go to a throw-away folder so tests never touch the user's cache.
export PRIORSYNC_CACHE_DIR="${PRIORSYNC_CACHE_DIR:-$(mktemp -d)}"
exec .venv/bin/python -m pytest "$@"
