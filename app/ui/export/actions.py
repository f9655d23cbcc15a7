"""Export from the viewer window: File ▸ Export matched slices… (Ctrl+E) and a slice range.

:class:`ExportActions` turns what the viewports show into
:mod:`app.export` panels (the driving viewport first, then the others left to
right, each in its own window, with the saliency overlays on screen if asked)
and writes them with :func:`~app.export.safe_write.safe_write`: never over an
existing file without asking, never a partial file. Patient identifiers are
included only when the user ticks the box; so are the measurements with the
follow-up table as a caption (:mod:`app.export.measurements`). The slice-range
batch runs in a worker thread with a progress dialog and Cancel.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Protocol

from PySide6 import QtCore, QtWidgets

from app.core.measure import Finding, Measurement
from app.core.state import Channel, SyncGroup, ViewportState
from app.core.volume import Volume
from app.export.batch import BatchResult
from app.export.errors import ExportError, ExportExistsError
from app.export.formats import exporter_for
from app.export.measurements import table_lines, with_measurements
from app.export.names import suggest_file_name
from app.export.pairs import encode_panels, panels_from_viewports
from app.export.safe_write import safe_write
from app.ml.anatomy.sync_service import AnatomicalSliceMapper
from app.ui.export.dialogs import (
    BatchChoices,
    BatchExportDialog,
    BatchExportRun,
    PairChoices,
    PairExportDialog,
    describe_batch,
)
from app.ui.saliency.overlay import SaliencyOverlay
from app.ui.sync.anatomical_sync import AnatomicalSync
from app.ui.viewer.seams import ViewportSet

__all__ = ["ExportActions", "ExportHost", "MeasurementSource"]


class MeasurementSource(Protocol):
    """Where the export finds the measurements (the window's measurement tools)."""

    def measurements_of(self, volume: Volume) -> list[Measurement]: ...

    def findings_of(self, volumes: list[Volume]) -> list[Finding]: ...


class ExportHost(ViewportSet, Protocol):
    """What the export commands read from the window (the main window provides it)."""

    @property
    def sync(self) -> SyncGroup: ...

    @property
    def slice_mapper(self) -> AnatomicalSliceMapper: ...

    @property
    def anatomy(self) -> AnatomicalSync: ...

    @property
    def saliency(self) -> SaliencyOverlay: ...

    @property
    def colormap_combo(self) -> QtWidgets.QComboBox: ...

    @property
    def opacity_slider(self) -> QtWidgets.QSlider: ...

    def report(self, message: str) -> None:
        """Tell the user something went wrong."""
        ...

    def status(self, message: str, timeout_ms: int = 8000) -> None:
        """Say something short in the status bar."""
        ...

    def dialog_parent(self) -> QtWidgets.QWidget:
        """The widget dialogs are centred on."""
        ...


class ExportActions(QtCore.QObject):
    """The window's export commands.

    Attributes
    ----------
    folder
        Where the next export is proposed (the last one's folder; home at first).
    batch_run
        The slice-range export running now, if any.
    last_batch_result
        ``(BatchResult or None, error message)`` of the last finished batch.
    """

    def __init__(self, window: ExportHost, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.window = window
        self.folder = Path.home()
        self.batch_run: BatchExportRun | None = None
        self.last_batch_result: tuple[BatchResult | None, str] | None = None
        # Set by the window when it has measurement tools.
        self.measurements: MeasurementSource | None = None

    def shutdown(self) -> None:
        """Stop a running batch after its current file and wait for it."""
        if self.batch_run is not None:
            self.batch_run.cancel()
            self.batch_run.wait()

    def states(self) -> tuple[ViewportState, list[ViewportState]] | None:
        """The driving viewport and the others (left to right), as exports show them.

        The driver is the viewport that last drove the slice sync, else the
        active one, else the left-most.
        """
        states = self.window.viewport_states()
        if not states:
            return None
        driver = self.window.slice_mapper.last_source
        if driver not in states or not self.window.sync.enabled[Channel.SLICE]:
            driver = (
                self.window.active_view.state if self.window.active_view is not None else states[0]
            )
        return driver, [s for s in states if s is not driver]

    def _overlay_available(self) -> bool:
        """Whether saliency can be drawn at all (model loaded and suitable)."""
        return (
            self.window.anatomy.model_info is not None
            and self.window.saliency.unavailable_reason is None
        )

    def overlay_shown(self) -> bool:
        """Whether the driver and at least one other viewport show a saliency overlay now."""
        chosen = self.states()
        if chosen is None:
            return False
        driver, others = chosen
        shown = {id(v.state) for v in self.window.views.values() if v.overlay is not None}
        return id(driver) in shown and any(id(s) in shown for s in others)

    def suggested_path(self) -> Path:
        """The export folder and an identifier-free name for what is on screen."""
        chosen = self.states()
        if chosen is None:
            return self.folder / "priorsync.png"
        driver, others = chosen
        slices = [(s.volume, s.slice_index) for s in (driver, *others)]
        return self.folder / suggest_file_name(slices, ".png")

    def panels(self, include_overlay: bool) -> list:
        """Panels of the viewports as shown (driver first), with their saliency overlays if asked.

        The overlays are the ones on screen (computed in the background), so an
        export shows exactly what the reader saw and never runs the model here.
        """
        chosen = self.states()
        if chosen is None:
            return []
        driver, others = chosen
        overlays = None
        if include_overlay and self.overlay_shown():
            by_state = {id(v.state): v.overlay for v in self.window.views.values()}
            overlays = [by_state.get(id(s)) for s in (driver, *others)]
        panels = panels_from_viewports(driver, others, overlays)
        if overlays is not None:
            # Say which pair each colouring belongs to (the driver's depends on its partner).
            partner = "the prior beside it" if len(others) > 1 else "the prior"
            labels = [f"similarity to {partner}"] + ["similarity to the current"] * len(others)
            panels = [
                replace(p, overlay_label=label) for p, label in zip(panels, labels, strict=True)
            ]
        return panels

    def has_measurements(self) -> bool:
        """Whether a series on screen holds measurements (the dialog then offers them)."""
        if self.measurements is None:
            return False
        return any(
            self.measurements.measurements_of(s.volume) for s in self.window.viewport_states()
        )

    def confirm_overwrite(self, path: Path) -> bool:
        """Ask before replacing an existing file (tests replace this)."""
        answer = QtWidgets.QMessageBox.question(
            self.window.dialog_parent(),
            "Replace file?",
            f"{path.name} already exists in {path.parent}.\nReplace it?",
            QtWidgets.QMessageBox.StandardButton.Yes | QtWidgets.QMessageBox.StandardButton.No,
            QtWidgets.QMessageBox.StandardButton.No,
        )
        return answer == QtWidgets.QMessageBox.StandardButton.Yes

    def export_pair_to(self, choices: PairChoices) -> Path | None:
        """Write the on-screen slices to ``choices.path``; the path written, or None.

        Never overwrites without :meth:`confirm_overwrite`; problems are
        reported to the user, not raised.
        """
        path = choices.path
        try:
            exporter = exporter_for(path)
            panels = self.panels(choices.include_overlay)
            if not panels:
                self.window.report("Nothing to export: open a study first")
                return None
            footer: list[str] = []
            if choices.include_measurements and self.measurements is not None:
                panels = with_measurements(panels, self.measurements.measurements_of)
                footer = table_lines(self.measurements.findings_of([p.volume for p in panels]))
            QtWidgets.QApplication.setOverrideCursor(QtCore.Qt.CursorShape.WaitCursor)
            try:
                data, _ = encode_panels(
                    panels,
                    exporter,
                    include_identifiers=choices.include_identifiers,
                    footer=footer,
                )
            finally:
                QtWidgets.QApplication.restoreOverrideCursor()
            try:
                safe_write(path, data)
            except ExportExistsError:
                if not self.confirm_overwrite(path):
                    self.window.status("Export cancelled: the file exists", 5000)
                    return None
                safe_write(path, data, overwrite=True)
        except ExportError as exc:
            self.window.report(str(exc))
            return None
        self.folder = path.parent
        self.window.status(f"Exported {path.name}", 8000)
        return path

    def export_pair_dialog(self) -> None:
        """File ▸ Export matched slices…: ask where and what, then export."""
        if not self.window.views:
            self.window.report("Nothing to export: open a study first")
            return
        shown = self.overlay_shown()
        dialog = PairExportDialog(
            self.suggested_path(),
            shown,
            shown,
            self.window.dialog_parent(),
            measurements_available=self.has_measurements(),
        )
        if dialog.exec() == QtWidgets.QDialog.DialogCode.Accepted:
            self.export_pair_to(dialog.choices())

    def export_batch(self, choices: BatchChoices) -> BatchExportRun | None:
        """Start exporting (driver slice, match) pairs over a range into a folder, in the background.

        Progress and Cancel are shown in a progress dialog; the result lands in
        :attr:`last_batch_result` and the status bar.
        """
        chosen = self.states()
        if chosen is None or not chosen[1]:
            self.window.report(
                "A slice range export needs a current and at least one prior on screen"
            )
            return None
        if self.window.anatomy.unavailable_reason is not None:
            self.window.report(f"Matching is unavailable: {self.window.anatomy.unavailable_reason}")
            return None
        if self.batch_run is not None:
            self.window.report("An export is already running")
            return None
        driver, others = chosen
        run = BatchExportRun(
            self.window.anatomy.engine,
            driver.volume,
            [s.volume for s in others],
            driver.window,
            choices,
            colormap=self.window.colormap_combo.currentData(),
            opacity=self.window.opacity_slider.value() / 100.0,
            parent=self,
        )
        progress = QtWidgets.QProgressDialog(
            "Exporting matched pairs…", "Cancel", 0, 0, self.window.dialog_parent()
        )
        progress.setObjectName("batchProgress")
        progress.setWindowTitle("Export")
        progress.setMinimumDuration(0)
        progress.setAutoClose(False)
        progress.setAutoReset(False)
        progress.canceled.connect(run.cancel)

        def on_progress(done: int, total: int) -> None:
            progress.setMaximum(total)
            progress.setValue(done)

        def on_finished(result: BatchResult | None, message: str) -> None:
            self.batch_run = None
            progress.hide()
            progress.deleteLater()
            self.last_batch_result = (result, message)
            text = describe_batch(result, message, choices.folder)
            if message or result is None:
                self.window.report(text)
            else:
                self.window.status(text, 10000)
            self.folder = choices.folder

        run.progress.connect(on_progress)
        run.finished.connect(on_finished)
        self.batch_run = run
        progress.show()
        run.start()
        return run

    def export_batch_dialog(self) -> None:
        """File ▸ Export a slice range…: folder, range and options, then the batch."""
        chosen = self.states()
        if chosen is None:
            self.window.report("Nothing to export: open a study first")
            return
        driver, _ = chosen
        dialog = BatchExportDialog(
            self.folder,
            driver.volume.n_slices,
            driver.slice_index,
            self._overlay_available(),
            self.window.dialog_parent(),
        )
        if dialog.exec() == QtWidgets.QDialog.DialogCode.Accepted:
            self.export_batch(dialog.choices())
