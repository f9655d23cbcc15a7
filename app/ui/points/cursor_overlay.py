"""The linked cursor painted on one viewport: a cross, the uncertainty circle, or why not.

:class:`CursorOverlay` paints its viewport state's
:class:`~app.core.cursor.CursorMark` on whichever plane the viewport shows:
a cross at the point and, on the other dates, a circle of the point engine's
uncertainty radius, drawn in millimetres on the image (the cut of the
uncertainty sphere through the plane shown, so it shrinks on neighbouring
slices and is gone where the plane misses it). A date that does not image the
point says so in a label ("cursor outside this scan: …"); nothing is drawn at
the edge instead. It only paints: the mark comes from the state.
"""

from __future__ import annotations

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from app.core.cursor import CursorMark, circle_radius_in_plane, plane_position
from app.core.planes import Plane
from app.ui.viewer.overlay_labels import overlay_label
from app.ui.viewer.viewport import ViewportView

__all__ = ["CURSOR_TEXT_OUTSIDE", "CursorOverlay"]

CURSOR_TEXT_OUTSIDE = "cursor outside this scan"
_DRIVER = QtGui.QColor(143, 240, 164)  # the clicked point
_PRIOR = QtGui.QColor(235, 203, 139)  # the corresponding point and its uncertainty
_CROSS_PX = 12  # the cross's arms on screen, whatever the zoom
_CROSS_GAP_PX = 3
_GAP = 3


def _pen(colour: QtGui.QColor, width: float = 2.0) -> QtGui.QPen:
    pen = QtGui.QPen(colour, width)
    pen.setCosmetic(True)  # 2 px wide at any zoom; the circle's radius itself is in mm
    return pen


class CursorOverlay(QtCore.QObject):
    """Paints ``view.state.cursor_mark`` on ``view`` and follows its slice, plane and mark."""

    def __init__(self, view: ViewportView) -> None:
        super().__init__(view)
        self.view = view
        # A cross of fixed screen size at a position in mm: moving it is one setPos.
        # Open in the middle, so the spot itself stays visible; a dark rim under
        # it keeps it readable on bone and on lung alike.
        path = QtGui.QPainterPath()
        for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            path.moveTo(dx * _CROSS_GAP_PX, dy * _CROSS_GAP_PX)
            path.lineTo(dx * _CROSS_PX, dy * _CROSS_PX)
        self.cross = QtWidgets.QGraphicsPathItem(path)
        self.cross.setFlag(QtWidgets.QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
        rim = QtWidgets.QGraphicsPathItem(path, self.cross)
        rim.setFlag(QtWidgets.QGraphicsItem.GraphicsItemFlag.ItemStacksBehindParent)
        rim.setPen(_pen(QtGui.QColor(0, 0, 0, 200), 4.0))
        self._pens = {colour.rgb(): _pen(colour) for colour in (_DRIVER, _PRIOR)}
        self.circle = QtWidgets.QGraphicsEllipseItem()
        self.circle.setPen(_pen(_PRIOR))
        self.circle.setBrush(QtGui.QBrush(QtCore.Qt.BrushStyle.NoBrush))
        view.overlay_items.addItem(self.cross)
        view.overlay_items.addItem(self.circle)
        self.label = overlay_label(view.graphics.viewport(), "cursorMessage")
        self.label.hide()
        view.graphics.viewport().installEventFilter(self)
        view.state.changed.connect(self._on_state_changed)
        view.plane_changed.connect(lambda _v: self.update())
        self.update()

    # -- what is shown (tests read these) ---------------------------------------------------
    @property
    def mark(self) -> CursorMark | None:
        return self.view.state.cursor_mark

    def cross_position(self) -> tuple[float, float] | None:
        """Where the cross is (image mm), ``None`` when it is not drawn."""
        if not self.cross.isVisible():
            return None
        return float(self.cross.pos().x()), float(self.cross.pos().y())

    def circle_radius_mm(self) -> float | None:
        """The uncertainty circle's radius (mm), ``None`` when it is not drawn."""
        if not self.circle.isVisible():
            return None
        return float(self.circle.rect().width() / 2.0)

    def message(self) -> str:
        """The cursor's text on this viewport ("" when none is shown)."""
        return self.label.text() if not self.label.isHidden() else ""

    # -- painting ---------------------------------------------------------------------------
    def _on_state_changed(self, what: str) -> None:
        if what in ("cursor", "slice"):
            self.update()

    def update(self) -> None:
        """Repaint the mark for the state's cursor, the slice and the plane shown."""
        mark = self.mark
        text = ""
        drawn = False
        if mark is None:
            pass
        elif mark.pending or not mark.in_coverage or mark.point is None:
            text = mark.message if mark.pending else f"{CURSOR_TEXT_OUTSIDE}: {mark.message}"
            if mark.driving:
                text = CURSOR_TEXT_OUTSIDE
        else:
            drawn, text = self._draw(mark)
        if not drawn:
            self.cross.setVisible(False)
            self.circle.setVisible(False)
        self._show_text(text, warn=mark is not None and not mark.in_coverage and not mark.pending)

    def _draw(self, mark: CursorMark) -> tuple[bool, str]:
        view = self.view
        assert mark.point is not None
        pos = plane_position(view.state.volume, view.plane, view.cursor, np.asarray(mark.point))
        # Half the spacing along the plane's normal: the slab one image shows.
        if view.plane is Plane.AXIAL:
            z = view.state.volume.slice_z
            half = float(np.median(np.abs(np.diff(z)))) / 2.0 if len(z) > 1 else 0.5
        elif view.plane is Plane.CORONAL:
            half = float(view.state.volume.geometry.spacing[1]) / 2.0
        else:
            half = float(view.state.volume.geometry.spacing[0]) / 2.0
        radius = 0.0 if mark.driving else float(mark.radius_mm)
        cut = circle_radius_in_plane(max(radius, half), pos.offset_mm)
        if cut is None or not pos.inside:
            return False, f"cursor {abs(pos.offset_mm):.0f} mm from this plane"
        colour = _DRIVER if mark.driving else _PRIOR
        self.cross.setPen(self._pens[colour.rgb()])
        self.cross.setPos(pos.x_mm, pos.y_mm)
        self.cross.setVisible(True)
        if radius > 0:
            r = circle_radius_in_plane(radius, pos.offset_mm) or 0.0
            self.circle.setRect(QtCore.QRectF(pos.x_mm - r, pos.y_mm - r, 2 * r, 2 * r))
            self.circle.setVisible(r > 0)
        else:
            self.circle.setVisible(False)
        return True, ""

    def _show_text(self, text: str, warn: bool) -> None:
        label = self.label
        if not text:
            label.hide()
            return
        if not label.isHidden() and label.text() == text and label.property("warn") == warn:
            return  # as shown: no re-polish on every mouse move
        label.setText(text)
        label.setProperty("warn", warn)
        label.style().unpolish(label)
        label.style().polish(label)
        label.show()
        self._place()

    def _place(self) -> None:
        if self.label.isHidden():
            return
        host = self.view.graphics.viewport()
        self.label.adjustSize()
        width = min(self.label.width(), max(1, host.width() - 12))
        self.label.resize(width, self.label.height())
        bottom = self.view.orientation_labels["bottom"]
        y = (bottom.y() if bottom.text() else host.height()) - self.label.height() - _GAP
        self.label.move((host.width() - width) // 2, max(0, y))

    def eventFilter(self, watched: QtCore.QObject, event: QtCore.QEvent) -> bool:  # noqa: N802
        if event.type() == QtCore.QEvent.Type.Resize:
            # After the viewport's own placement (it filtered the event first).
            QtCore.QTimer.singleShot(0, self._place)
        return False

    def detach(self) -> None:
        """Stop following the state (before the viewport goes away)."""
        self.view.state.changed.disconnect(self._on_state_changed)
