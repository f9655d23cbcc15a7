"""The plane painter: a plane is windowed again only when what it shows changed."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pytest
from fakes import make_volume

from app.core.imaging import Window, window_to_uint8
from app.core.planes import Plane, plane_image, reference_lines
from app.core.state import ViewportState
from app.ui.viewer.plane_painter import LEVEL_OUTSIDE_COLOR, PlanePainter


@pytest.fixture
def painter(qapp):
    item = pg.ImageItem(axisOrder="row-major")
    vline = pg.InfiniteLine(angle=90)
    hline = pg.InfiniteLine(angle=0)
    return PlanePainter(item, vline, hline)


def test_only_what_selects_the_image_redraws_it(painter):
    state = ViewportState(make_volume(shape=(12, 32, 40)))
    assert painter.show_plane(state, Plane.CORONAL)
    expected = window_to_uint8(
        plane_image(state.volume, Plane.CORONAL, state.crosshair), state.window
    )
    assert np.array_equal(painter.image_item.image, expected)
    state.set_slice(3)  # the level moves only the level line of a coronal plane
    state.set_crosshair(3, state.crosshair_rc[0], 5)  # and so does the column
    assert not painter.show_plane(state, Plane.CORONAL)
    assert painter.shown_key == painter.image_key(state, Plane.CORONAL)
    state.set_crosshair(3, 7, 5)  # a new row is a new coronal image
    assert painter.show_plane(state, Plane.CORONAL)
    assert not painter.show_plane(state, Plane.CORONAL)
    state.set_window(Window(0, 100))
    assert painter.show_plane(state, Plane.CORONAL)
    assert painter.show_plane(state, Plane.SAGITTAL)
    assert painter.renders == 4
    # An overlay replaces the grey image; going back redraws it.
    painter.show_overlay(np.zeros((32, 40, 3), np.uint8), state, Plane.AXIAL)
    assert painter.shown_key is None
    assert painter.show_plane(state, Plane.AXIAL)


def test_lines_run_through_the_crosshair_and_the_level_line_turns_amber(painter):
    state = ViewportState(make_volume(shape=(12, 32, 40)))
    state.set_crosshair(4, 10, 20)
    painter.place_lines(state, Plane.SAGITTAL, crosshair=False, outside=True)
    x, y = reference_lines(state.volume, Plane.SAGITTAL, state.crosshair)
    assert painter.vline.value() == pytest.approx(x)
    assert painter.hline.value() == pytest.approx(y)
    assert painter.hline.isVisible() and not painter.vline.isVisible()
    assert painter.hline.pen.color() == LEVEL_OUTSIDE_COLOR
    painter.place_lines(state, Plane.SAGITTAL, crosshair=True, outside=False)
    assert painter.vline.isVisible()
    assert painter.hline.pen.color() != LEVEL_OUTSIDE_COLOR
