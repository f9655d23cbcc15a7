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
from app.core.planes import Plane, cursor_at, plane_geometry, plane_image, reference_lines
from app.core.state import ViewportState
from app.export.captions import image_number
from app.ui.viewer.candidate_list import CandidateList, offered_candidates
from app.ui.viewer.coverage import outside_text, shows_outside_level
from app.ui.viewer.overlay_labels import orientation_letters, overlay_label
from app.ui.viewer.overlay_layout import place_overlays
from app.ui.viewer.slice_view_box import (
    PAGE_STEP,
    ZOOM_STEP,
    InteractionMode,
    SliceViewBox,
    handle_key,
)

__all__ = [
    "DIMMED_OPACITY",
    "ElidedLabel",
    "OUTSIDE_TEXT",
    "PAGE_STEP",
    "PLANE_KEYS",
    "ViewportView",
    "ZOOM_STEP",
]

OUTSIDE_TEXT = "level outside this scan"
# The nearest end slice of a scan that does not cover the level stays visible
# (it is the closest thing there is) but dimmed, so nobody reads it as a match.
DIMMED_OPACITY = 0.4
# Keys that switch the focused viewport's plane.
PLANE_KEYS = {
    QtCore.Qt.Key.Key_A: Plane.AXIAL,
    QtCore.Qt.Key.Key_C: Plane.CORONAL,
    QtCore.Qt.Key.Key_G: Plane.SAGITTAL,
}
_CROSSHAIR = QtGui.QColor(136, 192, 208, 170)
_LEVEL_OUTSIDE = QtGui.QColor(235, 203, 139)
_USER_FOCUS_REASONS = (
    QtCore.Qt.FocusReason.MouseFocusReason,
    QtCore.Qt.FocusReason.TabFocusReason,
    QtCore.Qt.FocusReason.BacktabFocusReason,
    QtCore.Qt.FocusReason.ShortcutFocusReason,
)


class ElidedLabel(QtWidgets.QLabel):
    """A one-line label that shortens its text in the middle ("…"), keeping both ends.

    Series titles end with what tells series apart (thickness, kernel), so
    eliding on the right would hide exactly that; the full title is the tooltip.
    """

    def __init__(self, text: str, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._full_text = text
        self.setToolTip(text)
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
                self._full_text, QtCore.Qt.TextElideMode.ElideMiddle, width
            )
        )


class ViewportView(QtWidgets.QFrame):
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
        super().__init__(parent)
        self.state = state
        self.setObjectName("viewport")
        self.setProperty("active", False)
        self.user_activation = False  # whether the last activation came from the user
        self.setFocusPolicy(QtCore.Qt.FocusPolicy.StrongFocus)
        self.plane = Plane.AXIAL
        _, rows, cols = state.volume.shape
        # The cursor's row and column (the level is the state's slice): where the
        # coronal and sagittal planes cut this series.
        self.cursor_rc = (rows // 2, cols // 2)
        # The two reference lines in every plane (View ▸ Crosshair); the level line
        # of a coronal or sagittal plane shows regardless.
        self.crosshair_visible = False

        self.header = ElidedLabel(title)
        self.header.setObjectName("viewportHeader")
        self.graphics = pg.GraphicsView(background="k")
        self.graphics.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self.view_box = SliceViewBox(state)
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
        # A colour overlay painted instead of the grey slice (see set_overlay).
        self.overlay: np.ndarray | None = None
        self.overlay_key: object = None
        self.overlay_caption = ""
        self.graphics.setCentralItem(self.view_box)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.view_box.addItem(self.image_item)
        # Per-viewport overlay items in image mm (measurements, linked cursor) go here.
        self.overlay_items = pg.ItemGroup()
        self.view_box.addItem(self.overlay_items)
        self.vline = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(_CROSSHAIR, width=1))
        self.hline = pg.InfiniteLine(angle=0, movable=False, pen=pg.mkPen(_CROSSHAIR, width=1))
        for line in (self.vline, self.hline):
            self.view_box.addItem(line, ignoreBounds=True)

        self.slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Vertical)
        # Slice index grows toward the head, so the slider's top is superior.
        self.slider.setRange(0, state.volume.n_slices - 1)
        self.slider.setPageStep(PAGE_STEP)
        self.slider.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self.slider.setToolTip("Level (top = head)")
        self.slider.valueChanged.connect(self._on_slider)

        body = QtWidgets.QHBoxLayout()
        body.setContentsMargins(0, 0, 0, 0)
        body.setSpacing(0)
        body.addWidget(self.graphics, 1)
        body.addWidget(self.slider)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.setSpacing(0)
        layout.addWidget(self.header)
        layout.addLayout(body, 1)

        host = self.graphics.viewport()
        self.slice_label = overlay_label(host)
        self.window_label = overlay_label(host)
        self.window_label.setAlignment(QtCore.Qt.AlignmentFlag.AlignRight)
        self.zoom_label = overlay_label(host)
        self.zoom_label.setAlignment(QtCore.Qt.AlignmentFlag.AlignRight)
        self.orientation_labels = orientation_letters(host)
        self.banner = overlay_label(host, "outsideBanner")
        self.banner.setText(OUTSIDE_TEXT)
        self.banner.hide()
        self.sync_label = overlay_label(host, "syncStatus")
        self.sync_label.hide()
        # What the saliency colours mean (shown with an overlay).
        self.legend_label = overlay_label(host, "saliencyLegend")
        self.legend_label.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.legend_label.hide()
        self.candidates_label = CandidateList(host)
        self.candidates_label.picked.connect(self.show_candidate)
        self.candidates_label.hide()
        # Overlays sit on the view's viewport widget; re-place them when it resizes.
        host.installEventFilter(self)

        state.changed.connect(self._on_state_changed)
        self._paint_orientation()
        self._paint_slice()
        self._paint_window_text()
        self._apply_camera()

    # -- plane, cursor and mode ---------------------------------------------------------
    @property
    def cursor(self) -> tuple[int, int, int]:
        """``(slice, row, column)`` of the cursor; the slice is the state's (synced) level."""
        return self.state.slice_index, self.cursor_rc[0], self.cursor_rc[1]

    def set_plane(self, plane: Plane) -> None:
        """Show ``plane`` of this series (the level and the cursor stay)."""
        if plane is self.plane:
            return
        self.plane = plane
        self._paint_orientation()
        self._paint_slice(new_image=True)
        self._apply_camera()
        self.plane_changed.emit(self)

    def set_crosshair_visible(self, visible: bool) -> None:
        """Show or hide the reference lines of the other two planes."""
        self.crosshair_visible = visible
        self._paint_crosshair()

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

    # -- state -> screen -------------------------------------------------------------
    def _on_state_changed(self, what: str) -> None:
        if what == "slice":
            self._paint_slice()
        elif what == "window":
            self._paint_slice(new_image=True)
            self._paint_window_text()
        elif what == "camera":
            self._apply_camera()
        elif what == "match":
            self._paint_slice_text()
            self._paint_crosshair()

    def set_overlay(
        self,
        rgb: np.ndarray | None,
        key: object = None,
        caption: str = "",
        legend: np.ndarray | None = None,
    ) -> None:
        """Paint ``rgb`` (the slice blended with a colour map) instead of the grey axial slice.

        ``key`` records what the overlay was computed for (the window compares
        it with what the viewport shows); ``None`` goes back to the grey slice.
        ``legend`` (``(n, 3)`` RGB, low to high) is shown as the colour key.
        Any change of slice, window or plane drops the overlay, so it can never
        sit on another image than the one it was computed for.
        """
        if rgb is not None and self.plane is not Plane.AXIAL:
            return
        if rgb is None and self.overlay is None:
            return
        self.overlay = None if rgb is None else np.ascontiguousarray(rgb)
        self.overlay_key = None if rgb is None else key
        self.overlay_caption = caption if rgb is not None else ""
        self._show_legend(legend if rgb is not None else None)
        self._set_image()
        self._paint_slice_text()

    def _show_legend(self, colours: np.ndarray | None) -> None:
        if colours is None:
            self.legend_label.hide()
            return
        swatches = "".join(
            f"<span style='background:#{r:02x}{g:02x}{b:02x}'>&nbsp;&nbsp;</span>"
            for r, g, b in np.asarray(colours, dtype=np.uint8)[:: max(1, len(colours) // 8)][:8]
        )
        self.legend_label.setText(f"match evidence: low {swatches} high")
        self.legend_label.setToolTip(
            "Saliency: where the model sees what makes these two slices the same level"
        )
        self.legend_label.show()

    def _set_image(self) -> None:
        image = self.overlay if self.overlay is not None else self.windowed_image()
        self.image_item.setImage(image, autoLevels=False, levels=(0, 255))

    def windowed_slice(self) -> np.ndarray:
        """The uint8 axial slice for the current level and window (image math in the core)."""
        return window_to_uint8(self.state.volume.slice(self.state.slice_index), self.state.window)

    def windowed_image(self) -> np.ndarray:
        """The uint8 image of the plane shown, in the current window."""
        if self.plane is Plane.AXIAL:
            return self.windowed_slice()
        return window_to_uint8(
            plane_image(self.state.volume, self.plane, self.cursor), self.state.window
        )

    def plane_extent_mm(self) -> tuple[float, float]:
        """``(width, height)`` in mm of the plane shown."""
        if self.plane is Plane.AXIAL:
            return self.state.extent_mm
        return plane_geometry(self.state.volume, self.plane).extent_mm

    def _set_image_rect(self) -> None:
        width_mm, height_mm = self.plane_extent_mm()
        # The item spans the image's physical size, so non-square pixels keep their aspect.
        self.image_item.setRect(QtCore.QRectF(0.0, 0.0, width_mm, height_mm))

    def _paint_slice(self, new_image: bool = False) -> None:
        """Repaint after a level change (``new_image``: the picture itself changed too).

        Coronal and sagittal images do not depend on the level (only their
        level line moves), so scrolling repaints them without re-windowing.
        """
        self.overlay = None
        self.overlay_key = None
        self.overlay_caption = ""
        self.legend_label.hide()
        if new_image or self.plane is Plane.AXIAL or self.image_item.image is None:
            self._set_image()
        self._set_image_rect()
        if self.slider.value() != self.state.slice_index:
            blocked = self.slider.blockSignals(True)
            self.slider.setValue(self.state.slice_index)
            self.slider.blockSignals(blocked)
        self._paint_crosshair()
        self._paint_slice_text()

    def _paint_crosshair(self) -> None:
        x, y = reference_lines(self.state.volume, self.plane, self.cursor)
        self.vline.setPos(x)
        self.hline.setPos(y)
        outside = self.shows_outside_level()
        # The level line is what the sync moves; amber when the level is not imaged.
        level = self.hline if self.plane is not Plane.AXIAL else None
        for line in (self.vline, self.hline):
            color = _LEVEL_OUTSIDE if (line is level and outside) else _CROSSHAIR
            line.setPen(pg.mkPen(color, width=2 if line is level else 1))
            line.setVisible(self.crosshair_visible or line is level)

    def _paint_orientation(self) -> None:
        letters = self.state.orientation_labels
        if self.plane is Plane.CORONAL:
            letters = {**letters, "top": "S", "bottom": "I"}
        elif self.plane is Plane.SAGITTAL:
            letters = {
                "left": letters["top"],
                "right": letters["bottom"],
                "top": "S",
                "bottom": "I",
            }
        for edge, text in letters.items():
            self.orientation_labels[edge].setText(text)
        self._place_overlays()

    def _paint_slice_text(self) -> None:
        n = self.state.volume.n_slices
        # One numbering everywhere: images counted from the head, from 1.
        number = image_number(self.state.slice_index, n)
        lines = [f"Im {number}/{n}", f"z {self.state.slice_position_mm:.1f} mm"]
        if self.plane is not Plane.AXIAL:
            lines.insert(0, f"{self.plane.value} · level line")
        match = self.state.match
        outside = self.shows_outside_level()
        if match is not None and not outside:
            # Set by the sync group's slice mapper: how this slice was reached.
            lines.append(f"match {match.score:.2f}")
        if self.overlay_caption:
            # On top of the block: the bottom line shares its row with the "P" label.
            lines.insert(0, self.overlay_caption)
        self.slice_label.setText("\n".join(lines))
        self.banner.setText(outside_text(self.state) if outside else OUTSIDE_TEXT)
        self.banner.setVisible(outside)
        self.image_item.setOpacity(DIMMED_OPACITY if outside else 1.0)
        self.candidates_label.set_candidates(
            offered_candidates(match, self.state.volume.slice_z),
            self.state.slice_index,
            self.state.volume.slice_z,
            n,
        )
        self._place_overlays()

    def shows_outside_level(self) -> bool:
        """True when the amber "level outside this scan" mark is shown (see :func:`shows_outside_level`)."""
        return shows_outside_level(self.state)

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

    def set_sync_status(self, text: str) -> None:
        """Show a short sync status in the image's top-left corner ("indexing 40%"); "" hides it."""
        self.sync_label.setText(text)
        self.sync_label.setVisible(bool(text))
        self._place_overlays()

    def _paint_window_text(self) -> None:
        w = self.state.window
        self.window_label.setText(f"W {w.width:.0f}  L {w.center:.0f}")
        self._place_overlays()

    def _apply_camera(self) -> None:
        cam = self.state.camera
        width_mm, height_mm = self.plane_extent_mm()
        cx = width_mm / 2.0 + cam.pan[0]
        cy = height_mm / 2.0 + cam.pan[1]
        half_w = width_mm / (2.0 * cam.zoom)
        half_h = height_mm / (2.0 * cam.zoom)
        # With lockAspect the ViewBox widens one of the two ranges to keep mm square:
        # the image is fitted to the viewport at zoom 1.
        self.view_box.setRange(
            xRange=(cx - half_w, cx + half_w), yRange=(cy - half_h, cy + half_h), padding=0.0
        )
        self.zoom_label.setText(f"×{cam.zoom:.2f}")
        self._place_overlays()

    # -- overlays --------------------------------------------------------------------
    def eventFilter(self, watched: QtCore.QObject, event: QtCore.QEvent) -> bool:  # noqa: N802
        if event.type() == QtCore.QEvent.Type.Resize and watched is self.graphics.viewport():
            self._place_overlays()
        return False

    def _place_overlays(self) -> None:
        host = self.graphics.viewport()
        place_overlays(
            host.width(),
            host.height(),
            self.slice_label,
            self.window_label,
            self.zoom_label,
            self.banner,
            self.sync_label,
            self.candidates_label,
            self.orientation_labels,
            self.legend_label,
        )

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

    def detach(self) -> None:
        """Stop listening to the state (before the widget is deleted)."""
        self.state.changed.disconnect(self._on_state_changed)
