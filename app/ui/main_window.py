"""The main window: one viewport per study date, newest first, with linking tools.

Ownership: the window owns the :class:`~app.ui.loader.Loader` (files are only
read there), the catalogue of scanned series, the hanging (one
:class:`~app.ui.hanging.StudySlot` per study) and the
:class:`~app.core.state.SyncGroup` that links the viewport states. Widgets
(viewports, docks, toolbar) only show that state and write user input to it.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from app.core.imaging import PRESETS
from app.core.state import Channel, SyncGroup, ViewportState
from app.core.volume import Volume
from app.ui.hanging import StudySlot, plan_hanging, study_title
from app.ui.loader import Loader, ScanOutcome
from app.ui.resources import icon
from app.ui.skipped_files import SkippedFilesDock
from app.ui.study_browser import StudyBrowser
from app.ui.viewport import ViewportView

__all__ = ["MainWindow", "PRESET_KEYS"]

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
    "Click a viewport to direct keys to it; the toolbar links window, zoom/pan and slices."
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
    """

    settled = QtCore.Signal()  # nothing loading and every slot shown (or failed)
    error_shown = QtCore.Signal(str)

    def __init__(self, loader: Loader | None = None) -> None:
        super().__init__()
        self.setWindowTitle("PriorSync")
        self.setWindowIcon(icon("priorsync"))
        self.setAcceptDrops(True)
        self.resize(1400, 850)

        self.loader = loader if loader is not None else Loader()
        self.loader.setParent(self)
        self.sync = SyncGroup()
        self.sync.set_enabled(Channel.VOI, True)
        self.sync.set_enabled(Channel.CAMERA, True)

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
        self.reset_action = self._action(
            "&Reset view", self.reset_view, icon_name="reset-view", shortcut="R"
        )
        self.cancel_action = self._action("Cancel loading", self.loader.cancel, icon_name="cancel")
        self.cancel_action.setEnabled(False)
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
        self.link_window_action.setToolTip("Window/level changes apply to every viewport")
        self.link_camera_action.setToolTip("Zoom and pan apply to every viewport")
        self.sync_slices_action.setToolTip(
            "Scrolling one viewport moves the others to the same level"
        )
        for action, channel in self._link_actions():
            action.setChecked(self.sync.enabled[channel])

        self.preset_actions: dict[str, QtGui.QAction] = {}
        for i, name in enumerate(PRESET_KEYS, start=1):
            w = PRESETS[name]
            action = self._action(
                f"{name.capitalize()} (W {w.width:.0f} L {w.center:.0f})",
                lambda _=False, n=name: self.apply_preset(n),
                shortcut=str(i),
            )
            self.preset_actions[name] = action

        file_menu = self.menuBar().addMenu("&File")
        file_menu.addAction(self.open_folder_action)
        file_menu.addAction(self.open_files_action)
        file_menu.addSeparator()
        file_menu.addAction(quit_action)
        view_menu = self.menuBar().addMenu("&View")
        view_menu.addAction(self.reset_action)
        presets_menu = view_menu.addMenu("Window &presets")
        for action in self.preset_actions.values():
            presets_menu.addAction(action)
        view_menu.addSeparator()
        for action, _ in self._link_actions():
            view_menu.addAction(action)
        view_menu.addSeparator()
        view_menu.addAction(self.browser.toggleViewAction())
        view_menu.addAction(self.skipped_dock.toggleViewAction())
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction(
            self._action("&Mouse and keys…", self.show_controls, shortcut=keys.HelpContents)
        )

        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("mainToolbar")
        toolbar.setMovable(False)
        toolbar.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        toolbar.addAction(self.open_folder_action)
        toolbar.addAction(self.open_files_action)
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
        toolbar.addAction(self.reset_action)
        toolbar.addSeparator()
        for action, _ in self._link_actions():
            toolbar.addAction(action)
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
        self.statusBar().showMessage(f"Scanning {len(paths)} item(s)…")
        self.loader.scan(paths, known=self.series)

    def open_demo(self) -> None:
        """Build (or reuse) the demo patient in the background and hang it."""
        self.statusBar().showMessage("Preparing the demo patient…")
        self.loader.build_demo()

    def open_folder_dialog(self) -> None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, "Open DICOM folder")
        if folder:
            self.open_paths([folder])

    def open_files_dialog(self) -> None:
        files, _ = QtWidgets.QFileDialog.getOpenFileNames(
            self,
            "Open files",
            "",
            "CT images (*.dcm *.nii *.nii.gz *.nrrd *.nhdr *.mha *.mhd);;All files (*)",
        )
        if files:
            self.open_paths(files)

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
        if not self.loader.is_busy and not self._pending:
            self.settled.emit()

    def is_settled(self) -> bool:
        """True when nothing is loading (used by ``--screenshot`` and tests)."""
        return not self.loader.is_busy and not self._pending

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
        view = ViewportView(state, study_title(volume.info))
        view.activated.connect(self._on_user_activated)
        self._set_slot_widget(i, view)
        self.sync.add(state)
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
        if not self._focusing:
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
        name = next((n for n in PRESET_KEYS if PRESETS[n] == window), None)
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

    def apply_preset(self, name: str) -> None:
        """Apply a window preset to the active viewport (linked ones follow)."""
        view = self.active_view or (self.views[min(self.views)] if self.views else None)
        if view is not None:
            view.state.apply_preset(name)

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
        for action, ch in self._link_actions():
            if ch is channel and action.isChecked() != on:
                action.setChecked(on)
        if on and self.active_view is not None:
            self.sync.sync_from(self.active_view.state, channel)

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

    # -- shutdown ---------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop background work and release viewports (idempotent)."""
        self.loader.shutdown()
        self._clear_views()
        self._volumes.clear()

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802 (Qt override)
        self.shutdown()
        super().closeEvent(event)


def _local_paths(mime: QtCore.QMimeData) -> list[Path]:
    if not mime.hasUrls():
        return []
    return [Path(url.toLocalFile()) for url in mime.urls() if url.isLocalFile()]
