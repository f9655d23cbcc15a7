"""Hanging layouts (1×N, 2×2): where the dates go, remembered, and images that fill the screen."""

from __future__ import annotations

import pytest
from fakes import FakeBackend, three_dates
from PySide6 import QtCore

from app.ui.loading.loader import Loader
from app.ui.shell.main_window import MainWindow
from app.ui.viewer.layouts import MAX_VISIBLE, Layout, grid_cells, grid_shape


def test_grid_cells_of_each_layout():
    assert grid_cells(Layout.ROW, 3) == [(0, 0), (0, 1), (0, 2)]
    assert grid_cells(Layout.GRID, 3) == [(0, 0), (0, 1), (1, 0)]
    assert grid_cells(Layout.GRID, 4) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert grid_shape(Layout.GRID, 2) == (1, 2)
    assert grid_shape(Layout.ROW, 9) == (1, MAX_VISIBLE)
    assert len(grid_cells(Layout.ROW, 9)) == MAX_VISIBLE
    assert Layout.parse("2x2") is Layout.GRID
    assert Layout.parse("garbage") is Layout.ROW and Layout.parse(None) is Layout.ROW


def _positions(win) -> list[tuple[int, int]]:
    return [
        (v.mapTo(win, QtCore.QPoint(0, 0)).x(), v.mapTo(win, QtCore.QPoint(0, 0)).y())
        for v in (win.views[i] for i in sorted(win.views))
    ]


def test_layout_menu_arranges_and_is_remembered(hung, qtbot):
    row = _positions(hung)
    assert len({y for _, y in row}) == 1  # one row, newest at the left
    assert [x for x, _ in row] == sorted(x for x, _ in row)
    hung.layout_actions[Layout.GRID].trigger()
    qtbot.waitUntil(lambda: len({y for _, y in _positions(hung)}) == 2, timeout=3000)
    (x0, y0), (x1, y1), (x2, y2) = _positions(hung)
    assert y0 == y1 < y2 and x0 == x2 < x1  # reading order: two on top, the third below
    assert hung.layout_actions[Layout.GRID].isChecked()
    assert hung.layout_actions[Layout.GRID] in hung.toolbar.actions()
    hung.close()

    again = MainWindow(Loader(FakeBackend(three_dates())))
    qtbot.addWidget(again)
    assert again.hanging.area.layout_kind is Layout.GRID
    assert again.layout_actions[Layout.GRID].isChecked()
    again.shutdown()


def _image_width_px(view) -> float:
    """On-screen width of the painted image (device pixels of the graphics view)."""
    rect = view.image_item.mapRectToScene(view.image_item.boundingRect())
    return view.graphics.mapFromScene(rect).boundingRect().width()


@pytest.mark.parametrize("size", [(1680, 1050), (1400, 850)])
def test_three_dates_in_a_row_get_wide_fitted_images(hung, qtbot, size):
    hung.resize(*size)
    qtbot.waitUntil(lambda: hung.width() == size[0], timeout=3000)
    qtbot.wait(50)
    widths = [_image_width_px(hung.views[i]) for i in sorted(hung.views)]
    for i, view in hung.views.items():
        host = view.graphics.viewport()
        # Fitted: the image fills the viewport's width or height, whichever limits it.
        w_mm, h_mm = view.plane_extent_mm()
        fit = min(host.width() / w_mm, host.height() / h_mm) * w_mm
        assert widths[i] == pytest.approx(fit, rel=0.02)
    if size == (1680, 1050):
        assert min(widths) >= 480, widths  # issue 19's goal
    # Opening the sketch window changes no viewport's size.
    before = [hung.views[i].graphics.size() for i in sorted(hung.views)]
    hung.sketch_action.trigger()
    qtbot.wait(50)
    assert hung.sketch_dock.isFloating()
    assert [hung.views[i].graphics.size() for i in sorted(hung.views)] == before
    hung.sketch_action.trigger()


def test_linked_zoom_is_one_shared_zoom(hung):
    hung.views[0].state.zoom_by(2.0)
    assert {round(v.state.camera.zoom, 3) for v in hung.views.values()} == {2.0}
