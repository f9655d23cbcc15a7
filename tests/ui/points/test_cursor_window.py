"""The linked cursor in the real main window, on the simulated patient indexed by the real model."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6 import QtCore, QtTest

from app.core.cursor import plane_position
from app.sim.point_truth import true_points
from app.ui.viewer.slice_view_box import InteractionMode

Qt = QtCore.Qt


def view_of(win, volume):
    return next(v for v in win.views.values() if v.state.volume is volume)


def test_the_toolbar_button_and_the_key_switch_the_linked_cursor(qtbot, synced):
    win = synced
    action = win.linked_cursor.action
    assert action in win.toolbar.actions()
    view = next(iter(win.views.values()))
    win.activateWindow()
    view.setFocus()
    QtTest.QTest.keyClick(view, Qt.Key.Key_P)
    qtbot.waitUntil(action.isChecked, timeout=2000)
    assert all(v.mode is InteractionMode.CROSSHAIR for v in win.views.values())
    QtTest.QTest.keyClick(view, Qt.Key.Key_P)
    qtbot.waitUntil(lambda: not action.isChecked(), timeout=2000)
    assert all(v.mode is InteractionMode.NAVIGATE for v in win.views.values())


def test_the_measurement_tools_and_the_linked_cursor_exclude_each_other(qtbot, synced):
    win = synced
    cursor, tools = win.linked_cursor.action, win.measurements.tools
    cursor.trigger()
    assert cursor.isChecked()
    assert all(v.mode is InteractionMode.CROSSHAIR for v in win.views.values())
    tools.line_action.trigger()  # the line tool takes the left button from the cursor
    assert tools.line_action.isChecked() and not cursor.isChecked()
    assert tools.kind == "line"
    assert all(v.mode is InteractionMode.MEASURE for v in win.views.values())
    tools.ellipse_action.trigger()
    assert tools.kind == "ellipse" and not tools.line_action.isChecked()
    cursor.trigger()  # and back
    assert cursor.isChecked() and not tools.ellipse_action.isChecked()
    assert tools.kind is None
    assert all(v.mode is InteractionMode.CROSSHAIR for v in win.views.values())
    cursor.trigger()
    assert all(v.mode is InteractionMode.NAVIGATE for v in win.views.values())


@pytest.mark.slow
def test_a_click_on_the_current_shows_the_same_spot_in_both_priors(qtbot, synced, patient):
    win = synced
    scans = patient.scans
    current = view_of(win, scans[0].volume)
    priors = [view_of(win, s.volume) for s in scans[1:]]
    win.linked_cursor.action.trigger()
    pairs = win.linked_cursor.linked.pairs

    def ready():
        return all(pairs.status(current.state.volume, p.state.volume) for p in priors)

    qtbot.waitUntil(ready, timeout=180000)
    statuses = [pairs.status(current.state.volume, p.state.volume) for p in priors]
    assert all(s is not None and s.pair is not None for s in statuses)
    # A body point both priors image, half way up the levels they share.
    covered = np.logical_and.reduce([s.pair.alignment.in_coverage for s in statuses])
    k = int(np.flatnonzero(covered)[len(np.flatnonzero(covered)) // 2])
    z = float(current.state.volume.slice_z[k])
    centre = statuses[0].pair.current_grid.centroid_at(z)
    assert centre is not None
    point = np.array([centre[0] + 20.0, centre[1], z])
    with win.sync.held():
        current.state.set_slice(k)
    pos = plane_position(current.state.volume, current.plane, current.cursor, point)
    at = current.view_box.mapViewToDevice(QtCore.QPointF(pos.x_mm, pos.y_mm)).toPoint()
    with qtbot.waitSignal(win.linked_cursor.linked.answered, timeout=30000):
        QtTest.QTest.mouseClick(current.graphics.viewport(), Qt.MouseButton.LeftButton, pos=at)
    qtbot.waitUntil(lambda: not win.linked_cursor.linked.locating, timeout=30000)
    clicked = np.array(current.state.cursor_mark.point)
    assert np.linalg.norm(clicked[:2] - point[:2]) < 2.0  # where the mouse was, in mm
    for view, status, scan in zip(priors, statuses, scans[1:], strict=True):
        expected = status.pair.locate(clicked)
        mark = view.state.cursor_mark
        assert expected.in_coverage and mark.in_coverage
        assert mark.point == pytest.approx(expected.prior_point)
        assert view.state.slice_index == expected.prior_slice
        truth = true_points(scans[0], scan, clicked[None])[0][0]
        # The same spot: within a small nodule's size of the truth. The radius is
        # a 90th percentile (its calibration is the engine's, tested on many
        # points in tests/ml/points); one point may lie just outside it (a CI
        # run: 5.06 mm at radius 5.0, through a verified registration).
        assert np.linalg.norm(np.array(mark.point) - truth) <= 2.0 * mark.radius_mm
        overlay = win.linked_cursor.overlay(view)
        assert overlay.cross_position() is not None and overlay.circle_radius_mm() is not None
