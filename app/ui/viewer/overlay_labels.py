"""Text drawn over an image view: the read-only labels and the R/L/A/P edge letters.

Overlay text is painted white-on-image with a dark outline, so it stays
readable on any window (lung, bone, a saliency colour map): the outline gives
every glyph a dark rim whatever lies beneath. The viewports and the sketch
canvas show the same orientation letters in the same places, so a reader
sees the patient's right on the same side in both.
"""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

__all__ = [
    "EDGES",
    "OUTLINE_PX",
    "OutlinedLabel",
    "orientation_letters",
    "overlay_label",
    "place_orientation_letters",
]

EDGES = ("left", "right", "top", "bottom")
OUTLINE_PX = 2  # the dark rim around each glyph
_OUTLINE = QtGui.QColor(0, 0, 0, 235)
# Object names whose text is painted outlined (the others have a background box).
_OUTLINED = ("overlay", "orientation")


class OutlinedLabel(QtWidgets.QLabel):
    """A plain-text label whose glyphs are filled with the text colour and rimmed in black."""

    def sizeHint(self) -> QtCore.QSize:  # noqa: N802 (Qt override)
        pad = 2 * OUTLINE_PX
        return super().sizeHint() + QtCore.QSize(pad, pad)

    def minimumSizeHint(self) -> QtCore.QSize:  # noqa: N802 (Qt override)
        return self.sizeHint()

    def paintEvent(self, event: QtGui.QPaintEvent) -> None:  # noqa: N802 (Qt override)
        text = self.text()
        if not text:
            return
        painter = QtGui.QPainter(self)
        painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
        metrics = self.fontMetrics()
        fill = self.palette().color(QtGui.QPalette.ColorRole.WindowText)
        pen = QtGui.QPen(_OUTLINE, 2.0 * OUTLINE_PX)
        pen.setJoinStyle(QtCore.Qt.PenJoinStyle.RoundJoin)
        lines = text.split("\n")
        right = bool(self.alignment() & QtCore.Qt.AlignmentFlag.AlignRight)
        centre = bool(self.alignment() & QtCore.Qt.AlignmentFlag.AlignHCenter)
        y = OUTLINE_PX + metrics.ascent()
        for line in lines:
            advance = metrics.horizontalAdvance(line)
            x: float
            if right:
                x = self.width() - OUTLINE_PX - advance
            elif centre:
                x = (self.width() - advance) / 2
            else:
                x = OUTLINE_PX
            path = QtGui.QPainterPath()
            path.addText(QtCore.QPointF(x, y), self.font(), line)
            painter.strokePath(path, pen)
            painter.fillPath(path, fill)
            y += metrics.lineSpacing()
        painter.end()


def overlay_label(parent: QtWidgets.QWidget, name: str = "overlay") -> QtWidgets.QLabel:
    """A label over ``parent`` styled by object ``name``; clicks pass through it."""
    label = OutlinedLabel(parent) if name in _OUTLINED else QtWidgets.QLabel(parent)
    label.setObjectName(name)
    # Overlays are read-only annotations: clicks must reach the image below.
    label.setAttribute(QtCore.Qt.WidgetAttribute.WA_TransparentForMouseEvents)
    return label


def orientation_letters(parent: QtWidgets.QWidget) -> dict[str, QtWidgets.QLabel]:
    """One empty orientation label per edge of ``parent`` (see :data:`EDGES`)."""
    return {edge: overlay_label(parent, "orientation") for edge in EDGES}


def place_orientation_letters(
    labels: dict[str, QtWidgets.QLabel], width: int, height: int, margin: int = 6
) -> None:
    """Size each letter to its text and put it at the middle of its edge."""
    for label in labels.values():
        label.adjustSize()
    left, right, top, bottom = (labels[e] for e in EDGES)
    left.move(margin, (height - left.height()) // 2)
    right.move(width - right.width() - margin, (height - right.height()) // 2)
    top.move((width - top.width()) // 2, margin)
    bottom.move((width - bottom.width()) // 2, height - bottom.height() - margin)
