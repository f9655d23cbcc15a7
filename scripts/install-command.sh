#!/usr/bin/env bash
# Put `priorsync` on the PATH: a small wrapper in ~/.local/bin that runs this checkout's
# .venv/bin/priorsync (or the program given as $1), then say how to call it.
#
#   bash scripts/install-command.sh [PROGRAM]
#
# Called by scripts/demo.sh and scripts/test.sh after the venv is set up. It never
# replaces a `priorsync` in ~/.local/bin that it did not write, never fails the caller
# (a read-only HOME only gets a message), and PRIORSYNC_NO_COMMAND=1 skips it.
set -uo pipefail
cd "$(dirname "$0")/.."
TARGET=$(realpath -m "${1:-.venv/bin/priorsync}")
BIN_DIR="${PRIORSYNC_BIN_DIR:-$HOME/.local/bin}"
WRAPPER="$BIN_DIR/priorsync"
MARK="# written by PriorSync's scripts/install-command.sh"

if [ "${PRIORSYNC_NO_COMMAND:-}" = "1" ]; then
  exit 0
fi
if [ ! -x "$TARGET" ]; then
  echo "install-command: $TARGET is not an executable program; nothing installed" >&2
  exit 0
fi
if [ -e "$WRAPPER" ] && ! grep -qF "$MARK" "$WRAPPER" 2>/dev/null; then
  echo "A priorsync that PriorSync did not install is already at $WRAPPER; left as it is."
  echo "This checkout's command: $TARGET"
  exit 0
fi
tmp="$WRAPPER.tmp.$$"
if ! { mkdir -p "$BIN_DIR" &&
  printf '#!/bin/sh\n%s\nexec %q "$@"\n' "$MARK" "$TARGET" >"$tmp" &&
  chmod 755 "$tmp" && mv -f "$tmp" "$WRAPPER"; } 2>/dev/null; then
  rm -f "$tmp" 2>/dev/null
  echo "Could not write $WRAPPER; call PriorSync as $TARGET"
  exit 0
fi
case ":$PATH:" in
  *":$BIN_DIR:"*)
    echo "priorsync is on your PATH ($WRAPPER -> $TARGET): try \`priorsync doctor\`" ;;
  *)
    echo "priorsync is installed as $WRAPPER, but $BIN_DIR is not on this shell's PATH."
    echo "Run:  export PATH=\"$BIN_DIR:\$PATH\"   (add it to ~/.bashrc to keep it),"
    echo "or call it as $TARGET" ;;
esac
exit 0
