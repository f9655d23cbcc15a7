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
# Pixel offsets within OUTLINE_PX of a glyph, where its dark copies are drawn.
_RIM_OFFSETS = tuple(
    (dx, dy)
    for dx in range(-OUTLINE_PX, OUTLINE_PX + 1)
    for dy in range(-OUTLINE_PX, OUTLINE_PX + 1)
    if (dx, dy) != (0, 0) and dx * dx + dy * dy <= OUTLINE_PX * OUTLINE_PX + 1
)


class OutlinedLabel(QtWidgets.QLabel):
    """A plain-text label whose glyphs are filled with the text colour and rimmed in black.

    Stroking the outline of text is slow (milliseconds a line), and an overlay
    label is repainted whenever the image beneath it is, so the outlined text
    is drawn once into a pixmap and that pixmap is what each repaint copies;
    it is drawn again only when the text, size, font, colour or alignment change.
    """

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._pixmap: QtGui.QPixmap | None = None
        self._pixmap_key: tuple[object, ...] | None = None

    def sizeHint(self) -> QtCore.QSize:  # noqa: N802 (Qt override)
        pad = 2 * OUTLINE_PX
        return super().sizeHint() + QtCore.QSize(pad, pad)

    def minimumSizeHint(self) -> QtCore.QSize:  # noqa: N802 (Qt override)
        return self.sizeHint()

    def paintEvent(self, event: QtGui.QPaintEvent) -> None:  # noqa: N802 (Qt override)
        text = self.text()
        if not text:
            return
        fill = self.palette().color(QtGui.QPalette.ColorRole.WindowText)
        ratio = self.devicePixelRatioF()
        key = (
            text,
            self.width(),
            self.height(),
            ratio,
            self.font().key(),
            fill.rgba(),
            int(self.alignment().value),
        )
        if key != self._pixmap_key or self._pixmap is None:
            self._pixmap = self._render(text, fill, ratio)
            self._pixmap_key = key
        painter = QtGui.QPainter(self)
        painter.drawPixmap(0, 0, self._pixmap)
        painter.end()

    def _render(self, text: str, fill: QtGui.QColor, ratio: float) -> QtGui.QPixmap:
        """The outlined ``text`` on a transparent pixmap the size of the label."""
        glyphs = self._text_pixmap(text, _OUTLINE, ratio)
        pixmap = self._blank(ratio)
        painter = QtGui.QPainter(pixmap)
        # The rim: the text in black copied at every offset within the outline's
        # radius (blits of one drawing, far cheaper than stroking the text's path).
        for dx, dy in _RIM_OFFSETS:
            painter.drawPixmap(QtCore.QPointF(dx, dy), glyphs)
        painter.drawPixmap(0, 0, self._text_pixmap(text, fill, ratio))
        painter.end()
        return pixmap

    def _blank(self, ratio: float) -> QtGui.QPixmap:
        pixmap = QtGui.QPixmap(
            max(1, round(self.width() * ratio)), max(1, round(self.height() * ratio))
        )
        pixmap.setDevicePixelRatio(ratio)
        pixmap.fill(QtCore.Qt.GlobalColor.transparent)
        return pixmap

    def _text_pixmap(self, text: str, color: QtGui.QColor, ratio: float) -> QtGui.QPixmap:
        """``text`` in ``color``, aligned as the label is, inside the outline's margin."""
        pixmap = self._blank(ratio)
        painter = QtGui.QPainter(pixmap)
        painter.setRenderHint(QtGui.QPainter.RenderHint.TextAntialiasing)
        painter.setFont(self.font())
        painter.setPen(color)
        metrics = self.fontMetrics()
        right = bool(self.alignment() & QtCore.Qt.AlignmentFlag.AlignRight)
        centre = bool(self.alignment() & QtCore.Qt.AlignmentFlag.AlignHCenter)
        y = OUTLINE_PX + metrics.ascent()
        for line in text.split("\n"):
            advance = metrics.horizontalAdvance(line)
            x: float
            if right:
                x = self.width() - OUTLINE_PX - advance
            elif centre:
                x = (self.width() - advance) // 2
            else:
                x = OUTLINE_PX
            painter.drawText(QtCore.QPointF(x, y), line)
            y += metrics.lineSpacing()
        painter.end()
        return pixmap


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
