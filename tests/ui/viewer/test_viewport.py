"""One viewport: state → pixels, and input (keys, wheel, slider, drags) → state."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import make_volume
from input_events import double_click, drag, wheel
from PySide6 import QtCore, QtGui

from app.core.imaging import PRESETS, Window, window_to_uint8
from app.core.state import Camera, ViewportState
from app.ui.viewer.viewport import PAGE_STEP, ViewportView

Qt = QtCore.Qt


@pytest.fixture
def view(qtbot):
    state = ViewportState(make_volume(shape=(30, 48, 64)))
    v = ViewportView(state, "2024-01-01 · CT CHEST")
    qtbot.addWidget(v)
    v.resize(520, 420)
    v.show()
    qtbot.waitExposed(v)
    yield v
    v.detach()


def grab_array(widget) -> np.ndarray:
    """The widget as painted, as an (h, w) grey uint8 array."""
    image = widget.grab().toImage().convertToFormat(QtGui.QImage.Format.Format_Grayscale8)
    w, h, bpl = image.width(), image.height(), image.bytesPerLine()
    pixels = np.frombuffer(image.constBits(), dtype=np.uint8, count=h * bpl).reshape(h, bpl)
    # Copy: the buffer belongs to the QImage, which dies when this function returns.
    return pixels[:, :w].copy()


def image_to_widget(view: ViewportView, col: float, row: float) -> tuple[int, int]:
    """Widget pixel (of graphics.viewport()) showing voxel (row, col) of the current slice."""
    sx, sy = view.state.volume.geometry.spacing[:2]
    scene = view.view_box.mapViewToScene(QtCore.QPointF((col + 0.5) * sx, (row + 0.5) * sy))
    p = view.graphics.mapFromScene(scene)
    return p.x(), p.y()


def test_keys_scroll_slices(view, qtbot):
    s = view.state
    start = s.slice_index
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_Up)
    assert s.slice_index == start + 1
    qtbot.keyClick(view, Qt.Key.Key_Down)
    qtbot.keyClick(view, Qt.Key.Key_Down)
    assert s.slice_index == start - 1
    qtbot.keyClick(view, Qt.Key.Key_PageDown)
    assert s.slice_index == start - 1 - PAGE_STEP
    qtbot.keyClick(view, Qt.Key.Key_PageUp)
    assert s.slice_index == start - 1
    qtbot.keyClick(view, Qt.Key.Key_Home)
    assert s.slice_index == s.volume.n_slices - 1  # the top (head) slice
    qtbot.keyClick(view, Qt.Key.Key_End)
    assert s.slice_index == 0


def test_wheel_scrolls_and_ctrl_wheel_zooms(view):
    s = view.state
    start = s.slice_index
    wheel(view.graphics.viewport(), -2)  # toward the user: toward the feet
    assert s.slice_index == start - 2
    wheel(view.graphics.viewport(), +1)
    assert s.slice_index == start - 1
    wheel(view.graphics.viewport(), +1, Qt.KeyboardModifier.ControlModifier)
    assert s.camera.zoom > 1.0
    assert s.slice_index == start - 1


def test_slider_and_state_stay_in_step(view):
    s = view.state
    view.slider.setValue(3)
    assert s.slice_index == 3
    s.set_slice(17)
    assert view.slider.value() == 17
    # Image number counts from the head: index 17 of 30 is image 13.
    assert view.slice_label.text().startswith("Im 13/30")
    assert f"{s.slice_position_mm:.1f} mm" in view.slice_label.text()


def test_right_drag_changes_window(view):
    before = view.state.window
    host = view.graphics.viewport()
    c = host.rect().center()
    drag(host, c, c + QtCore.QPoint(60, 0), Qt.MouseButton.RightButton)
    after = view.state.window
    assert after.width > before.width and after.center == pytest.approx(before.center)
    drag(host, c, c + QtCore.QPoint(0, 40), Qt.MouseButton.RightButton)
    assert view.state.window.center > after.center
    assert view.window_label.text() == (
        f"W {view.state.window.width:.0f}  L {view.state.window.center:.0f}"
    )


def test_left_drag_pans_with_the_image(view):
    host = view.graphics.viewport()
    c = host.rect().center()
    drag(host, c, c + QtCore.QPoint(50, 0), Qt.MouseButton.LeftButton)
    pan_x, pan_y = view.state.camera.pan
    # Image moved right under the mouse, so the view centre moved left (negative mm).
    assert pan_x < 0 and pan_y == pytest.approx(0, abs=1e-6)
    drag(host, c, c + QtCore.QPoint(0, 30), Qt.MouseButton.MiddleButton)
    assert view.state.camera.pan[1] < 0


def test_double_click_resets_camera(view):
    view.state.set_camera(Camera(3.0, (5.0, 5.0)))
    host = view.graphics.viewport()
    double_click(host, host.rect().center())
    assert view.state.camera == Camera()


def test_painted_pixels_are_the_windowed_slice(view, qtbot):
    s = view.state
    s.set_window(Window(40, 400))
    expected = window_to_uint8(s.volume.slice(s.slice_index), s.window)
    qtbot.wait(50)
    shot = grab_array(view.graphics)
    rows, cols = expected.shape
    rng = np.random.default_rng(0)
    checked = 0
    for row, col in zip(
        rng.integers(1, rows - 1, 200), rng.integers(1, cols - 1, 200), strict=True
    ):
        # Skip voxels next to an edge of the phantom (neighbours differ, so the
        # on-screen pixel may blend them).
        patch = expected[row - 1 : row + 2, col - 1 : col + 2].astype(int)
        if patch.max() - patch.min() > 30:
            continue
        x, y = image_to_widget(view, col, row)
        assert abs(int(shot[y, x]) - int(expected[row, col])) <= 3, (row, col)
        checked += 1
    assert checked > 100


def test_window_change_repaints(view, qtbot):
    s = view.state
    x, y = image_to_widget(view, 32, 24)  # centre: soft tissue (~40-150 HU)
    s.set_window(PRESETS["lung"])
    qtbot.wait(20)
    lung = grab_array(view.graphics)[y, x]
    s.set_window(PRESETS["bone"])
    qtbot.wait(20)
    bone = grab_array(view.graphics)[y, x]
    # Soft tissue is bright in a lung window and dark in a bone window.
    assert int(lung) - int(bone) > 60


def test_pixel_aspect_follows_spacing(qtbot):
    # Columns 0.5 mm, rows 1.0 mm: a 64 x 64 voxel slice is twice as tall as wide.
    vol = make_volume(shape=(4, 64, 64), spacing=(0.5, 1.0, 2.0))
    vol.voxels[:] = -1000
    vol.voxels[:, 16:48, 16:48] = 1000  # a square of voxels
    v = ViewportView(ViewportState(vol, Window(0, 100)), "aspect")
    qtbot.addWidget(v)
    for label in [v.slice_label, v.window_label, v.zoom_label, *v.orientation_labels.values()]:
        label.hide()  # only the image may be bright
    v.resize(500, 500)
    v.show()
    qtbot.waitExposed(v)

    def ratio() -> float:
        ys, xs = np.nonzero(grab_array(v.graphics) > 200)
        return (ys.max() - ys.min() + 1) / (xs.max() - xs.min() + 1) if len(ys) else 0.0

    # The first frames may predate the final layout; wait for the settled paint.
    qtbot.waitUntil(lambda: ratio() == pytest.approx(2.0, rel=0.05), timeout=3000)
    v.detach()


def test_orientation_labels_display_and_flipped(qtbot, view):
    labels = {k: lab.text() for k, lab in view.orientation_labels.items()}
    assert labels == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    flipped = make_volume(direction=np.diag([-1.0, 1.0, 1.0]))
    v = ViewportView(ViewportState(flipped), "flipped")
    qtbot.addWidget(v)
    labels = {k: lab.text() for k, lab in v.orientation_labels.items()}
    assert labels == {"left": "L", "right": "R", "top": "A", "bottom": "P"}
    v.detach()


def test_overlay_labels_sit_at_their_edges(view):
    host = view.graphics.viewport()
    w, h = host.width(), host.height()
    lab = view.orientation_labels
    assert lab["left"].geometry().left() < w * 0.1
    assert lab["right"].geometry().right() > w * 0.9
    assert lab["top"].geometry().top() < h * 0.1
    assert lab["bottom"].geometry().bottom() > h * 0.9
    assert view.window_label.geometry().right() > w * 0.8
    assert view.window_label.geometry().bottom() > h * 0.8


def test_zoom_and_pan_move_the_view_range(view):
    s = view.state
    (x0, x1), _ = view.view_box.viewRange()
    s.zoom_by(2.0)
    (z0, z1), _ = view.view_box.viewRange()
    assert (z1 - z0) == pytest.approx((x1 - x0) / 2, rel=1e-3)
    s.pan_by(10.0, 0.0)
    (p0, p1), _ = view.view_box.viewRange()
    assert (p0 + p1) / 2 == pytest.approx((z0 + z1) / 2 + 10.0, abs=1e-3)


@pytest.mark.parametrize("width", [520, 150])
def test_corner_texts_never_overprint(view, qtbot, width):
    view.resize(width, 420)
    qtbot.wait(20)
    view._place_overlays()
    if width == 150:
        # As narrow as the widget goes: the corner texts cannot both fit on one row.
        host = view.graphics.viewport().width()
        assert view.slice_label.width() + view.window_label.width() + 18 > host
    slice_box = view.slice_label.geometry()
    window_box = view.window_label.geometry()
    assert not slice_box.intersects(window_box)
    bottom = view.orientation_labels["bottom"]
    if bottom.isVisible():
        assert not bottom.geometry().intersects(slice_box)
        assert not bottom.geometry().intersects(window_box)
    if width == 520:
        # Wide enough: both sit on the bottom row.
        assert slice_box.bottom() == window_box.bottom()
