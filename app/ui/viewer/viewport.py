"""One viewport: a painted plane of a :class:`~app.core.state.ViewportState` plus its overlays.

The widget only paints state and turns input into state changes; it never
keeps its own copy of the slice index, window or camera. Every repaint starts
from ``state.changed``, so a change made by the sync group, a key, the slider
or a test looks exactly the same on screen.

Each viewport shows one plane of its date (axial, coronal or sagittal,
switched per viewport). The synced level is the state's slice: in the axial
plane it is the slice shown, in the others the horizontal reference line. A
click places the viewport's cursor; the reference lines (crosshair) show
where the other two planes cross this one.

The painting (state -> screen) is :class:`~app.ui.viewer.viewport_canvas.ViewportCanvas`;
this module adds the input (screen -> state): modes, clicks, keys, the slider,
focus and the match candidates.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace

from PySide6 import QtCore, QtGui, QtWidgets

from app.core.planes import Plane, cursor_at
from app.core.state import ViewportState
from app.ui.viewer.candidate_list import offered_candidates
from app.ui.viewer.elided_label import ElidedLabel
from app.ui.viewer.slice_view_box import PAGE_STEP, ZOOM_STEP, InteractionMode, handle_key
from app.ui.viewer.viewport_canvas import DIMMED_OPACITY, ViewportCanvas
from app.ui.viewer.viewport_text import OUTSIDE_TEXT

__all__ = [
    "DIMMED_OPACITY",
    "ElidedLabel",
    "OUTSIDE_TEXT",
    "PAGE_STEP",
    "PLANE_KEYS",
    "ViewportView",
    "ZOOM_STEP",
]

# Keys that switch the focused viewport's plane.
PLANE_KEYS = {
    QtCore.Qt.Key.Key_A: Plane.AXIAL,
    QtCore.Qt.Key.Key_C: Plane.CORONAL,
    QtCore.Qt.Key.Key_G: Plane.SAGITTAL,
}
_USER_FOCUS_REASONS = (
    QtCore.Qt.FocusReason.MouseFocusReason,
    QtCore.Qt.FocusReason.TabFocusReason,
    QtCore.Qt.FocusReason.BacktabFocusReason,
    QtCore.Qt.FocusReason.ShortcutFocusReason,
)


class ViewportView(ViewportCanvas):
    """A header, one plane of the series with overlays and reference lines, a slice slider.

    Anatomical sync shows here as: the match score under the slice number; the
    clickable next-best candidates (top left; N / Shift+N step through them,
    moving only this viewport); an amber "level outside this scan" mark with
    the distance to the nearest covered level and the nearest end slice
    dimmed when the driver's level is not imaged; the indexing progress (top
    left). A saliency overlay, when set, is painted instead of the grey axial
    slice (:meth:`set_overlay`).

    Parameters
    ----------
    state
        The viewport state to show and drive.
    title
        Header text, e.g. ``"2024-03-01 · CT CHEST · Lung 1.25 mm"``.
    """

    activated = QtCore.Signal(object)  # self, when clicked, scrolled or focused
    clicked = QtCore.Signal(object)  # self, on a single left click on the image
    menu_requested = QtCore.Signal(object, object)  # self, global QPoint (right click)
    plane_changed = QtCore.Signal(object)  # self, after set_plane

    def __init__(
        self, state: ViewportState, title: str, parent: QtWidgets.QWidget | None = None
    ) -> None:
        super().__init__(state, title, parent)
        self.user_activation = False  # whether the last activation came from the user
        self.view_box.touched.connect(self._activate)
        self.view_box.clicked.connect(lambda: self.clicked.emit(self))
        self.view_box.clicked_at.connect(self._on_clicked_at)
        self.view_box.dragged_to.connect(self._on_dragged_to)
        self.view_box.menu_requested.connect(lambda pos: self.menu_requested.emit(self, pos))
        # Clicks per interaction mode (issue 20 registers MEASURE's here).
        self._mode_handlers: dict[InteractionMode, Callable[[float, float], None]] = {
            InteractionMode.NAVIGATE: self._place_cursor,
            InteractionMode.CROSSHAIR: self._place_cursor,
        }
        # Set by the window: a context in which this viewport's changes do not
        # propagate to the others (stepping through match candidates).
        self.hold_sync: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext
        self.slider.valueChanged.connect(self._on_slider)
        self.candidates_label.picked.connect(self.show_candidate)

    # -- plane, cursor and mode ---------------------------------------------------------
    def set_plane(self, plane: Plane) -> None:
        """Show ``plane`` of this series (the level and the cursor stay)."""
        if plane is self.plane:
            return
        self.plane = plane
        self._paint_orientation()
        self._paint_slice(new_image=True)
        self._apply_camera()
        self.plane_changed.emit(self)

    @property
    def mode(self) -> InteractionMode:
        """What the left mouse button does here."""
        return self.view_box.mode

    def register_mode(
        self, mode: InteractionMode, on_click: Callable[[float, float], None]
    ) -> None:
        """Make ``mode`` selectable: ``on_click(x_mm, y_mm)`` handles its clicks and drags."""
        self._mode_handlers[mode] = on_click

    def set_mode(self, mode: InteractionMode) -> None:
        """Select an interaction mode; ``ValueError`` if nothing handles it yet."""
        if mode not in self._mode_handlers:
            raise ValueError(f"no handler for the {mode.value} mode")
        self.view_box.mode = mode

    def _on_clicked_at(self, x_mm: float, y_mm: float) -> None:
        self._mode_handlers[self.view_box.mode](x_mm, y_mm)

    def _on_dragged_to(self, x_mm: float, y_mm: float) -> None:
        self._mode_handlers[self.view_box.mode](x_mm, y_mm)

    def _place_cursor(self, x_mm: float, y_mm: float) -> None:
        k, r, c = cursor_at(self.state.volume, self.plane, self.cursor, x_mm, y_mm)
        moved_plane = self.plane is Plane.AXIAL and (r, c) != self.cursor_rc
        self.cursor_rc = (r, c)
        if moved_plane:
            self.plane_changed.emit(self)  # the cursor moved: reference lines elsewhere follow
        if k != self.state.slice_index:
            self.state.set_slice(k)  # the level drives the other dates (slice sync)
        self._paint_crosshair()

    # -- match candidates ------------------------------------------------------------
    def candidates(self) -> list[tuple[int, float]]:
        """The match candidates offered here (see :func:`offered_candidates`)."""
        return offered_candidates(self.state.match, self.state.volume.slice_z)

    def step_candidate(self, delta: int) -> bool:
        """Show the next (``delta`` > 0) or previous match candidate; False if there are none.

        Only this viewport moves: the driver and the other viewports stay.
        """
        offered = self.candidates()
        if not offered:
            return False
        slices = [j for j, _ in offered]
        k = self.state.slice_index
        here = slices.index(k) if k in slices else 0
        return self.show_candidate(slices[(here + delta) % len(slices)])

    def show_candidate(self, j: int) -> bool:
        """Show candidate slice ``j`` of the current match here only; False if it is none."""
        match = self.state.match
        scores = dict(self.candidates())
        if match is None or j not in scores:
            return False
        with self.hold_sync():
            self.state.set_slice(j, match=replace(match, score=scores[j]))
        self._activate()
        return True

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
        plane = PLANE_KEYS.get(QtCore.Qt.Key(event.key()))
        if plane is not None and not event.modifiers():
            self.set_plane(plane)
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
