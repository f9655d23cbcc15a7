"""A viewport's picture: the plane image and its two reference lines, redrawn only when changed.

Scrolling with synced dates in coronal or sagittal planes repaints four
viewports twenty times a second, so every Qt call here is made only when its
value changes: the image is windowed again only when the plane, the cursor
component that selects it (:func:`~app.core.planes.plane_index`), the window
or the volume changed; the image rectangle, line positions, pens and
visibility are set only when they differ from what is on screen. (Setting an
equal pen or position still makes pyqtgraph schedule a repaint.)
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui

from app.core.imaging import window_to_uint8
from app.core.planes import Plane, plane_geometry, plane_image, plane_index, reference_lines
from app.core.state import ViewportState

__all__ = ["CROSSHAIR_COLOR", "LEVEL_OUTSIDE_COLOR", "PlanePainter"]

CROSSHAIR_COLOR = QtGui.QColor(136, 192, 208, 170)
LEVEL_OUTSIDE_COLOR = QtGui.QColor(235, 203, 139)


class PlanePainter:
    """Shows one plane of a :class:`ViewportState` in an image item with two reference lines.

    Parameters
    ----------
    image_item
        Where the windowed plane (or an RGB overlay) is painted.
    vline, hline
        The vertical and horizontal reference lines.
    """

    def __init__(
        self, image_item: pg.ImageItem, vline: pg.InfiniteLine, hline: pg.InfiniteLine
    ) -> None:
        self.image_item = image_item
        self.vline = vline
        self.hline = hline
        self._image_key: tuple[object, ...] | None = None
        self._rect: tuple[float, float] | None = None
        self._lines: dict[int, tuple[float, tuple[int, int], bool]] = {}
        self._pens: dict[tuple[int, int], QtGui.QPen] = {}
        self.renders = 0  # how many times a plane was windowed (tests, benchmarks)

    @property
    def shown_key(self) -> tuple[object, ...] | None:
        """The :meth:`image_key` of the grey image on screen (None: an overlay, or nothing yet)."""
        return self._image_key if self.image_item.image is not None else None

    def image_key(self, state: ViewportState, plane: Plane) -> tuple[object, ...]:
        """What the grey image of ``plane`` depends on."""
        return (id(state.volume), plane, plane_index(plane, state.crosshair), state.window)

    def windowed(self, state: ViewportState, plane: Plane) -> np.ndarray:
        """The uint8 image of ``plane`` through the state's crosshair, in its window."""
        if plane is Plane.AXIAL:
            return window_to_uint8(state.volume.slice(state.slice_index), state.window)
        return window_to_uint8(plane_image(state.volume, plane, state.crosshair), state.window)

    def show_plane(self, state: ViewportState, plane: Plane) -> bool:
        """Paint the grey ``plane`` image unless it is already shown; True if it was redrawn."""
        key = self.image_key(state, plane)
        if key == self._image_key and self.image_item.image is not None:
            return False
        self._set(self.windowed(state, plane))
        self._image_key = key
        self.renders += 1
        self._fit(state, plane)
        return True

    def show_overlay(self, rgb: np.ndarray, state: ViewportState, plane: Plane) -> None:
        """Paint ``rgb`` instead of the grey image (the next :meth:`show_plane` redraws)."""
        self._set(np.ascontiguousarray(rgb))
        self._image_key = None
        self._fit(state, plane)

    def _set(self, image: np.ndarray) -> None:
        self.image_item.setImage(image, autoLevels=False, levels=(0, 255))

    def _fit(self, state: ViewportState, plane: Plane) -> None:
        """The image item spans the plane's physical size (non-square pixels keep their aspect)."""
        if plane is Plane.AXIAL:
            extent = state.extent_mm
        else:
            extent = plane_geometry(state.volume, plane).extent_mm
        if extent != self._rect:
            self._rect = extent
            self.image_item.setRect(QtCore.QRectF(0.0, 0.0, extent[0], extent[1]))

    def place_lines(
        self, state: ViewportState, plane: Plane, *, crosshair: bool, outside: bool
    ) -> None:
        """Put the reference lines through the crosshair.

        The level line of a coronal or sagittal plane always shows (it is what
        sync moves; amber and thicker when the level is outside the scan); both
        lines show when ``crosshair`` is on.
        """
        x, y = reference_lines(state.volume, plane, state.crosshair)
        level = self.hline if plane is not Plane.AXIAL else None
        for line, pos in ((self.vline, x), (self.hline, y)):
            is_level = line is level
            style = (1 if is_level and outside else 0, 2 if is_level else 1)
            visible = crosshair or is_level
            wanted = (float(pos), style, visible)
            if self._lines.get(id(line)) == wanted:
                continue
            shown = self._lines.get(id(line))
            if shown is None or shown[0] != wanted[0]:
                _move(line, wanted[0])
            if shown is None or shown[1] != style:
                line.setPen(self._pen(style))
            if shown is None or shown[2] != visible:
                line.setVisible(visible)
            self._lines[id(line)] = wanted

    def _pen(self, style: tuple[int, int]) -> QtGui.QPen:
        pen = self._pens.get(style)
        if pen is None:
            color = LEVEL_OUTSIDE_COLOR if style[0] else CROSSHAIR_COLOR
            pen = pg.mkPen(color, width=style[1])
            self._pens[style] = pen
        return pen


def _move(line: pg.InfiniteLine, pos: float) -> None:
    """Move ``line`` to ``pos`` and repaint where it was.

    Qt does not repaint the area an InfiniteLine leaves inside a pyqtgraph
    ViewBox (seen under X11: the old lines stayed on screen next to the new
    ones until something else repainted there), so the old area is asked for
    explicitly; it is a one-pixel strip, far cheaper than repainting the view.
    """
    scene = line.scene()
    old = line.mapRectToScene(line.boundingRect()) if scene is not None else None
    line.setPos(pos)
    if scene is not None and old is not None and line.isVisible():
        scene.update(old)
