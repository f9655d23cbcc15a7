"""Mouse and key input of a viewport, turned into changes of its :class:`ViewportState`.

pyqtgraph's built-in pan/zoom would change the view range directly and the
state would no longer describe what is on screen, so all of it is replaced.
What a left click or drag does depends on the viewport's
:class:`InteractionMode`: the seam where the linked cursor and measurement
tools plug in (each mode's handler is registered by the viewport; a mode
without a handler cannot be selected).
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui

from app.core.state import ViewportState

__all__ = ["InteractionMode", "PAGE_STEP", "SliceViewBox", "ZOOM_STEP", "handle_key"]

ZOOM_STEP = 1.15  # zoom factor per wheel notch (ctrl+wheel) or +/- key
PAGE_STEP = 10  # slices per Page Up / Page Down


class InteractionMode(StrEnum):
    """What the left mouse button does in a viewport.

    ``NAVIGATE``: a click places the cursor and drives the sync, a drag pans.
    ``CROSSHAIR``: a drag moves the cursor (and the crosshair) continuously.
    ``MEASURE``: reserved for the measurement tools; selectable once a handler
    is registered for it (:meth:`ViewportView.register_mode`).
    """

    NAVIGATE = "navigate"
    CROSSHAIR = "crosshair"
    MEASURE = "measure"


class SliceViewBox(pg.ViewBox):
    """A ViewBox whose mouse input drives a :class:`ViewportState` instead of its own range.

    - wheel: scroll slices (toward the feet when the wheel turns toward the user);
    - ctrl+wheel: zoom;
    - left click: :attr:`clicked_at` (the viewport places its cursor there);
    - left drag: pan (navigate mode) or :attr:`dragged_to` (other modes);
    - middle drag: pan;
    - right drag: window/level (right widens, down raises the level);
    - right click without a drag: :attr:`menu_requested`;
    - double click: reset zoom and pan.
    """

    touched = QtCore.Signal()  # any click, drag or wheel: the user is working here
    clicked = QtCore.Signal()  # a single left click without a drag
    clicked_at = QtCore.Signal(float, float)  # the same click, in mm of the image
    drag_started = QtCore.Signal(float, float)  # where a non-navigate left drag began, mm
    dragged_to = QtCore.Signal(float, float)  # a left drag in a non-navigate mode, mm
    drag_finished = QtCore.Signal(float, float)  # where that drag ended (after dragged_to), mm
    menu_requested = QtCore.Signal(object)  # QPoint: global position of a right click

    def __init__(self, state: ViewportState) -> None:
        super().__init__(lockAspect=True, invertY=True, enableMenu=False)
        # Not "state": pyqtgraph's ViewBox keeps its own dict under that name.
        self.viewport_state = state
        self.mode = InteractionMode.NAVIGATE
        self.setMouseEnabled(False, False)

    def wheelEvent(self, ev, axis=None) -> None:  # noqa: N802 (Qt override)
        notches = ev.delta() / 120.0
        if notches == 0:
            ev.ignore()
            return
        if ev.modifiers() & QtCore.Qt.KeyboardModifier.ControlModifier:
            self.viewport_state.zoom_by(ZOOM_STEP**notches)
        else:
            # At least one slice per event so touchpads' small deltas still scroll.
            step = int(np.sign(notches) * max(1, round(abs(notches))))
            self.viewport_state.step(step)
        self.touched.emit()
        ev.accept()

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: N802 (Qt override)
        button = ev.button()
        if ev.isStart():
            self.touched.emit()
        if button == QtCore.Qt.MouseButton.RightButton:
            delta = ev.screenPos() - ev.lastScreenPos()
            self.viewport_state.drag_window(delta.x(), delta.y())
        elif button == QtCore.Qt.MouseButton.LeftButton and self.mode is not (
            InteractionMode.NAVIGATE
        ):
            if ev.isStart():
                down = self.mapToView(ev.buttonDownPos())
                self.drag_started.emit(down.x(), down.y())
            here = self.mapToView(ev.pos())
            self.dragged_to.emit(here.x(), here.y())
            if ev.isFinish():
                self.drag_finished.emit(here.x(), here.y())
        elif button in (QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.MouseButton.MiddleButton):
            here = self.mapToView(ev.pos())
            before = self.mapToView(ev.lastPos())
            # The image follows the mouse, so the view centre moves the other way.
            self.viewport_state.pan_by(before.x() - here.x(), before.y() - here.y())
        else:
            ev.ignore()
            return
        ev.accept()

    def mouseClickEvent(self, ev) -> None:  # noqa: N802 (Qt override)
        self.touched.emit()
        if ev.button() == QtCore.Qt.MouseButton.LeftButton:
            if ev.double():
                self.viewport_state.reset_camera()
            else:
                # pyqtgraph reports a click only when the mouse did not drag.
                here = self.mapToView(ev.pos())
                self.clicked_at.emit(here.x(), here.y())
                self.clicked.emit()
        elif ev.button() == QtCore.Qt.MouseButton.RightButton:
            self.menu_requested.emit(ev.screenPos().toPoint())
        ev.accept()


def handle_key(state: ViewportState, event: QtGui.QKeyEvent) -> bool:
    """Apply a navigation key to ``state``; return whether the key was used.

    Up / Down move one slice toward the head / feet, Page Up / Page Down ten,
    Home / End jump to the top (head) / bottom (feet) slice, + / - zoom.
    """
    key = event.key()
    k = QtCore.Qt.Key
    n = state.volume.n_slices
    if key in (k.Key_Up, k.Key_Right):
        state.step(+1)
    elif key in (k.Key_Down, k.Key_Left):
        state.step(-1)
    elif key == k.Key_PageUp:
        state.step(+PAGE_STEP)
    elif key == k.Key_PageDown:
        state.step(-PAGE_STEP)
    elif key == k.Key_Home:
        state.set_slice(n - 1)
    elif key == k.Key_End:
        state.set_slice(0)
    elif key in (k.Key_Plus, k.Key_Equal):
        state.zoom_by(ZOOM_STEP)
    elif key == k.Key_Minus:
        state.zoom_by(1.0 / ZOOM_STEP)
    else:
        return False
    event.accept()
    return True
