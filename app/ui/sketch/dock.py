"""The "Sketch query" dock: draw an abnormality on a normal slice, find slices that show it.

The user takes a template slice from the active viewport ("Use current
slice"), draws on it with a brush per lesion class (mass / nodule, hypodense,
hyperdense), sets how much the anatomy and the abnormality count, and searches
the loaded series or an archive made by ``priorsync index``. Results come as a
grid of thumbnails; clicking one shows that slice in the viewer (opening its
series first when it comes from the archive).

The dock holds only UI: the sketch is a :class:`~app.core.sketch.SketchCanvasModel`,
searches run in :class:`~app.ui.sketch.query.SketchQuery`'s worker, and what
the dock needs of the main window goes through :class:`SketchHost`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from app.core.sketch import SKETCH_CLASSES, SketchCanvasModel, Tool
from app.core.volume import Volume
from app.export.captions import image_number
from app.io.sketch_png import (
    SketchExistsError,
    SketchFileError,
    load_sketch_png,
    save_sketch_png,
)
from app.ml.sketch.models import SketchModels
from app.ml.sketch.search import SketchHit, SliceRef
from app.ui.settings.preferences import Preferences
from app.ui.sketch.canvas import SketchCanvas
from app.ui.sketch.query import (
    SCOPE_ARCHIVE,
    SCOPE_LOADED,
    LoadedSeries,
    SearchOutcome,
    SearchRequest,
    SketchQuery,
)
from app.ui.sketch.results import SketchResults, display_date
from app.ui.viewer.viewport import ViewportView

__all__ = [
    "DEFAULT_WEIGHT",
    "PendingGoTo",
    "SketchDock",
    "SketchHost",
    "slice_for",
    "volume_matches",
]

log = logging.getLogger(__name__)

# The slider's position until the models say what they were tuned for.
DEFAULT_WEIGHT = 0.5
_PNG_FILTER = "Sketch PNG (*.png)"


@dataclass
class PendingGoTo:
    """A result whose series is being opened: show slice ``ref.slice_index`` once it is hung."""

    ref: SliceRef


def volume_matches(volume: Volume, ref: SliceRef) -> bool:
    """True when ``volume`` is the series an archive (or loaded) result comes from."""
    info = volume.info
    if info.series_uid and info.series_uid == ref.series_key:
        return True
    return bool(ref.source) and str(volume.source) == ref.source


def slice_for(volume: Volume, ref: SliceRef) -> int:
    """The slice of ``volume`` showing ``ref``: its index, or the nearest level if re-sliced."""
    if volume.n_slices == ref.n_slices:
        return ref.slice_index
    return int(np.argmin(np.abs(volume.slice_z - ref.z_mm)))


class SketchHost(Protocol):
    """What the sketch dock reads from and does to the viewer, in one place.

    The main window provides it (:class:`app.ui.shell.sketch_link.WindowLink`);
    the dock never sees the window itself.
    """

    def current_view(self) -> ViewportView | None:
        """The active viewport, else the first one, else ``None``."""
        ...

    def loaded_series(self) -> list[LoadedSeries]:
        """The series on screen with their anatomy codes (``None`` while being indexed)."""
        ...

    def anatomy_code(self, volume: Volume, k: int) -> np.ndarray | None:
        """The anatomy code of a slice if its series is indexed, else ``None``."""
        ...

    def go_to_loaded(self, volume: Volume, k: int) -> bool:
        """Show slice ``k`` in the viewport of ``volume``; False if it is not on screen."""
        ...

    def go_to_matching(self, ref: SliceRef) -> bool:
        """Show ``ref``'s slice if a viewport shows its series; False otherwise."""
        ...

    def show_catalogued(self, ref: SliceRef) -> bool:
        """Hang ``ref``'s series if the catalogue already knows it; False otherwise."""
        ...

    def open_source(self, ref: SliceRef) -> None:
        """Scan and hang the file or folder a result comes from."""
        ...

    def status(self, message: str) -> None:
        """Say something short in the window's status bar."""
        ...


def _swatch(rgb: tuple[int, int, int], size: int = 14) -> QtGui.QIcon:
    pixmap = QtGui.QPixmap(size, size)
    pixmap.fill(QtGui.QColor(*rgb))
    return QtGui.QIcon(pixmap)


class SketchDock(QtWidgets.QDockWidget):
    """The sketch query dock (View ▸ Sketch query, Ctrl+K).

    Parameters
    ----------
    query
        Runs the searches.
    link
        Access to the main window's viewports and loader.
    preferences
        Where the archive folder and the sketch folder are remembered.
    """

    def __init__(
        self,
        query: SketchQuery,
        link: SketchHost,
        preferences: Preferences,
        parent: QtWidgets.QWidget | None = None,
    ) -> None:
        super().__init__("Sketch query", parent)
        self.setObjectName("sketchDock")
        self.query = query
        self.link = link
        self.preferences = preferences
        self.model = SketchCanvasModel()
        self.template: tuple[Volume, int] | None = None
        self.pending: PendingGoTo | None = None
        self.last_outcome: SearchOutcome | None = None
        self._weight_touched = False
        self._shown_once = False

        body = QtWidgets.QWidget()
        layout = QtWidgets.QVBoxLayout(body)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(4)

        # Template: which slice is drawn on.
        row = QtWidgets.QHBoxLayout()
        self.use_slice_button = QtWidgets.QPushButton("Use current slice")
        self.use_slice_button.setToolTip(
            "Draw on the slice shown in the active viewport (choose one of normal anatomy)"
        )
        self.use_slice_button.clicked.connect(self.use_current_slice)
        self.template_label = QtWidgets.QLabel("No template")
        self.template_label.setObjectName("sketchTemplate")
        self.template_label.setWordWrap(True)
        row.addWidget(self.use_slice_button)
        row.addWidget(self.template_label, 1)
        layout.addLayout(row)

        # Tools and history; classes; files. Three short rows keep the dock narrow.
        self.tool_buttons: dict[Tool, QtWidgets.QToolButton] = {}
        self.class_buttons: dict[int, QtWidgets.QToolButton] = {}
        tools = QtWidgets.QHBoxLayout()
        tool_group = QtWidgets.QButtonGroup(self)
        for tool, text, tip in (
            (Tool.BRUSH, "Brush", "Paint the chosen class"),
            (Tool.ERASER, "Eraser", "Erase what was painted"),
        ):
            button = self._tool_button(text, tip, checkable=True)
            button.clicked.connect(lambda _=False, t=tool: self.model.set_tool(t))
            tool_group.addButton(button)
            self.tool_buttons[tool] = button
            tools.addWidget(button)
        tools.addSpacing(12)
        self.undo_button = self._tool_button("Undo", "Undo the last stroke (Ctrl+Z)")
        self.undo_button.clicked.connect(self.model.undo)
        self.redo_button = self._tool_button("Redo", "Redo (Ctrl+Shift+Z)")
        self.redo_button.clicked.connect(self.model.redo)
        self.clear_button = self._tool_button("Clear", "Erase the whole sketch (undoable)")
        self.clear_button.clicked.connect(self.model.clear)
        for w in (self.undo_button, self.redo_button, self.clear_button):
            tools.addWidget(w)
        tools.addStretch(1)
        layout.addLayout(tools)

        classes = QtWidgets.QHBoxLayout()
        class_group = QtWidgets.QButtonGroup(self)
        for cls in SKETCH_CLASSES:
            button = self._tool_button(cls.display_name, f"Paint: {cls.display_name}", True)
            button.setIcon(_swatch(cls.rgb))
            button.setObjectName(f"sketchClass_{cls.name}")
            button.clicked.connect(lambda _=False, v=cls.value: self._choose_class(v))
            class_group.addButton(button)
            self.class_buttons[cls.value] = button
            classes.addWidget(button)
        classes.addStretch(1)
        layout.addLayout(classes)

        files = QtWidgets.QHBoxLayout()
        self.load_button = self._tool_button("Load…", "Load a sketch PNG drawn on this template")
        self.load_button.clicked.connect(self.load_dialog)
        self.save_button = self._tool_button("Save…", "Save the sketch as a PNG")
        self.save_button.clicked.connect(self.save_dialog)
        self.brush_label = QtWidgets.QLabel()
        self.brush_label.setToolTip("Brush radius (turn the wheel over the slice to change it)")
        files.addWidget(self.load_button)
        files.addWidget(self.save_button)
        files.addStretch(1)
        files.addWidget(self.brush_label)
        layout.addLayout(files)

        self.canvas = SketchCanvas(self.model)
        layout.addWidget(self.canvas, 3)

        # Search settings.
        form = QtWidgets.QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        weight_row = QtWidgets.QHBoxLayout()
        weight_row.addWidget(QtWidgets.QLabel("Anatomy"))
        self.weight_slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.weight_slider.setRange(0, 100)
        self.weight_slider.setToolTip(
            "How much the drawn abnormality counts against the template's anatomy"
        )
        self.weight_slider.setValue(round(100 * DEFAULT_WEIGHT))
        self.weight_slider.valueChanged.connect(self._on_weight)
        # Any user action (drag, keys, wheel) keeps the weight from the models' default.
        self.weight_slider.actionTriggered.connect(
            lambda _a: setattr(self, "_weight_touched", True)
        )
        weight_row.addWidget(self.weight_slider, 1)
        weight_row.addWidget(QtWidgets.QLabel("Abnormality"))
        self.weight_value = QtWidgets.QLabel()
        weight_row.addWidget(self.weight_value)
        form.addRow("Weight", weight_row)

        scope_row = QtWidgets.QHBoxLayout()
        self.scope_combo = QtWidgets.QComboBox()
        self.scope_combo.addItem("Loaded series", SCOPE_LOADED)
        self.scope_combo.addItem("Archive…", SCOPE_ARCHIVE)
        self.scope_combo.activated.connect(self._on_scope)
        self.archive_label = QtWidgets.QLabel()
        self.archive_label.setObjectName("sketchArchive")
        self.archive_button = QtWidgets.QToolButton()
        self.archive_button.setText("Choose…")
        self.archive_button.setToolTip("Choose an archive folder made by `priorsync index`")
        self.archive_button.clicked.connect(self.choose_archive_dialog)
        scope_row.addWidget(self.scope_combo)
        scope_row.addWidget(self.archive_button)
        scope_row.addWidget(self.archive_label, 1)
        form.addRow("Search in", scope_row)
        layout.addLayout(form)

        search_row = QtWidgets.QHBoxLayout()
        self.dedupe_check = QtWidgets.QCheckBox("One per patient and level")
        self.dedupe_check.setChecked(True)
        self.dedupe_check.setToolTip(
            "Show only the best slice of each patient at each level "
            "(neighbouring slices of one lesion look alike)"
        )
        self.search_button = QtWidgets.QPushButton("Search")
        self.search_button.setObjectName("sketchSearch")
        self.search_button.setDefault(True)
        self.search_button.clicked.connect(self.search)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setMaximumWidth(120)
        self.progress.hide()
        search_row.addWidget(self.dedupe_check)
        search_row.addStretch(1)
        search_row.addWidget(self.progress)
        search_row.addWidget(self.search_button)
        layout.addLayout(search_row)

        self.message = QtWidgets.QLabel()
        self.message.setObjectName("sketchMessage")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.message)

        self.results = SketchResults()
        self.results.chosen.connect(self.open_hit)
        layout.addWidget(self.results, 2)
        self.setWidget(body)

        # Undo/redo only while the dock has focus: elsewhere the keys are the viewer's.
        context = QtCore.Qt.ShortcutContext.WidgetWithChildrenShortcut
        for keys, slot in (("Ctrl+Z", self.model.undo), ("Ctrl+Shift+Z", self.model.redo)):
            shortcut = QtGui.QShortcut(QtGui.QKeySequence(keys), self)
            shortcut.setContext(context)
            shortcut.activated.connect(slot)

        self.model.changed.connect(self._on_model_changed)
        query.models_loaded.connect(self._on_models_loaded)
        query.models_unavailable.connect(self._on_models_unavailable)
        query.finished.connect(self._on_finished)
        query.failed.connect(self._on_failed)
        query.progress.connect(self._on_progress)
        query.busy_changed.connect(self._on_busy)
        self.visibilityChanged.connect(self._on_visible)

        self.archive_dir: Path | None = None
        saved = preferences.sketch_archive()
        if saved:
            self._set_archive(Path(saved), remember=False)
        self._show_archive()
        self.tool_buttons[Tool.BRUSH].setChecked(True)
        self.class_buttons[self.model.current_class].setChecked(True)
        self._on_weight(self.weight_slider.value())
        self._refresh_controls()

    # -- construction helpers ------------------------------------------------------------------
    @staticmethod
    def _tool_button(text: str, tip: str, checkable: bool = False) -> QtWidgets.QToolButton:
        button = QtWidgets.QToolButton()
        button.setText(text)
        button.setToolTip(tip)
        button.setCheckable(checkable)
        button.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        return button

    # -- template ----------------------------------------------------------------------------
    def use_current_slice(self) -> bool:
        """Take the active viewport's slice as the template; False (and a message) if none."""
        view = self.link.current_view()
        if view is None:
            self.say("Open a study first: the template is a slice shown in a viewport.")
            return False
        self.set_template(view.state.volume, view.state.slice_index)
        return True

    def set_template(self, volume: Volume, k: int) -> None:
        """Draw on slice ``k`` of ``volume`` (a sketch of the same size is kept)."""
        self.template = (volume, int(k))
        self.canvas.set_template(volume, int(k))
        info = volume.info
        n = volume.n_slices
        self.template_label.setText(
            f"{display_date(info.study_date)} · {info.series_description or 'series'} · "
            f"Im {image_number(int(k), n)}/{n}"
        )
        self.template_label.setToolTip(f"z {volume.slice_z[int(k)]:.1f} mm")
        self.say("")
        self._refresh_controls()

    # -- tools -------------------------------------------------------------------------------
    def _choose_class(self, value: int) -> None:
        self.model.set_class(value)
        self.model.set_tool(Tool.BRUSH)  # choosing a colour means painting with it

    def _on_model_changed(self, what: str) -> None:
        if what == "tool":
            self.tool_buttons[self.model.tool].setChecked(True)
        elif what == "class":
            self.class_buttons[self.model.current_class].setChecked(True)
        self._refresh_controls()

    def _refresh_controls(self) -> None:
        has_template = self.template is not None
        empty = self.model.is_empty()
        self.undo_button.setEnabled(self.model.can_undo())
        self.redo_button.setEnabled(self.model.can_redo())
        self.clear_button.setEnabled(not empty)
        self.save_button.setEnabled(not empty)
        self.load_button.setEnabled(has_template)
        self.brush_label.setText(f"brush {self.model.brush_radius_mm:.1f} mm")

    # -- weight and scope --------------------------------------------------------------------
    @property
    def weight(self) -> float:
        """``w``: 0 ranks by the template's anatomy alone, 1 by the sketch alone."""
        return self.weight_slider.value() / 100.0

    def _on_weight(self, value: int) -> None:
        self.weight_value.setText(f"{value / 100:.2f}")

    @property
    def scope(self) -> str:
        return self.scope_combo.currentData()

    def set_scope(self, scope: str) -> None:
        self.scope_combo.setCurrentIndex(self.scope_combo.findData(scope))
        self._show_archive()

    def _on_scope(self, _index: int) -> None:
        if (
            self.scope == SCOPE_ARCHIVE
            and self.archive_dir is None
            and not self.choose_archive_dialog()
        ):
            self.set_scope(SCOPE_LOADED)
        self._show_archive()

    def choose_archive_dialog(self) -> bool:
        """Ask for an archive folder; True when one was chosen."""
        start = str(self.archive_dir) if self.archive_dir else self.preferences.sketch_archive()
        folder = QtWidgets.QFileDialog.getExistingDirectory(
            self, "Choose an archive made by `priorsync index`", start
        )
        if not folder:
            return False
        self.set_archive(Path(folder))
        return True

    def set_archive(self, folder: Path) -> None:
        """Search ``folder`` (an archive made by ``priorsync index``) from now on."""
        self._set_archive(folder, remember=True)
        self.set_scope(SCOPE_ARCHIVE)

    def _set_archive(self, folder: Path, remember: bool) -> None:
        self.archive_dir = Path(folder)
        if remember:
            self.preferences.set_sketch_archive(folder)
        self._show_archive()

    def _show_archive(self) -> None:
        archive = self.scope == SCOPE_ARCHIVE
        self.archive_button.setVisible(archive)
        self.archive_label.setVisible(archive)
        text = str(self.archive_dir) if self.archive_dir else "no archive chosen"
        self.archive_label.setText(
            self.archive_label.fontMetrics().elidedText(
                text, QtCore.Qt.TextElideMode.ElideMiddle, 260
            )
        )
        self.archive_label.setToolTip(text)

    # -- files -------------------------------------------------------------------------------
    def load_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Load sketch", self.preferences.sketch_folder(), _PNG_FILTER
        )
        if path:
            self.load_png(Path(path))

    def load_png(self, path: Path) -> bool:
        """Replace the sketch by a PNG's (undoable); False (and a message) when it cannot."""
        if self.template is None:
            self.say("Choose a template first: a sketch is loaded onto the template slice.")
            return False
        try:
            labels = load_sketch_png(path, self.model.shape)
        except SketchFileError as exc:
            self.say(f"Could not load the sketch: {exc}")
            return False
        self.preferences.set_sketch_folder(Path(path).parent)
        self.model.replace_labels(labels)
        self.say(f"Sketch loaded from {Path(path).name}")
        return True

    def save_dialog(self) -> None:
        dialog_options = QtWidgets.QFileDialog.Option.DontConfirmOverwrite
        start = str(Path(self.preferences.sketch_folder() or ".") / "sketch.png")
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self, "Save sketch", start, _PNG_FILTER, options=dialog_options
        )
        if path:
            if not path.lower().endswith(".png"):
                path += ".png"
            self.save_png(Path(path))

    def confirm_overwrite(self, path: Path) -> bool:
        """Ask whether ``path`` may be replaced (tests replace this method)."""
        answer = QtWidgets.QMessageBox.question(
            self,
            "Replace sketch?",
            f"{path.name} already exists. Replace it?",
            QtWidgets.QMessageBox.StandardButton.Yes | QtWidgets.QMessageBox.StandardButton.No,
            QtWidgets.QMessageBox.StandardButton.No,
        )
        return answer == QtWidgets.QMessageBox.StandardButton.Yes

    def save_png(self, path: Path) -> bool:
        """Save the sketch; an existing file is replaced only after :meth:`confirm_overwrite`."""
        try:
            try:
                save_sketch_png(path, self.model.labels)
            except SketchExistsError:
                if not self.confirm_overwrite(path):
                    self.say("Not saved: the file exists")
                    return False
                save_sketch_png(path, self.model.labels, overwrite=True)
        except SketchFileError as exc:
            self.say(f"Could not save the sketch: {exc}")
            return False
        self.preferences.set_sketch_folder(path.parent)
        self.say(f"Sketch saved to {path.name}")
        return True

    # -- search ------------------------------------------------------------------------------
    def build_request(self, similar: bool = False) -> SearchRequest | None:
        """The search the controls describe now, or ``None`` (with a message) when none can run.

        ``similar`` asks for a plain similar-slice search of the template (no
        sketch, anatomy alone, one hit per patient and level).
        """
        if self.template is None:
            self.say("Choose a template first: show a normal slice, press “Use current slice”.")
            return None
        if not similar and self.model.is_empty():
            self.say("Draw the abnormality first: the sketch is empty")
            return None
        if self.query.unavailable_reason is not None:
            self.say(f"Sketch search is unavailable: {self.query.unavailable_reason}")
            return None
        volume, k = self.template
        scope = self.scope
        if scope == SCOPE_ARCHIVE and self.archive_dir is None:
            self.say("Choose an archive folder first (Search in: Archive…)")
            return None
        return SearchRequest(
            template=volume,
            slice_index=k,
            labels=None if similar else self.model.labels.copy(),
            weight=0.0 if similar else self.weight,
            one_per_patient_level=similar or self.dedupe_check.isChecked(),
            scope=scope,
            template_anatomy=self.link.anatomy_code(volume, k),
            loaded=tuple(self.link.loaded_series()) if scope == SCOPE_LOADED else (),
            archive_dir=self.archive_dir if scope == SCOPE_ARCHIVE else None,
        )

    def find_similar(self, volume: Volume, k: int) -> bool:
        """Show slice ``k`` of ``volume``'s level in other patients (no sketch); False if none ran.

        The viewport menu's "Find similar slices": the slice becomes the
        template (the sketch drawn so far is kept for a later sketch search)
        and the search runs in the scope chosen in the panel, by anatomy alone.
        """
        self.show()
        self.raise_()
        self.set_template(volume, k)
        request = self.build_request(similar=True)
        if request is None:
            return False
        self.say("Finding similar slices in other patients…")
        self.query.search(request)
        return True

    def search(self) -> bool:
        """Start a search with the current sketch and settings; False when none could start."""
        request = self.build_request()
        if request is None:
            return False
        self.say("Searching…")
        self.query.search(request)
        return True

    def _on_busy(self, busy: bool) -> None:
        self.progress.setVisible(busy)
        self.progress.setRange(0, 0)

    def _on_progress(self, _what: str, done: int, total: int) -> None:
        if total > 0:
            self.progress.setRange(0, total)
            self.progress.setValue(min(done, total))

    def _on_finished(self, outcome: SearchOutcome) -> None:
        self.last_outcome = outcome
        self.results.set_results(outcome.hits, outcome.thumbnails)
        self.results.set_stale(False)
        where = "the loaded series" if outcome.request.scope == SCOPE_LOADED else "the archive"
        what = "slices at this level in other patients" if outcome.request.similar else "results"
        if outcome.hits:
            text = (
                f"{len(outcome.hits)} {what} from {outcome.searched_slices} slices of {where}"
                " — click one to show it"
            )
        elif outcome.request.similar:
            text = f"No other patient in {where}"
            if outcome.request.scope == SCOPE_LOADED:
                text += ": choose an archive to search (Search in: Archive…)"
        else:
            text = f"No results in {where}"
        if outcome.note:
            text += f" ({outcome.note})"
        self.say(text)

    def _on_failed(self, message: str) -> None:
        # What is still shown answers an older question: say so, and dim it.
        stale = self.results.count() > 0
        self.results.set_stale(stale)
        self.say(
            message + (" (the results shown are from the previous search)" if stale else ""),
            error=True,
        )

    def say(self, text: str, error: bool = False) -> None:
        """Show ``text`` in the dock's message line ("" clears it); ``error`` shows it amber."""
        self.message.setText(text)
        if bool(self.message.property("error")) != error:
            self.message.setProperty("error", error)
            self.message.style().unpolish(self.message)
            self.message.style().polish(self.message)

    # -- models and prefetching --------------------------------------------------------------
    def _on_visible(self, visible: bool) -> None:
        if visible:
            self._fit_width_once()
            self.query.load_models()
            self.prefetch()

    def _fit_width_once(self) -> None:
        # Docked, the dock first takes its size hint; the viewports need the room
        # more, so a dock wider than a third of the window is narrowed once.
        if self._shown_once:
            return
        self._shown_once = True
        window = self.parentWidget()
        if self.isFloating() and isinstance(window, QtWidgets.QWidget):
            # Its own window beside the viewer: the viewports keep their sizes.
            frame = window.frameGeometry()
            self.resize(max(self.sizeHint().width(), 460), max(frame.height() - 80, 560))
            self.move(frame.right() - self.width() - 20, frame.top() + 60)
        if isinstance(window, QtWidgets.QMainWindow) and not self.isFloating():
            width = max(self.minimumSizeHint().width(), window.width() // 3)
            if self.width() > width:
                window.resizeDocks([self], [width], QtCore.Qt.Orientation.Horizontal)

    def prefetch(self) -> None:
        """Code the loaded series for search in the background, while the dock is open."""
        if self.isVisible():
            self.query.prefetch([s.volume for s in self.link.loaded_series()])

    def _on_models_loaded(self, models: SketchModels) -> None:
        if not self._weight_touched:
            self.weight_slider.setValue(round(100 * float(models.default_weight)))

    def _on_models_unavailable(self, message: str) -> None:
        self.search_button.setEnabled(False)
        self.search_button.setToolTip(f"Sketch search is unavailable: {message}")
        self.say(f"Sketch search is unavailable: {message}")

    # -- results -> viewer -------------------------------------------------------------------
    def open_hit(self, hit: SketchHit) -> None:
        """Show a result's slice in the viewer, opening its series first when needed."""
        ref = hit.ref
        outcome = self.last_outcome
        volume = outcome.volumes.get(ref.series_key) if outcome is not None else None
        if volume is not None and self.link.go_to_loaded(volume, ref.slice_index):
            return
        if self.link.go_to_matching(ref):
            return
        self.pending = PendingGoTo(ref)
        if self.link.show_catalogued(ref):
            self.link.status("Opening the series of the result…")
        elif ref.source:
            self.link.open_source(ref)
            self.link.status("Opening the series of the result…")
        else:
            self.pending = None
            self.say("This result's series is no longer open and its file is not known")

    def on_window_settled(self) -> None:
        """The window hung what it was loading: jump to a pending result, code new series."""
        pending = self.pending
        if pending is not None and self.link.go_to_matching(pending.ref):
            self.pending = None
        self.prefetch()
