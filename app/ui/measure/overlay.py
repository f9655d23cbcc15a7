"""One viewport's measurements: pyqtgraph ROIs that paint the store and edit it.

The store (:class:`~app.core.measure_store.MeasurementStore`, LPS mm) is the
truth; this overlay shows the measurements of its viewport's series that lie
on the axial slice shown, as editable ROIs in the viewport's image
millimetres. Dragging a handle writes the moved control points back to the
store when the drag ends (one undo step); the ROI is then already where the
store says, so it is kept. Any other change (undo, another viewport, a
reload) repaints from the store. The numbers beside each ROI come from
:mod:`app.core.measure_slice` (lengths, areas and HU statistics of
:mod:`app.core.measure`), never from screen pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from app.core.measure import Measurement, MeasurementError
from app.core.measure_slice import (
    ellipse_shape,
    image_to_lps,
    lps_to_image,
    measurement_slice,
    series_key,
    summary,
)
from app.core.measure_store import MeasurementStore
from app.core.planes import Plane
from app.ui.viewer.viewport import ViewportView

__all__ = ["MeasurementOverlay", "roi_points"]

_PEN = QtGui.QColor(235, 203, 139)
_SELECTED = QtGui.QColor(136, 230, 120)
_TOLERANCE_MM = 1e-3


def _pen(selected: bool) -> QtGui.QPen:
    return pg.mkPen(_SELECTED if selected else _PEN, width=2)


def roi_points(roi: pg.ROI) -> list[tuple[float, float]]:
    """The control points of a measurement ROI, in image mm (its parent's coordinates).

    A line: its two handles. An ellipse: its centre, the end of its first
    semi-axis (the ROI's local x) and of its second (local y).
    """
    if isinstance(roi, pg.LineSegmentROI):
        pts = [roi.mapToParent(p) for p in roi.listPoints()]
    else:
        w, h = roi.size()
        pts = [
            roi.mapToParent(QtCore.QPointF(w / 2, h / 2)),
            roi.mapToParent(QtCore.QPointF(w, h / 2)),
            roi.mapToParent(QtCore.QPointF(w / 2, h)),
        ]
    return [(float(p.x()), float(p.y())) for p in pts]


def make_roi(kind: str, points: list[tuple[float, float]], selected: bool = False) -> pg.ROI:
    """A line or ellipse ROI through ``points`` (image mm, as :func:`roi_points` gives them)."""
    if kind == "line":
        roi = pg.LineSegmentROI(positions=points, pen=_pen(selected))
    else:
        c, p1, p2 = (np.asarray(p, dtype=np.float64) for p in points)
        a = float(np.linalg.norm(p1 - c))
        b = float(np.linalg.norm(p2 - c))
        angle = math.atan2(p1[1] - c[1], p1[0] - c[0])
        rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        corner = c - rot @ np.array([a, b])
        roi = pg.EllipseROI(
            (float(corner[0]), float(corner[1])),
            (2 * a, 2 * b),
            angle=math.degrees(angle),
            pen=_pen(selected),
        )
    roi.setAcceptedMouseButtons(
        QtCore.Qt.MouseButton.LeftButton | QtCore.Qt.MouseButton.RightButton
    )
    return roi


class MeasurementOverlay(QtCore.QObject):
    """Paints and edits the measurements of one viewport.

    Parameters
    ----------
    view
        The viewport (its :attr:`~ViewportView.overlay_items` receive the ROIs).
    store
        The measurements.
    on_menu
        Called with ``(measurement id, global QPoint)`` on a right click on a ROI.
    on_error
        Called with a message when an edit is refused.
    """

    def __init__(
        self,
        view: ViewportView,
        store: MeasurementStore,
        on_menu: Callable[[str, QtCore.QPoint], None],
        on_error: Callable[[str], None],
    ) -> None:
        super().__init__(view)
        self.view = view
        self.store = store
        self.series = series_key(view.state.volume)
        self._on_menu = on_menu
        self._on_error = on_error
        self.rois: dict[str, pg.ROI] = {}
        self.labels: dict[str, pg.TextItem] = {}
        self._shown: dict[str, Measurement] = {}
        self.preview: QtWidgets.QGraphicsItem | None = None
        view.state.changed.connect(self._on_state)
        view.plane_changed.connect(lambda _v: self.repaint())
        store.changed.connect(self._on_store)
        self.repaint()

    def detach(self) -> None:
        """Stop listening (before the viewport goes)."""
        self.store.changed.disconnect(self._on_store)
        self.view.state.changed.disconnect(self._on_state)
        self._clear()

    # -- store / state -> screen ---------------------------------------------------------
    def _on_state(self, what: str) -> None:
        if what == "slice":
            self.repaint()

    def _on_store(self, what: str) -> None:
        self.repaint()

    def visible(self) -> dict[str, Measurement]:
        """The measurements on the slice shown (none outside the axial plane)."""
        if self.view.plane is not Plane.AXIAL:
            return {}
        volume = self.view.state.volume
        k = self.view.state.slice_index
        return {
            mid: m for mid, m in self.store.items(self.series) if measurement_slice(volume, m) == k
        }

    def image_points(self, m: Measurement) -> list[tuple[float, float]]:
        """``m``'s control points in image mm of the slice shown."""
        volume = self.view.state.volume
        k = self.view.state.slice_index
        return [lps_to_image(volume, k, p) for p in m.points]

    def repaint(self) -> None:
        """Show what the store holds for the slice shown."""
        wanted = self.visible()
        for mid in [mid for mid in self.rois if mid not in wanted]:
            self._remove(mid)
        selected = self.store.selected
        for mid, m in wanted.items():
            roi = self.rois.get(mid)
            if roi is not None and not self._matches(roi, m):
                self._remove(mid)
                roi = None
            if roi is None:
                roi = self._add(mid, m)
            roi.setPen(_pen(mid == selected))
            self._shown[mid] = m
            self._label(mid, m)

    def _matches(self, roi: pg.ROI, m: Measurement) -> bool:
        have = np.asarray(roi_points(roi))
        want = np.asarray(self.image_points(m))
        return have.shape == want.shape and bool(np.all(np.abs(have - want) < _TOLERANCE_MM))

    def _add(self, mid: str, m: Measurement) -> pg.ROI:
        roi = make_roi(m.kind, self.image_points(m), mid == self.store.selected)
        roi.setParentItem(self.view.overlay_items)
        roi.sigRegionChangeFinished.connect(lambda r, mid=mid: self._edited(mid, r))
        roi.sigRegionChanged.connect(lambda r, mid=mid: self._moving(mid, r))
        roi.sigClicked.connect(lambda r, ev, mid=mid: self._clicked(mid, ev))
        self.rois[mid] = roi
        label = pg.TextItem(color=_PEN, anchor=(0, 1))
        label.setParentItem(self.view.overlay_items)
        self.labels[mid] = label
        return roi

    def _remove(self, mid: str) -> None:
        for item in (self.rois.pop(mid, None), self.labels.pop(mid, None)):
            if item is not None:
                scene = item.scene()
                item.setParentItem(None)
                if scene is not None:
                    scene.removeItem(item)
        self._shown.pop(mid, None)

    def _clear(self) -> None:
        for mid in list(self.rois):
            self._remove(mid)
        self.clear_preview()

    def _label(self, mid: str, m: Measurement) -> None:
        label = self.labels[mid]
        label.setText(summary(self.view.state.volume, m))
        label.setColor(_SELECTED if mid == self.store.selected else _PEN)
        pts = np.asarray(self.image_points(m))
        if m.kind == "line":
            anchor = pts[np.argmax(pts[:, 0])]  # beside the right end
        else:
            shape = ellipse_shape(self.view.state.volume, m)
            anchor = np.array(shape.centre) + np.array([max(shape.semi_axes_mm), 0.0])
        label.setPos(float(anchor[0]) + 2.0, float(anchor[1]))

    # -- screen -> store -----------------------------------------------------------------
    def to_lps(self, points: list[tuple[float, float]]) -> list[tuple[float, float, float]]:
        """Image mm of the slice shown to LPS mm."""
        volume = self.view.state.volume
        k = self.view.state.slice_index
        return [image_to_lps(volume, k, x, y) for x, y in points]

    def _moving(self, mid: str, roi: pg.ROI) -> None:
        # The label follows the drag with the numbers of where the ROI is now.
        m = self._shown.get(mid)
        if m is None:
            return
        try:
            moved = m.moved(self.to_lps(roi_points(roi)), m.series_uid, m.study_date)
        except MeasurementError:
            return
        self.labels[mid].setText(summary(self.view.state.volume, moved))

    def _edited(self, mid: str, roi: pg.ROI) -> None:
        try:
            self.store.edit(mid, self.to_lps(roi_points(roi)))
        except MeasurementError as exc:
            self._on_error(f"measurement not changed: {exc}")
            self.repaint()

    def _clicked(self, mid: str, ev: object) -> None:
        self.store.select(mid)
        button = getattr(ev, "button", lambda: None)()
        if button == QtCore.Qt.MouseButton.RightButton:
            pos = ev.screenPos().toPoint()  # type: ignore[attr-defined]
            self._on_menu(mid, pos)

    # -- drawing preview ----------------------------------------------------------------
    def show_preview(self, kind: str, start: tuple[float, float], end: tuple[float, float]) -> None:
        """Rubber band of a measurement being drawn from ``start`` to ``end`` (image mm)."""
        self.clear_preview()
        pen = pg.mkPen(_PEN, width=1, style=QtCore.Qt.PenStyle.DashLine)
        item: QtWidgets.QGraphicsItem
        if kind == "line":
            item = QtWidgets.QGraphicsLineItem(start[0], start[1], end[0], end[1])
            item.setPen(pen)
        else:
            rect = QtCore.QRectF(QtCore.QPointF(*start), QtCore.QPointF(*end)).normalized()
            item = QtWidgets.QGraphicsEllipseItem(rect)
            item.setPen(pen)
        item.setParentItem(self.view.overlay_items)
        self.preview = item

    def clear_preview(self) -> None:
        if self.preview is not None:
            scene = self.preview.scene()
            if scene is not None:  # removing it from the scene takes it from its parent too
                scene.removeItem(self.preview)
            self.preview = None
