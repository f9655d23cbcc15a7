"""The status bar's permanent widgets: sync and model state, skipped files, load progress."""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from app.ui.loading.skipped_files import SkippedFilesDock

__all__ = ["LoadStatus"]


class LoadStatus(QtCore.QObject):
    """The skipped-files link, the progress bar and the cancel button of background loading.

    Parameters
    ----------
    bar
        The window's status bar (the widgets are added to it).
    cancel_action
        Cancels loading (shown only while something loads).
    skipped_dock
        Lists the skipped files; the "show" link opens it.
    leading
        Widgets placed first (the sync status and model device).
    """

    def __init__(
        self,
        bar: QtWidgets.QStatusBar,
        cancel_action: QtGui.QAction,
        skipped_dock: SkippedFilesDock,
        leading: list[QtWidgets.QWidget],
    ) -> None:
        super().__init__(bar)
        self.cancel_action = cancel_action
        self.skipped_dock = skipped_dock
        self.skipped_label = QtWidgets.QLabel()
        self.skipped_label.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.skipped_label.linkActivated.connect(lambda _link: skipped_dock.show_list())
        self.skipped_label.hide()
        self.progress_bar = QtWidgets.QProgressBar()
        self.progress_bar.setMaximumWidth(220)
        self.progress_bar.setTextVisible(True)
        self.progress_bar.hide()
        self.cancel_button = QtWidgets.QToolButton()
        self.cancel_button.setDefaultAction(cancel_action)
        self.cancel_button.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonIconOnly)
        self.cancel_button.hide()
        for widget in [*leading, self.skipped_label, self.progress_bar, self.cancel_button]:
            bar.addPermanentWidget(widget)
        bar.showMessage("Ready")

    def add_skipped(self, skipped: list) -> None:
        """List newly skipped files and say how many there are now."""
        self.skipped_dock.add_skipped(skipped)
        n = self.skipped_dock.count()
        self.skipped_label.setText(
            f"{n} file{'s' if n != 1 else ''} skipped — "
            "<a href='show' style='color:#88c0d0'>show</a>"
        )
        self.skipped_label.show()

    def set_busy(self, busy: bool) -> None:
        """Show (or hide) the progress bar and the cancel button."""
        self.cancel_action.setEnabled(busy)
        self.cancel_action.setVisible(busy)
        self.cancel_button.setVisible(busy)
        self.progress_bar.setVisible(busy)
        if busy:
            self.progress_bar.setRange(0, 0)

    def set_progress(self, label: str, done: int, total: int) -> None:
        """Show ``label`` with ``done`` of ``total`` (a busy bar when ``total`` is 0)."""
        if total > 0:
            self.progress_bar.setRange(0, total)
            self.progress_bar.setValue(min(done, total))
        else:
            self.progress_bar.setRange(0, 0)
        self.progress_bar.setFormat(f"{label} %p%")
