"""Planes per viewport: axial, coronal and sagittal, reference lines, mode seam, context menu."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import make_volume
from PySide6 import QtCore

from app.core.imaging import Window, window_to_uint8
from app.core.planes import Plane, plane_geometry, plane_image
from app.core.state import ViewportState
from app.ui.viewer.slice_view_box import InteractionMode
from app.ui.viewer.viewport import ViewportView

Qt = QtCore.Qt


@pytest.fixture
def view(qtbot):
    v = ViewportView(ViewportState(make_volume(shape=(30, 48, 64))), "2024-01-01 · CT")
    qtbot.addWidget(v)
    v.resize(520, 420)
    v.show()
    qtbot.waitExposed(v)
    yield v
    v.detach()


def test_keys_switch_the_plane_and_the_image_follows(view, qtbot):
    vol = view.state.volume
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_C)
    assert view.plane is Plane.CORONAL
    expected = window_to_uint8(plane_image(vol, Plane.CORONAL, view.cursor), view.state.window)
    assert np.array_equal(view.image_item.image, expected)
    assert view.orientation_labels["top"].text() == "S"
    assert view.orientation_labels["left"].text() == "R"
    qtbot.keyClick(view, Qt.Key.Key_G)
    assert view.plane is Plane.SAGITTAL
    # 2.5 mm slices under 0.8 mm pixels: the reformat is interpolated to about square pixels.
    assert view.image_item.image.shape == plane_geometry(vol, Plane.SAGITTAL).shape
    assert view.image_item.image.shape[0] > 30
    assert view.orientation_labels["left"].text() == "A"
    # A new window re-windows the reformat too.
    view.state.set_window(Window(0, 100))
    expected = window_to_uint8(plane_image(vol, Plane.SAGITTAL, view.cursor), Window(0, 100))
    assert np.array_equal(view.image_item.image, expected)
    qtbot.keyClick(view, Qt.Key.Key_A)
    assert view.plane is Plane.AXIAL and view.image_item.image.shape == (48, 64)


def test_scrolling_moves_the_level_line_not_the_reformat(view):
    view.set_plane(Plane.CORONAL)
    image = view.image_item.image.copy()
    y0 = view.hline.value()
    view.state.step(+5)
    assert view.hline.value() < y0  # toward the head = up
    assert np.array_equal(view.image_item.image, image)
    assert view.hline.isVisible()  # the level line shows in coronal even without crosshair
    assert not view.vline.isVisible()
    view.set_crosshair_visible(True)
    assert view.vline.isVisible()


def test_a_click_in_coronal_sets_the_level(view):
    view.set_plane(Plane.CORONAL)
    w_mm, h_mm = view.plane_extent_mm()
    view.view_box.clicked_at.emit(w_mm * 0.25, h_mm * 0.1)
    n = view.state.volume.n_slices
    assert view.state.slice_index == n - 1 - int(0.1 * n)
    assert view.cursor_rc[1] == int(0.25 * 64)


def test_interaction_modes_are_a_seam(view):
    assert view.mode is InteractionMode.NAVIGATE
    view.set_mode(InteractionMode.CROSSHAIR)
    with pytest.raises(ValueError, match="measure"):
        view.set_mode(InteractionMode.MEASURE)
    seen = []
    view.register_mode(InteractionMode.MEASURE, lambda x, y: seen.append((x, y)))
    view.set_mode(InteractionMode.MEASURE)
    view.view_box.clicked_at.emit(3.0, 4.0)
    assert seen == [(3.0, 4.0)]
    assert view.overlay_items in view.view_box.addedItems


def test_saliency_overlay_is_not_painted_on_a_reformat(view):
    view.set_plane(Plane.SAGITTAL)
    view.set_overlay(np.zeros((48, 64, 3), np.uint8), key="k")
    assert view.overlay is None


def test_context_menu_holds_plane_presets_sync_saliency_export(hung):
    view = hung.views[1]
    menu = hung.viewport_commands.build_menu(view)
    texts = [a.text() for a in menu.actions()]
    assert any(t.startswith("Coronal plane") for t in texts)
    assert "Window presets" in texts
    for action in (hung.sync_slices_action, hung.saliency_action, hung.export_action):
        assert action in menu.actions()
    coronal = next(a for a in menu.actions() if a.text().startswith("Coronal plane"))
    coronal.trigger()
    assert view.plane is Plane.CORONAL
    menu.deleteLater()


def test_titles_elide_in_the_middle_with_the_full_title_as_tooltip(qtbot):
    title = "2024-01-01 · CT CHEST WITH CONTRAST · Lung 1.25 mm B70f"
    v = ViewportView(ViewportState(make_volume()), title)
    qtbot.addWidget(v)
    v.resize(260, 300)
    v.show()
    qtbot.waitExposed(v)
    shown = v.header.text()
    assert "…" in shown and shown.startswith("2024") and shown.endswith("B70f")
    assert v.header.toolTip() == title
    v.detach()


def test_a_cursor_move_within_the_slice_keeps_the_saliency_overlay(view):
    rgb = np.zeros((48, 64, 3), np.uint8)
    view.set_overlay(rgb, key="pair", caption="saliency")
    k, r, c = view.cursor
    view.state.set_crosshair(k, r + 5, c - 5)
    assert view.overlay is not None and view.overlay_key == "pair"
    assert view.vline.value() == pytest.approx((c - 5 + 0.5) * 0.8)
    view.state.set_crosshair(k + 1, r, c)  # a new level is a new slice: the overlay goes
    assert view.overlay is None
