"""Viewer state without Qt: viewports, linking channels, camera and window math."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from app.core.imaging import PRESETS, Window
from app.core.state import (
    ZOOM_RANGE,
    Camera,
    Channel,
    MatchInfo,
    SliceMapper,
    SyncGroup,
    ViewportState,
    edge_labels,
    newest_first,
    window_after_drag,
)
from app.core.volume import Geometry, Volume


def volume(n: int = 10, z0: float = 0.0, dz: float = 2.0, spacing_xy=(0.5, 0.75)) -> Volume:
    geom = Geometry(origin=[0, 0, z0], spacing=[*spacing_xy, dz], direction=np.eye(3))
    return Volume(voxels=np.zeros((n, 8, 6), dtype=np.int16), geometry=geom)


def recorder(vp: ViewportState) -> list[str]:
    events: list[str] = []
    vp.changed.connect(events.append)
    return events


def test_core_state_does_not_import_qt():
    # A fresh interpreter: pytest-qt has already imported Qt into this one.
    code = (
        "import sys, app.core.state; "
        "sys.exit(any(m.startswith(('PySide6', 'pyqtgraph')) for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_viewport_starts_mid_volume_and_clamps_slices():
    vp = ViewportState(volume(10))
    assert vp.slice_index == 5
    events = recorder(vp)
    vp.set_slice(99)
    assert vp.slice_index == 9
    vp.step(-100)
    assert vp.slice_index == 0
    vp.step(-1)  # already at the end: no event
    assert events == ["slice", "slice"]


def test_slice_position_follows_slice_z():
    vp = ViewportState(volume(10, z0=-20, dz=2.5))
    vp.set_slice(4)
    assert vp.slice_position_mm == pytest.approx(-10.0)


def test_window_preset_and_drag():
    vp = ViewportState(volume())
    events = recorder(vp)
    vp.apply_preset("lung")
    assert vp.window == PRESETS["lung"]
    vp.apply_preset("lung")  # unchanged: no event
    vp.drag_window(10, 0)
    assert vp.window.width > PRESETS["lung"].width
    assert vp.window.center == PRESETS["lung"].center
    assert events == ["window", "window"]
    with pytest.raises(KeyError):
        vp.apply_preset("nonsense")


def test_window_drag_directions_and_floor():
    w = Window(40, 400)
    wider = window_after_drag(w, 20, 0)
    higher = window_after_drag(w, 0, 20)
    assert wider.width > w.width and wider.center == w.center
    assert higher.center > w.center and higher.width == w.width
    # Rate scales with width: a narrow window moves less per pixel.
    narrow = Window(40, 80)
    assert window_after_drag(narrow, 10, 0).width - 80 < window_after_drag(w, 10, 0).width - 400
    assert window_after_drag(w, -10_000, 0).width == 1.0


def test_camera_validation_zoom_clamp_and_pan():
    assert Camera().zoom == 1.0
    assert Camera(1000).zoom == ZOOM_RANGE[1]
    assert Camera(1e-6).zoom == ZOOM_RANGE[0]
    with pytest.raises(ValueError):
        Camera(0)
    with pytest.raises(ValueError):
        Camera(1.0, (float("nan"), 0))
    cam = Camera().zoomed(2).panned(3, -4)
    assert cam == Camera(2.0, (3.0, -4.0))


def test_viewport_camera_ops_and_reset():
    vp = ViewportState(volume())
    events = recorder(vp)
    vp.zoom_by(2)
    vp.pan_by(1, 2)
    vp.reset_camera()
    vp.reset_camera()
    assert vp.camera == Camera()
    assert events == ["camera", "camera", "camera"]


def test_extent_uses_spacing():
    vp = ViewportState(volume(spacing_xy=(0.5, 0.75)))  # 8 rows x 6 cols
    assert vp.extent_mm == (pytest.approx(3.0), pytest.approx(6.0))


def test_empty_volume_rejected():
    geom = Geometry(origin=[0, 0, 0], spacing=[1, 1, 1], direction=np.eye(3))
    with pytest.raises(ValueError):
        ViewportState(Volume(voxels=np.zeros((0, 4, 4), dtype=np.int16), geometry=geom))


def test_sync_voi_and_camera_follow_only_when_enabled():
    a, b, c = (ViewportState(volume()) for _ in range(3))
    group = SyncGroup()
    for vp in (a, b, c):
        group.add(vp)
    a.apply_preset("bone")
    assert b.window != PRESETS["bone"]
    group.set_enabled(Channel.VOI, True)
    a.apply_preset("lung")
    assert b.window == c.window == PRESETS["lung"]
    b.zoom_by(3)
    assert a.camera.zoom == 1.0
    group.set_enabled(Channel.CAMERA, True)
    b.pan_by(5, 0)
    assert a.camera == c.camera == b.camera


def test_sync_slice_default_mapper_by_equal_z():
    a = ViewportState(volume(10, z0=0, dz=2.0))
    b = ViewportState(volume(40, z0=-10, dz=1.0))
    group = SyncGroup()
    group.add(a)
    group.add(b)
    group.set_enabled(Channel.SLICE, True)
    a.set_slice(3)  # z = 6 mm
    assert b.slice_position_mm == pytest.approx(6.0)
    assert b.match is None


def test_sync_uses_pluggable_slice_mapper_and_does_not_echo():
    class Offset(SliceMapper):
        calls = 0

        def map(self, source, target):
            Offset.calls += 1
            return source.slice_index + 2, MatchInfo(score=0.9, in_coverage=True)

    a, b = ViewportState(volume(20)), ViewportState(volume(20))
    group = SyncGroup()
    group.add(a)
    group.add(b)
    group.slice_mapper = Offset()
    group.set_enabled(Channel.SLICE, True)
    a.set_slice(4)
    assert b.slice_index == 6 and b.match is not None and b.match.score == 0.9
    # b's own change did not propagate back to a (no ping-pong).
    assert a.slice_index == 4
    assert Offset.calls == 1


def test_changes_inside_held_stay_in_their_viewport():
    a, b = ViewportState(volume(20)), ViewportState(volume(20))
    group = SyncGroup()
    group.add(a)
    group.add(b)
    group.set_enabled(Channel.SLICE, True)
    a.set_slice(5)
    assert b.slice_index == 5
    with group.held():
        b.set_slice(9)
        with group.held():
            b.step(1)
        b.step(1)  # still held after the nested block
    assert (a.slice_index, b.slice_index) == (5, 11)
    b.set_slice(12)  # propagates again afterwards
    assert a.slice_index == 12


def test_sync_group_remove_and_toggle_signal():
    a, b = ViewportState(volume()), ViewportState(volume())
    group = SyncGroup()
    toggles: list[tuple[Channel, bool]] = []
    group.toggled.connect(lambda ch, on: toggles.append((ch, on)))
    group.add(a)
    group.add(b)
    group.set_enabled(Channel.VOI, True)
    group.set_enabled(Channel.VOI, True)
    assert toggles == [(Channel.VOI, True)]
    group.remove(b)
    a.apply_preset("brain")
    assert b.window != PRESETS["brain"]
    group.clear()
    assert group.viewports == []


def test_edge_labels_display_orientation_and_flips():
    assert edge_labels(np.eye(3)) == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    flipped_x = np.diag([-1.0, 1.0, 1.0])
    assert edge_labels(flipped_x) == {"left": "L", "right": "R", "top": "A", "bottom": "P"}
    flipped_y = np.diag([1.0, -1.0, 1.0])
    assert edge_labels(flipped_y)["top"] == "P" and edge_labels(flipped_y)["bottom"] == "A"
    # 30° rotation about the z axis: oblique labels carry the secondary letter.
    t = np.deg2rad(30)
    rot = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    labels = edge_labels(rot)
    assert labels["right"] == "LP" and labels["left"] == "RA"


def test_viewport_orientation_labels_come_from_geometry():
    geom = Geometry(origin=[0, 0, 0], spacing=[1, 1, 1], direction=np.diag([-1.0, -1.0, 1.0]))
    vp = ViewportState(Volume(voxels=np.zeros((2, 4, 4), dtype=np.int16), geometry=geom))
    assert vp.orientation_labels == {"left": "L", "right": "R", "top": "P", "bottom": "A"}


def test_newest_first_puts_undated_last_and_is_stable():
    dates = ["20200101", "", "20240305", "2021", "20220101", "20240305"]
    assert newest_first(dates) == [2, 5, 4, 0, 1, 3]
    assert newest_first([]) == []
