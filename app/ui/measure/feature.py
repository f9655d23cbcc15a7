"""Measurements in the main window: the store, the tools, propagation, the table and saving.

One object the window creates and tells about its viewports and patients;
the parts it assembles each have one job:

- :class:`~app.core.measure_store.MeasurementStore`: the measurements (LPS mm) and the undo history;
- :class:`~app.ui.measure.tools.MeasureTools`: actions, drawing and editing in the viewports;
- :class:`~app.ui.measure.propagation.Propagator`: "Propagate to priors" in the background;
- :class:`~app.ui.measure.dock.FollowUpDock`: the follow-up table;
- :class:`~app.ui.measure.persistence.MeasurementPersistence`: saving beside the caches.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from PySide6 import QtCore, QtGui, QtWidgets

from app.core.measure import Finding, Measurement
from app.core.measure_slice import series_key
from app.core.measure_store import MeasurementStore
from app.core.state import SyncGroup, ViewportState
from app.core.volume import Volume
from app.io.catalog import PatientGroup
from app.ml.anatomy.sync_service import SyncEngine
from app.ui.measure.dock import FollowUpDock
from app.ui.measure.persistence import MeasurementPersistence
from app.ui.measure.propagation import Propagator
from app.ui.measure.tools import MeasureTools
from app.ui.viewer.mode_switch import ModeSwitch
from app.ui.viewer.viewport import ViewportView

__all__ = ["MeasureHost", "Measurements"]


class MeasureHost(Protocol):
    """What the measurements need from the window."""

    @property
    def views(self) -> dict[int, ViewportView]: ...

    @property
    def sync(self) -> SyncGroup: ...

    def viewport_states(self) -> list[ViewportState]: ...

    def status(self, message: str, timeout_ms: int = 8000) -> None: ...


class Measurements(QtCore.QObject):
    """The measurement feature of a window (see the module docstring).

    Parameters
    ----------
    host
        The window's viewports, sync group and status bar.
    engine
        The sync engine (its alignments seed the point engine).
    window
        The main window (shortcuts, the dock).
    root
        Folder of the measurement files (``cache_dir()/measurements`` when ``None``).
    """

    def __init__(
        self,
        host: MeasureHost,
        engine: SyncEngine,
        window: QtWidgets.QMainWindow,
        root: Path | None = None,
    ) -> None:
        super().__init__(window)
        self.host = host
        self.store = MeasurementStore()
        self.tools = MeasureTools(self.store, window, host.status, window.centralWidget())
        self.propagator = Propagator(self.store, engine, host.viewport_states, host.sync.held, self)
        self.tools.propagate_requested.connect(self.propagate)
        self.propagator.finished.connect(host.status)
        self.persistence = MeasurementPersistence(self.store, root, self)
        self.persistence.message.connect(lambda text: host.status(text, 15000))
        self.dock = FollowUpDock(self.store, window)
        self.dock.row_chosen.connect(self.show_finding)
        window.addDockWidget(QtCore.Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        self.dock.hide()
        self.store.changed.connect(self._show_dock_once)
        self._dock_shown = False

    def _show_dock_once(self, what: str) -> None:
        # The table appears with the first measurement; after that the user decides.
        if what == "measurements" and len(self.store) and not self._dock_shown:
            self._dock_shown = True
            self.dock.show()

    def install(
        self,
        menu_bar: QtWidgets.QMenuBar,
        toolbar: QtWidgets.QToolBar,
        menu_groups: list[Sequence[QtGui.QAction | QtWidgets.QMenu]],
        modes: ModeSwitch | None = None,
    ) -> QtWidgets.QMenu:
        """Put the tools in a Measure menu (before Help), the toolbar and every context menu.

        With ``modes`` (the window's switch) the tools exclude the other left-button tools.
        """
        tools = self.tools
        if modes is not None:
            tools.use_modes(modes)
        menu = QtWidgets.QMenu("&Measure", menu_bar)
        for action in (tools.line_action, tools.ellipse_action):
            menu.addAction(action)
        menu.addSeparator()
        for action in (tools.propagate_action, tools.delete_action):
            menu.addAction(action)
        menu.addSeparator()
        menu.addAction(tools.undo_action)
        menu.addAction(tools.redo_action)
        menu.addSeparator()
        table = self.dock.toggleViewAction()
        table.setText("Follow-up &table")
        menu.addAction(table)
        help_action = next(
            (a for a in menu_bar.actions() if a.text().replace("&", "") == "Help"), None
        )
        if help_action is not None:
            menu_bar.insertMenu(help_action, menu)
        else:
            menu_bar.addMenu(menu)
        toolbar.addSeparator()
        for action in (tools.line_action, tools.ellipse_action, tools.propagate_action):
            toolbar.addAction(action)
        menu_groups.append([tools.line_action, tools.ellipse_action, tools.propagate_action])
        return menu

    def attach(self, view: ViewportView) -> None:
        """A viewport was added."""
        self.tools.attach(view)

    def detach(self, view: ViewportView) -> None:
        """A viewport goes away."""
        self.tools.detach(view)

    def open_patient(self, patient: PatientGroup) -> None:
        """Show ``patient``'s saved measurements."""
        self.persistence.open_patient(patient)

    def propagate(self, mid: str) -> None:
        """Propagate measurement ``mid`` to the other dates on screen."""
        self.host.status(self.propagator.propagate(mid))

    def show_finding(self, finding: str, study_date: str) -> None:
        """Every date of ``finding`` shows its measurement (a row of the table was clicked)."""
        self.tools.show_finding(
            list(self.host.views.values()), finding, study_date, self.host.sync.held
        )

    def measurements_of(self, volume: Volume) -> list[Measurement]:
        """The measurements on ``volume``'s series (for the export)."""
        return [m for _, m in self.store.items(series_key(volume))]

    def findings_of(self, volumes: list[Volume]) -> list[Finding]:
        """The findings measured on any of ``volumes`` (the export's table)."""
        keys = {series_key(v) for v in volumes}
        return [
            f for f in self.store.findings() if any(m.series_uid in keys for m in f.measurements)
        ]

    def shutdown(self) -> None:
        self.propagator.shutdown()
