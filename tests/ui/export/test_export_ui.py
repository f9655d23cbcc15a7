"""Export from the viewer: the synced slices as one image, and a slice range into a folder."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PySide6 import QtCore, QtGui, QtWidgets
from sync_helpers import click, show_slice_unsynced

from app.ml.runtime.model import default_model_path
from app.ui.export.dialogs import BatchChoices, BatchExportDialog, PairChoices, PairExportDialog

Qt = QtCore.Qt
PHI = (b"Sim^Patient", b"Sim Patient", b"SIM-0001")

pytestmark = pytest.mark.skipif(
    not default_model_path().is_file(), reason="needs the shipped model models/priorsync-embed.onnx"
)


def synced_at(win, k: int = 60) -> None:
    show_slice_unsynced(win, win.views[0].state, k)
    click(win.views[0])


def test_export_is_in_the_file_menu_the_toolbar_and_on_ctrl_e(synced):
    assert synced.export_action.shortcut() == QtGui.QKeySequence("Ctrl+E")
    assert synced.export_action in synced.toolbar.actions()
    file_menu = synced.menuBar().actions()[0].menu()
    assert synced.export_action in file_menu.actions()
    assert synced.batch_export_action in file_menu.actions()


def test_the_dialog_proposes_an_identifier_free_name_and_leaves_identifiers_out(synced, tmp_path):
    synced_at(synced)
    synced.exports.folder = tmp_path
    path = synced.exports.suggested_path()
    assert path.parent == tmp_path
    n = synced.viewport_states()[0].volume.n_slices
    assert path.name.startswith(f"priorsync_20250310_im{n - 60:03d}_vs_20240205_im")
    assert "Sim" not in path.name and "SIM" not in path.name
    dialog = PairExportDialog(path, overlay_available=True, overlay_on=False, parent=synced)
    choices = dialog.choices()
    assert not dialog.identifiers.isChecked() and not choices.include_identifiers
    assert choices.path == path and not choices.include_overlay
    dialog.deleteLater()


def test_ctrl_e_exports_what_is_on_screen(synced, qtbot, tmp_path):
    synced_at(synced)
    target = tmp_path / "pair.png"

    def fill_and_accept():
        dialog = QtWidgets.QApplication.activeModalWidget()
        assert isinstance(dialog, PairExportDialog)
        dialog.path_edit.setText(str(target))
        dialog.accept()

    QtCore.QTimer.singleShot(100, fill_and_accept)
    synced.views[0].setFocus()
    qtbot.keyClick(synced, Qt.Key.Key_E, Qt.KeyboardModifier.ControlModifier)
    assert target.is_file()
    data = target.read_bytes()
    assert not any(p in data for p in PHI)
    image = cv2.imread(str(target))
    # Three panels side by side, each at least the slices' 128-pixel matrix wide.
    assert image is not None and image.shape[1] >= 3 * 128


def test_identifiers_only_when_ticked(synced, tmp_path):
    synced_at(synced)
    plain = synced.exports.export_pair_to(PairChoices(tmp_path / "plain.png", False, False))
    named = synced.exports.export_pair_to(PairChoices(tmp_path / "named.png", True, False))
    assert plain is not None and named is not None
    assert not any(p in plain.read_bytes() for p in PHI)
    assert b"SIM-0001" in named.read_bytes()


def test_an_existing_file_is_replaced_only_after_asking(synced, tmp_path, monkeypatch):
    synced_at(synced)
    target = tmp_path / "pair.png"
    target.write_bytes(b"keep me")
    asked: list[Path] = []
    monkeypatch.setattr(synced.exports, "confirm_overwrite", lambda p: asked.append(p) or False)
    assert synced.exports.export_pair_to(PairChoices(target, False, False)) is None
    assert target.read_bytes() == b"keep me" and asked == [target]
    monkeypatch.setattr(synced.exports, "confirm_overwrite", lambda p: True)
    assert synced.exports.export_pair_to(PairChoices(target, False, False)) == target
    assert target.read_bytes().startswith(b"\x89PNG")


def test_an_unwritable_target_is_reported_not_raised(synced, tmp_path):
    messages: list[str] = []
    synced.error_shown.connect(messages.append)
    assert (
        synced.exports.export_pair_to(PairChoices(tmp_path / "no" / "such" / "x.png", False, False))
        is None
    )
    assert synced.exports.export_pair_to(PairChoices(tmp_path / "x.tiff", False, False)) is None
    assert "does not exist" in messages[0] and "supported formats" in messages[1]


def test_the_overlay_shown_colours_the_export(synced, qtbot, tmp_path):
    synced_at(synced)
    views = [synced.views[i] for i in sorted(synced.views)]
    assert not synced.exports.overlay_shown()
    synced.saliency_action.trigger()
    qtbot.waitUntil(lambda: all(v.overlay is not None for v in views), timeout=20000)
    assert synced.exports.overlay_shown()
    grey = synced.exports.export_pair_to(PairChoices(tmp_path / "grey.png", False, False))
    colour = synced.exports.export_pair_to(PairChoices(tmp_path / "colour.png", False, True))
    a = cv2.imread(str(grey)).astype(int)
    b = cv2.imread(str(colour)).astype(int)
    assert a.shape[1] == b.shape[1]  # same panels (the captions differ in length)
    # Grey slices have equal channels; the saliency colour map does not.
    h = 128
    assert np.abs(a[:h, :, 2] - a[:h, :, 0]).max() < 3
    assert np.abs(b[:h, :, 2] - b[:h, :, 0]).max() > 40


def test_batch_exports_each_prior_over_the_range(synced, qtbot, tmp_path):
    synced_at(synced)
    folder = tmp_path / "batch"
    run = synced.exports.export_batch(BatchChoices(folder, 60, 64, False, False))
    assert run is not None
    qtbot.waitUntil(lambda: synced.exports.last_batch_result is not None, timeout=60000)
    result, message = synced.exports.last_batch_result
    assert message == "" and not result.cancelled
    files = sorted(folder.glob("*.png"))
    # Five current slices against two priors; slices 60-64 are inside both.
    assert len(files) == len(result.written) == 10 and not result.uncovered
    assert all(cv2.imread(str(f)) is not None for f in files)
    assert not any(any(p in f.read_bytes() for p in PHI) for f in files)
    assert "10 files written" in synced.statusBar().currentMessage()


def test_batch_can_be_cancelled_and_keeps_whole_files(synced, qtbot, tmp_path):
    synced_at(synced)
    folder = tmp_path / "batch"
    run = synced.exports.export_batch(BatchChoices(folder, 0, 100, False, False))
    progress = synced.findChild(QtWidgets.QProgressDialog, "batchProgress")
    assert progress is not None and progress.isVisible()
    qtbot.waitUntil(lambda: len(list(folder.glob("*.png"))) >= 2, timeout=60000)
    progress.findChild(QtWidgets.QPushButton).click()  # the dialog's Cancel button
    assert run.cancel_event.is_set()
    qtbot.waitUntil(lambda: synced.exports.last_batch_result is not None, timeout=60000)
    result, _ = synced.exports.last_batch_result
    assert result.cancelled
    files = list(folder.glob("*.png"))
    assert 2 <= len(files) < 2 * 101
    assert all(cv2.imread(str(f)) is not None for f in files)
    assert not list(folder.glob(".*"))  # no temporary files left behind


def test_batch_dialog_range_is_in_image_numbers(synced):
    state = synced.views[0].state
    dialog = BatchExportDialog(Path("/tmp"), state.volume.n_slices, 60, True, synced)
    n = state.volume.n_slices
    assert dialog.first.value() == n - 60 - 10 and dialog.last.value() == n - 60 + 10
    choices = dialog.choices()
    assert (choices.first, choices.last) == (50, 70)
    assert not choices.include_identifiers
    dialog.deleteLater()
