"""The main window: one viewport per study date, newest first, with linking tools.

Ownership: the window owns the :class:`~app.ui.loader.Loader` (files are only
read there), the catalogue of scanned series, the hanging (one
:class:`~app.ui.hanging.StudySlot` per study) and the
:class:`~app.core.state.SyncGroup` that links the viewport states. Widgets
(viewports, docks, toolbar) only show that state and write user input to it.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from app.core.imaging import Window
from app.core.reformat import Reformat, sagittal_reformat
from app.core.state import Channel, SyncGroup, ViewportState
from app.core.volume import Volume
from app.ml.anatomy.sync_service import AnatomicalSliceMapper, SyncEngine
from app.ml.saliency.gradcam import COLORMAPS
from app.ui.anatomical_sync import AnatomicalSync, ModelInfo
from app.ui.export_actions import ExportActions
from app.ui.hanging import StudySlot, plan_hanging, study_title
from app.ui.jobs import Job
from app.ui.loader import Loader, ScanOutcome
from app.ui.preferences import Preferences
from app.ui.resources import icon
from app.ui.saliency_overlay import DEFAULT_COLORMAP, OverlayKey, OverlayRequest, SaliencyOverlay
from app.ui.scout_view import shows_outside_level
from app.ui.sketch_dock import SketchDock, WindowLink
from app.ui.sketch_query import SketchQuery
from app.ui.skipped_files import SkippedFilesDock
from app.ui.study_browser import StudyBrowser
from app.ui.viewport import ViewportView

__all__ = ["LICENCES", "MainWindow", "PRESET_KEYS"]

log = logging.getLogger(__name__)

# Keys 1-5 select these presets, in this order (also the toolbar combo's order).
PRESET_KEYS: tuple[str, ...] = ("lung", "mediastinum", "abdomen", "bone", "brain")
_CUSTOM = "Custom"
CONTROLS_HELP = (
    "Wheel, Up/Down: next slice toward the head/feet\n"
    "Page Up/Down: 10 slices · Home/End: top/bottom slice\n"
    "Right drag: window (left/right) and level (up/down)\n"
    "Keys 1-5: lung, mediastinum, abdomen, bone, brain window\n"
    "Left or middle drag: pan · Ctrl+wheel or +/-: zoom\n"
    "Double click or R: reset zoom and pan\n"
    "Click a slice: every other date jumps to the same anatomical level (Sync slices)\n"
    "N / Shift+N in a synced viewport: next / previous match candidate\n"
    "S: saliency overlay (where the model sees the match) on synced slices\n"
    "Ctrl+E: export the synced slices as one image · Ctrl+Shift+E: a slice range\n"
    "Ctrl+K: sketch query (draw an abnormality on a normal slice, find similar slices)\n"
    "Click a viewport to direct keys to it; the toolbar links window, zoom/pan and slices."
)
# Shown in Help ▸ About: (component, what it is used for, licence).
LICENCES: tuple[tuple[str, str, str], ...] = (
    ("totalsegmentator 2.18.0", "CT data", "Apache-2.0"),
    ("dicom2stl 0.5.0", "CT data", "Apache-2.0"),
    ("pyradiomics 3.1.0", "CT data", "BSD-3-Clause"),
    ("Qt / PySide6", "user interface", "LGPLv3"),
    ("pyqtgraph", "image display", "MIT"),
    ("pydicom", "DICOM reading", "MIT"),
    ("SimpleITK", "volume reading", "Apache-2.0"),
    ("onnxruntime", "model inference", "MIT"),
    ("hnswlib", "slice index", "Apache-2.0"),
    ("OpenCV", "image processing", "Apache-2.0"),
    ("numpy", "arrays", "BSD-3-Clause"),
)
# Volumes kept in memory besides the ones on screen, so flipping back to a
# series just looked at does not read it again.
_EXTRA_CACHED_VOLUMES = 2
# Thumbnails of series not on screen are read in the background up to this many.
_MAX_BACKGROUND_THUMBNAILS = 16


class _Placeholder(QtWidgets.QLabel):
    """Stands in a slot while its series loads (or says why it could not)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.setObjectName("placeholder")
        self.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.setWordWrap(True)
        self.setMinimumWidth(200)


class _SlotFrame(QtWidgets.QWidget):
    """One study's place in the splitter; its content (placeholder or viewport) is swapped.

    Swapping inside a layout (rather than QSplitter.replaceWidget) keeps Qt
    ownership explicit: PySide does not hand a widget passed to replaceWidget
    over to the splitter, so a placeholder with no Python reference left would
    be deleted, and its slot would vanish.
    """

    def __init__(self) -> None:
        super().__init__()
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.content: QtWidgets.QWidget | None = None

    def set_content(self, widget: QtWidgets.QWidget) -> QtWidgets.QWidget | None:
        """Show ``widget``; return the previous content (the caller disposes of it)."""
        old = self.content
        if old is not None:
            self.layout().removeWidget(old)
        self.layout().addWidget(widget)
        self.content = widget
        return old


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
        self._sync_choice_made = False
        self.saliency = SaliencyOverlay(self.anatomy.engine, self)
        self._wanted_overlays: dict[OverlayKey, ViewportView] = {}
        # Overlay requests are coalesced: one per event-loop turn, after the sync settled.
        self._saliency_timer = QtCore.QTimer(self)
        self._saliency_timer.setSingleShot(True)
        self._saliency_timer.setInterval(0)
        self._saliency_timer.timeout.connect(self._update_saliency)
        self.exports = ExportActions(self)
        # Side-view reformats, computed off the GUI thread and kept per series.
        self._side_pool = QtCore.QThreadPool(self)
        self._side_pool.setMaxThreadCount(1)
        self._side_jobs: dict[int, Job] = {}
        self._reformats: dict[int, tuple[Volume, Reformat]] = {}

        self.patients: list[Any] = []
        self.series: list[Any] = []
        self.patient_index: int | None = None
        self.slots: list[StudySlot] = []
        self.views: dict[int, ViewportView] = {}
        self.active_view: ViewportView | None = None
        self._volumes: OrderedDict[str, Volume] = OrderedDict()
        self._pending: set[str] = set()
        self._message_box: QtWidgets.QMessageBox | None = None
        self._user_picked_view = False
        self._focusing = False

        self._build_viewport_area()
        self.browser = StudyBrowser(self)
        self.addDockWidget(QtCore.Qt.DockWidgetArea.LeftDockWidgetArea, self.browser)
        self.resizeDocks([self.browser], [280], QtCore.Qt.Orientation.Horizontal)
        self.skipped_dock = SkippedFilesDock(self)
        self.addDockWidget(QtCore.Qt.DockWidgetArea.BottomDockWidgetArea, self.skipped_dock)
        self.skipped_dock.hide()
        # Sketch query: find slices showing an abnormality drawn on a normal slice.
        self.sketch_query = SketchQuery(self.anatomy.engine, self)
        self.sketch_dock = SketchDock(self.sketch_query, WindowLink(self), self.preferences, self)
        self.addDockWidget(QtCore.Qt.DockWidgetArea.RightDockWidgetArea, self.sketch_dock)
        self.sketch_dock.hide()
        self.settled.connect(self.sketch_dock.on_window_settled)
        self._build_actions()
        self._build_status_bar()

        self.browser.series_chosen.connect(self.show_series)
        self.browser.patient_chosen.connect(self.hang_patient)
        self.loader.busy.connect(self._on_busy)
        self.loader.progress.connect(self._on_progress)
        self.loader.scanned.connect(self._on_scanned)
        self.loader.volume_loaded.connect(self._on_volume_loaded)
        self.loader.thumbnail_ready.connect(self.browser.set_thumbnail)
        self.loader.failed.connect(self._on_failed)
        self.loader.cancelled.connect(self._on_cancelled)
        self.sync.toggled.connect(self._on_sync_toggled)
        self.anatomy.index_progress.connect(self._on_index_progress)
        self.anatomy.index_changed.connect(self._on_index_changed)
        self.anatomy.ready_changed.connect(self._on_sync_ready)
        self.anatomy.alignment_ready.connect(self._on_alignment_ready)
        self.anatomy.idle_changed.connect(self._on_anatomy_idle)
        self.anatomy.model_loaded.connect(self._on_model_loaded)
        self.anatomy.unavailable.connect(self._on_sync_unavailable)
        self.saliency.ready.connect(self._on_saliency_ready)
        self.saliency.unavailable.connect(self._on_saliency_unavailable)
        self._restore_preferences()

    # -- construction --------------------------------------------------------------------
    def _build_viewport_area(self) -> None:
        # Page 0 invites the user to open something; page 1 holds the viewports.
        self.stack = QtWidgets.QStackedWidget()
        self.empty_hint = _Placeholder(
            "Open a DICOM folder or CT volume files (File ▸ Open, or drop them here)"
        )
        self.splitter = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        self.splitter.setObjectName("viewportArea")
        self.splitter.setChildrenCollapsible(False)
        self.stack.addWidget(self.empty_hint)
        self.stack.addWidget(self.splitter)
        self.setCentralWidget(self.stack)

    def _action(
        self, text: str, slot, *, icon_name: str | None = None, shortcut=None, checkable=False
    ) -> QtGui.QAction:
        action = QtGui.QAction(text, self)
        if icon_name:
            action.setIcon(icon(icon_name))
        if shortcut is not None:
            action.setShortcut(QtGui.QKeySequence(shortcut))
        action.setCheckable(checkable)
        if checkable:
            action.toggled.connect(slot)
        else:
            action.triggered.connect(slot)
        return action

    def _build_actions(self) -> None:
        keys = QtGui.QKeySequence.StandardKey
        self.open_folder_action = self._action(
            "Open &folder…", self.open_folder_dialog, icon_name="open-folder", shortcut=keys.Open
        )
        self.open_files_action = self._action(
            "Open f&iles…", self.open_files_dialog, icon_name="open-files", shortcut="Ctrl+Shift+O"
        )
        quit_action = self._action("&Quit", self.close, shortcut=keys.Quit)
        self.export_action = self._action(
            "&Export matched slices…",
            self.exports.export_pair_dialog,
            icon_name="export",
            shortcut="Ctrl+E",
        )
        self.export_action.setIconText("Export")  # the toolbar's short label
        self.export_action.setToolTip(
            "Save the synced slices side by side as one image, captioned (Ctrl+E)"
        )
        self.batch_export_action = self._action(
            "Export a slice &range…",
            self.exports.export_batch_dialog,
            shortcut="Ctrl+Shift+E",
        )
        self.reset_action = self._action(
            "&Reset view", self.reset_view, icon_name="reset-view", shortcut="R"
        )
        self.cancel_action = self._action("Cancel loading", self.loader.cancel, icon_name="cancel")
        self.cancel_action.setEnabled(False)
        # Only while something loads: a greyed "cancel" at rest reads as a control
        # that should work and does not.
        self.cancel_action.setVisible(False)
        self.link_window_action = self._action(
            "Link W/L",
            lambda on: self.sync.set_enabled(Channel.VOI, on),
            icon_name="link-window",
            checkable=True,
        )
        self.link_camera_action = self._action(
            "Link zoom/pan",
            lambda on: self.sync.set_enabled(Channel.CAMERA, on),
            icon_name="link-camera",
            checkable=True,
        )
        self.sync_slices_action = self._action(
            "Sync slices",
            lambda on: self.sync.set_enabled(Channel.SLICE, on),
            icon_name="sync-slices",
            checkable=True,
        )
        self.saliency_action = self._action(
            "Saliency overlay",
            lambda _on: self._update_saliency(),
            icon_name="saliency",
            shortcut="S",
            checkable=True,
        )
        self.saliency_action.setIconText("Saliency")
        self.saliency_action.setToolTip(
            "Colour where the model sees the match, on the driving slice and its matches (S)"
        )
        self.link_window_action.setToolTip("Window/level changes apply to every viewport")
        self.link_camera_action.setToolTip("Zoom and pan apply to every viewport")
        self.sync_slices_action.setToolTip(
            "Clicking or scrolling one viewport moves the others to the same anatomical level"
        )
        # A user's own choice wins over the automatic switch-on when indexes are ready.
        self.sync_slices_action.triggered.connect(self._on_sync_chosen)
        for action, channel in self._link_actions():
            action.setChecked(self.sync.enabled[channel])

        # The user's W/L presets (defaults unless customised); every preset applied reads these.
        self.window_presets: dict[str, Window] = self.preferences.window_presets()
        self.preset_actions: dict[str, QtGui.QAction] = {}
        self.save_preset_actions: dict[str, QtGui.QAction] = {}
        for i, name in enumerate(PRESET_KEYS, start=1):
            self.preset_actions[name] = self._action(
                name.capitalize(), lambda _=False, n=name: self.apply_preset(n), shortcut=str(i)
            )
            self.save_preset_actions[name] = self._action(
                f"{name.capitalize()}…", lambda _=False, n=name: self.save_window_as_preset(n)
            )
        self.reset_presets_action = self._action(
            "Reset presets to defaults", self.reset_window_presets
        )

        file_menu = self.menuBar().addMenu("&File")
        file_menu.addAction(self.open_folder_action)
        file_menu.addAction(self.open_files_action)
        self.recent_menu = file_menu.addMenu("Open &recent")
        # Rebuilt each time it opens, so paths deleted meanwhile drop out.
        self.recent_menu.aboutToShow.connect(self.rebuild_recent_menu)
        self.rebuild_recent_menu()
        file_menu.addSeparator()
        file_menu.addAction(self.export_action)
        file_menu.addAction(self.batch_export_action)
        file_menu.addSeparator()
        file_menu.addAction(quit_action)
        view_menu = self.menuBar().addMenu("&View")
        view_menu.addAction(self.reset_action)
        presets_menu = view_menu.addMenu("Window &presets")
        for action in self.preset_actions.values():
            presets_menu.addAction(action)
        presets_menu.addSeparator()
        self.save_preset_menu = presets_menu.addMenu("&Save current window as")
        for action in self.save_preset_actions.values():
            self.save_preset_menu.addAction(action)
        # Saving needs a viewport whose window to take.
        self.save_preset_menu.aboutToShow.connect(self._enable_save_presets)
        presets_menu.addAction(self.reset_presets_action)
        view_menu.addSeparator()
        for action, _ in self._link_actions():
            view_menu.addAction(action)
        view_menu.addAction(self.saliency_action)
        view_menu.addSeparator()
        view_menu.addAction(self.browser.toggleViewAction())
        view_menu.addAction(self.skipped_dock.toggleViewAction())
        self.sketch_action = self.sketch_dock.toggleViewAction()
        self.sketch_action.setText("S&ketch query")
        self.sketch_action.setShortcut(QtGui.QKeySequence("Ctrl+K"))
        view_menu.addAction(self.sketch_action)
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction(
            self._action("&Mouse and keys…", self.show_controls, shortcut=keys.HelpContents)
        )
        self.about_action = self._action("&About PriorSync…", self.show_about)
        help_menu.addAction(self.about_action)

        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("mainToolbar")
        toolbar.setMovable(False)
        toolbar.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        toolbar.addAction(self.open_folder_action)
        toolbar.addAction(self.open_files_action)
        toolbar.addAction(self.export_action)
        toolbar.addSeparator()
        self.preset_combo = QtWidgets.QComboBox()
        self.preset_combo.setToolTip("Window preset (keys 1-5)")
        self.preset_combo.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        for i, name in enumerate(PRESET_KEYS, start=1):
            self.preset_combo.addItem(f"{i} {name.capitalize()}", name)
        self.preset_combo.addItem(_CUSTOM, None)
        # Viewports open in the mediastinal window (ViewportState's default).
        self.preset_combo.setCurrentIndex(self.preset_combo.findData("mediastinum"))
        self.preset_combo.activated.connect(self._on_preset_combo)
        toolbar.addWidget(self.preset_combo)
        self._label_presets()
        toolbar.addAction(self.reset_action)
        toolbar.addSeparator()
        for action, _ in self._link_actions():
            toolbar.addAction(action)
        toolbar.addSeparator()
        toolbar.addAction(self.saliency_action)
        self.opacity_slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(50)
        self.opacity_slider.setFixedWidth(90)
        self.opacity_slider.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self.opacity_slider.setToolTip("Saliency overlay opacity")
        self.opacity_slider.valueChanged.connect(lambda _v: self._schedule_saliency())
        self.opacity_slider.valueChanged.connect(self.preferences.set_saliency_opacity)
        toolbar.addWidget(self.opacity_slider)
        self.colormap_combo = QtWidgets.QComboBox()
        self.colormap_combo.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self.colormap_combo.setToolTip("Saliency overlay colour map")
        for name in COLORMAPS:
            self.colormap_combo.addItem(name, name)
        self.colormap_combo.setCurrentIndex(self.colormap_combo.findData(DEFAULT_COLORMAP))
        self.colormap_combo.currentIndexChanged.connect(lambda _i: self._schedule_saliency())
        self.colormap_combo.currentIndexChanged.connect(
            lambda _i: self.preferences.set_saliency_colormap(self.colormap_combo.currentData())
        )
        toolbar.addWidget(self.colormap_combo)
        toolbar.addSeparator()
        toolbar.addAction(self.cancel_action)
        self.toolbar = toolbar

    def _link_actions(self) -> list[tuple[QtGui.QAction, Channel]]:
        return [
            (self.link_window_action, Channel.VOI),
            (self.link_camera_action, Channel.CAMERA),
            (self.sync_slices_action, Channel.SLICE),
        ]

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.skipped_label = QtWidgets.QLabel()
        self.skipped_label.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.skipped_label.linkActivated.connect(lambda _link: self.skipped_dock.show_list())
        self.skipped_label.hide()
        self.progress_bar = QtWidgets.QProgressBar()
        self.progress_bar.setMaximumWidth(220)
        self.progress_bar.setTextVisible(True)
        self.progress_bar.hide()
        cancel_button = QtWidgets.QToolButton()
        cancel_button.setDefaultAction(self.cancel_action)
        cancel_button.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonIconOnly)
        self.cancel_button = cancel_button
        cancel_button.hide()
        self.sync_status_label = QtWidgets.QLabel()
        self.sync_status_label.setObjectName("statusSync")
        self.device_label = QtWidgets.QLabel("model …")
        self.device_label.setObjectName("statusDevice")
        self.device_label.setToolTip("Where the matching model runs (loading)")
        bar.addPermanentWidget(self.sync_status_label)
        bar.addPermanentWidget(self.device_label)
        bar.addPermanentWidget(self.skipped_label)
        bar.addPermanentWidget(self.progress_bar)
        bar.addPermanentWidget(cancel_button)
        bar.showMessage("Ready")

    # -- opening ---------------------------------------------------------------------------
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

    def open_folder_dialog(self) -> None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(
            self, "Open DICOM folder", self.preferences.last_folder()
        )
        if folder:
            self.preferences.set_last_folder(folder)
            self.open_paths([folder])

    def open_files_dialog(self) -> None:
        files, _ = QtWidgets.QFileDialog.getOpenFileNames(
            self,
            "Open files",
            self.preferences.last_folder(),
            "CT images (*.dcm *.nii *.nii.gz *.nrrd *.nhdr *.mha *.mhd);;All files (*)",
        )
        if files:
            self.preferences.set_last_folder(Path(files[0]).parent)
            self.open_paths(files)

    def rebuild_recent_menu(self) -> None:
        """Fill File ▸ Open recent from the preferences, dropping paths that no longer exist."""
        recent = self.preferences.recent_paths()
        existing = [p for p in recent if Path(p).exists()]
        if existing != recent:
            self.preferences.set_recent_paths(existing)
        menu = self.recent_menu
        menu.clear()
        for path in existing:
            action = menu.addAction(path.replace("&", "&&"))  # no mnemonics in paths
            action.triggered.connect(lambda _=False, p=path: self.open_paths([p]))
        if existing:
            menu.addSeparator()
        clear = menu.addAction("Clear list", self.clear_recent)
        clear.setEnabled(bool(existing))

    def clear_recent(self) -> None:
        """Forget the recently opened folders and files."""
        self.preferences.set_recent_paths([])
        self.rebuild_recent_menu()

    def dragEnterEvent(self, event: QtGui.QDragEnterEvent) -> None:  # noqa: N802 (Qt override)
        if _local_paths(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QtGui.QDropEvent) -> None:  # noqa: N802 (Qt override)
        paths = _local_paths(event.mimeData())
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths)

    # -- loader results --------------------------------------------------------------------
    def _on_scanned(self, outcome: ScanOutcome) -> None:
        if outcome.skipped:
            self.skipped_dock.add_skipped(outcome.skipped)
            n = self.skipped_dock.count()
            self.skipped_label.setText(
                f"{n} file{'s' if n != 1 else ''} skipped — "
                "<a href='show' style='color:#88c0d0'>show</a>"
            )
            self.skipped_label.show()
        if not outcome.new_keys:
            where = ", ".join(str(p) for p in outcome.paths[:3])
            self.report(f"No CT series found in {where}")
            self._check_settled()
            return
        self.series = outcome.series
        self.patients = outcome.patients
        self.browser.set_catalogue(self.patients)
        target = self._patient_of(outcome.new_keys[0])
        self.statusBar().showMessage(
            f"Found {len(outcome.new_keys)} series"
            + (f" of {len(self.patients)} patients" if len(self.patients) > 1 else ""),
            5000,
        )
        self.hang_patient(target if target is not None else 0)
        self._queue_thumbnails()

    def _on_volume_loaded(self, key: str, volume: Volume, thumb: Any) -> None:
        self.browser.set_thumbnail(key, thumb)
        self._pending.discard(key)
        self._volumes[key] = volume
        self._volumes.move_to_end(key)
        for i, slot in enumerate(self.slots):
            if slot.key == key:
                self._show_volume(i, volume)
        self._trim_cache()
        self._check_settled()

    def _on_failed(self, what: str, message: str) -> None:
        if what == "demo":
            self.report(f"Could not build the demo patient: {message}")
        elif what == "scan":
            self.report(f"Could not read the files: {message}")
        elif what in self._pending:
            self._pending.discard(what)
            for i, slot in enumerate(self.slots):
                if slot.key == what:
                    self._set_slot_widget(
                        i, _Placeholder(f"Could not load this series:\n{message}")
                    )
            self.report(f"Could not load a series: {message}")
        # Otherwise a series that is no longer wanted on screen failed: nothing to tell.
        self._check_settled()

    def _on_cancelled(self) -> None:
        for i, slot in enumerate(self.slots):
            if slot.key in self._pending:
                self._set_slot_widget(i, _Placeholder("Loading cancelled"))
        self._pending.clear()
        self.statusBar().showMessage("Loading cancelled", 5000)

    def _on_busy(self, busy: bool) -> None:
        self.cancel_action.setEnabled(busy)
        self.cancel_action.setVisible(busy)
        self.cancel_button.setVisible(busy)
        self.progress_bar.setVisible(busy)
        if busy:
            self.progress_bar.setRange(0, 0)
        else:
            self._check_settled()

    def _on_progress(self, label: str, done: int, total: int) -> None:
        if total > 0:
            self.progress_bar.setRange(0, total)
            self.progress_bar.setValue(min(done, total))
        else:
            self.progress_bar.setRange(0, 0)
        self.progress_bar.setFormat(f"{label} %p%")

    def _check_settled(self) -> None:
        if self.is_settled():
            self.settled.emit()

    def is_settled(self) -> bool:
        """True when nothing is loading, indexing or aligning (used by ``--screenshot`` and tests)."""
        return (
            not self.loader.is_busy
            and not self._pending
            and self.anatomy.is_idle()
            and not self._side_jobs
        )

    # -- hanging ----------------------------------------------------------------------------
    def hang_patient(self, index: int) -> None:
        """Show one viewport per study of ``patients[index]``, newest first."""
        if not 0 <= index < len(self.patients):
            return
        self._clear_views()
        self.patient_index = index
        self.slots = plan_hanging(self.patients[index])
        for i, slot in enumerate(self.slots):
            self._set_slot_widget(
                i, _Placeholder(f"{slot.chosen.info.display_date()}\nLoading…"), create=True
            )
            self._request(i)
        self._update_browser_marks()
        self._check_settled()

    def show_series(self, ref: Any) -> None:
        """Show ``ref`` in its study's viewport (hanging its patient first if needed)."""
        key = str(ref.key)
        slot_index = self._slot_of(key)
        if slot_index is None:
            patient = self._patient_of(key)
            if patient is None:
                return
            self.hang_patient(patient)
            slot_index = self._slot_of(key)
            if slot_index is None:
                return
        slot = self.slots[slot_index]
        if slot.key == key and slot_index in self.views:
            return
        slot.chosen = next(r for r in slot.series if str(r.key) == key)
        self._request(slot_index)
        self._update_browser_marks()

    def _request(self, i: int) -> None:
        key = self.slots[i].key
        cached = self._volumes.get(key)
        if cached is not None:
            self._volumes.move_to_end(key)
            self._show_volume(i, cached)
        elif key not in self._pending:
            self._pending.add(key)
            self.loader.load(self.slots[i].chosen)

    def _show_volume(self, i: int, volume: Volume) -> None:
        reference = self.active_view.state if self.active_view is not None else None
        state = ViewportState(volume)
        if reference is not None:
            # A new viewport joins linked channels with the current values, as if the
            # user had just adjusted the active one.
            if self.sync.enabled[Channel.VOI]:
                state.set_window(reference.window)
            if self.sync.enabled[Channel.CAMERA]:
                state.set_camera(reference.camera)
        view = ViewportView(state, study_title(volume.info), side_view_later=True)
        self._show_side_view(view)
        view.activated.connect(self._on_user_activated)
        view.clicked.connect(self._on_view_clicked)
        view.hold_sync = self.sync.held
        state.changed.connect(self._on_viewport_changed)
        self._set_slot_widget(i, view)
        self.sync.add(state)
        view.set_sync_status("indexing…")
        self.anatomy.add(state)
        self._show_sync_progress()
        if reference is not None and self.sync.enabled[Channel.SLICE]:
            k, info = self.sync.slice_mapper.map(reference, state)
            state.set_slice(k, match=info)
        # Keys go to the newest study unless the user has picked a viewport already.
        if self.active_view is None or (i == 0 and not self._user_picked_view):
            self._set_active(view)
            self._focusing = True
            try:
                view.setFocus()
            finally:
                self._focusing = False

    def _show_side_view(self, view: ViewportView) -> None:
        """Give the viewport its side-view reformat: cached, or computed in a worker."""
        volume = view.state.volume
        cached = self._reformats.get(id(volume))
        if cached is not None and cached[0] is volume:
            view.scout.set_reformat(cached[1])
            return
        if id(volume) in self._side_jobs:
            return  # already being computed; it goes to every view of this series

        def done(reformat: Reformat) -> None:
            self._side_jobs.pop(id(volume), None)
            self._reformats[id(volume)] = (volume, reformat)
            for v in self.views.values():
                if v.state.volume is volume:
                    v.scout.set_reformat(reformat)
            self._check_settled()

        def failed(message: str) -> None:
            self._side_jobs.pop(id(volume), None)
            log.warning("side view failed: %s", message)
            self._check_settled()

        job = Job("side view", lambda _p, _c: sagittal_reformat(volume), threading.Event())
        job.signals.succeeded.connect(done)
        job.signals.failed.connect(failed)
        job.signals.cancelled.connect(lambda: self._side_jobs.pop(id(volume), None))
        self._side_jobs[id(volume)] = job
        self._side_pool.start(job.run)

    def _set_slot_widget(self, i: int, widget: QtWidgets.QWidget, create: bool = False) -> None:
        if create:
            frame = _SlotFrame()
            self.splitter.insertWidget(i, frame)
            self.stack.setCurrentWidget(self.splitter)
            self._equalise_splitter()
        else:
            frame = self.splitter.widget(i)
        if frame.content is widget:
            return
        self._dispose(frame.set_content(widget))
        if isinstance(widget, ViewportView):
            self.views[i] = widget

    def _equalise_splitter(self) -> None:
        n = self.splitter.count()
        if n:
            self.splitter.setSizes([max(1, self.splitter.width() // n)] * n)

    def _dispose(self, widget: QtWidgets.QWidget | None) -> None:
        if widget is None:
            return
        if isinstance(widget, ViewportView):
            self.sync.remove(widget.state)
            self.anatomy.remove(widget.state)
            widget.state.changed.disconnect(self._on_viewport_changed)
            self.saliency.forget(widget.state.volume)
            widget.state.changed.disconnect(self._on_active_changed)
            widget.detach()
            for i, v in list(self.views.items()):
                if v is widget:
                    del self.views[i]
            if self.active_view is widget:
                self.active_view = None
        widget.hide()
        widget.setParent(None)
        widget.deleteLater()

    def _clear_views(self) -> None:
        for i in reversed(range(self.splitter.count())):
            frame = self.splitter.widget(i)
            self._dispose(frame.content)
            frame.content = None
            self._dispose(frame)
        self.stack.setCurrentWidget(self.empty_hint)
        self.views.clear()
        self.active_view = None
        self._user_picked_view = False
        self.slots = []
        self._pending.clear()

    def _on_user_activated(self, view: ViewportView) -> None:
        if not self._focusing and view.user_activation:
            self._user_picked_view = True
        self._set_active(view)

    def _set_active(self, view: ViewportView) -> None:
        if self.active_view is view:
            return
        self.active_view = view
        for v in self.views.values():
            v.set_active(v is view)
        self._sync_preset_combo()
        if view is not None:
            view.state.changed.connect(self._on_active_changed)

    def _on_active_changed(self, what: str) -> None:
        if what == "window":
            self._sync_preset_combo()

    def _sync_preset_combo(self) -> None:
        if self.active_view is None:
            return
        window = self.active_view.state.window
        name = next((n for n in PRESET_KEYS if self.window_presets[n] == window), None)
        index = self.preset_combo.findData(name) if name else self.preset_combo.count() - 1
        self.preset_combo.setCurrentIndex(index)

    def _update_browser_marks(self) -> None:
        self.browser.mark_shown({s.key for s in self.slots})

    def _slot_of(self, key: str) -> int | None:
        for i, slot in enumerate(self.slots):
            if any(str(r.key) == key for r in slot.series):
                return i
        return None

    def _patient_of(self, key: str) -> int | None:
        for p, patient in enumerate(self.patients):
            for study in patient.studies:
                if any(str(r.key) == key for r in study.series):
                    return p
        return None

    def _trim_cache(self) -> None:
        shown = {s.key for s in self.slots}
        extra = [k for k in self._volumes if k not in shown]
        for key in extra[: max(0, len(extra) - _EXTRA_CACHED_VOLUMES)]:
            del self._volumes[key]
        # Side views only for volumes still held (keyed by id: drop the others).
        held = {id(v) for v in self._volumes.values()}
        self._reformats = {k: r for k, r in self._reformats.items() if k in held}

    def _queue_thumbnails(self) -> None:
        shown = {s.key for s in self.slots}
        queued = 0
        for ref in self.series:
            if queued >= _MAX_BACKGROUND_THUMBNAILS:
                break
            if str(ref.key) not in shown and str(ref.key) not in self._volumes:
                self.loader.make_thumbnail(ref)
                queued += 1

    # -- commands ---------------------------------------------------------------------------
    def viewport_states(self) -> list[ViewportState]:
        """States of the shown viewports, left to right."""
        return [self.views[i].state for i in sorted(self.views)]

    def _target_view(self) -> ViewportView | None:
        # Commands act on the active viewport, else the leftmost one.
        return self.active_view or (self.views[min(self.views)] if self.views else None)

    def apply_preset(self, name: str) -> None:
        """Apply the user's window preset ``name`` to the active viewport (linked ones follow)."""
        view = self._target_view()
        if view is not None:
            view.state.set_window(self.window_presets[name])

    def save_window_as_preset(self, name: str) -> None:
        """Store the active viewport's current W/L as the preset ``name`` (kept between sessions)."""
        view = self._target_view()
        if view is None:
            return
        self.preferences.set_window_preset(name, view.state.window)
        self._reload_presets()

    def reset_window_presets(self) -> None:
        """Put every window preset back to its default value."""
        self.preferences.reset_window_presets()
        self._reload_presets()

    def _reload_presets(self) -> None:
        self.window_presets = self.preferences.window_presets()
        self._label_presets()
        self._sync_preset_combo()

    def _label_presets(self) -> None:
        # Menu entries and combo tooltips show the values a preset applies now.
        for i, name in enumerate(PRESET_KEYS, start=1):
            w = self.window_presets[name]
            values = f"W {w.width:.0f} L {w.center:.0f}"
            self.preset_actions[name].setText(f"{name.capitalize()} ({values})")
            self.save_preset_actions[name].setText(f"{name.capitalize()} ({values})…")
            index = self.preset_combo.findData(name)
            self.preset_combo.setItemData(
                index,
                f"{name.capitalize()}: {values} (key {i})",
                QtCore.Qt.ItemDataRole.ToolTipRole,
            )

    def _enable_save_presets(self) -> None:
        enabled = self._target_view() is not None
        for action in self.save_preset_actions.values():
            action.setEnabled(enabled)

    def _on_preset_combo(self, index: int) -> None:
        name = self.preset_combo.itemData(index)
        if name:
            self.apply_preset(name)

    def reset_view(self) -> None:
        """Zoom to fit and centre the active viewport (linked ones follow)."""
        if self.active_view is not None:
            self.active_view.state.reset_camera()
        else:
            for v in self.views.values():
                v.state.reset_camera()

    def _on_sync_toggled(self, channel: Channel, on: bool) -> None:
        # Slice sync also switches itself on: only the user's choice is kept (_on_sync_chosen).
        if channel is Channel.VOI:
            self.preferences.set_link_window(on)
        elif channel is Channel.CAMERA:
            self.preferences.set_link_camera(on)
        for action, ch in self._link_actions():
            if ch is channel and action.isChecked() != on:
                action.setChecked(on)
        if on and self.active_view is not None:
            self.sync.sync_from(self.active_view.state, channel)
        if channel is Channel.SLICE and (self.saliency_action.isChecked() or self._wanted_overlays):
            self._update_saliency()  # at once: unsynced slices are no pair any more

    # -- anatomical sync ----------------------------------------------------------------
    def _view_of(self, state: ViewportState) -> ViewportView | None:
        return next((v for v in self.views.values() if v.state is state), None)

    def _on_view_clicked(self, view: ViewportView) -> None:
        # A click drives even when the slice did not change (scrolling drives
        # through the sync group's own slice channel).
        if self.sync.enabled[Channel.SLICE]:
            # The clicked viewport drives now: it no longer shows a match of its own.
            view.state.set_slice(view.state.slice_index, match=None)
            self.sync.sync_from(view.state, Channel.SLICE)
            self._schedule_saliency()

    def _on_sync_chosen(self, checked: bool) -> None:
        self._sync_choice_made = True
        self.preferences.set_sync_slices(checked)

    def _on_index_progress(self, state: ViewportState, done: int, total: int) -> None:
        view = self._view_of(state)
        if view is not None and total > 0:
            view.set_sync_status(f"indexing {100 * done // total}%")

    def _on_index_changed(self, state: ViewportState) -> None:
        view = self._view_of(state)
        info = self.anatomy.index_state(state)
        if view is not None and info is not None:
            if info.status == "ready":
                view.set_sync_status("")
            elif info.status == "failed":
                view.set_sync_status("no anatomical sync")
                view.sync_label.setToolTip(info.message)
        self._show_sync_progress()

    def _show_sync_progress(self) -> None:
        states = [self.anatomy.index_state(v.state) for v in self.views.values()]
        states = [s for s in states if s is not None]
        if self.anatomy.unavailable_reason is not None:
            text = "Sync: unavailable"
        elif not states:
            text = ""
        else:
            ready = sum(s.status == "ready" for s in states)
            pending = sum(s.status in ("queued", "indexing") for s in states)
            text = f"Sync: indexing {ready}/{len(states)}…" if pending else "Sync: ready"
        self.sync_status_label.setText(text)
        if text.startswith("Sync: indexing"):
            self.sync_slices_action.setText("Sync slices (indexing…)")
        else:
            self.sync_slices_action.setText("Sync slices")

    def _on_sync_ready(self, ready: bool) -> None:
        self._show_sync_progress()
        if ready and not self._sync_choice_made:
            self.sync.set_enabled(Channel.SLICE, True)

    def _on_alignment_ready(self, source: ViewportState, target: ViewportState) -> None:
        # The alignment refines where the last driver's level lies in the target.
        driver = self.slice_mapper.last_source
        if driver is None and self.active_view is not None:
            driver = self.active_view.state
        if source is not driver or not self.sync.enabled[Channel.SLICE]:
            return
        if target not in self.sync.viewports:
            return
        k, info = self.slice_mapper.map(source, target)
        with self.sync.held():
            target.set_slice(k, match=info)

    def _on_anatomy_idle(self, idle: bool) -> None:
        if idle:
            self._check_settled()

    def _on_model_loaded(self, info: ModelInfo) -> None:
        self.device_label.setText(info.device)
        self.device_label.setToolTip(
            f"Matching model {info.name} runs on {info.provider} (Help ▸ About for details)"
        )

    def _on_sync_unavailable(self, message: str) -> None:
        self.device_label.setText("no model")
        self.device_label.setToolTip(message)
        self.sync_slices_action.setToolTip(f"Anatomical sync is unavailable: {message}")
        self._show_sync_progress()
        self.statusBar().showMessage(f"Anatomical sync is unavailable: {message}", 10000)

    def about_text(self) -> str:
        """The About box's text: version, model name and hash, execution provider, licences."""
        import app

        lines = [f"<b>PriorSync {app.__version__}</b>", "CT priors synced by anatomy.", ""]
        info = self.anatomy.model_info
        if info is not None:
            lines += [
                f"Model: {info.name}",
                f"Model sha256: <tt>{info.sha256}</tt>",
                f"Execution provider: {info.provider} ({info.device})",
            ]
        elif self.anatomy.unavailable_reason is not None:
            lines.append(f"Model: unavailable ({self.anatomy.unavailable_reason})")
        else:
            lines.append("Model: not loaded yet (it loads when a study is opened)")
        return "<br>".join(lines) + _licence_table()

    def show_about(self) -> None:
        """Help ▸ About: a non-modal box with the version, model and execution provider."""
        box = QtWidgets.QMessageBox(self)
        box.setObjectName("aboutBox")
        box.setWindowTitle("About PriorSync")
        box.setIcon(QtWidgets.QMessageBox.Icon.Information)
        box.setTextFormat(QtCore.Qt.TextFormat.RichText)
        box.setText(self.about_text())
        box.setModal(False)
        box.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        box.show()

    # -- saliency overlay ---------------------------------------------------------------
    def _on_viewport_changed(self, what: str) -> None:
        if what in ("slice", "match", "window"):
            self._schedule_saliency()

    def _schedule_saliency(self) -> None:
        if self.saliency_action.isChecked() or self._wanted_overlays:
            self._saliency_timer.start()

    def saliency_request(self) -> tuple[OverlayRequest, list[ViewportView]] | None:
        """What the overlay should show now: the driver and its synced, covered targets.

        ``None`` when the overlay is off, slices are not synced, or no target
        shows a match.
        """
        if not self.saliency_action.isChecked() or not self.sync.enabled[Channel.SLICE]:
            return None
        views = [self.views[i] for i in sorted(self.views)]
        driver = self.slice_mapper.last_source
        driver_view = next((v for v in views if v.state is driver), None)
        if driver_view is None:
            return None
        targets = [
            v
            for v in views
            if v is not driver_view
            and v.state.match is not None
            and not shows_outside_level(v.state)
        ]
        if not targets:
            return None
        request = OverlayRequest.make(
            (driver.volume, driver.slice_index, driver.window),
            [(v.state.volume, v.state.slice_index, v.state.window) for v in targets],
            self.colormap_combo.currentData(),
            self.opacity_slider.value() / 100.0,
        )
        return request, [driver_view, *targets]

    def _update_saliency(self) -> None:
        wanted = self.saliency_request()
        self._wanted_overlays = {}
        if wanted is not None:
            request, views = wanted
            self._wanted_overlays = dict(zip(request.keys(), views, strict=True))
        # Drop overlays that no longer describe their viewport's slice pair now,
        # before the new ones arrive; a new colour map or opacity may wait.
        keep = {id(v): k for k, v in self._wanted_overlays.items()}
        for view in self.views.values():
            key = keep.get(id(view))
            if view.overlay is not None and (key is None or not key.same_content(view.overlay_key)):
                view.set_overlay(None)
        if wanted is not None:
            self.saliency.request(wanted[0])
            # Feature maps of every slice on screen, in the background: later syncs are cheap.
            self.saliency.prefetch([(v.state.volume, v.state.slice_index) for v in wanted[1]])
        elif not self.saliency_action.isChecked():
            self.saliency.clear_cache()

    def _on_saliency_ready(self, results: list) -> None:
        for key, rgb in results:
            view = self._wanted_overlays.get(key)
            if view is None or view not in self.views.values():
                continue  # superseded while it was computed
            state = view.state
            if (state.slice_index, state.window) != (key.index, key.window):
                continue
            caption = "saliency"
            if state is self.slice_mapper.last_source:
                # The driver's map depends on the pair: say which date it is for.
                partner = next(
                    (v.state for v in self.views.values() if id(v.state.volume) == key.partner),
                    None,
                )
                if partner is not None:
                    caption = f"saliency vs {partner.volume.info.display_date()}"
            view.set_overlay(rgb, key, caption)

    def _on_saliency_unavailable(self, message: str) -> None:
        self.saliency_action.setChecked(False)
        self.saliency_action.setEnabled(False)
        self.saliency_action.setToolTip(f"Saliency overlay is unavailable: {message}")
        self.statusBar().showMessage(f"Saliency overlay is unavailable: {message}", 10000)

    def show_controls(self) -> None:
        """A non-modal summary of the mouse and keyboard controls."""
        box = QtWidgets.QMessageBox(self)
        box.setWindowTitle("PriorSync controls")
        box.setIcon(QtWidgets.QMessageBox.Icon.Information)
        box.setText(CONTROLS_HELP)
        box.setModal(False)
        box.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        box.show()

    # -- messages ---------------------------------------------------------------------------
    def report(self, message: str) -> None:
        """Tell the user something went wrong: status bar plus a non-modal message box.

        Not logged: messages may quote file or folder names, which can hold a
        patient's name; the code that failed logs what is safe to log.
        """
        self.statusBar().showMessage(message, 10000)
        box = self._message_box
        if box is None:
            box = QtWidgets.QMessageBox(self)
            box.setIcon(QtWidgets.QMessageBox.Icon.Warning)
            box.setWindowTitle("PriorSync")
            box.setModal(False)
            self._message_box = box
        box.setText(message)
        box.show()
        self.error_shown.emit(message)

    # -- preferences ------------------------------------------------------------------------
    def _restore_preferences(self) -> None:
        prefs = self.preferences
        geometry = prefs.window_geometry()
        if geometry is not None:
            self.restoreGeometry(geometry)
        state = prefs.window_state()
        if state is not None:
            self.restoreState(state)
        for channel, on in (
            (Channel.VOI, prefs.link_window()),
            (Channel.CAMERA, prefs.link_camera()),
        ):
            if on is not None:
                self.sync.set_enabled(channel, on)
        if prefs.sync_slices() is False:
            # Only "off" needs restoring: "on" is what happens once indexes are ready.
            self._sync_choice_made = True
            self.sync.set_enabled(Channel.SLICE, False)
        opacity = prefs.saliency_opacity()
        if opacity is not None:
            self.opacity_slider.setValue(opacity)
        index = self.colormap_combo.findData(prefs.saliency_colormap())
        if index >= 0:
            self.colormap_combo.setCurrentIndex(index)

    def save_layout(self) -> None:
        """Keep the window geometry and the docks' and toolbar's state for the next start."""
        self.preferences.set_window_geometry(self.saveGeometry())
        self.preferences.set_window_state(self.saveState())
        self.preferences.sync()

    # -- shutdown ---------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop background work and release viewports (idempotent)."""
        self.loader.shutdown()
        self.anatomy.shutdown()
        self.saliency.shutdown()
        self.exports.shutdown()
        self.sketch_query.shutdown()
        self._side_pool.clear()
        self._side_pool.waitForDone(10000)
        self._clear_views()
        self._volumes.clear()
        self._reformats.clear()

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802 (Qt override)
        self.save_layout()
        self.shutdown()
        super().closeEvent(event)


def _licence_table() -> str:
    """The About box's table of bundled data and main dependencies with their licences."""
    rows = "".join(
        f"<tr><td>{name}</td><td>{what}</td><td>{licence}</td></tr>"
        for name, what, licence in LICENCES
    )
    return (
        "<p><b>Bundled data and main components</b></p>"
        "<table cellspacing='0' cellpadding='2'>"
        "<tr><th align='left'>Component</th><th align='left'>Use</th>"
        f"<th align='left'>Licence</th></tr>{rows}</table>"
    )


def _local_paths(mime: QtCore.QMimeData) -> list[Path]:
    if not mime.hasUrls():
        return []
    return [Path(url.toLocalFile()) for url in mime.urls() if url.isLocalFile()]
