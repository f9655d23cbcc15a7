#!/usr/bin/env bash
# Build the standalone app once and run its tests (tests/packaging, marker `frozen`)
# against that build; CI runs this after scripts/test.sh (see .ci/run).
#
#   bash packaging/test-bundle.sh [PYTEST ARGS]
#
# Uses the venv scripts/test.sh sets up ($PRIORSYNC_BUILD_VENV, default .venv).
# Prints the bundle's size and how long the build and the tests took.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${PRIORSYNC_BUILD_VENV:-.venv}

start=$(date +%s)
bash packaging/build.sh
built=$(date +%s)
size=$(du -sm dist/priorsync | cut -f1)

# The tests' caches go to a throw-away folder, as in scripts/test.sh.
export PRIORSYNC_CACHE_DIR="${PRIORSYNC_CACHE_DIR:-$(mktemp -d)}"
status=0
PRIORSYNC_TEST_FROZEN=1 PRIORSYNC_FROZEN_DIR=dist/priorsync \
  "$VENV/bin/python" -m pytest tests/packaging "$@" || status=$?
echo "bundle: ${size} MB, built in $((built - start)) s, tests took $(($(date +%s) - built)) s"
exit $status
