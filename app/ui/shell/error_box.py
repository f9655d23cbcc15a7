"""The one non-modal warning box the main window reuses for every error it reports."""

from __future__ import annotations

from PySide6 import QtWidgets

__all__ = ["ErrorBox"]


class ErrorBox:
    """A warning box made on first use and then reused, so errors never pile up in boxes.

    Parameters
    ----------
    parent
        The window the box is centred on.
    """

    def __init__(self, parent: QtWidgets.QWidget) -> None:
        self._parent = parent
        self.box: QtWidgets.QMessageBox | None = None

    def show(self, message: str) -> None:
        """Show ``message`` in the box (non-modal: the user can keep working)."""
        box = self.box
        if box is None:
            box = QtWidgets.QMessageBox(self._parent)
            box.setIcon(QtWidgets.QMessageBox.Icon.Warning)
            box.setWindowTitle("PriorSync")
            box.setModal(False)
            self.box = box
        box.setText(message)
        box.show()
