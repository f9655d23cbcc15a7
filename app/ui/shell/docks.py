"""The main window's docks: the study browser, the skipped files and the sketch query.

:class:`WindowDocks` builds them, puts them in their areas, and knows whether
one of them holds the keyboard; it also hides the docked browser when many
dates need the width, until the user shows or hides it themselves.
"""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from app.ui.loading.skipped_files import SkippedFilesDock
from app.ui.settings.preferences import Preferences
from app.ui.shell.sketch_link import WindowLink
from app.ui.sketch.dock import SketchDock
from app.ui.sketch.query import SketchQuery
from app.ui.viewer.seams import StatusSink
from app.ui.viewer.study_browser import StudyBrowser
from app.ui.viewer.viewport import ViewportView
from app.ui.viewer.viewport_menu import ViewportCommands

__all__ = ["WindowDocks"]

# From three dates on, the docked browser would take a sixth of the width (and
# push each image under 480 px at 1680 x 1050).
_ROOMY_DATES = 3


class WindowDocks:
    """Builds the window's docks and adds them to ``window``.

    Parameters
    ----------
    window
        The main window the docks belong to.
    query
        The sketch query the sketch dock drives.
    link
        What the sketch dock may read and do of the window.
    preferences
        Where the sketch dock keeps its settings.
    settled
        The window's "nothing loading" signal (the sketch dock waits for it).
    status
        Where the browser's hiding is explained.
    """

    def __init__(
        self,
        window: QtWidgets.QMainWindow,
        query: SketchQuery,
        link: WindowLink,
        preferences: Preferences,
        settled: QtCore.SignalInstance,
        status: StatusSink,
    ) -> None:
        self._status = status
        self.browser = StudyBrowser(window)
        window.addDockWidget(QtCore.Qt.DockWidgetArea.LeftDockWidgetArea, self.browser)
        window.resizeDocks([self.browser], [280], QtCore.Qt.Orientation.Horizontal)
        browser_toggle = self.browser.toggleViewAction()
        browser_toggle.setShortcut(QtGui.QKeySequence("Ctrl+B"))
        # Once the user shows or hides the browser, the window stops doing it for them.
        self.browser_choice_made = False
        browser_toggle.triggered.connect(self._on_browser_toggled)
        self.skipped_dock = SkippedFilesDock(window)
        window.addDockWidget(QtCore.Qt.DockWidgetArea.BottomDockWidgetArea, self.skipped_dock)
        self.skipped_dock.hide()
        # Sketch query: find slices showing an abnormality drawn on a normal slice.
        self.sketch_dock = SketchDock(query, link, preferences, window)
        window.addDockWidget(QtCore.Qt.DockWidgetArea.RightDockWidgetArea, self.sketch_dock)
        # A window of its own (it can be docked by the user): docked by default it
        # took a third of the screen from the viewports.
        # Hidden first: floating a shown dock would show it (and load the models) at start.
        self.sketch_dock.hide()
        self.sketch_dock.setFloating(True)
        settled.connect(self.sketch_dock.on_window_settled)
        self.sketch_toggle = self.sketch_dock.toggleViewAction()
        self.sketch_toggle.setText("S&ketch query")
        self.sketch_toggle.setShortcut(QtGui.QKeySequence("Ctrl+K"))

    def add_view_commands(self, commands: ViewportCommands) -> None:
        """The sketch dock's commands in every viewport's context menu."""

        def find_similar(view: ViewportView) -> None:
            self.sketch_dock.find_similar(view.state.volume, view.state.slice_index)

        commands.add_view_command("Find similar slices", find_similar)

    def _on_browser_toggled(self, _on: bool) -> None:
        self.browser_choice_made = True

    @property
    def menu_docks(self) -> list[QtWidgets.QDockWidget]:
        """The docks the View menu toggles by their own actions."""
        return [self.browser, self.skipped_dock]

    def holds_focus(self, widget: QtWidgets.QWidget | None) -> bool:
        """True when ``widget`` lies in one of the docks (the user is typing or choosing there)."""
        return widget is not None and any(
            dock.isAncestorOf(widget)
            for dock in (self.browser, self.skipped_dock, self.sketch_dock)
        )

    def make_room(self, n_dates: int) -> None:
        """Hide the docked browser when ``n_dates`` need the width, unless the user chose."""
        docked = self.browser.isVisible() and not self.browser.isFloating()
        if n_dates >= _ROOMY_DATES and docked and not self.browser_choice_made:
            self.browser.hide()
            self._status.status(
                "Study browser hidden to give the images room: View ▸ Study browser (Ctrl+B)"
            )
