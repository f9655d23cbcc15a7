"""The installed Qt binding must not lose references when Python emits signals.

PySide6 6.12.0 did (see app/ui/qt_compat.py): Python 3.11 then aborts, at the
latest at exit. The check runs in a fresh interpreter so that a broken binding
fails this test instead of crashing the whole test session at its end.
"""

from __future__ import annotations

import subprocess
import sys

from app.ui.shell.qt_compat import emit_keeps_refcounts

SCRIPT = """
from PySide6 import QtCore

class Emitter(QtCore.QObject):
    changed = QtCore.Signal(bool)

e = Emitter()
e.changed.connect(lambda on: None)
for i in range(5000):
    e.changed.emit(i % 2 == 0)
print("emitted")
"""


def test_many_emits_then_a_clean_exit():
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0 and "emitted" in proc.stdout, proc.stderr[-2000:]
    assert "Fatal Python error" not in proc.stderr


def test_probe_agrees_the_binding_is_sound():
    assert emit_keeps_refcounts()
