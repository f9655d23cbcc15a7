"""Export from the viewer: the matched pair on screen, or a slice range into a folder.

The dialogs only collect choices; the rendering, privacy rules, file names and
safe writes are :mod:`app.export`'s. Patient identifiers are left out unless
the user ticks the box, every time: the choice is deliberately not remembered.
A batch runs in a worker thread with a progress dialog whose Cancel stops it
after the file being written (files already written are complete and stay).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from PySide6 import QtCore, QtWidgets

from app.core.imaging import Window
from app.core.volume import Volume
from app.export.batch import BatchExportError, BatchResult, export_matched_pairs
from app.ml.anatomy.sync_service import SyncEngine
from app.ui.loading.jobs import Cancelled, Job

__all__ = [
    "BatchChoices",
    "BatchExportDialog",
    "BatchExportRun",
    "PairChoices",
    "PairExportDialog",
    "describe_batch",
]

log = logging.getLogger(__name__)

_IDENTIFIERS_TEXT = "Include patient identifiers (name, ID, birth date, accession)"
_IDENTIFIERS_TIP = (
    "Off by default: exported images travel further than the viewer. With it on, the "
    "caption and the file's metadata name the patient."
)


@dataclass(frozen=True)
class PairChoices:
    """What the user chose for a single export."""

    path: Path
    include_identifiers: bool
    include_overlay: bool
    include_measurements: bool = False


@dataclass(frozen=True)
class BatchChoices:
    """What the user chose for a batch: folder, 0-based slice range (inclusive), options."""

    folder: Path
    first: int
    last: int
    include_identifiers: bool
    include_overlay: bool


def _path_row(edit: QtWidgets.QLineEdit, browse) -> QtWidgets.QHBoxLayout:
    row = QtWidgets.QHBoxLayout()
    row.addWidget(edit, 1)
    button = QtWidgets.QPushButton("Browse…")
    button.clicked.connect(browse)
    row.addWidget(button)
    return row


def _buttons(dialog: QtWidgets.QDialog, ok_text: str) -> QtWidgets.QDialogButtonBox:
    box = QtWidgets.QDialogButtonBox(
        QtWidgets.QDialogButtonBox.StandardButton.Ok
        | QtWidgets.QDialogButtonBox.StandardButton.Cancel
    )
    box.button(QtWidgets.QDialogButtonBox.StandardButton.Ok).setText(ok_text)
    box.accepted.connect(dialog.accept)
    box.rejected.connect(dialog.reject)
    return box


class PairExportDialog(QtWidgets.QDialog):
    """Where to save the matched slices on screen, and what to include.

    Parameters
    ----------
    suggested
        The proposed file (folder + :func:`~app.export.names.suggest_file_name`).
    overlay_available
        Whether a saliency overlay is on screen to include; ``overlay_on`` the
        box's initial state.
    measurements_available
        Whether the slices shown hold measurements (their box is then
        offered, unchecked: they are exported only when asked for).
    """

    def __init__(
        self,
        suggested: Path,
        overlay_available: bool,
        overlay_on: bool,
        parent: QtWidgets.QWidget | None = None,
        measurements_available: bool = False,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("pairExportDialog")
        self.setWindowTitle("Export matched slices")
        self.path_edit = QtWidgets.QLineEdit(str(suggested))
        self.identifiers = QtWidgets.QCheckBox(_IDENTIFIERS_TEXT)
        self.identifiers.setToolTip(_IDENTIFIERS_TIP)
        self.identifiers.setChecked(False)
        self.overlay = QtWidgets.QCheckBox("Include the saliency overlay shown")
        self.overlay.setEnabled(overlay_available)
        self.overlay.setChecked(overlay_available and overlay_on)
        self.measurements = QtWidgets.QCheckBox("Include the measurements and the follow-up table")
        self.measurements.setEnabled(measurements_available)
        self.measurements.setChecked(False)
        form = QtWidgets.QFormLayout(self)
        form.addRow("File:", _path_row(self.path_edit, self._browse))
        form.addRow(self.identifiers)
        form.addRow(self.overlay)
        form.addRow(self.measurements)
        form.addRow(_buttons(self, "Export"))

    def _browse(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self,
            "Export matched slices",
            self.path_edit.text(),
            "PNG image (*.png)",
            options=QtWidgets.QFileDialog.Option.DontConfirmOverwrite,  # asked on export
        )
        if path:
            self.path_edit.setText(path)

    def choices(self) -> PairChoices:
        return PairChoices(
            Path(self.path_edit.text().strip()).expanduser(),
            self.identifiers.isChecked(),
            self.overlay.isChecked(),
            self.measurements.isChecked() and self.measurements.isEnabled(),
        )


class BatchExportDialog(QtWidgets.QDialog):
    """A folder and a range of the current series' images to export pair by pair.

    The range is given in image numbers as the viewport shows them ("Im 1" is
    the top slice, the head end); :meth:`choices` converts to slice indices.

    Parameters
    ----------
    folder
        Proposed output folder.
    n_slices
        Slices in the current (driving) series.
    current_slice
        The slice shown now (the default range is 10 slices either side of it).
    overlay_available
        Whether saliency overlays can be drawn.
    """

    def __init__(
        self,
        folder: Path,
        n_slices: int,
        current_slice: int,
        overlay_available: bool,
        parent: QtWidgets.QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("batchExportDialog")
        self.setWindowTitle("Export a slice range")
        self.n_slices = n_slices
        self.folder_edit = QtWidgets.QLineEdit(str(folder))
        here = n_slices - current_slice  # image number of the slice shown
        self.first = QtWidgets.QSpinBox()
        self.last = QtWidgets.QSpinBox()
        for box in (self.first, self.last):
            box.setRange(1, n_slices)
            box.setPrefix("Im ")
        self.first.setValue(max(1, here - 10))
        self.last.setValue(min(n_slices, here + 10))
        self.identifiers = QtWidgets.QCheckBox(_IDENTIFIERS_TEXT)
        self.identifiers.setToolTip(_IDENTIFIERS_TIP)
        self.identifiers.setChecked(False)
        self.overlay = QtWidgets.QCheckBox("Include saliency overlays (slower)")
        self.overlay.setEnabled(overlay_available)
        form = QtWidgets.QFormLayout(self)
        form.addRow("Folder:", _path_row(self.folder_edit, self._browse))
        span = QtWidgets.QHBoxLayout()
        span.addWidget(self.first)
        span.addWidget(QtWidgets.QLabel("to"))
        span.addWidget(self.last)
        form.addRow("Images of the current series:", span)
        form.addRow(self.identifiers)
        form.addRow(self.overlay)
        form.addRow(_buttons(self, "Export"))

    def _browse(self) -> None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(
            self, "Export into folder", self.folder_edit.text()
        )
        if folder:
            self.folder_edit.setText(folder)

    def choices(self) -> BatchChoices:
        a, b = sorted((self.first.value(), self.last.value()))
        # Image number m shows slice n - m; the range is inclusive.
        return BatchChoices(
            folder=Path(self.folder_edit.text().strip()).expanduser(),
            first=self.n_slices - b,
            last=self.n_slices - a,
            include_identifiers=self.identifiers.isChecked(),
            include_overlay=self.overlay.isChecked(),
        )


class BatchExportRun(QtCore.QObject):
    """One batch export (current vs each prior) in a worker thread.

    Signals
    -------
    progress(int, int)
        Files handled, files in the batch (all priors together).
    finished(object, str)
        The combined :class:`~app.export.batch.BatchResult` (files written so
        far, also after a failure; ``cancelled`` set when stopped) and an error
        message ("" when none).
    """

    progress = QtCore.Signal(int, int)
    finished = QtCore.Signal(object, str)

    def __init__(
        self,
        engine: SyncEngine,
        current: Volume,
        priors: list[Volume],
        window: Window,
        choices: BatchChoices,
        colormap: str = "inferno",
        opacity: float = 0.5,
        parent: QtCore.QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.cancel_event = threading.Event()
        self._pool = QtCore.QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        slices = list(range(choices.first, choices.last + 1))
        total = len(slices) * len(priors)

        def work(progress, cancel):
            combined = BatchResult()
            saliency = None
            if choices.include_overlay:
                from app.ml.saliency.gradcam import SimilaritySaliency

                saliency = SimilaritySaliency(engine.load_model())
            for p_number, prior in enumerate(priors):
                result = engine.match(current, prior)
                overlays = None
                if saliency is not None:
                    overlays = _overlay_fn(saliency, current, prior, window, colormap, opacity)

                base = p_number * len(slices)

                def step(done, _total, base=base):
                    # The batch sees the cancel event before its next file and stops.
                    with contextlib.suppress(Cancelled):
                        progress(base + done, total)

                try:
                    part = export_matched_pairs(
                        current,
                        prior,
                        result,
                        choices.folder,
                        window=window,
                        slices=slices,
                        include_identifiers=choices.include_identifiers,
                        overlays=overlays,
                        progress=step,
                        cancel=cancel,
                    )
                except BatchExportError as exc:
                    combined.written += exc.result.written
                    return combined, str(exc)
                combined.written += part.written
                combined.uncovered += part.uncovered
                if part.cancelled or cancel.is_set():
                    combined.cancelled = True
                    break
            return combined, ""

        self._job = Job("batch export", work, self.cancel_event)
        self._job.signals.progress.connect(self.progress)
        self._job.signals.succeeded.connect(lambda result: self.finished.emit(*result))
        self._job.signals.failed.connect(lambda message: self.finished.emit(None, message))
        self._job.signals.cancelled.connect(
            lambda: self.finished.emit(BatchResult(cancelled=True), "")
        )

    def start(self) -> None:
        self._pool.start(self._job.run)

    def cancel(self) -> None:
        self.cancel_event.set()

    def wait(self, timeout_ms: int = 30000) -> bool:
        return self._pool.waitForDone(timeout_ms)


def _overlay_fn(saliency, current, prior, window, colormap, opacity):
    """``(current index, prior index) -> (current overlay, prior overlay)`` for the batch."""
    from app.export.overlays import overlay_rgb

    def overlays(k: int, j: int):
        maps = saliency.pair_maps(current, k, prior, j)
        return (
            overlay_rgb(saliency, current, k, maps.query, window, colormap, opacity),
            overlay_rgb(saliency, prior, j, maps.match, window, colormap, opacity),
        )

    return overlays


def describe_batch(result: BatchResult | None, message: str, folder: Path) -> str:
    """One sentence for the status bar / message box about a finished batch."""
    if result is None:
        return f"Export failed: {message}"
    n = len(result.written)
    if message:
        return f"Export stopped: {message} ({n} file{'s' if n != 1 else ''} written before)"
    text = f"{n} file{'s' if n != 1 else ''} written to {folder}"
    if result.uncovered:
        text += f"; {len(result.uncovered)} pair(s) skipped (level outside a prior)"
    if result.cancelled:
        text = "Export cancelled; " + text
    return text
