"""The painting half of a viewport: state -> screen.

:class:`ViewportCanvas` builds the widgets of one viewport (header, image,
reference lines, overlay labels, slider) and repaints them from its
:class:`~app.core.state.ViewportState` whenever ``state.changed`` fires. It
turns no input into state changes: that is :class:`~app.ui.viewer.viewport.ViewportView`,
built on top of it. The text and camera maths are in :mod:`app.ui.viewer.viewport_text`.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from app.core.imaging import window_to_uint8
from app.core.planes import Plane, plane_geometry, plane_image, reference_lines
from app.core.state import ViewportState
from app.ui.viewer.candidate_list import CandidateList, offered_candidates
from app.ui.viewer.coverage import outside_text, shows_outside_level
from app.ui.viewer.elided_label import ElidedLabel
from app.ui.viewer.overlay_labels import orientation_letters, overlay_label
from app.ui.viewer.overlay_layout import place_overlays
from app.ui.viewer.slice_view_box import PAGE_STEP, SliceViewBox
from app.ui.viewer.viewport_text import (
    OUTSIDE_TEXT,
    camera_ranges,
    legend_html,
    plane_letters,
    slice_text,
    window_text,
    zoom_text,
)

__all__ = ["DIMMED_OPACITY", "ViewportCanvas"]

# The nearest end slice of a scan that does not cover the level stays visible
# (it is the closest thing there is) but dimmed, so nobody reads it as a match.
DIMMED_OPACITY = 0.4
_CROSSHAIR = QtGui.QColor(136, 192, 208, 170)
_LEVEL_OUTSIDE = QtGui.QColor(235, 203, 139)


class ViewportCanvas(QtWidgets.QFrame):
    """A header, one plane of the series with overlays and reference lines, a slice slider.

    Only paints: every repaint starts from ``state.changed``, so a change made
    by the sync group, a key, the slider or a test looks exactly the same on
    screen. A saliency overlay, when set, is painted instead of the grey axial
    slice (:meth:`set_overlay`).

    Parameters
    ----------
    state
        The viewport state to show.
    title
        Header text, e.g. ``"2024-03-01 · CT CHEST · Lung 1.25 mm"``.
    """

    def __init__(
        self, state: ViewportState, title: str, parent: QtWidgets.QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.state = state
        self.setObjectName("viewport")
        self.setProperty("active", False)
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
        self.candidates_label.hide()
        # Overlays sit on the view's viewport widget; re-place them when it resizes.
        host.installEventFilter(self)

        state.changed.connect(self._on_state_changed)
        self._paint_orientation()
        self._paint_slice()
        self._paint_window_text()
        self._apply_camera()

    @property
    def cursor(self) -> tuple[int, int, int]:
        """``(slice, row, column)`` of the cursor; the slice is the state's (synced) level."""
        return self.state.slice_index, self.cursor_rc[0], self.cursor_rc[1]

    def set_crosshair_visible(self, visible: bool) -> None:
        """Show or hide the reference lines of the other two planes."""
        self.crosshair_visible = visible
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
        self.legend_label.setText(legend_html(colours))
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
        for edge, text in plane_letters(self.state.orientation_labels, self.plane).items():
            self.orientation_labels[edge].setText(text)
        self._place_overlays()

    def _paint_slice_text(self) -> None:
        outside = self.shows_outside_level()
        self.slice_label.setText(slice_text(self.state, self.plane, self.overlay_caption, outside))
        self.banner.setText(outside_text(self.state) if outside else OUTSIDE_TEXT)
        self.banner.setVisible(outside)
        self.image_item.setOpacity(DIMMED_OPACITY if outside else 1.0)
        self.candidates_label.set_candidates(
            offered_candidates(self.state.match, self.state.volume.slice_z),
            self.state.slice_index,
            self.state.volume.slice_z,
            self.state.volume.n_slices,
        )
        self._place_overlays()

    def shows_outside_level(self) -> bool:
        """True when the amber "level outside this scan" mark is shown (see :func:`shows_outside_level`)."""
        return shows_outside_level(self.state)

    def set_sync_status(self, text: str) -> None:
        """Show a short sync status in the image's top-left corner ("indexing 40%"); "" hides it."""
        self.sync_label.setText(text)
        self.sync_label.setVisible(bool(text))
        self._place_overlays()

    def _paint_window_text(self) -> None:
        self.window_label.setText(window_text(self.state.window))
        self._place_overlays()

    def _apply_camera(self) -> None:
        x_range, y_range = camera_ranges(self.plane_extent_mm(), self.state.camera)
        # With lockAspect the ViewBox widens one of the two ranges to keep mm square:
        # the image is fitted to the viewport at zoom 1.
        self.view_box.setRange(xRange=x_range, yRange=y_range, padding=0.0)
        self.zoom_label.setText(zoom_text(self.state.camera))
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

    def detach(self) -> None:
        """Stop listening to the state (before the widget is deleted)."""
        self.state.changed.disconnect(self._on_state_changed)
