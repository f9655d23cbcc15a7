"""The narrow side view of a viewport: its series' sagittal reformat with a line at the slice.

Shows at a glance where the current (or matched) slice sits in the whole
series, and, for a level the series does not cover, that the level lies
beyond its top or bottom end. Clicking or dragging in it moves to that level.
"""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from app.core.reformat import Reformat, sagittal_reformat
from app.core.state import ViewportState

__all__ = ["ScoutView", "SCOUT_WIDTH", "shows_outside_level"]

SCOUT_WIDTH = 110  # pixels: narrow, the axial image keeps the room
_LINE = QtGui.QColor("#88c0d0")
_OUTSIDE = QtGui.QColor("#ebcb8b")


def shows_outside_level(state: ViewportState) -> bool:
    """True when the synced level lies outside the scan and its nearest end slice is shown.

    Coverage describes the matched level (the first candidate); another
    candidate the user stepped to is a slice inside the scan.
    """
    match = state.match
    if match is None or match.in_coverage:
        return False
    return not match.candidates or state.slice_index == match.candidates[0][0]


class ScoutView(QtWidgets.QWidget):
    """Sagittal reformat of ``state.volume`` (computed once) with the current level marked.

    Parameters
    ----------
    state
        The viewport state whose slice is marked; clicks set its slice.
    compute
        Compute the reformat now (in this thread). With ``False`` the view
        stays black until :meth:`set_reformat` hands it one computed elsewhere
        (the main window does that in a worker thread, so opening a large
        series never stalls the GUI).
    """

    def __init__(
        self, state: ViewportState, compute: bool = True, parent: QtWidgets.QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("scout")
        self.state = state
        self.reformat: Reformat | None = None
        self._pixmap: QtGui.QPixmap | None = None
        self._scaled: QtGui.QPixmap | None = None
        if compute:
            self.set_reformat(sagittal_reformat(state.volume))
        self.setFixedWidth(SCOUT_WIDTH)
        self.setSizePolicy(
            QtWidgets.QSizePolicy.Policy.Fixed, QtWidgets.QSizePolicy.Policy.Expanding
        )
        self.setToolTip("Sagittal view of this series: the line marks the slice shown")
        self.setCursor(QtCore.Qt.CursorShape.CrossCursor)

    def set_reformat(self, reformat: Reformat) -> None:
        """Show ``reformat`` (of this view's series)."""
        img = reformat.image
        rows, cols = img.shape
        qimage = QtGui.QImage(img.data, cols, rows, cols, QtGui.QImage.Format.Format_Grayscale8)
        # QImage borrows the numpy buffer; copy() makes it own its pixels.
        self._pixmap = QtGui.QPixmap.fromImage(qimage.copy())
        self._scaled = None
        self.reformat = reformat
        self.update()

    def image_rect(self) -> QtCore.QRectF:
        """Where the reformat is painted: physical aspect kept, centred in the widget."""
        r = self.reformat
        if r is None:
            return QtCore.QRectF(self.rect())
        w, h = float(self.width() - 4), float(self.height() - 4)
        aspect = r.height_mm / max(r.width_mm, 1e-6)
        pw, ph = w, w * aspect
        if ph > h:
            pw, ph = h / aspect, h
        return QtCore.QRectF((self.width() - pw) / 2.0, (self.height() - ph) / 2.0, pw, ph)

    def _scaled_pixmap(self, rect: QtCore.QRectF) -> QtGui.QPixmap:
        """The reformat smoothly scaled to ``rect``, cached: it repaints on every slice change."""
        assert self._pixmap is not None
        size = rect.size().toSize()
        if self._scaled is None or self._scaled.size() != size:
            self._scaled = self._pixmap.scaled(
                size,
                QtCore.Qt.AspectRatioMode.IgnoreAspectRatio,
                QtCore.Qt.TransformationMode.SmoothTransformation,
            )
        return self._scaled

    def line_y(self) -> float:
        """Widget y of the marked level (the current slice)."""
        if self.reformat is None:
            return 0.0
        rect = self.image_rect()
        return rect.top() + self.reformat.fraction_of(self.state.slice_position_mm) * rect.height()

    def paintEvent(self, event: QtGui.QPaintEvent) -> None:  # noqa: N802 (Qt override)
        painter = QtGui.QPainter(self)
        painter.fillRect(self.rect(), QtGui.QColor("#000000"))
        if self.reformat is None:
            painter.end()
            return
        rect = self.image_rect()
        painter.drawPixmap(rect.topLeft(), self._scaled_pixmap(rect))
        match = self.state.match
        outside = shows_outside_level(self.state)
        pen = QtGui.QPen(_OUTSIDE if outside else _LINE)
        pen.setWidthF(2.0)
        painter.setPen(pen)
        y = self.line_y()
        painter.drawLine(QtCore.QPointF(rect.left() - 2, y), QtCore.QPointF(rect.right() + 2, y))
        if outside:
            # The level lies beyond this end of the scan: an arrow pointing out of it.
            mapped = getattr(match, "mapped_z", None)
            up = mapped is not None and mapped > self.state.slice_position_mm
            tip = rect.top() - 1 if up else rect.bottom() + 1
            base = tip + (9 if up else -9)
            cx = rect.center().x()
            painter.setBrush(_OUTSIDE)
            painter.drawPolygon(
                QtGui.QPolygonF(
                    [
                        QtCore.QPointF(cx, tip),
                        QtCore.QPointF(cx - 7, base),
                        QtCore.QPointF(cx + 7, base),
                    ]
                )
            )
        painter.end()

    def _slice_at(self, y: float) -> int:
        rect = self.image_rect()
        frac = (y - rect.top()) / max(rect.height(), 1e-6)
        r = self.reformat
        if r is None:
            return self.state.slice_index
        z = r.z_top - frac * (r.z_top - r.z_bottom)
        zs = self.state.volume.slice_z
        return int(abs(zs - z).argmin())

    def mousePressEvent(self, event: QtGui.QMouseEvent) -> None:  # noqa: N802 (Qt override)
        if event.button() == QtCore.Qt.MouseButton.LeftButton:
            self.state.set_slice(self._slice_at(event.position().y()))
            event.accept()
        else:
            super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QtGui.QMouseEvent) -> None:  # noqa: N802 (Qt override)
        if event.buttons() & QtCore.Qt.MouseButton.LeftButton:
            self.state.set_slice(self._slice_at(event.position().y()))
            event.accept()
        else:
            super().mouseMoveEvent(event)
