"""The sketch query dock in the real main window: drawing, tools, files, messages, searching."""

from __future__ import annotations

import numpy as np
import pytest
from input_events import _send_mouse, drag, wheel
from PySide6 import QtCore, QtTest
from tiny_sketch_models import write_tiny_sketch_models

from app.core.sketch import Tool
from app.io.sketch_png import load_sketch_png, save_sketch_png
from app.ui.sketch.query import SCOPE_ARCHIVE, soft_tissue_thumbnail

Qt = QtCore.Qt


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    return write_tiny_sketch_models(tmp_path_factory.mktemp("sketch-models"))


@pytest.fixture(autouse=True)
def _use_tiny_models(tiny_models, monkeypatch):
    """Searches use tiny untrained models: the tests check the UI, not retrieval quality."""
    abn, sk = tiny_models
    monkeypatch.setenv("PRIORSYNC_ABNORMALITY_MODEL", str(abn))
    monkeypatch.setenv("PRIORSYNC_SKETCH_MODEL", str(sk))


def open_dock(qtbot, win):
    dock = win.sketch_dock
    dock.show()
    qtbot.waitUntil(lambda: dock.canvas.isVisible())
    return dock


def with_template(qtbot, win):
    dock = open_dock(qtbot, win)
    assert dock.use_current_slice()
    qtbot.waitUntil(lambda: dock.canvas.graphics.isVisible())
    QtCore.QCoreApplication.processEvents()
    return dock


def draw(dock, points, button=Qt.MouseButton.LeftButton):
    """Drag through ``points`` (slice (col, row) positions) on the canvas."""
    host = dock.canvas.graphics.viewport()
    start = dock.canvas.pixel_to_widget(*points[0])
    for p in points[1:]:
        end = dock.canvas.pixel_to_widget(*p)
        drag(host, start, end, button)
        start = end


def test_view_menu_shows_the_dock_with_ctrl_k(window):
    assert window.sketch_action.shortcut().toString() == "Ctrl+K"
    assert not window.sketch_dock.isVisible()
    window.sketch_action.trigger()
    assert window.sketch_dock.isVisible()
    assert window.sketch_action in window.menuBar().actions()[1].menu().actions()


def test_template_needs_a_study(qtbot, window):
    dock = open_dock(qtbot, window)
    assert not dock.use_current_slice()
    assert "Open a study first" in dock.message.text()
    assert not dock.search()
    assert "template" in dock.message.text()


def test_use_current_slice_takes_the_active_viewport(qtbot, hung):
    view = hung.active_view
    view.state.set_slice(7)
    dock = with_template(qtbot, hung)
    volume, k = dock.template
    assert volume is view.state.volume and k == 7
    n = volume.n_slices
    assert f"Im {n - 7}/{n}" in dock.template_label.text()
    assert dock.model.shape == volume.voxels.shape[1:]


def test_canvas_shows_the_viewports_orientation_letters(qtbot, hung):
    view = hung.active_view
    dock = with_template(qtbot, hung)
    letters = {edge: label.text() for edge, label in dock.canvas.orientation_labels.items()}
    assert letters == view.state.orientation_labels
    assert letters["left"] == "R" and letters["top"] == "A"
    host = dock.canvas.graphics.viewport().rect()
    for label in dock.canvas.orientation_labels.values():
        assert host.contains(label.geometry())


def test_mouse_stroke_draws_and_undo_redo(qtbot, hung):
    dock = with_template(qtbot, hung)
    dock.model.set_brush_radius_mm(1.0)
    draw(dock, [(16, 24), (48, 24)])
    labels = dock.model.labels
    assert labels[24, 18:47].all(), "the drag left gaps"
    assert set(np.unique(labels)) == {0, 1}
    assert not labels[10].any()
    drawn = labels.copy()
    assert dock.undo_button.isEnabled() and dock.clear_button.isEnabled()

    dock.undo_button.click()
    assert dock.model.is_empty()
    assert dock.redo_button.isEnabled()
    dock.redo_button.click()
    np.testing.assert_array_equal(dock.model.labels, drawn)

    # Ctrl+Z / Ctrl+Shift+Z while the dock has the focus.
    dock.canvas.graphics.setFocus()
    qtbot.waitUntil(lambda: dock.canvas.graphics.hasFocus())
    QtTest.QTest.keyClick(dock.canvas.graphics, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert dock.model.is_empty()
    QtTest.QTest.keyClick(
        dock.canvas.graphics,
        Qt.Key.Key_Z,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
    )
    np.testing.assert_array_equal(dock.model.labels, drawn)


def test_class_buttons_and_eraser(qtbot, hung):
    dock = with_template(qtbot, hung)
    dock.model.set_brush_radius_mm(2.0)
    dock.class_buttons[3].click()
    assert dock.model.current_class == 3
    draw(dock, [(16, 24), (48, 24)])
    assert set(np.unique(dock.model.labels)) == {0, 3}
    dock.tool_buttons[Tool.ERASER].click()
    assert dock.model.tool is Tool.ERASER
    draw(dock, [(32, 18), (32, 30)])
    assert dock.model.labels[24, 32] == 0 and dock.model.labels[24, 20] == 3
    dock.class_buttons[2].click()  # picking a colour goes back to the brush
    assert dock.model.tool is Tool.BRUSH
    assert dock.tool_buttons[Tool.BRUSH].isChecked()


def test_click_paints_one_dab(qtbot, hung):
    dock = with_template(qtbot, hung)
    dock.model.set_brush_radius_mm(2.0)
    host = dock.canvas.graphics.viewport()
    QtTest.QTest.mouseClick(
        host, Qt.MouseButton.LeftButton, pos=dock.canvas.pixel_to_widget(30, 20)
    )
    ys, xs = np.nonzero(dock.model.labels)
    assert len(xs) > 0
    assert abs(xs.mean() - 30) <= 1 and abs(ys.mean() - 20) <= 1


def test_wheel_changes_the_brush_size(qtbot, hung):
    dock = with_template(qtbot, hung)
    before = dock.model.brush_radius_mm
    host = dock.canvas.graphics.viewport()
    wheel(host, 2)
    assert dock.model.brush_radius_mm == pytest.approx(before * 1.44)
    assert f"{before * 1.44:.1f} mm" in dock.brush_label.text()
    wheel(host, -4)
    assert dock.model.brush_radius_mm < before
    assert dock.canvas.cursor_item.isVisible()  # the brush outline follows the mouse
    assert dock.model.is_empty()  # turning the wheel never paints


def test_brush_outline_follows_the_mouse(qtbot, hung):
    dock = with_template(qtbot, hung)
    host = dock.canvas.graphics.viewport()
    none = Qt.MouseButton.NoButton
    for col in (20, 30):
        QtTest.QTest.qWait(15)  # pyqtgraph drops moves closer than 10 ms
        _send_mouse(
            host, QtCore.QEvent.Type.MouseMove, dock.canvas.pixel_to_widget(col, 20), none, none
        )
    cursor = dock.canvas.cursor_item
    assert cursor.isVisible()
    sx, sy = dock.model.spacing_mm
    centre = cursor.rect().center()
    assert centre.x() == pytest.approx(30.5 * sx, abs=sx) and centre.y() == pytest.approx(
        20.5 * sy, abs=sy
    )
    assert cursor.rect().width() == pytest.approx(2 * dock.model.brush_radius_mm)
    assert dock.model.is_empty()  # moving without a button never paints


def test_right_drag_pans_instead_of_drawing(qtbot, hung):
    dock = with_template(qtbot, hung)
    before = dock.canvas.view_box.viewRange()
    draw(dock, [(20, 20), (40, 30)], Qt.MouseButton.RightButton)
    assert dock.model.is_empty()
    assert dock.canvas.view_box.viewRange() != before


def test_save_and_load_png(qtbot, hung, tmp_path):
    dock = with_template(qtbot, hung)
    dock.model.set_brush_radius_mm(2.0)
    draw(dock, [(16, 24), (48, 24)])
    drawn = dock.model.labels.copy()
    path = tmp_path / "sketch.png"
    assert dock.save_png(path)
    np.testing.assert_array_equal(load_sketch_png(path), drawn)

    dock.model.clear()
    assert dock.load_png(path)
    np.testing.assert_array_equal(dock.model.labels, drawn)
    dock.undo_button.click()  # loading is one undo step
    assert dock.model.is_empty()


def test_saving_asks_before_overwriting(qtbot, hung, tmp_path, monkeypatch):
    dock = with_template(qtbot, hung)
    draw(dock, [(16, 24), (48, 24)])
    path = tmp_path / "sketch.png"
    path.write_bytes(b"keep me")
    asked = []
    monkeypatch.setattr(dock, "confirm_overwrite", lambda p: asked.append(p) or False)
    assert not dock.save_png(path)
    assert asked == [path] and path.read_bytes() == b"keep me"
    assert "Not saved" in dock.message.text()
    monkeypatch.setattr(dock, "confirm_overwrite", lambda p: True)
    assert dock.save_png(path)
    np.testing.assert_array_equal(load_sketch_png(path), dock.model.labels)


def test_loading_a_sketch_of_another_size_says_both_sizes(qtbot, hung, tmp_path):
    dock = with_template(qtbot, hung)
    path = save_sketch_png(tmp_path / "small.png", np.zeros((10, 12), np.uint8))
    assert not dock.load_png(path)
    rows, cols = dock.model.shape
    assert f"12×10 pixels but the template slice is {cols}×{rows}" in dock.message.text()
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a picture")
    assert not dock.load_png(bad)
    assert "not a PNG" in dock.message.text()


def test_empty_sketch_is_not_searched(qtbot, hung):
    dock = with_template(qtbot, hung)
    assert not dock.search()
    assert dock.message.text() == "Draw the abnormality first: the sketch is empty"
    assert not dock.query.is_busy()


def test_missing_models_disable_search(qtbot, hung, tmp_path, monkeypatch):
    monkeypatch.setenv("PRIORSYNC_SKETCH_MODEL", str(tmp_path / "missing.onnx"))
    dock = hung.sketch_dock
    with qtbot.waitSignal(dock.query.models_unavailable, timeout=20000):
        open_dock(qtbot, hung)
    assert "model file not found" in dock.message.text()
    assert not dock.search_button.isEnabled()


def test_weight_slider_defaults_to_the_models_weight(qtbot, hung):
    dock = hung.sketch_dock
    with qtbot.waitSignal(dock.query.models_loaded, timeout=20000):
        open_dock(qtbot, hung)
    assert dock.weight == pytest.approx(0.35)  # tiny models' priorsync.default_weight


def test_sketch_outside_the_body_gets_a_message(qtbot, hung):
    dock = with_template(qtbot, hung)
    dock.model.set_brush_radius_mm(1.0)
    draw(dock, [(1, 1), (6, 1)])  # air in the corner
    assert dock.search()
    qtbot.waitUntil(lambda: not dock.query.is_busy(), timeout=30000)
    assert "outside the body" in dock.message.text()
    assert dock.results.count() == 0


def test_archive_that_is_not_one_gets_a_message(qtbot, hung, tmp_path):
    dock = with_template(qtbot, hung)
    draw(dock, [(28, 24), (36, 24)])
    dock.set_archive(tmp_path)
    assert dock.scope == SCOPE_ARCHIVE
    assert hung.preferences.sketch_archive() == str(tmp_path)
    assert dock.search()
    qtbot.waitUntil(lambda: not dock.query.is_busy(), timeout=30000)
    assert "is not a PriorSync archive" in dock.message.text()


def test_thumbnail_keeps_the_physical_aspect(hung):
    volume = hung.active_view.state.volume  # 64 x 48 pixels of 0.8 mm
    thumb = soft_tissue_thumbnail(volume, 3, size=64)
    assert thumb.shape == (64, 64)
    rows = np.flatnonzero(thumb.any(axis=1))
    assert rows.min() >= 7 and rows.max() <= 56  # 48 rows scaled to 48 of 64, centred


def test_search_loaded_series_and_open_a_result(qtbot, synced):
    win = synced
    current = next(v for v in win.views.values() if v.state.volume.info.study_date == "20250310")
    prior = next(v for v in win.views.values() if v.state.volume.info.study_date == "20240205")
    with win.sync.held():
        current.state.set_slice(50)
    win.hanging.set_active(current)
    dock = with_template(qtbot, win)
    assert dock.template[1] == 50
    rows, cols = dock.model.shape
    dock.model.set_brush_radius_mm(12.0)
    draw(dock, [(cols // 2 - 4, rows // 2), (cols // 2 + 4, rows // 2)])
    dock.weight_slider.setValue(0)  # anatomy only: the template slice itself ranks first

    with qtbot.waitSignal(dock.query.finished, timeout=60000):
        assert dock.search()
    hits = dock.results.hits()
    assert len(hits) >= 3
    assert dock.results.count() == len(hits)
    assert hits[0].ref.series_key == "current" and hits[0].ref.slice_index == 50
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert "results from" in dock.message.text()
    caption = dock.results.item(0).text()
    n = current.state.volume.n_slices
    assert caption == f"Sim Patient · 2025-03-10 · Im {n - 50}/{n} · 1.00"

    # One per patient and level: no two hits of one series within 10 mm.
    for i, a in enumerate(hits):
        for b in hits[i + 1 :]:
            if a.ref.series_key == b.ref.series_key:
                assert abs(a.ref.z_mm - b.ref.z_mm) > 10.0

    # Clicking a result of the prior moves that viewport to it.
    row = next(i for i, h in enumerate(hits) if h.ref.series_key == "prior1")
    target = hits[row]
    with win.sync.held():
        prior.state.set_slice(0 if target.ref.slice_index > 0 else 1)
    item = dock.results.item(row)
    dock.results.scrollToItem(item)
    rect = dock.results.visualItemRect(item)
    QtTest.QTest.mouseClick(dock.results.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert prior.state.slice_index == target.ref.slice_index
    assert win.active_view is prior
    # The codes of every loaded series stay cached for the next search.
    assert all(dock.query.cached_codes(v.state.volume) is not None for v in win.views.values())


def window_with_archive(qtbot, patient, index_dir, tiny_models, tmp_path, others=()):
    """A real window (real loader) showing the current scan, and an archive on disk.

    The archive holds the patient's first prior and each ``(folder name, volume)`` of ``others``.
    """
    from app.io.dicom_write import write_dicom_series
    from app.ml.anatomy.index import IndexCache
    from app.ml.anatomy.sync_service import SyncEngine
    from app.ml.runtime.model import EmbeddingModel
    from app.ml.sketch.archive import build_archive
    from app.ml.sketch.models import SketchModels
    from app.ui.loading.loader import Loader
    from app.ui.shell.main_window import MainWindow

    current_dir = tmp_path / "current"
    write_dicom_series(patient.scans[0].volume, current_dir)
    write_dicom_series(patient.scans[1].volume, tmp_path / "archive-source" / "prior")
    for name, volume in others:
        write_dicom_series(volume, tmp_path / "archive-source" / name)
    report = build_archive(
        tmp_path / "archive-source",
        tmp_path / "archive",
        model=EmbeddingModel.load(),
        sketch_models=SketchModels.load(*tiny_models),
    )
    win = MainWindow(Loader(), SyncEngine(cache=IndexCache(index_dir)))
    qtbot.addWidget(win)
    win.resize(1500, 700)
    win.show()
    qtbot.waitExposed(win)
    with qtbot.waitSignal(win.settled, timeout=60000):
        win.open_paths([current_dir])
    qtbot.waitUntil(lambda: len(win.views) == 1 and win.is_settled(), timeout=60000)
    return win, report.out_dir


@pytest.fixture
def archive_window(qtbot, patient, patient_index_dir, tiny_models, tmp_path):
    """The current scan on screen, and an archive of its prior."""
    win, archive = window_with_archive(qtbot, patient, patient_index_dir, tiny_models, tmp_path)
    yield win, archive
    win.shutdown()


def test_search_an_archive_and_open_a_result(qtbot, archive_window):
    win, archive_dir = archive_window
    dock = with_template(qtbot, win)
    rows, cols = dock.model.shape
    dock.model.set_brush_radius_mm(12.0)
    draw(dock, [(cols // 2 - 4, rows // 2), (cols // 2 + 4, rows // 2)])
    dock.set_archive(archive_dir)
    with qtbot.waitSignal(dock.query.finished, timeout=60000):
        assert dock.search()
    hits = dock.results.hits()
    assert hits and "of the archive" in dock.message.text()
    assert all(h.ref.study_date == "20240205" for h in hits)  # only the prior is archived
    assert dock.results.item(0).icon().availableSizes()  # archive thumbnails shown

    # The hit farthest from the middle slice, where a newly hung series starts.
    target = max(hits, key=lambda h: abs(h.ref.slice_index - h.ref.n_slices // 2))
    assert abs(target.ref.slice_index - target.ref.n_slices // 2) > 5
    with qtbot.waitSignal(win.settled, timeout=60000):
        dock.results.chosen.emit(target)  # as a click does
    qtbot.waitUntil(lambda: len(win.views) == 2 and win.is_settled(), timeout=60000)
    qtbot.waitUntil(lambda: dock.pending is None, timeout=10000)
    prior = next(v for v in win.views.values() if v.state.volume.info.study_date == "20240205")
    assert prior.state.slice_index == target.ref.slice_index


@pytest.fixture
def two_patient_archive(qtbot, patient, patient_index_dir, tiny_models, tmp_path):
    """The current scan on screen; an archive of its prior and of another patient's scan."""
    from dataclasses import replace

    # Another patient: the second prior under another identity (its anatomy is a body's).
    other = patient.scans[2].volume
    info = replace(
        other.info,
        patient_id="OTHER-0001",
        patient_name="Other^Patient",
        study_uid="1.2.826.0.1.3680043.10.1234.1",
        series_uid="1.2.826.0.1.3680043.10.1234.2",
        frame_of_reference_uid="1.2.826.0.1.3680043.10.1234.3",
    )
    win, archive = window_with_archive(
        qtbot,
        patient,
        patient_index_dir,
        tiny_models,
        tmp_path,
        others=[("other", replace(other, info=info))],
    )
    yield win, archive
    win.shutdown()


def menu_action(win, view, text):
    menu = win.viewport_commands.build_menu(view)
    try:
        return next(a for a in menu.actions() if a.text() == text)
    finally:
        menu.deleteLater()


def test_find_similar_slices_from_the_viewport_menu(qtbot, two_patient_archive, patient):
    win, archive_dir = two_patient_archive
    view = next(iter(win.views.values()))
    dock = win.sketch_dock
    with win.sync.held():
        view.state.set_slice(40)
    # In the loaded series there is no other patient: the message says where to look.
    with qtbot.waitSignal(dock.query.finished, timeout=60000):
        menu_action(win, view, "Find similar slices").trigger()
    assert dock.isVisible() and dock.template == (view.state.volume, 40)
    assert dock.results.count() == 0
    assert "No other patient in the loaded series" in dock.message.text()

    dock.set_archive(archive_dir)
    with qtbot.waitSignal(dock.query.finished, timeout=60000):
        menu_action(win, view, "Find similar slices").trigger()
    hits = dock.results.hits()
    assert hits and "slices at this level in other patients" in dock.message.text()
    # Only the other patient: the current's own prior (same patient) is left out.
    assert {h.ref.series_label for h in hits} and all(
        h.ref.patient_label == "Other^Patient" for h in hits
    )
    assert dock.results.item(0).icon().availableSizes()
    # The best hit lies at the clicked level of that body (the simulator's truth).
    current, other = patient.scans[0], patient.scans[2]
    level = current.source_z[40]
    order = np.argsort(other.volume.slice_z)
    found = np.interp(hits[0].ref.z_mm, other.volume.slice_z[order], other.source_z[order])
    assert abs(found - level) <= 15.0, (found, level)
