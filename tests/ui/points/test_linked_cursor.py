"""The linked cursor in real viewports: placed by a click or a drag, answered by the point engine."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PySide6 import QtCore, QtGui, QtTest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cursor_harness import build  # noqa: E402
from input_events import drag  # noqa: E402

from app.core.cursor import plane_position  # noqa: E402
from app.core.planes import Plane  # noqa: E402
from app.ml.evaluation.truth import truth_alignment  # noqa: E402
from app.ml.points.locate import PointPair  # noqa: E402
from app.sim.point_truth import true_points  # noqa: E402
from app.ui.points.cursor_overlay import CURSOR_TEXT_OUTSIDE  # noqa: E402
from app.ui.points.linked_cursor import OTHER_ANATOMY, PREPARING  # noqa: E402
from app.ui.viewer.slice_view_box import InteractionMode  # noqa: E402

Qt = QtCore.Qt


@pytest.fixture(scope="module")
def dates():
    """Three simulated dates (current first) and the current -> prior point pairs."""
    from sim_patient import simulated_patient

    patient = simulated_patient(n_slices=70, matrix=96)
    scans = patient.scans
    pairs = {
        j: PointPair.prepare(scans[0].volume, scans[j].volume, truth_alignment(scans[0], scans[j]))
        for j in (1, 2)
    }
    return scans, pairs


@pytest.fixture
def harness(qtbot, dates):
    scans, pairs = dates
    h = build(qtbot, scans)
    h.register(pairs)
    h.modes.set_mode(InteractionMode.CROSSHAIR)
    yield h
    h.close()


def body_point_covered_by(scans, pairs, priors, seed=0) -> np.ndarray:
    """A current point inside the body that every prior in ``priors`` images."""
    grid = pairs[1].current_grid
    zs, ys, xs = np.nonzero(grid.body)
    rng = np.random.default_rng(seed)
    for i in rng.permutation(len(zs))[:400]:
        p = grid.fine.lps_of(np.array([xs[i], ys[i], zs[i]], dtype=float))
        answered = all(pairs[j].locate(p).in_coverage for j in priors)
        if answered and all(true_points(scans[0], scans[j], p[None])[1][0] for j in priors):
            return p
    raise AssertionError("no body point both priors image")


def point_nobody_images(scans, pairs, prior) -> np.ndarray:
    """A current body point at a level ``prior`` does not image."""
    covered = pairs[prior].alignment.in_coverage
    k = int(np.flatnonzero(~covered)[0])
    grid = pairs[prior].current_grid
    z = scans[0].volume.slice_z[k]
    centre = grid.centroid_at(float(z))
    assert centre is not None
    return np.array([centre[0], centre[1], z])


def click_at_point(h, view, point) -> None:
    """Put ``view`` on the point's slice and click there (axial plane)."""
    z = view.state.volume.slice_z
    with h.sync.held():
        view.state.set_slice(int(np.argmin(np.abs(z - point[2]))))
    pos = plane_position(view.state.volume, view.plane, view.cursor, point)
    h.tool.place(view, pos.x_mm, pos.y_mm)


def wait_answered(qtbot, h):
    with qtbot.waitSignal(h.tool.linked.answered, timeout=20000):
        pass


def test_a_click_shows_the_engines_point_in_every_prior(qtbot, harness, dates):
    scans, pairs = dates
    h = harness
    p = body_point_covered_by(scans, pairs, (1, 2))
    with qtbot.waitSignal(h.tool.linked.answered, timeout=20000):
        click_at_point(h, h.views[0], p)
    driver = h.views[0].state.cursor_mark
    assert driver is not None and driver.driving and driver.radius_mm == 0
    sent = np.array(driver.point)
    for j in (1, 2):
        view = h.views[j]
        match = pairs[j].locate(sent)
        mark = view.state.cursor_mark
        assert mark is not None and mark.in_coverage and not mark.driving
        assert mark.point == pytest.approx(match.prior_point)
        assert mark.radius_mm == pytest.approx(match.radius_mm)
        assert view.state.slice_index == match.prior_slice  # the prior jumped to the point
        # The same anatomy, not only the engine's say-so: within the radius of the truth.
        truth = true_points(scans[0], scans[j], sent[None])[0][0]
        # (Within the 7 mm p95 goal: the engine's radius is not calibrated
        # since the registration stage came in; its minimum, 5 mm, can be short.)
        assert np.linalg.norm(np.array(mark.point) - truth) <= 7.0
        overlay = h.tool.overlay(view)
        pos = plane_position(view.state.volume, Plane.AXIAL, view.cursor, np.array(mark.point))
        assert overlay.cross_position() == pytest.approx((pos.x_mm, pos.y_mm))
        radius = overlay.circle_radius_mm()
        assert radius is not None
        assert radius == pytest.approx(np.sqrt(mark.radius_mm**2 - pos.offset_mm**2), rel=1e-6)
        assert overlay.message() == ""
    # The driver shows its own cross, no circle.
    own = h.tool.overlay(h.views[0])
    assert own.cross_position() is not None and own.circle_radius_mm() is None


def test_a_level_the_prior_does_not_image_says_so_and_draws_nothing(qtbot, harness, dates):
    scans, pairs = dates
    h = harness
    p = point_nobody_images(scans, pairs, 1)
    before = h.views[1].state.slice_index
    with qtbot.waitSignal(h.tool.linked.answered, timeout=20000):
        click_at_point(h, h.views[0], p)
    mark = h.views[1].state.cursor_mark
    assert mark is not None and not mark.in_coverage and mark.point is None
    assert "does not image" in mark.message
    overlay = h.tool.overlay(h.views[1])
    assert overlay.message().startswith(CURSOR_TEXT_OUTSIDE)
    assert overlay.cross_position() is None and overlay.circle_radius_mm() is None
    assert h.views[1].state.slice_index == before  # no jump to the end slice
    assert overlay.label.isVisible()


def test_a_click_in_the_air_is_outside_the_body(qtbot, harness):
    h = harness
    view = h.views[0]
    with qtbot.waitSignal(h.tool.linked.answered, timeout=20000):
        h.tool.place(view, 1.0, 1.0)  # the image's top-left corner: air
    for j in (1, 2):
        mark = h.views[j].state.cursor_mark
        assert mark is not None and not mark.in_coverage
        assert mark.message == "the point lies outside the body"
        assert "outside the body" in h.tool.overlay(h.views[j]).message()


def test_a_click_beside_the_image_is_outside_the_current_scan(qtbot, harness):
    h = harness
    view = h.views[0]
    width, _ = view.plane_extent_mm()
    with qtbot.waitSignal(h.tool.linked.answered, timeout=20000):
        h.tool.place(view, width + 40.0, 10.0)
    assert h.tool.overlay(view).message() == CURSOR_TEXT_OUTSIDE
    assert not view.state.cursor_mark.in_coverage
    for j in (1, 2):
        assert h.views[j].state.cursor_mark.message == "the point lies outside the current volume"


def test_an_unprepared_or_unrelated_date_says_why(qtbot, harness, dates):
    scans, pairs = dates
    h = harness
    h.tool.linked.pairs.clear()
    h.register({1: pairs[1], 2: OTHER_ANATOMY})
    p = body_point_covered_by(scans, pairs, (1, 2))
    with qtbot.waitSignal(h.tool.linked.answered, timeout=20000):
        click_at_point(h, h.views[0], p)
    assert h.views[2].state.cursor_mark.message == OTHER_ANATOMY
    h.tool.linked.pairs.clear()
    h.register({1: pairs[1]})
    click_at_point(h, h.views[0], p + np.array([0.5, 0.0, 0.0]))
    mark = h.views[2].state.cursor_mark
    assert mark.pending and mark.message == PREPARING
    assert h.tool.overlay(h.views[2]).message() == PREPARING
    # The pair arrives: the waiting date gets its answer without another click.
    h.tool.linked._register(h.views[0].state, h.views[2].state, _status(pairs[2]))
    qtbot.waitUntil(lambda: h.views[2].state.cursor_mark.in_coverage, timeout=20000)


def _status(pair):
    from app.ml.points.cursor_pairs import PairStatus

    return PairStatus(pair)


def test_a_drag_follows_the_mouse_and_drops_stale_requests(qtbot, harness, dates):
    scans, pairs = dates
    h = harness
    view = h.views[0]
    p = body_point_covered_by(scans, pairs, (1, 2), seed=1)
    click_at_point(h, view, p)
    wait_answered(qtbot, h)
    host = view.graphics.viewport()
    start = view.view_box.mapViewToDevice(QtCore.QPointF(*_xy(view, p))).toPoint()
    drag(host, start, start + QtCore.QPoint(30, 12), Qt.MouseButton.LeftButton, steps=12)
    qtbot.waitUntil(lambda: not h.tool.linked.locating, timeout=20000)
    last = np.array(view.state.cursor_mark.point)
    assert np.linalg.norm(last - p) > 3.0  # the cursor moved with the mouse
    for j in (1, 2):
        mark = h.views[j].state.cursor_mark
        expected = pairs[j].locate(last)
        if expected.in_coverage:
            assert mark.point == pytest.approx(expected.prior_point)  # the last move wins
        else:
            assert mark.message == expected.message


def _xy(view, p):
    pos = plane_position(view.state.volume, view.plane, view.cursor, np.asarray(p))
    return pos.x_mm, pos.y_mm


def test_a_request_waiting_behind_a_running_one_replaces_older_ones(qtbot, harness, dates):
    scans, pairs = dates
    h = harness
    view = h.views[0]
    p = body_point_covered_by(scans, pairs, (1, 2), seed=2)
    with qtbot.waitSignal(h.tool.linked.answered, timeout=20000):
        for dx in range(8):  # faster than any worker: one runs, only the last waits
            h.tool.linked.place(view.state, p + np.array([float(dx), 0.0, 0.0]))
    qtbot.waitUntil(lambda: not h.tool.linked.locating, timeout=20000)
    assert h.tool.linked.dropped >= 6
    final = p + np.array([7.0, 0.0, 0.0])
    assert h.views[1].state.cursor_mark.point == pytest.approx(pairs[1].locate(final).prior_point)


def test_a_coronal_click_places_the_cursor_at_that_level(qtbot, harness, dates):
    scans, pairs = dates
    h = harness
    view = h.views[0]
    p = body_point_covered_by(scans, pairs, (1, 2), seed=3)
    view.set_plane(Plane.CORONAL)
    row = int(round(float(view.state.volume.geometry.lps_to_index(p)[1])))
    with h.sync.held():  # move this date's MPR cursor only
        view.state.set_crosshair(view.state.slice_index, row, view.cursor_rc[1])
    x, y = _xy(view, p)
    with qtbot.waitSignal(h.tool.linked.answered, timeout=20000):
        h.tool.place(view, x, y)
    placed = np.array(view.state.cursor_mark.point)
    assert placed[2] == pytest.approx(p[2], abs=1e-6)
    assert h.tool.overlay(view).cross_position() == pytest.approx((x, y))
    assert h.views[1].state.cursor_mark.point == pytest.approx(pairs[1].locate(placed).prior_point)


def test_the_key_and_the_toolbar_action_toggle_the_mode(qtbot, harness):
    h = harness
    action = h.tool.action
    h.modes.set_mode(InteractionMode.NAVIGATE)
    assert all(v.mode is InteractionMode.NAVIGATE for v in h.views)
    h.window.activateWindow()
    h.views[0].setFocus()
    QtTest.QTest.keyClick(h.views[0], Qt.Key.Key_P)
    qtbot.waitUntil(lambda: action.isChecked(), timeout=2000)
    assert all(v.mode is InteractionMode.CROSSHAIR for v in h.views)
    action.trigger()  # the toolbar button again: back to navigating
    assert not action.isChecked()
    assert all(v.mode is InteractionMode.NAVIGATE for v in h.views)


def test_another_tool_excludes_the_cursor_and_leaving_clears_it(qtbot, harness, dates):
    scans, pairs = dates
    h = harness
    other = QtGui.QAction("Line", h.window)
    h.modes.add(InteractionMode.MEASURE, other)
    for view in h.views:
        view.register_mode(InteractionMode.MEASURE, lambda _x, _y: None)
    p = body_point_covered_by(scans, pairs, (1, 2))
    with qtbot.waitSignal(h.tool.linked.answered, timeout=20000):
        click_at_point(h, h.views[0], p)
    other.trigger()
    assert other.isChecked() and not h.tool.action.isChecked()
    assert all(v.mode is InteractionMode.MEASURE for v in h.views)
    assert all(v.state.cursor_mark is None for v in h.views)
    assert all(h.tool.overlay(v).cross_position() is None for v in h.views)
    # A click in another mode does not place the cursor.
    h.tool._on_mouse(h.views[0], 10.0, 10.0)
    assert h.views[0].state.cursor_mark is None


class AlignedEngine:
    """The sync engine's registry as the cursor reads it: alignments by pair of volumes."""

    def __init__(self, alignments) -> None:
        self.alignments = alignments

    def alignment_of(self, source, target):
        return self.alignments.get((id(source), id(target)))

    def add_alignment(self, source, target, pair):
        self.alignments[(id(source), id(target))] = pair


@pytest.mark.slow
def test_entering_the_mode_prepares_the_aligned_pairs(qtbot, dates):
    from app.ml.anatomy.sync_service import PairAlignment

    scans, pairs = dates
    h = build(qtbot, scans)
    try:
        current, prior1, prior2 = (v.state.volume for v in h.views)
        aligned = PairAlignment(truth_alignment(scans[0], scans[1]), overlap=1.0)
        unrelated = PairAlignment(truth_alignment(scans[0], scans[2]), overlap=0.0)
        h.tool.linked.engine = AlignedEngine(
            {(id(current), id(prior1)): aligned, (id(current), id(prior2)): unrelated}
        )
        assert h.tool.linked.pairs.status(current, prior1) is None  # nothing before the mode
        h.modes.set_mode(InteractionMode.CROSSHAIR)
        assert h.tool.linked.pairs.status(current, prior2).message == OTHER_ANATOMY
        qtbot.waitUntil(lambda: h.tool.linked.is_idle(), timeout=60000)
        ready = h.tool.linked.pairs.status(current, prior1)
        assert ready is not None and ready.pair is not None
        # Stage two: the pair's verified registration refined the slice sync's mapping.
        assert ready.pair.verified_transform() is not None, ready.pair.registration_note
        refined = h.tool.linked.engine.alignment_of(current, prior1)
        assert refined.refined and refined.overlap == aligned.overlap
        assert np.array_equal(refined.alignment.in_coverage, aligned.alignment.in_coverage)
        assert h.tool.linked.engine.alignment_of(current, prior2) is unrelated
        p = body_point_covered_by(scans, pairs, (1,))
        with qtbot.waitSignal(h.tool.linked.answered, timeout=20000):
            click_at_point(h, h.views[0], p)
        expected = ready.pair.locate(np.array(h.views[0].state.cursor_mark.point))
        assert h.views[1].state.cursor_mark.point == pytest.approx(expected.prior_point)
        assert h.views[2].state.cursor_mark.message == OTHER_ANATOMY
    finally:
        h.close()


def test_a_prior_in_a_side_plane_moves_its_plane_to_the_point(qtbot, harness, dates):
    scans, pairs = dates
    h = harness
    prior = h.views[1]
    prior.set_plane(Plane.CORONAL)
    p = body_point_covered_by(scans, pairs, (1, 2), seed=4)
    with qtbot.waitSignal(h.tool.linked.answered, timeout=20000):
        click_at_point(h, h.views[0], p)
    mark = prior.state.cursor_mark
    assert mark.shown
    col, row, _ = prior.state.volume.geometry.lps_to_index(np.array(mark.point))
    assert prior.cursor_rc == (int(round(row)), int(round(col)))  # the coronal plane cuts it
    overlay = h.tool.overlay(prior)
    pos = plane_position(prior.state.volume, Plane.CORONAL, prior.cursor, np.array(mark.point))
    assert abs(pos.offset_mm) <= prior.state.volume.geometry.spacing[1] / 2 + 1e-6
    assert overlay.cross_position() == pytest.approx((pos.x_mm, pos.y_mm))
    assert overlay.circle_radius_mm() == pytest.approx(
        np.sqrt(mark.radius_mm**2 - pos.offset_mm**2), rel=1e-6
    )
