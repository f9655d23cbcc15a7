#!/usr/bin/env bash
# Build the standalone Linux app folder dist/priorsync/ (PyInstaller, one folder).
#
#   bash packaging/build.sh
#
# Uses the venv in $PRIORSYNC_BUILD_VENV (default .venv, the one scripts/test.sh
# makes), creating it when missing, and installs the app with its `package` extra
# (PyInstaller). Training-only packages in that venv (torch, captum) are excluded
# by packaging/priorsync.spec, so the dev venv builds the same folder as a clean one.
# The folder needs no Python on the target machine, only the Debian libraries Qt
# links (scripts/system-deps.sh installs them).
#
# PRIORSYNC_BUNDLE_FLAVOUR=cpu (default, what CI builds) leaves out onnxruntime's
# CUDA and TensorRT providers (the model then runs on the CPU everywhere);
# PRIORSYNC_BUNDLE_FLAVOUR=gpu keeps them (packaging/bundle_trim.py).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${PRIORSYNC_BUILD_VENV:-.venv}
PY=${PYTHON:-python3}
DIST=dist
# PyInstaller's work folder (its analysis, reused when the code and the venv are
# unchanged); CI may point PRIORSYNC_BUNDLE_WORK at a folder it keeps between runs.
WORK=${PRIORSYNC_BUNDLE_WORK:-build/pyinstaller}

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e ".[package]"
if ! "$VENV/bin/python" -c "import PyInstaller" 2>/dev/null; then
  echo "PyInstaller is not installed in $VENV: pyproject.toml needs the extra" \
    "package = [\"pyinstaller>=6.10\"]" >&2
  exit 1
fi

# --noconfirm: replace a previous dist/priorsync without asking.
"$VENV/bin/python" -m PyInstaller --noconfirm --distpath "$DIST" --workpath "$WORK" \
  packaging/priorsync.spec

APP="$DIST/priorsync"
# Libraries built with debugging data (this machine's libpython, hnswlib, the JPEG
# codecs) keep their code and symbols, not the DWARF sections.
"$VENV/bin/python" packaging/bundle_trim.py --strip-debug "$APP"
# Beside the binary, for installing into a desktop menu (see the lines printed below).
cp packaging/priorsync.desktop "$APP/priorsync.desktop"
cp app/resources/icons/priorsync.svg "$APP/priorsync.svg"

# A frozen app that cannot even print its version is not worth shipping.
version=$("$APP/priorsync" --version)

echo
echo "Built $version (${PRIORSYNC_BUNDLE_FLAVOUR:-cpu} flavour) in $APP: $(du -sh "$APP" | cut -f1)"
echo "Run it:      $APP/priorsync demo"
echo "Install it for this user (menu entry, opens DICOM files):"
echo "  ln -sf \"$PWD/$APP/priorsync\" ~/.local/bin/priorsync"
echo "  install -Dm644 $APP/priorsync.desktop ~/.local/share/applications/priorsync.desktop"
echo "  install -Dm644 $APP/priorsync.svg ~/.local/share/icons/hicolor/scalable/apps/priorsync.svg"
