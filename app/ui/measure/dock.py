"""The follow-up table: each tracked finding's long-axis diameter per date and its change.

Rows come from :func:`app.core.measure.followup_rows` (one per finding and
date, oldest first): the diameter (a line's length, an ellipse's long axis)
and the change in % against the oldest and the previous date. Clicking a row
asks the window to show that finding on every date (:attr:`FollowUpDock.row_chosen`).
"""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from app.core.measure_store import MeasurementStore
from app.core.volume import SeriesInfo
from app.export.measurements import format_change, table_rows

__all__ = ["COLUMNS", "FollowUpDock"]

COLUMNS = ("Finding", "Date", "Long axis", "vs oldest", "vs previous")


def _date(study_date: str) -> str:
    return SeriesInfo(study_date=study_date).display_date()


class FollowUpDock(QtWidgets.QDockWidget):
    """A dock with the follow-up table of the store's findings.

    Signals
    -------
    row_chosen(str, str)
        ``(finding, study_date)`` of a clicked row.
    """

    row_chosen = QtCore.Signal(str, str)

    def __init__(self, store: MeasurementStore, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__("Follow-up", parent)
        self.setObjectName("followUpDock")
        self.store = store
        self.table = QtWidgets.QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.cellClicked.connect(self._on_clicked)
        self.empty = QtWidgets.QLabel(
            "No measurements yet: draw a line (L) or an ellipse (E) on a nodule, "
            "then Propagate to priors."
        )
        self.empty.setWordWrap(True)
        body = QtWidgets.QWidget()
        layout = QtWidgets.QVBoxLayout(body)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.empty)
        layout.addWidget(self.table, 1)
        self.setWidget(body)
        self._keys: list[tuple[str, str]] = []
        store.changed.connect(self._on_store)
        self.refresh()

    def _on_store(self, what: str) -> None:
        if what == "measurements":
            self.refresh()

    def refresh(self) -> None:
        """Rebuild the table from the store."""
        rows = table_rows(self.store.findings())
        self.table.setRowCount(len(rows))
        self._keys = []
        for r, (name, row) in enumerate(rows):
            cells = (
                name,
                _date(row.study_date),
                f"{row.diameter_mm:.1f} mm",
                format_change(row.change_vs_oldest_pct),
                format_change(row.change_vs_previous_pct),
            )
            for c, text in enumerate(cells):
                item = QtWidgets.QTableWidgetItem(text)
                if c >= 2:
                    item.setTextAlignment(
                        QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter
                    )
                self.table.setItem(r, c, item)
            self._keys.append((name, row.study_date))
        self.table.resizeColumnsToContents()
        self.empty.setVisible(not rows)

    def cell_texts(self) -> list[list[str]]:
        """The table's text, row by row (for tests and the export caption)."""
        rows = []
        for r in range(self.table.rowCount()):
            items = [self.table.item(r, c) for c in range(self.table.columnCount())]
            rows.append([item.text() if item is not None else "" for item in items])
        return rows

    def _on_clicked(self, row: int, _column: int) -> None:
        if 0 <= row < len(self._keys):
            self.row_chosen.emit(*self._keys[row])
