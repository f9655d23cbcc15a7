"""The drawing surface of a sketch query: the template slice with the sketch painted over it.

The widget paints a :class:`~app.core.sketch.SketchCanvasModel` and turns mouse
input into calls on it; it keeps no copy of the sketch. Like the viewer's
viewports the slice is shown as painted there (display orientation, row 0 on
top, square millimetres) but always in a soft-tissue window, where the lesions
one sketches (masses, hypo- and hyperdense areas) are told apart.

Mouse: left drag draws with the current tool (a click paints one dab), the
wheel changes the brush size (a circle shows the brush under the mouse),
right or middle drag pans, ctrl+wheel zooms, double click fits the slice.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from app.core.imaging import SOFT_TISSUE_WINDOW, window_to_uint8
from app.core.sketch import SKETCH_CLASSES, SketchCanvasModel
from app.core.state import edge_labels
from app.core.volume import Volume
from app.ui.viewer.overlay_labels import orientation_letters, place_orientation_letters
from app.ui.viewer.slice_view_box import ZOOM_STEP

__all__ = ["OVERLAY_ALPHA", "SketchCanvas", "SketchViewBox", "sketch_rgba"]

# The sketch is translucent so the anatomy under it stays visible.
OVERLAY_ALPHA = 150


def sketch_rgba(labels: np.ndarray, alpha: int = OVERLAY_ALPHA) -> np.ndarray:
    """``uint8 (rows, cols, 4)`` colours of a sketch: classes in their colour, background clear."""
    lut = np.zeros((256, 4), dtype=np.uint8)
    for cls in SKETCH_CLASSES:
        lut[cls.value] = (*cls.rgb, alpha)
    return lut[np.asarray(labels, dtype=np.uint8)]


class SketchViewBox(pg.ViewBox):
    """A ViewBox whose left drag draws on the sketch model instead of panning."""

    hovered = QtCore.Signal(object)  # QPointF in view (mm) coordinates, or None on leave

    def __init__(self, canvas: SketchCanvas) -> None:
        super().__init__(lockAspect=True, invertY=True, enableMenu=False)
        self.canvas = canvas
        self.setMouseEnabled(False, False)

    def _pixel(self, pos: QtCore.QPointF) -> tuple[float, float]:
        return self.canvas.view_to_pixel(self.mapToView(pos))

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: N802 (Qt override)
        model = self.canvas.model
        button = ev.button()
        if button == QtCore.Qt.MouseButton.LeftButton:
            if not self.canvas.has_template():
                ev.ignore()
                return
            if ev.isStart():
                model.begin_stroke(*self._pixel(ev.buttonDownPos()))
            model.continue_stroke(*self._pixel(ev.pos()))
            if ev.isFinish():
                model.end_stroke()
            self.hovered.emit(self.mapToView(ev.pos()))
        elif button in (QtCore.Qt.MouseButton.RightButton, QtCore.Qt.MouseButton.MiddleButton):
            here = self.mapToView(ev.pos())
            before = self.mapToView(ev.lastPos())
            self.translateBy(x=before.x() - here.x(), y=before.y() - here.y())
        else:
            ev.ignore()
            return
        ev.accept()

    def mouseClickEvent(self, ev) -> None:  # noqa: N802 (Qt override)
        if ev.button() != QtCore.Qt.MouseButton.LeftButton or not self.canvas.has_template():
            ev.ignore()
            return
        if ev.double():
            self.canvas.fit()
        else:
            # A click without a drag paints one dab (pyqtgraph reports no drag for it).
            model = self.canvas.model
            model.begin_stroke(*self._pixel(ev.pos()))
            model.end_stroke()
        ev.accept()

    def wheelEvent(self, ev, axis=None) -> None:  # noqa: N802 (Qt override)
        notches = ev.delta() / 120.0
        if notches == 0:
            ev.ignore()
            return
        if ev.modifiers() & QtCore.Qt.KeyboardModifier.ControlModifier:
            factor = ZOOM_STEP ** (-notches)  # scaleBy < 1 zooms in
            self.scaleBy((factor, factor), center=self.mapToView(ev.pos()))
        else:
            self.canvas.model.scale_brush(notches)
        self.hovered.emit(self.mapToView(ev.pos()))
        ev.accept()

    def hoverEvent(self, ev) -> None:  # noqa: N802 (pyqtgraph override)
        if ev.isExit():
            self.hovered.emit(None)
        else:
            self.hovered.emit(self.mapToView(ev.pos()))


class SketchCanvas(QtWidgets.QWidget):
    """The template slice with the sketch over it, drawn with the mouse.

    Parameters
    ----------
    model
        The sketch to show and edit.
    """

    def __init__(self, model: SketchCanvasModel, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.volume: Volume | None = None
        self.slice_index = -1
        self.graphics = pg.GraphicsView(background="k")
        self.graphics.setMinimumSize(200, 200)
        self.graphics.setToolTip(
            "Left drag: draw · wheel: brush size · right/middle drag: pan · "
            "Ctrl+wheel: zoom · double click: fit"
        )
        self.view_box = SketchViewBox(self)
        self.graphics.setCentralItem(self.view_box)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.overlay_item = pg.ImageItem(axisOrder="row-major")
        self.overlay_item.setZValue(1)
        self.view_box.addItem(self.image_item)
        self.view_box.addItem(self.overlay_item)
        # The brush outline follows the mouse; its radius is the brush's, in mm.
        self.cursor_item = QtWidgets.QGraphicsEllipseItem()
        pen = QtGui.QPen(QtGui.QColor(255, 255, 255, 220))
        pen.setCosmetic(True)
        pen.setWidthF(1.2)
        self.cursor_item.setPen(pen)
        self.cursor_item.setZValue(2)
        self.cursor_item.hide()
        self.view_box.addItem(self.cursor_item, ignoreBounds=True)
        self._cursor_at: QtCore.QPointF | None = None
        self.view_box.hovered.connect(self._on_hover)

        # Orientation letters as in the viewports, so a lesion is drawn on the
        # side the reader means (R is on the screen's left).
        host = self.graphics.viewport()
        self.orientation_labels = orientation_letters(host)
        host.installEventFilter(self)

        self.hint = QtWidgets.QLabel(
            "No template yet: show a slice of normal anatomy in a viewport,\n"
            "then press “Use current slice”."
        )
        self.hint.setObjectName("placeholder")
        self.hint.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.hint.setWordWrap(True)
        self.stack = QtWidgets.QStackedLayout(self)
        self.stack.addWidget(self.hint)
        self.stack.addWidget(self.graphics)
        self.setCursor(QtCore.Qt.CursorShape.CrossCursor)

        model.changed.connect(self._on_model_changed)

    # -- template ------------------------------------------------------------------------
    def has_template(self) -> bool:
        return self.volume is not None

    def set_template(self, volume: Volume, k: int) -> None:
        """Show slice ``k`` of ``volume`` (display-oriented) as the template to draw on."""
        k = int(np.clip(k, 0, volume.n_slices - 1))
        self.volume, self.slice_index = volume, k
        sx, sy = (float(s) for s in volume.geometry.spacing[:2])
        rows, cols = volume.voxels.shape[1:]
        self.model.set_template_shape((rows, cols), (sx, sy))
        rect = QtCore.QRectF(0.0, 0.0, cols * sx, rows * sy)
        # Soft-tissue window (W 400 L 40): the lesion classes differ by tens of HU.
        self.image_item.setImage(
            window_to_uint8(volume.slice(k), SOFT_TISSUE_WINDOW), autoLevels=False, levels=(0, 255)
        )
        self.image_item.setRect(rect)
        self.overlay_item.setRect(rect)
        self._paint_labels()
        for edge, text in edge_labels(volume.geometry.direction).items():
            self.orientation_labels[edge].setText(text)
        self.stack.setCurrentWidget(self.graphics)
        self._place_orientation_labels()
        self.fit()

    def eventFilter(self, watched: QtCore.QObject, event: QtCore.QEvent) -> bool:  # noqa: N802
        if event.type() == QtCore.QEvent.Type.Resize and watched is self.graphics.viewport():
            self._place_orientation_labels()
        return False

    def _place_orientation_labels(self) -> None:
        host = self.graphics.viewport()
        place_orientation_letters(self.orientation_labels, host.width(), host.height())

    def clear_template(self) -> None:
        """Show the "no template" hint again (the template series was closed)."""
        self.volume, self.slice_index = None, -1
        self.stack.setCurrentWidget(self.hint)

    def fit(self) -> None:
        """Zoom so the whole slice fits, centred."""
        if self.volume is None:
            return
        rows, cols = self.volume.voxels.shape[1:]
        sx, sy = (float(s) for s in self.volume.geometry.spacing[:2])
        self.view_box.setRange(xRange=(0, cols * sx), yRange=(0, rows * sy), padding=0.0)

    # -- coordinates ----------------------------------------------------------------------
    def view_to_pixel(self, point: QtCore.QPointF) -> tuple[float, float]:
        """``(col, row)`` of the slice pixel under a view (mm) position; pixel centres integral."""
        sx, sy = self.model.spacing_mm
        return point.x() / sx - 0.5, point.y() / sy - 0.5

    def pixel_to_scene(self, col: float, row: float) -> QtCore.QPointF:
        """Scene position of a slice pixel centre (for tests and drivers sending mouse events)."""
        sx, sy = self.model.spacing_mm
        return self.view_box.mapViewToScene(QtCore.QPointF((col + 0.5) * sx, (row + 0.5) * sy))

    def pixel_to_widget(self, col: float, row: float) -> QtCore.QPoint:
        """Position in :attr:`graphics`' viewport widget of a slice pixel centre."""
        return self.graphics.mapFromScene(self.pixel_to_scene(col, row))

    # -- painting ---------------------------------------------------------------------------
    def _on_model_changed(self, what: str) -> None:
        if what in ("labels", "template"):
            self._paint_labels()
        elif what == "brush":
            self._paint_cursor()

    def _paint_labels(self) -> None:
        labels = self.model.labels
        if labels.size == 0:
            self.overlay_item.clear()
            return
        self.overlay_item.setImage(sketch_rgba(labels), autoLevels=False, levels=(0, 255))

    def _on_hover(self, where: QtCore.QPointF | None) -> None:
        self._cursor_at = where
        self._paint_cursor()

    def _paint_cursor(self) -> None:
        where = self._cursor_at
        if where is None or not self.has_template():
            self.cursor_item.hide()
            return
        r = self.model.brush_radius_mm
        self.cursor_item.setRect(QtCore.QRectF(where.x() - r, where.y() - r, 2 * r, 2 * r))
        self.cursor_item.show()
