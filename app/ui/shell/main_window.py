"""The main window: one viewport per study date, newest first, with linking tools.

Ownership: the window owns the :class:`~app.ui.loading.loader.Loader` (files
are only read there), the catalogue of scanned series and the
:class:`~app.core.state.SyncGroup` that links the viewport states. It is
assembled from parts with one job each, which talk through the typed seams of
:mod:`app.ui.viewer.seams`:

- :class:`~app.ui.viewer.hanging_controller.HangingController`: slots, viewports, layout;
- :class:`~app.ui.loading.volume_cache.VolumeCache`: volumes by series key;
- :class:`~app.ui.sync.wiring.SyncWiring`: link toggles, driving clicks, sync status;
- :class:`~app.ui.saliency.scheduler.SaliencyScheduler`: when the overlay is computed;
- :class:`~app.ui.viewer.presets.PresetControls`: window presets;
- :class:`~app.ui.shell.actions.WindowActions`: menus and toolbar; :mod:`~app.ui.shell.about`.
- :class:`~app.ui.shell.docks.WindowDocks`: the browser, skipped-files and sketch docks;
- :class:`~app.ui.shell.view_events.ViewEvents`: tells the parts about viewports coming and going.

Widgets only show state and write user input to it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from app.core.state import Channel, SyncGroup, ViewportState
from app.io.catalog import PatientGroup
from app.io.records import SeriesRef
from app.ml.anatomy.sync_service import AnatomicalSliceMapper, SyncEngine
from app.ui.export.actions import ExportActions
from app.ui.loading.loader import Loader
from app.ui.loading.volume_cache import VolumeCache
from app.ui.measure.feature import Measurements
from app.ui.pacs.hooks import install_pacs
from app.ui.points.tool import LinkedCursorTool
from app.ui.resources import icon
from app.ui.saliency.overlay import SaliencyOverlay
from app.ui.saliency.scheduler import SaliencyScheduler
from app.ui.settings.preferences import Preferences
from app.ui.shell import about
from app.ui.shell.actions import MenuParts, WindowActions
from app.ui.shell.docks import WindowDocks
from app.ui.shell.error_box import ErrorBox
from app.ui.shell.focus import FocusReturn
from app.ui.shell.load_events import LoadEvents
from app.ui.shell.opening import OpenCommands, local_paths
from app.ui.shell.sketch_link import WindowLink
from app.ui.shell.status_bar import LoadStatus
from app.ui.shell.view_events import ViewEvents
from app.ui.shell.window_prefs import restore_window, save_window
from app.ui.sketch.query import SketchQuery
from app.ui.sync.anatomical_sync import AnatomicalSync
from app.ui.sync.wiring import SyncWiring
from app.ui.viewer.hanging import StudySlot
from app.ui.viewer.hanging_controller import HangingController
from app.ui.viewer.layouts import Layout
from app.ui.viewer.mode_switch import ModeSwitch
from app.ui.viewer.presets import PresetControls
from app.ui.viewer.synced_part import SyncContext
from app.ui.viewer.viewport import ViewportView
from app.ui.viewer.viewport_menu import ViewportCommands

__all__ = ["MainWindow"]

log = logging.getLogger(__name__)


class MainWindow(QtWidgets.QMainWindow):
    """PriorSync's main window.

    Parameters
    ----------
    loader
        The background loader; a default one over :mod:`app.io` when omitted.
    sync_engine
        The anatomical matching engine; one over the shipped model and the
        user's index cache when omitted.
    preferences
        Where window layout, toggles and recent files persist; the user's
        settings when omitted.
    """

    settled = QtCore.Signal()  # nothing loading and every slot shown (or failed)
    error_shown = QtCore.Signal(str)

    def __init__(
        self,
        loader: Loader | None = None,
        sync_engine: SyncEngine | None = None,
        preferences: Preferences | None = None,
    ) -> None:
        super().__init__()
        self.preferences = preferences if preferences is not None else Preferences()
        self.setWindowTitle("PriorSync")
        self.setWindowIcon(icon("priorsync"))
        self.setAcceptDrops(True)
        self.resize(1400, 850)

        self.loader = loader if loader is not None else Loader()
        self.loader.setParent(self)
        self.sync = SyncGroup()
        self.sync.set_enabled(Channel.VOI, True)
        self.sync.set_enabled(Channel.CAMERA, True)
        # Anatomical sync: series are indexed in the background; slice sync
        # switches itself on once they are, unless the user chose otherwise.
        self.anatomy = AnatomicalSync(sync_engine, self)
        self.slice_mapper = AnatomicalSliceMapper(self.anatomy.engine)
        self.sync.slice_mapper = self.slice_mapper
        self.patients: list[PatientGroup] = []
        self.series: list[SeriesRef] = []
        self.patient_index: int | None = None
        self.error_box = ErrorBox(self)

        # The parts, each with one job.
        self.volumes = VolumeCache()
        self.hanging = HangingController(self.loader, self.volumes, self.sync, self)
        self.setCentralWidget(self.hanging.area)
        context = SyncContext(self.sync, self.slice_mapper, self.hanging, self.preferences, self)
        self.wiring = SyncWiring(self.anatomy, context, self)
        self.saliency = SaliencyOverlay(self.anatomy.engine, self)
        self.saliency_view = SaliencyScheduler(self.saliency, context, self)
        self.presets = PresetControls(self.hanging, self.preferences, self)
        self.viewport_commands = ViewportCommands(
            self.hanging, lambda: self.slice_mapper.last_source, self
        )
        self.exports = ExportActions(self, self)
        # Lines and ellipse ROIs, propagation to priors, the follow-up table (issue 20).
        self.measurements = Measurements(self, self.anatomy.engine, self)
        self.exports.measurements = self.measurements
        self.opening = OpenCommands(self, self.preferences, self)

        # Sketch query: find slices showing an abnormality drawn on a normal slice.
        self.sketch_query = SketchQuery(self.anatomy.engine, self)
        link = WindowLink(
            self.hanging,
            self.anatomy.engine,
            self.sync,
            lambda: self.hanging.slots,
            lambda: self.series,
            self.show_series,
            self.open_paths,
            self,
        )
        self.docks = WindowDocks(
            self, self.sketch_query, link, self.preferences, self.settled, self
        )
        self.docks.add_view_commands(self.viewport_commands)
        self.browser = self.docks.browser
        self.skipped_dock = self.docks.skipped_dock
        self.sketch_dock = self.docks.sketch_dock

        parts = MenuParts(
            self.opening,
            self.exports,
            self.presets,
            self.wiring,
            self.saliency_view,
            self.viewport_commands,
            self.docks.menu_docks,
            self.docks.sketch_toggle,
        )
        self.actions_ = WindowActions(self, self, parts)
        # Tools that take the left mouse button, one at a time (linked cursor, measurements).
        self.modes = ModeSwitch(self.hanging, self)
        self.linked_cursor = LinkedCursorTool(
            self.sync, self.anatomy, self.hanging, self.modes, self
        )
        self.linked_cursor.add_to(
            self.actions_.toolbar, before=self.saliency_view.action, menu=self.actions_.view_menu
        )
        # File > Open from PACS... and File > PACS servers...: fetched studies come
        # back through open_paths, the same loading path as local folders.
        self.pacs_actions = install_pacs(self)
        self.measurements.install(
            self.menuBar(), self.actions_.toolbar, self.viewport_commands.menu_groups, self.modes
        )
        self.load_status = LoadStatus(
            self.statusBar(),
            self.actions_.cancel_action,
            self.skipped_dock,
            [self.wiring.sync_status_label, self.wiring.device_label],
        )
        self._expose_parts()
        self._connect()
        self._restore_preferences()

    def _expose_parts(self) -> None:
        # The controls tests, scripts and the export dialogs address by name.
        self.sync_slices_action = self.wiring.sync_slices_action
        self.link_window_action = self.wiring.link_window_action
        self.link_camera_action = self.wiring.link_camera_action
        self.sync_status_label = self.wiring.sync_status_label
        self.device_label = self.wiring.device_label
        self.saliency_action = self.saliency_view.action
        self.colormap_combo = self.saliency_view.colormap_combo
        self.opacity_slider = self.saliency_view.opacity_slider
        self.preset_combo = self.presets.combo
        self.preset_actions = self.presets.preset_actions
        self.cancel_action = self.actions_.cancel_action
        self.export_action = self.actions_.export_action
        self.batch_export_action = self.actions_.batch_export_action
        self.about_action = self.actions_.about_action
        self.sketch_action = self.actions_.sketch_action
        self.layout_actions = self.actions_.layout_actions
        self.toolbar = self.actions_.toolbar
        self.skipped_label = self.load_status.skipped_label
        self.progress_bar = self.load_status.progress_bar

    def _connect(self) -> None:
        self.browser.series_chosen.connect(self.show_series)
        self.browser.patient_chosen.connect(self.hang_patient)
        self.load_events = LoadEvents(
            self,
            self.loader,
            self.hanging,
            self.volumes,
            self.browser,
            self.load_status,
            self,
        )
        self.anatomy.idle_changed.connect(self._on_idle_changed)
        self.view_events = ViewEvents(self, self)
        self.hanging.view_added.connect(self.linked_cursor.attach)
        self.hanging.view_removed.connect(self.linked_cursor.detach)
        self.hanging.view_added.connect(self.measurements.attach)
        self.hanging.view_removed.connect(self.measurements.detach)
        self.hanging.shown_changed.connect(self._update_browser_marks)
        self.focus_return = FocusReturn(self, self, self.docks.holds_focus)

    # -- ViewportSet and StatusSink (the seams the parts see) -----------------------------
    @property
    def views(self) -> dict[int, ViewportView]:
        """Slot number -> viewport, for the slots whose series is shown."""
        return self.hanging.views

    @property
    def active_view(self) -> ViewportView | None:
        """The viewport receiving keyboard commands."""
        return self.hanging.active_view

    @property
    def slots(self) -> list[StudySlot]:
        """The hanging's slots, one per study on screen."""
        return self.hanging.slots

    def viewport_states(self) -> list[ViewportState]:
        """States of the shown viewports, in slot order."""
        return self.hanging.viewport_states()

    def target_view(self) -> ViewportView | None:
        """Where commands go: the active viewport, else the first one."""
        return self.hanging.target_view()

    def status(self, message: str, timeout_ms: int = 8000) -> None:
        """Show ``message`` in the status bar for ``timeout_ms``."""
        self.statusBar().showMessage(message, timeout_ms)

    def dialog_parent(self) -> QtWidgets.QWidget:
        """The widget dialogs are centred on."""
        return self

    # -- commands --------------------------------------------------------------------------
    def open_paths(self, paths: Sequence[Path | str]) -> None:
        """Scan files and folders (recursively) in the background and hang what they hold."""
        paths = [Path(p) for p in paths]
        if not paths:
            return
        for path in reversed(paths):  # the first one named ends up first in the list
            self.preferences.add_recent_path(path)
        self.statusBar().showMessage(f"Scanning {len(paths)} item(s)…")
        self.loader.scan(paths, known=self.series)

    def open_demo(self) -> None:
        """Build (or reuse) the demo patient in the background and hang it."""
        self.statusBar().showMessage("Preparing the demo patient…")
        self.loader.build_demo()

    def cancel_loading(self) -> None:
        """Stop what the loader is doing."""
        self.loader.cancel()

    def reset_view(self) -> None:
        """Zoom to fit and centre the active viewport (linked ones follow)."""
        if self.active_view is not None:
            self.active_view.state.reset_camera()
        else:
            for v in self.views.values():
                v.state.reset_camera()

    def set_layout(self, layout: Layout) -> None:
        """Arrange the dates as ``layout`` (1×N or 2×2), remembered for the next start."""
        self.hanging.area.set_layout_kind(layout)
        self.layout_actions[layout].setChecked(True)
        self.preferences.set_layout(layout.value)

    def show_about(self) -> None:
        """Help ▸ About: a non-modal box with the version, model and execution provider."""
        about.show_about(self, self.about_text())

    def about_text(self) -> str:
        """The About box's text."""
        return about.about_text(self.anatomy.model_info, self.anatomy.unavailable_reason)

    def show_controls(self) -> None:
        """A non-modal summary of the mouse and keyboard controls."""
        about.show_controls(self)

    def report(self, message: str) -> None:
        """Tell the user something went wrong: status bar plus a non-modal message box.

        Not logged: messages may quote file or folder names, which can hold a
        patient's name; the code that failed logs what is safe to log.
        """
        self.statusBar().showMessage(message, 10000)
        self.error_box.show(message)
        self.error_shown.emit(message)

    def dragEnterEvent(self, event: QtGui.QDragEnterEvent) -> None:  # noqa: N802 (Qt override)
        if local_paths(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QtGui.QDropEvent) -> None:  # noqa: N802 (Qt override)
        paths = local_paths(event.mimeData())
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths)

    # -- hanging ---------------------------------------------------------------------------
    def hang_patient(self, index: int) -> None:
        """Show one viewport per study of ``patients[index]``, newest first."""
        if not 0 <= index < len(self.patients):
            return
        self.patient_index = index
        self.measurements.open_patient(self.patients[index])
        self.hanging.hang(self.patients[index])
        self.docks.make_room(len(self.slots))
        self.check_settled()

    def show_series(self, ref: SeriesRef) -> None:
        """Show ``ref`` in its study's viewport (hanging its patient first if needed)."""
        key = str(ref.key)
        patient = self.patient_of(key)
        if patient is None:
            return
        if patient != self.patient_index or self.hanging.slot_of(key) is None and not self.slots:
            self.hang_patient(patient)
        self.hanging.show_series(self.patients[patient], ref)

    def _update_browser_marks(self) -> None:
        self.browser.mark_shown(self.hanging.shown_keys())

    def patient_of(self, key: str) -> int | None:
        """Index in :attr:`patients` of the patient with series ``key``, else ``None``."""
        for p, patient in enumerate(self.patients):
            for study in patient.studies:
                if any(str(r.key) == key for r in study.series):
                    return p
        return None

    def _on_idle_changed(self, idle: bool) -> None:
        if idle:
            self.check_settled()

    def check_settled(self) -> None:
        """Emit :attr:`settled` if nothing is loading or indexing."""
        if self.is_settled():
            self.settled.emit()

    def is_settled(self) -> bool:
        """True when nothing is loading, indexing or aligning (used by ``--screenshot`` and tests)."""
        return not self.loader.is_busy and not self.hanging.is_loading() and self.anatomy.is_idle()

    # -- preferences and shutdown ----------------------------------------------------------
    def _restore_preferences(self) -> None:
        layout = restore_window(self, self.preferences)
        self.wiring.restore()
        self.hanging.area.set_layout_kind(layout)
        self.layout_actions[layout].setChecked(True)

    def save_layout(self) -> None:
        """Keep the window geometry and the docks' and toolbar's state for the next start."""
        save_window(self, self.preferences)

    def shutdown(self) -> None:
        """Stop background work and release viewports (idempotent)."""
        self.loader.shutdown()
        self.anatomy.shutdown()
        self.linked_cursor.shutdown()
        self.saliency.shutdown()
        self.exports.shutdown()
        self.sketch_query.shutdown()
        self.measurements.shutdown()
        self.hanging.clear()
        self.volumes.clear()

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802 (Qt override)
        self.save_layout()
        self.shutdown()
        super().closeEvent(event)
