#!/usr/bin/env bash
# Set up a virtual environment and start PriorSync on the demo patient.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
bash scripts/install-command.sh .venv/bin/priorsync
exec .venv/bin/priorsync demo "$@"
