"""One viewport: a painted slice of a :class:`~app.core.state.ViewportState` plus its overlays.

The widget only paints state and turns input into state changes; it never
keeps its own copy of the slice index, window or camera. Every repaint starts
from ``state.changed``, so a change made by the sync group, a key, the slider
or a test looks exactly the same on screen.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from app.core.imaging import window_to_uint8
from app.core.state import ViewportState
from app.ui.viewer.overlay_labels import (
    orientation_letters,
    overlay_label,
    place_orientation_letters,
)
from app.ui.viewer.scout_view import ScoutView, shows_outside_level

__all__ = [
    "ElidedLabel",
    "SliceViewBox",
    "ViewportView",
    "ZOOM_STEP",
    "PAGE_STEP",
    "OUTSIDE_TEXT",
    "DIMMED_OPACITY",
]

ZOOM_STEP = 1.15  # zoom factor per wheel notch (ctrl+wheel) or +/- key
PAGE_STEP = 10  # slices per Page Up / Page Down
OUTSIDE_TEXT = "level outside this scan"
# The nearest end slice of a scan that does not cover the level stays visible
# (it is the closest thing there is) but dimmed, so nobody reads it as a match.
DIMMED_OPACITY = 0.4
_USER_FOCUS_REASONS = (
    QtCore.Qt.FocusReason.MouseFocusReason,
    QtCore.Qt.FocusReason.TabFocusReason,
    QtCore.Qt.FocusReason.BacktabFocusReason,
    QtCore.Qt.FocusReason.ShortcutFocusReason,
)


class SliceViewBox(pg.ViewBox):
    """A ViewBox whose mouse input drives a :class:`ViewportState` instead of its own range.

    pyqtgraph's built-in pan/zoom would change the view range directly and the
    state would no longer describe what is on screen, so all of it is replaced:

    - wheel: scroll slices (toward the feet when the wheel turns toward the user);
    - ctrl+wheel: zoom;
    - left or middle drag: pan;
    - right drag: window/level (right widens, down raises the level);
    - double click: reset zoom and pan.
    """

    touched = QtCore.Signal()  # any click, drag or wheel: the user is working here
    clicked = QtCore.Signal()  # a single left click without a drag

    def __init__(self, state: ViewportState) -> None:
        super().__init__(lockAspect=True, invertY=True, enableMenu=False)
        # Not "state": pyqtgraph's ViewBox keeps its own dict under that name.
        self.viewport_state = state
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
                self.clicked.emit()
        ev.accept()


class ElidedLabel(QtWidgets.QLabel):
    """A one-line label that shortens its text with "…" instead of widening its parent."""

    def __init__(self, text: str, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._full_text = text
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Fixed)
        self.setMinimumWidth(20)
        self._elide()

    def full_text(self) -> str:
        return self._full_text

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:  # noqa: N802 (Qt override)
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        margins = self.contentsMargins()
        width = max(0, self.width() - margins.left() - margins.right() - 12)
        self.setText(
            self.fontMetrics().elidedText(
                self._full_text, QtCore.Qt.TextElideMode.ElideRight, width
            )
        )


class ViewportView(QtWidgets.QFrame):
    """A header, the slice with overlays and orientation letters, a slice slider and a side view.

    Anatomical sync shows here as: the match score under the slice number; the
    next-best candidates (top left; N / Shift+N step through them, moving only
    this viewport); an amber "level outside this scan" banner with the nearest
    end slice dimmed when the driver's level is not imaged; the indexing
    progress (top left); and, in the side view (:class:`ScoutView`), a line at
    the slice's level. A saliency overlay, when set, is painted instead of the
    grey slice (:meth:`set_overlay`).

    Parameters
    ----------
    state
        The viewport state to show and drive.
    title
        Header text, e.g. ``"2024-03-01 · CT CHEST · Lung 1.25 mm"``.
    side_view_later
        Leave the side view empty until ``scout.set_reformat`` is called (the
        window computes it in a worker thread); else it is computed here.
    """

    activated = QtCore.Signal(object)  # self, when clicked, scrolled or focused
    clicked = QtCore.Signal(object)  # self, on a single left click on the image

    def __init__(
        self,
        state: ViewportState,
        title: str,
        parent: QtWidgets.QWidget | None = None,
        side_view_later: bool = False,
    ) -> None:
        super().__init__(parent)
        self.state = state
        self.setObjectName("viewport")
        self.setProperty("active", False)
        self.user_activation = False  # whether the last activation came from the user
        self.setFocusPolicy(QtCore.Qt.FocusPolicy.StrongFocus)

        self.header = ElidedLabel(title)
        self.header.setObjectName("viewportHeader")
        self.header.setToolTip(title)

        self.graphics = pg.GraphicsView(background="k")
        self.graphics.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self.view_box = SliceViewBox(state)
        self.view_box.touched.connect(self._activate)
        self.view_box.clicked.connect(lambda: self.clicked.emit(self))
        # Set by the window: a context in which this viewport's changes do not
        # propagate to the others (stepping through match candidates).
        self.hold_sync: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext
        # A colour overlay painted instead of the grey slice (see set_overlay).
        self.overlay: np.ndarray | None = None
        self.overlay_key: object = None
        self.overlay_caption = ""
        self.graphics.setCentralItem(self.view_box)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.view_box.addItem(self.image_item)

        self.slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Vertical)
        # Slice index grows toward the head, so the slider's top is superior.
        self.slider.setRange(0, state.volume.n_slices - 1)
        self.slider.setPageStep(PAGE_STEP)
        self.slider.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self.slider.setToolTip("Slice (top = head)")
        self.slider.valueChanged.connect(self._on_slider)

        body = QtWidgets.QHBoxLayout()
        body.setContentsMargins(0, 0, 0, 0)
        body.setSpacing(0)
        self.scout = ScoutView(state, compute=not side_view_later)
        body.addWidget(self.graphics, 1)
        body.addWidget(self.slider)
        body.addWidget(self.scout)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.setSpacing(0)
        layout.addWidget(self.header)
        layout.addLayout(body, 1)

        host = self.graphics.viewport()
        self.slice_label = overlay_label(host)
        self.window_label = overlay_label(host)
        self.zoom_label = overlay_label(host)
        self.orientation_labels = orientation_letters(host)
        for edge, text in state.orientation_labels.items():
            self.orientation_labels[edge].setText(text)
        self.banner = overlay_label(host, "outsideBanner")
        self.banner.setText(OUTSIDE_TEXT)
        self.banner.hide()
        self.sync_label = overlay_label(host, "syncStatus")
        self.sync_label.hide()
        self.candidates_label = overlay_label(host, "candidates")
        self.candidates_label.hide()
        # Overlays sit on the view's viewport widget; re-place them when it resizes.
        host.installEventFilter(self)

        state.changed.connect(self._on_state_changed)
        self._set_image_rect()
        self._paint_slice()
        self._paint_window_text()
        self._apply_camera()

    # -- state -> screen -------------------------------------------------------------
    def _on_state_changed(self, what: str) -> None:
        if what == "slice":
            self._paint_slice()
            self.scout.update()
        elif what == "window":
            self._paint_slice()
            self._paint_window_text()
        elif what == "camera":
            self._apply_camera()
        elif what == "match":
            self._paint_slice_text()
            self.scout.update()

    def set_overlay(self, rgb: np.ndarray | None, key: object = None, caption: str = "") -> None:
        """Paint ``rgb`` (the slice blended with a colour map) instead of the grey slice.

        ``key`` records what the overlay was computed for (the window compares
        it with what the viewport shows); ``None`` goes back to the grey slice.
        Any change of slice or window drops the overlay, so it can never sit on
        another slice than the one it was computed for.
        """
        if rgb is None and self.overlay is None:
            return
        self.overlay = None if rgb is None else np.ascontiguousarray(rgb)
        self.overlay_key = None if rgb is None else key
        self.overlay_caption = caption if rgb is not None else ""
        self._set_image()
        self._paint_slice_text()

    def _set_image(self) -> None:
        image = self.overlay if self.overlay is not None else self.windowed_slice()
        self.image_item.setImage(image, autoLevels=False, levels=(0, 255))

    def windowed_slice(self) -> np.ndarray:
        """The uint8 image painted for the current slice and window (image math in the core)."""
        return window_to_uint8(self.state.volume.slice(self.state.slice_index), self.state.window)

    def _set_image_rect(self) -> None:
        width_mm, height_mm = self.state.extent_mm
        # The item spans the slice's physical size, so non-square pixels keep their aspect.
        self.image_item.setRect(QtCore.QRectF(0.0, 0.0, width_mm, height_mm))

    def _paint_slice(self) -> None:
        self.overlay = None
        self.overlay_key = None
        self.overlay_caption = ""
        self._set_image()
        self._set_image_rect()
        if self.slider.value() != self.state.slice_index:
            blocked = self.slider.blockSignals(True)
            self.slider.setValue(self.state.slice_index)
            self.slider.blockSignals(blocked)
        self._paint_slice_text()

    def _paint_slice_text(self) -> None:
        n = self.state.volume.n_slices
        # Images are numbered from the head down, as acquisition order usually runs.
        number = n - self.state.slice_index
        lines = [f"Im {number}/{n}", f"z {self.state.slice_position_mm:.1f} mm"]
        match = self.state.match
        if match is not None:
            # Set by the sync group's slice mapper: how this slice was reached.
            lines.append(f"match {match.score:.2f}")
        if self.overlay_caption:
            # On top of the block: the bottom line shares its row with the "P" label.
            lines.insert(0, self.overlay_caption)
        self.slice_label.setText("\n".join(lines))
        outside = self.shows_outside_level()
        self.banner.setVisible(outside)
        self.image_item.setOpacity(DIMMED_OPACITY if outside else 1.0)
        self._paint_candidates()
        self._place_overlays()

    def shows_outside_level(self) -> bool:
        """True when the amber "level outside this scan" mark is shown (see :func:`shows_outside_level`)."""
        return shows_outside_level(self.state)

    def _paint_candidates(self) -> None:
        match = self.state.match
        candidates = match.candidates if match is not None else []
        if len(candidates) < 2:
            self.candidates_label.hide()
            return
        n = self.state.volume.n_slices
        z = self.state.volume.slice_z
        first = candidates[0][0]
        # Kept narrow: it sits at the left edge, beside the image rather than over it.
        # Each alternative says how far (mm) it lies from the match: near or another level.
        rows = ["match  N/⇧N"]
        for j, score in candidates:
            mark = "▶" if j == self.state.slice_index else " "
            offset = "" if j == first else f" {z[j] - z[first]:+.0f}mm"
            rows.append(f"{mark}Im{n - j:>4} {score:.2f}{offset}")
        self.candidates_label.setText("\n".join(rows))
        self.candidates_label.show()

    def step_candidate(self, delta: int) -> bool:
        """Show the next (``delta`` > 0) or previous match candidate; False if there are none.

        Only this viewport moves: the driver and the other viewports stay.
        """
        match = self.state.match
        if match is None or len(match.candidates) < 2:
            return False
        slices = [j for j, _ in match.candidates]
        here = slices.index(self.state.slice_index) if self.state.slice_index in slices else 0
        pick = (here + delta) % len(slices)
        j, score = match.candidates[pick]
        chosen = replace(match, score=score)
        with self.hold_sync():
            self.state.set_slice(j, match=chosen)
        return True

    def set_sync_status(self, text: str) -> None:
        """Show a short sync status in the image's top-left corner ("indexing 40%"); "" hides it."""
        self.sync_label.setText(text)
        self.sync_label.setVisible(bool(text))
        self._place_overlays()

    def _paint_window_text(self) -> None:
        w = self.state.window
        self.window_label.setText(f"W {w.width:.0f}  L {w.center:.0f}")
        self.window_label.adjustSize()
        self._place_overlays()

    def _apply_camera(self) -> None:
        cam = self.state.camera
        width_mm, height_mm = self.state.extent_mm
        cx = width_mm / 2.0 + cam.pan[0]
        cy = height_mm / 2.0 + cam.pan[1]
        half_w = width_mm / (2.0 * cam.zoom)
        half_h = height_mm / (2.0 * cam.zoom)
        # With lockAspect the ViewBox widens one of the two ranges to keep mm square.
        self.view_box.setRange(
            xRange=(cx - half_w, cx + half_w), yRange=(cy - half_h, cy + half_h), padding=0.0
        )
        self.zoom_label.setText(f"×{cam.zoom:.2f}")
        self.zoom_label.adjustSize()
        self._place_overlays()

    # -- overlays --------------------------------------------------------------------
    def eventFilter(self, watched: QtCore.QObject, event: QtCore.QEvent) -> bool:  # noqa: N802
        if event.type() == QtCore.QEvent.Type.Resize and watched is self.graphics.viewport():
            self._place_overlays()
        return False

    def _place_overlays(self) -> None:
        host = self.graphics.viewport()
        w, h = host.width(), host.height()
        m = 6
        for label in (
            self.slice_label,
            self.window_label,
            self.zoom_label,
            self.banner,
            self.sync_label,
            self.candidates_label,
        ):
            label.adjustSize()
        # Top row: status left, "A" centre, zoom right. Below it the amber banner
        # (centred), then the candidates list at the left, clear of both.
        self.sync_label.move(m, m)
        row2 = m + max(self.sync_label.height() if self.sync_label.isVisible() else 0, 20) + 4
        self.banner.move((w - self.banner.width()) // 2, row2)
        below_banner = row2 + (self.banner.height() + 4 if self.banner.isVisible() else 0)
        self.candidates_label.move(m, below_banner)
        self.slice_label.move(m, h - self.slice_label.height() - m)
        window_y = h - self.window_label.height() - m
        if self.slice_label.geometry().right() + m >= w - self.window_label.width() - m:
            # A narrow viewport (side view open, many dates, a dock): the two
            # bottom corners would overprint each other, so W/L goes up a row.
            window_y = self.slice_label.geometry().top() - self.window_label.height() - 2
        self.window_label.move(w - self.window_label.width() - m, window_y)
        self.zoom_label.move(w - self.zoom_label.width() - m, m)
        place_orientation_letters(self.orientation_labels, w, h, m)
        bottom = self.orientation_labels["bottom"]
        for corner in (self.slice_label, self.window_label):
            if corner.isVisible() and bottom.geometry().intersects(corner.geometry()):
                # Keep the orientation letter readable above the corner text.
                bottom.move(bottom.x(), min(bottom.y(), corner.y() - bottom.height() - 2))

    # -- screen -> state -------------------------------------------------------------
    def _on_slider(self, value: int) -> None:
        self._activate()
        self.state.set_slice(value)

    def keyPressEvent(self, event: QtGui.QKeyEvent) -> None:  # noqa: N802 (Qt override)
        if event.key() == QtCore.Qt.Key.Key_N:
            back = bool(event.modifiers() & QtCore.Qt.KeyboardModifier.ShiftModifier)
            if self.step_candidate(-1 if back else +1):
                event.accept()
                return
        if not handle_key(self.state, event):
            super().keyPressEvent(event)

    def focusInEvent(self, event: QtGui.QFocusEvent) -> None:  # noqa: N802 (Qt override)
        # Focus restored by the window system (the window became active) is not
        # the user choosing this viewport; a click, Tab or a shortcut is.
        self.user_activation = event.reason() in _USER_FOCUS_REASONS
        self.activated.emit(self)
        super().focusInEvent(event)

    def _activate(self) -> None:
        self.setFocus(QtCore.Qt.FocusReason.MouseFocusReason)
        self.user_activation = True
        self.activated.emit(self)

    def set_active(self, active: bool) -> None:
        """Show (border colour) whether this viewport receives keyboard commands."""
        if bool(self.property("active")) != active:
            self.setProperty("active", active)
            self.style().unpolish(self)
            self.style().polish(self)

    def detach(self) -> None:
        """Stop listening to the state (before the widget is deleted)."""
        self.state.changed.disconnect(self._on_state_changed)


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
