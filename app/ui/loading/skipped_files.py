"""A non-modal list of the files a scan skipped, with the reason for each."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6 import QtCore, QtWidgets

from app.io.records import SkippedFile

__all__ = ["SkippedFilesDock"]


class SkippedFilesDock(QtWidgets.QDockWidget):
    """Dock listing ``SkippedFile`` entries (path, reason); hidden until asked for."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__("Skipped files", parent)
        self.setObjectName("skippedFiles")
        self.table = QtWidgets.QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["File", "Reason"])
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.horizontalHeader().setSectionResizeMode(
            0, QtWidgets.QHeaderView.ResizeMode.ResizeToContents
        )
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        self.setWidget(self.table)

    def add_skipped(self, skipped: Sequence[SkippedFile]) -> None:
        """Append entries (each file's ``path`` and ``reason``)."""
        for entry in skipped:
            row = self.table.rowCount()
            self.table.insertRow(row)
            path_item = QtWidgets.QTableWidgetItem(str(entry.path))
            path_item.setToolTip(str(entry.path))
            reason_item = QtWidgets.QTableWidgetItem(str(entry.reason))
            reason_item.setToolTip(str(entry.reason))
            self.table.setItem(row, 0, path_item)
            self.table.setItem(row, 1, reason_item)

    def clear(self) -> None:
        self.table.setRowCount(0)

    def count(self) -> int:
        return self.table.rowCount()

    def entries(self) -> list[tuple[str, str]]:
        """``(path, reason)`` of every listed file, in order."""
        out = []
        for row in range(self.table.rowCount()):
            path, reason = self.table.item(row, 0), self.table.item(row, 1)
            out.append((path.text() if path else "", reason.text() if reason else ""))
        return out

    def show_list(self) -> None:
        self.show()
        self.raise_()

    def sizeHint(self) -> QtCore.QSize:  # noqa: N802 (Qt override)
        return QtCore.QSize(600, 180)
