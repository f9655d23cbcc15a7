"""A one-line label that elides in the middle, for series titles in viewport headers."""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

__all__ = ["ElidedLabel"]


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
        """The whole text, as given (the label may show it shortened)."""
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
