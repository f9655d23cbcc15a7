"""The linked cursor's done-when check: the real viewer on the demo patient, a click on its lesion.

Run on an X server (``xvfb-run -a python tests/ui/points/drive_cursor_demo.py OUT.png X,Y,Z``)
with ``X,Y,Z`` the current date's point (LPS mm) to click, e.g. the simulated
lesion's centre. It opens the demo, switches the linked cursor on, waits for
the current date's point pairs, clicks the point in the current's axial view,
waits for the priors' answers, and saves two grabs of the window: ``OUT.png``
(as the reader sees it) and ``OUT-zoom.png`` (each date zoomed on its cursor).
It prints one line per date with its cursor, then quits. Not a test: a
scripted session for the screenshot a person looks at.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import numpy as np  # noqa: E402
from PySide6 import QtCore, QtWidgets  # noqa: E402

from app.core.cursor import plane_position  # noqa: E402
from app.core.state import Camera, Channel  # noqa: E402
from app.ui.shell.application import run_viewer  # noqa: E402
from app.ui.viewer.slice_view_box import InteractionMode  # noqa: E402

OUT = Path(sys.argv[1])
POINT = np.array([float(v) for v in sys.argv[2].split(",")])
ZOOM = 2.5


def drive(window) -> None:
    stage = {"name": "settling", "since": time.monotonic()}
    timer = QtCore.QTimer(window)

    def newest():
        views = list(window.views.values())
        return max(views, key=lambda v: v.state.volume.info.study_date)

    def pairs_ready(current) -> bool:
        pairs = window.linked_cursor.linked.pairs
        others = [v for v in window.views.values() if v is not current]
        return all(pairs.status(current.state.volume, v.state.volume) is not None for v in others)

    def step() -> None:
        if stage["name"] == "settling":
            if len(window.views) >= 3 and window.is_settled():
                window.modes.set_mode(InteractionMode.CROSSHAIR)
                stage.update(name="preparing", since=time.monotonic())
                print("linked cursor on: preparing the point pairs", flush=True)
        elif stage["name"] == "preparing":
            current = newest()
            if pairs_ready(current):
                print(f"pairs ready after {time.monotonic() - stage['since']:.0f} s", flush=True)
                z = current.state.volume.slice_z
                current.state.set_slice(int(np.argmin(np.abs(z - POINT[2]))))
                pos = plane_position(current.state.volume, current.plane, current.cursor, POINT)
                window.linked_cursor.place(current, pos.x_mm, pos.y_mm)
                stage.update(name="answering", since=time.monotonic())
        elif stage["name"] == "answering":
            if window.linked_cursor.linked.is_idle() and time.monotonic() - stage["since"] > 2:
                for view in sorted(
                    window.views.values(), key=lambda v: v.state.volume.info.study_date
                ):
                    mark = view.state.cursor_mark
                    print(
                        f"{view.state.volume.info.study_date}: slice {view.state.slice_index}"
                        f" mark {mark}",
                        flush=True,
                    )
                QtWidgets.QApplication.processEvents()
                window.grab().save(str(OUT))
                zoom_on_cursors(window)
                stage.update(name="zoomed", since=time.monotonic())
        elif stage["name"] == "zoomed" and time.monotonic() - stage["since"] > 1:
            QtWidgets.QApplication.processEvents()
            window.grab().save(str(OUT.with_name(OUT.stem + "-zoom.png")))
            print(f"saved {OUT}", flush=True)
            timer.stop()
            QtWidgets.QApplication.quit()

    timer.timeout.connect(step)
    timer.start(500)


def zoom_on_cursors(window) -> None:
    """Each date zoomed on its own cursor (the camera link off: the dates differ in mm)."""
    window.sync.set_enabled(Channel.CAMERA, False)
    for view in window.views.values():
        mark = view.state.cursor_mark
        if mark is None or mark.point is None:
            continue
        pos = plane_position(view.state.volume, view.plane, view.cursor, np.array(mark.point))
        width, height = view.plane_extent_mm()
        view.state.set_camera(Camera(ZOOM, (pos.x_mm - width / 2, pos.y_mm - height / 2)))


if __name__ == "__main__":
    sys.exit(run_viewer(demo=True, quit_after_s=1500, on_start=drive))
