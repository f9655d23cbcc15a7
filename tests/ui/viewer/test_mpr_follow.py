"""MPR across dates: a click in one date moves the other dates' level and crosshair."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6 import QtWidgets

from app.core.crosshair import BodyBoxMapper
from app.core.imaging import window_to_uint8
from app.core.planes import Plane, plane_image, reference_lines
from app.core.state import Channel, SyncGroup, ViewportState
from app.core.volume import Geometry, Volume
from app.ui.viewer.viewport import ViewportView


def boxed(rows: tuple[int, int], cols: tuple[int, int], z0: float, dz: float) -> Volume:
    """Air, and a body block at ``rows`` x ``cols`` whose HU grow with the column."""
    voxels = np.full((20, 64, 64), -1000, dtype=np.int16)
    ramp = np.arange(64, dtype=np.int16)[None, None, :] * 10
    voxels[:, rows[0] : rows[1], cols[0] : cols[1]] = (ramp + 40)[:, :, cols[0] : cols[1]]
    geometry = Geometry(
        origin=np.array([0.0, 0.0, z0]), spacing=np.array([1.0, 1.0, dz]), direction=np.eye(3)
    )
    return Volume(voxels=voxels, geometry=geometry)


@pytest.fixture
def dates(qtbot):
    sync = SyncGroup()
    sync.set_enabled(Channel.SLICE, True)
    current = ViewportState(boxed((10, 42), (16, 32), z0=0.0, dz=1.0))
    # The prior: thicker slices, the body lower on the table and three times as wide.
    prior = ViewportState(boxed((20, 52), (8, 56), z0=-4.0, dz=2.0))
    views = []
    for state in (current, prior):
        sync.add(state)
        view = ViewportView(state, "date")
        qtbot.addWidget(view)
        view.resize(320, 320)
        view.show()
        views.append(view)
    qtbot.waitExposed(views[1])
    current.step(+1)
    current.step(-1)  # the dates synced: the current's slice 10 is the prior's 7 (z 10 mm)
    assert prior.slice_index == 7
    yield sync, views
    for view in views:
        view.detach()


def test_a_click_in_one_date_moves_the_other_dates_cursor(dates):
    sync, (current, prior) = dates
    prior.set_plane(Plane.CORONAL)
    prior.set_crosshair_visible(True)
    rendered = prior.painter.renders
    # Click row 17, column 19 of the current's axial slice 10 (pixel centres, 1 mm pixels).
    current.view_box.clicked_at.emit(19.5, 17.5)
    assert current.cursor == (10, 17, 19)
    expected_rc = BodyBoxMapper().map(current.state.volume, (10, 17, 19), prior.state.volume, 7)
    assert prior.cursor == (7, *expected_rc)  # z 10 mm is the prior's slice 7
    assert prior.cursor == (7, 27, 18)
    # The prior's coronal plane is its row 27 now, and its lines cross at the cursor.
    shown = window_to_uint8(
        plane_image(prior.state.volume, Plane.CORONAL, prior.cursor), prior.state.window
    )
    assert np.array_equal(prior.image_item.image, shown)
    x, y = reference_lines(prior.state.volume, Plane.CORONAL, prior.cursor)
    assert (prior.vline.value(), prior.hline.value()) == pytest.approx((x, y))
    assert prior.painter.renders == rendered + 1


def test_scrolling_moves_only_the_level_line_of_the_other_dates(dates):
    sync, (current, prior) = dates
    prior.set_plane(Plane.SAGITTAL)
    rendered = prior.painter.renders
    y0 = prior.hline.value()
    for _ in range(4):
        current.state.step(+1)
        QtWidgets.QApplication.processEvents()
    assert prior.hline.value() < y0  # toward the head
    assert prior.painter.renders == rendered  # the sagittal image was not redrawn
    assert current.painter.renders >= 4  # the axial current was


def test_a_click_with_slice_sync_off_moves_only_its_own_date(dates):
    sync, (current, prior) = dates
    sync.set_enabled(Channel.SLICE, False)
    before = prior.cursor
    current.view_box.clicked_at.emit(19.5, 17.5)
    assert current.cursor_rc == (17, 19)
    assert prior.cursor == before
