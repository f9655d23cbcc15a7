"""Run the real viewer on the demo patient and use it like a reader would, then quit.

Used by test_app_subprocess.py in a child process on Xvfb: it scrolls every
viewport back and forth, drags window/level, zooms, pans and syncs, which makes
Python emit thousands of Qt signals (pyqtgraph emits several per repaint).
That workload is what exposed PySide6 6.12.0's reference-counting bug: the
process then aborted at exit. Prints one "DRIVE-OK ..." line when done.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
# The checkout this script lies in, not whichever copy of the app is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from input_events import drag, wheel  # noqa: E402
from PySide6 import QtCore, QtWidgets  # noqa: E402

from app.ui.shell.application import run_viewer  # noqa: E402

NOTCHES = int(sys.argv[1]) if len(sys.argv) > 1 else 150


def drive(window) -> None:
    done = {"started": False}

    def exercise() -> None:
        if done["started"] or not window.is_settled() or len(window.views) < 3:
            return
        done["started"] = True
        Qt = QtCore.Qt
        for view in window.views.values():
            host = view.graphics.viewport()
            centre = host.rect().center()
            for i in range(NOTCHES):
                wheel(host, 1 if (i // 25) % 2 else -1)
            drag(host, centre, centre + QtCore.QPoint(40, 25), Qt.MouseButton.RightButton)
            drag(host, centre, centre + QtCore.QPoint(-30, 10), Qt.MouseButton.LeftButton)
            wheel(host, 2, Qt.KeyboardModifier.ControlModifier)
        window.sync_slices_action.setChecked(True)
        first = window.views[min(window.views)].graphics.viewport()
        for i in range(NOTCHES):
            wheel(first, -1 if i % 2 else 1)
        window.reset_view()
        print(f"DRIVE-OK viewports={len(window.views)} notches={NOTCHES}", flush=True)
        QtWidgets.QApplication.quit()

    window.settled.connect(lambda: QtCore.QTimer.singleShot(200, exercise))


if __name__ == "__main__":
    sys.exit(run_viewer(demo=True, quit_after_s=400, on_start=drive))
