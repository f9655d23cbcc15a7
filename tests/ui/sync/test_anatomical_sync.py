"""Anatomical sync in the real viewer: a simulated patient with known truth, the shipped model.

The main window runs on the fake loader (volumes in memory) but everything
else is real: the ONNX model, hnswlib indexes in a cache folder, the
whole-series alignment, the widgets and their mouse and key input.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from fakes import FakeBackend
from input_events import wheel
from PySide6 import QtCore, QtGui, QtTest
from sync_helpers import click, open_patient, show_slice_unsynced

from app.core.crosshair import BodyBoxMapper
from app.core.planes import Plane, reference_lines
from app.core.state import Channel
from app.ml.anatomy.index import IndexCache
from app.ml.anatomy.sync_service import SyncEngine
from app.ml.runtime.model import default_model_path
from app.sim.followup import true_correspondence
from app.ui.loading.loader import Loader
from app.ui.shell.main_window import MainWindow

Qt = QtCore.Qt
TOLERANCE_MM = 5.0

pytestmark = pytest.mark.skipif(
    not default_model_path().is_file(), reason="needs the shipped model models/priorsync-embed.onnx"
)


def errors_mm(patient, states) -> list[tuple[float, bool]]:
    """|shown - true| (mm) of each prior for the current's slice, and whether to check it.

    Checked: levels at least the tolerance inside the prior (see ``well_inside``).
    """
    k = states[0].slice_index
    out = []
    for p, state in enumerate(states[1:], start=1):
        true_z, _ = patient.truth(p, k)
        inside = patient.well_inside(p, k, TOLERANCE_MM)
        out.append((abs(state.slice_position_mm - true_z), inside))
    return out


def amber_pixels(widget) -> int:
    """Pixels of the "outside" amber (#ebcb8b) in the widget as painted."""
    image = widget.grab().toImage().convertToFormat(QtGui.QImage.Format.Format_RGB888)
    w, h, bpl = image.width(), image.height(), image.bytesPerLine()
    rgb = np.frombuffer(image.constBits(), np.uint8, h * bpl).reshape(h, bpl)[:, : 3 * w]
    rgb = rgb.reshape(h, w, 3).astype(int)
    return int(np.sum(np.abs(rgb - np.array([235, 203, 139])).sum(axis=2) < 30))


def test_series_are_indexed_in_the_background_with_progress_per_viewport(qtbot, patient, tmp_path):
    engine = SyncEngine(cache=IndexCache(tmp_path / "index"))
    threads: list[int] = []
    build = engine.build_index

    def recording_build(volume, progress=None):
        threads.append(threading.get_ident())
        return build(volume, progress)

    engine.build_index = recording_build
    progress: dict[int, list[tuple[int, int]]] = {}
    win = MainWindow(Loader(FakeBackend(patient.files)), engine)
    qtbot.addWidget(win)
    win.anatomy.index_progress.connect(
        lambda state, done, total: progress.setdefault(id(state), []).append((done, total))
    )
    win.show()
    with qtbot.waitSignal(win.settled, timeout=60000):
        win.open_paths(list(patient.files))
    qtbot.waitUntil(lambda: len(win.views) == 3 and win.is_settled(), timeout=60000)
    try:
        states = win.viewport_states()
        assert len(threads) == 3 and threading.get_ident() not in threads
        for state in states:
            # Every viewport saw its own series' progress up to the last slice.
            assert progress[id(state)][-1] == (state.volume.n_slices, state.volume.n_slices)
            assert not win.anatomy.index_state(state).from_cache
        assert all(not v.sync_label.isVisible() for v in win.views.values())
        assert win.sync.enabled[Channel.SLICE]
        # Six alignments: every ordered pair of the three series.
        pairs = [(a, b) for a in states for b in states if a is not b]
        assert all(engine.alignment_of(a.volume, b.volume) is not None for a, b in pairs)
    finally:
        win.shutdown()


def test_a_click_moves_every_prior_to_the_true_level(synced, patient):
    states = synced.viewport_states()
    assert [s.volume.info.study_date for s in states] == ["20250310", "20240205", "20230117"]
    current = synced.views[0]
    checked = 0
    for k in (40, 55, 70, 85):
        show_slice_unsynced(synced, states[0], k)
        click(current)
        for p, (err, covered) in enumerate(errors_mm(patient, states), start=1):
            if not covered:
                continue
            checked += 1
            assert err <= TOLERANCE_MM, f"slice {k}: prior {p} is {err:.1f} mm off"
            match = states[p].match
            assert match is not None and match.in_coverage and match.aligned
            assert f"match {match.score:.2f}" in synced.views[p].slice_label.text()
            assert not synced.views[p].banner.isVisible()
    assert checked >= 5


def test_scrolling_keeps_the_priors_following(synced, patient):
    states = synced.viewport_states()
    show_slice_unsynced(synced, states[0], 50)
    host = synced.views[0].graphics.viewport()
    for _ in range(12):
        wheel(host, +1)  # away from the user: toward the head
        for p, (err, covered) in enumerate(errors_mm(patient, states), start=1):
            if covered:
                assert err <= TOLERANCE_MM, f"prior {p} fell {err:.1f} mm behind"
    assert states[0].slice_index == 62


def test_any_viewport_drives(synced, patient):
    states = synced.viewport_states()
    prior = synced.views[1]
    show_slice_unsynced(synced, states[1], 35)
    click(prior)
    true_z, covered = true_correspondence(patient.scans[1], patient.scans[0])
    assert covered[35]
    assert abs(states[0].slice_position_mm - true_z[35]) <= TOLERANCE_MM
    assert states[1].match is None  # the driver shows no match of its own


def test_sync_off_stops_the_others(synced):
    states = synced.viewport_states()
    synced.sync_slices_action.trigger()
    assert not synced.sync.enabled[Channel.SLICE]
    before = [s.slice_index for s in states[1:]]
    wheel(synced.views[0].graphics.viewport(), -5)
    click(synced.views[0])
    assert [s.slice_index for s in states[1:]] == before
    synced.sync_slices_action.trigger()  # and back on: they catch up at once
    assert all(s.match is not None for s in states[1:])


def test_a_level_outside_a_prior_is_marked_and_its_end_slice_dimmed(synced, patient):
    states = synced.viewport_states()
    k = 3  # the current's lowest levels: neither prior imaged them
    assert not patient.truth(1, k)[1] and not patient.truth(2, k)[1]
    show_slice_unsynced(synced, states[0], k)
    click(synced.views[0])
    for p in (1, 2):
        view, state = synced.views[p], states[p]
        assert state.match is not None and not state.match.in_coverage
        assert view.banner.isVisible()
        # Only the mark and the distance to the covered levels: no score, no candidates.
        assert view.banner.text().startswith("level outside this scan · ")
        assert "mm below its bottom" in view.banner.text()
        assert "match" not in view.slice_label.text()
        assert not view.candidates_label.isVisible()
        assert view.image_item.opacity() < 1.0
        assert state.slice_index == 0  # the nearest end: the prior's lowest slice
    # In the sagittal plane the level line turns amber.
    prior = synced.views[1]
    prior.set_plane(Plane.SAGITTAL)
    prior.banner.hide()  # amber too: only the line may count
    assert amber_pixels(prior.graphics) > 20
    assert prior.hline.pen.color().name() == "#ebcb8b"
    # Back inside: the mark goes.
    show_slice_unsynced(synced, states[0], 60)
    click(synced.views[0])
    assert not prior.banner.isVisible()
    assert prior.image_item.opacity() == 1.0
    assert "match" in prior.slice_label.text()
    assert amber_pixels(prior.graphics) == 0
    assert prior.hline.pen.color().name() != "#ebcb8b"


def test_n_and_shift_n_step_through_candidates_on_the_target_only(synced, qtbot):
    states = synced.viewport_states()
    show_slice_unsynced(synced, states[0], 60)
    click(synced.views[0])
    target = synced.views[1]
    match = states[1].match
    assert match is not None and len(match.candidates) >= 2
    assert match.candidates[0][0] == states[1].slice_index
    assert target.candidates_label.isVisible()
    z = states[1].volume.slice_z
    (j0, _), (j1, _) = match.candidates[:2]
    assert f"{z[j1] - z[j0]:+.0f}mm" in target.candidates_label.text()
    driver_slice, other_slice = states[0].slice_index, states[2].slice_index
    target.setFocus()
    qtbot.keyClick(target, Qt.Key.Key_N)
    assert states[1].slice_index == match.candidates[1][0]
    assert states[1].match.score == pytest.approx(match.candidates[1][1])
    assert (states[0].slice_index, states[2].slice_index) == (driver_slice, other_slice)
    qtbot.keyClick(target, Qt.Key.Key_N, Qt.KeyboardModifier.ShiftModifier)
    assert states[1].slice_index == match.candidates[0][0]


def test_linked_window_and_zoom_follow_the_driver_with_sync_on(synced):
    states = synced.viewport_states()
    assert synced.sync.enabled[Channel.SLICE]
    states[1].apply_preset("lung")
    states[1].zoom_by(1.5)
    for state in states:
        assert state.window == states[1].window
        assert state.camera.zoom == pytest.approx(1.5)
    click(synced.views[1])
    assert all(s.window == states[1].window for s in states)


def test_sync_drives_the_level_line_of_every_plane(synced, patient):
    states = synced.viewport_states()
    prior_coronal, prior_sagittal = synced.views[1], synced.views[2]
    prior_coronal.set_plane(Plane.CORONAL)
    prior_sagittal.set_plane(Plane.SAGITTAL)
    for view in (prior_coronal, prior_sagittal):
        height_mm = view.plane_extent_mm()[1]
        show_slice_unsynced(synced, view.state, 0)
        low = view.hline.value()
        show_slice_unsynced(synced, view.state, view.state.volume.n_slices - 1)
        high = view.hline.value()
        # Head at the top: the top slice's line is near the image's top edge (y = 0).
        assert high < low
        assert high < 0.05 * height_mm and low > 0.95 * height_mm
    # A click on the current moves both priors' level lines to the matched level.
    show_slice_unsynced(synced, states[0], 60)
    click(synced.views[0])
    for view in (prior_coronal, prior_sagittal):
        assert view.state.match is not None
        _, level_y = reference_lines(view.state.volume, view.plane, view.cursor)
        assert view.hline.value() == pytest.approx(level_y)


def test_a_click_moves_the_priors_crosshairs_to_the_same_place_in_the_body(synced):
    states = synced.viewport_states()
    show_slice_unsynced(synced, states[0], 60)
    before = [state.crosshair_rc for state in states]
    host = synced.views[0].graphics.viewport()
    # Off the middle of the current's axial image: up and to the left.
    spot = QtCore.QPoint(host.width() * 2 // 5, host.height() * 2 // 5)
    QtTest.QTest.mouseClick(host, Qt.MouseButton.LeftButton, pos=spot)
    QtCore.QCoreApplication.processEvents()
    assert states[0].crosshair_rc != before[0]
    mapper = BodyBoxMapper()
    for state, old in zip(states[1:], before[1:], strict=True):
        expected = mapper.map(
            states[0].volume, states[0].crosshair, state.volume, state.slice_index
        )
        assert state.crosshair_rc == expected != old


def test_the_index_cache_is_reused_on_reopen(qtbot, patient, tmp_path):
    cache = IndexCache(tmp_path / "index")
    first = open_patient(qtbot, patient, SyncEngine(cache=cache))
    states = first.viewport_states()
    assert not any(first.anatomy.index_state(s).from_cache for s in states)
    first.shutdown()
    first.close()
    second = open_patient(qtbot, patient, SyncEngine(cache=cache))
    try:
        states = second.viewport_states()
        assert all(second.anatomy.index_state(s).from_cache for s in states)
        assert second.sync.enabled[Channel.SLICE]
    finally:
        second.shutdown()


def test_status_bar_and_about_name_the_model_and_provider(synced):
    info = synced.anatomy.model_info
    assert info is not None and info.provider in ("CPUExecutionProvider", "CUDAExecutionProvider")
    assert synced.device_label.text() == info.device
    text = synced.about_text()
    assert info.name in text and info.sha256 in text and info.provider in text
    synced.about_action.trigger()
    box = synced.findChild(QtCore.QObject, "aboutBox")
    assert box is not None and box.isVisible()
    box.close()


def test_without_a_model_the_viewer_still_works_and_says_why(qtbot, patient, tmp_path):
    engine = SyncEngine(model_path=tmp_path / "missing.onnx", cache=False)
    win = open_patient(qtbot, patient, engine)
    try:
        assert win.anatomy.unavailable_reason is not None
        assert "model file not found" in win.anatomy.unavailable_reason
        assert not win.sync.enabled[Channel.SLICE]
        assert win.device_label.text() == "no model"
        assert all(v.sync_label.text() == "no anatomical sync" for v in win.views.values())
        states = win.viewport_states()
        before = states[1].slice_index
        wheel(win.views[0].graphics.viewport(), 2)
        assert states[1].slice_index == before
    finally:
        win.shutdown()


def test_the_truth_is_not_trivial(patient):
    """Guard for the tests above: the dates differ by frame of reference and spacing."""
    cur, prior = patient.scans[0].volume, patient.scans[1].volume
    z_truth, covered = true_correspondence(patient.scans[0], patient.scans[1])
    naive = np.abs(cur.slice_z[covered] - z_truth[covered])
    assert naive.min() > 50.0  # equal positions would be far off
    assert not np.isclose(cur.geometry.spacing[2], prior.geometry.spacing[2])


def test_a_series_that_cannot_be_matched_says_so_and_the_others_still_sync(
    qtbot, patient, tmp_path
):
    from dataclasses import replace

    from fakes import FakeRef
    from sim_patient import SimPatient

    mr = replace(patient.scans[2].volume.info, modality="MR")
    refs = [*patient.refs[:2], FakeRef(replace(patient.scans[2].volume, info=mr), "mr")]
    odd = SimPatient(patient.scans, refs)
    win = open_patient(qtbot, odd, SyncEngine(cache=IndexCache(tmp_path / "index")))
    try:
        states = win.viewport_states()
        failed = win.anatomy.index_state(states[2])
        assert failed.status == "failed" and "not CT" in failed.message
        assert win.views[2].sync_label.text() == "no anatomical sync"
        assert win.sync.enabled[Channel.SLICE]  # the two CT dates sync
        show_slice_unsynced(win, states[0], 60)
        before = states[2].slice_index
        click(win.views[0])
        err, inside = errors_mm(patient, states[:2])[0]
        assert inside and err <= TOLERANCE_MM
        assert states[2].slice_index == before and states[2].match is None
    finally:
        win.shutdown()


def test_candidate_rows_are_clickable_and_n_never_moves_the_driver(synced, qtbot):
    from PySide6 import QtTest

    states = synced.viewport_states()
    show_slice_unsynced(synced, states[0], 60)
    click(synced.views[0])  # the current drives, and was the last clicked
    target = synced.views[1]
    offered = target.candidates()
    assert len(offered) >= 2
    rows = target.candidates_label.text().splitlines()
    assert "mm" in rows[2] and f"{offered[1][1]:.2f}" in rows[2]
    driver_slice, other_slice = states[0].slice_index, states[2].slice_index
    label = target.candidates_label
    line = label.fontMetrics().lineSpacing()
    y = label.contentsMargins().top() + 2 * line + line // 2  # the second candidate's row
    QtTest.QTest.mouseClick(label, Qt.MouseButton.LeftButton, pos=QtCore.QPoint(12, y))
    assert states[1].slice_index == offered[1][0]
    assert (states[0].slice_index, states[2].slice_index) == (driver_slice, other_slice)
    assert synced.slice_mapper.last_source is states[0]  # the row click did not drive
    # N from the window: never on the driving date, even right after clicking it.
    click(synced.views[0])
    commands = synced.viewport_commands
    assert commands.target() is not synced.views[0]
    before = states[0].slice_index
    moved = commands.target()
    commands.next_action.trigger()
    assert states[0].slice_index == before
    assert moved.state.slice_index == moved.candidates()[1][0]
