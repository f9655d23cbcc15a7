"""The linked cursor without Qt: points on planes, the CURSOR channel and its default mapper."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.cursor import (
    NO_ENGINE_MARK,
    OUTSIDE_SCAN,
    CursorMark,
    circle_radius_in_plane,
    contains_point,
    fractional_slice,
    plane_position,
    point_on_plane,
)
from app.core.planes import Plane, level_y_mm, reference_lines
from app.core.state import Channel, CursorMapper, SyncGroup, ViewportState
from app.core.volume import Geometry, SeriesInfo, Volume


def volume(
    n: int = 12,
    rows: int = 10,
    cols: int = 14,
    spacing=(0.7, 0.9, 2.5),
    origin=(-5.0, 12.0, 30.0),
    frame: str = "1.2.3",
    slice_positions: np.ndarray | None = None,
) -> Volume:
    geom = Geometry(origin=origin, spacing=spacing, direction=np.eye(3))
    return Volume(
        voxels=np.zeros((n, rows, cols), dtype=np.int16),
        geometry=geom,
        info=SeriesInfo(frame_of_reference_uid=frame),
        slice_positions=slice_positions,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("plane", list(Plane))
def test_a_click_and_its_plane_position_are_inverse(plane):
    vol = volume()
    cursor = (5, 4, 7)
    for x, y in [(0.3, 0.4), (4.1, 7.7), (9.0, 2.2)]:
        p = point_on_plane(vol, plane, cursor, x, y)
        pos = plane_position(vol, plane, cursor, p)
        assert pos.x_mm == pytest.approx(x, abs=1e-9)
        assert pos.y_mm == pytest.approx(y, abs=1e-9)
        assert pos.offset_mm == pytest.approx(0.0, abs=1e-9)
        assert pos.inside


@pytest.mark.parametrize("plane", list(Plane))
def test_a_voxel_centre_sits_where_the_reference_lines_cross(plane):
    vol = volume()
    k, r, c = 6, 3, 9
    centre = vol.geometry.index_to_lps(np.array([c, r, k], dtype=float))
    pos = plane_position(vol, plane, (k, r, c), centre)
    assert (pos.x_mm, pos.y_mm) == pytest.approx(reference_lines(vol, plane, (k, r, c)))


def test_an_axial_click_lands_at_the_physical_point():
    vol = volume()
    # The centre of pixel (row 2, column 3) of slice 4.
    p = point_on_plane(vol, Plane.AXIAL, (4, 0, 0), 3.5 * 0.7, 2.5 * 0.9)
    assert p == pytest.approx([-5.0 + 3 * 0.7, 12.0 + 2 * 0.9, 30.0 + 4 * 2.5])


def test_the_distance_from_the_plane_is_in_mm():
    vol = volume()
    p = vol.geometry.index_to_lps(np.array([5.0, 4.0, 6.0]))
    assert plane_position(vol, Plane.AXIAL, (4, 0, 0), p).offset_mm == pytest.approx(2 * 2.5)
    assert plane_position(vol, Plane.CORONAL, (0, 1, 0), p).offset_mm == pytest.approx(3 * 0.9)
    assert plane_position(vol, Plane.SAGITTAL, (0, 0, 8), p).offset_mm == pytest.approx(-3 * 0.7)


def test_uneven_slices_are_placed_where_they_are():
    z = np.array([0.0, 2.0, 4.0, 10.0, 12.0])
    positions = np.column_stack([np.zeros(5), np.zeros(5), z])
    vol = volume(n=5, spacing=(1.0, 1.0, 3.0), origin=(0, 0, 0), slice_positions=positions)
    assert fractional_slice(vol, 7.0) == pytest.approx(2.5)
    assert fractional_slice(vol, 14.0) == pytest.approx(5.0)
    # A coronal click half way between slices 2 and 3 is at z = 7 mm (thick
    # series' reformats have interpolated rows: ask the planes where that height is).
    y = level_y_mm(vol, Plane.CORONAL, 2.5)
    assert point_on_plane(vol, Plane.CORONAL, (0, 0, 0), 0.5, y)[2] == pytest.approx(7.0)


def test_a_click_beside_the_image_is_outside_the_volume():
    vol = volume()
    p = point_on_plane(vol, Plane.AXIAL, (4, 0, 0), -20.0, 3.0)
    assert not contains_point(vol, p)
    assert not plane_position(vol, Plane.AXIAL, (4, 0, 0), p).inside
    assert contains_point(vol, point_on_plane(vol, Plane.AXIAL, (4, 0, 0), 3.0, 3.0))
    assert not contains_point(vol, np.array([np.nan, 0.0, 0.0]))


def test_the_uncertainty_circle_is_the_spheres_cut():
    assert circle_radius_in_plane(5.0, 0.0) == pytest.approx(5.0)
    assert circle_radius_in_plane(5.0, 3.0) == pytest.approx(4.0)
    assert circle_radius_in_plane(5.0, -5.5) is None
    assert circle_radius_in_plane(float("nan"), 0.0) is None


def test_a_mark_is_shown_only_when_covered_and_answered():
    assert CursorMark((1.0, 2.0, 3.0)).shown
    assert not CursorMark.outside(OUTSIDE_SCAN).shown
    assert not CursorMark((1.0, 2.0, 3.0), pending=True).shown


# -- the CURSOR channel ---------------------------------------------------------------------
def group_of(*volumes: Volume) -> tuple[SyncGroup, list[ViewportState]]:
    group = SyncGroup()
    states = [ViewportState(v) for v in volumes]
    for s in states:
        group.add(s)
    group.set_enabled(Channel.CURSOR, True)
    return group, states


def drive(state: ViewportState, point) -> None:
    state.set_cursor(CursorMark(tuple(float(v) for v in point), driving=True))


def test_same_frame_of_reference_gets_the_same_point_and_slice():
    group, (a, b) = group_of(volume(), volume(origin=(-5.0, 12.0, 20.0)))
    p = a.volume.geometry.index_to_lps(np.array([5.0, 4.0, 3.0]))
    drive(a, p)
    assert b.cursor_mark is not None and b.cursor_mark.point == pytest.approx(tuple(p))
    assert b.volume.slice_z[b.slice_index] == pytest.approx(p[2])
    assert not b.cursor_mark.driving


def test_another_frame_of_reference_is_not_guessed():
    group, (a, b) = group_of(volume(), volume(frame="9.9.9"))
    drive(a, a.volume.geometry.index_to_lps(np.array([5.0, 4.0, 3.0])))
    assert b.cursor_mark == NO_ENGINE_MARK
    assert not b.cursor_mark.shown


def test_a_point_the_target_does_not_hold_is_outside_this_scan():
    group, (a, b) = group_of(volume(), volume(n=3))
    before = b.slice_index
    drive(a, a.volume.geometry.index_to_lps(np.array([5.0, 4.0, 11.0])))
    assert b.cursor_mark is not None and not b.cursor_mark.in_coverage
    assert b.cursor_mark.message == OUTSIDE_SCAN and b.cursor_mark.point is None
    assert b.slice_index == before  # no jump to the edge


def test_only_the_driving_mark_propagates_and_only_when_on():
    group, (a, b) = group_of(volume(), volume())
    a.set_cursor(CursorMark((0.0, 15.0, 40.0)))  # not driving: an answer, not a request
    assert b.cursor_mark is None
    group.set_enabled(Channel.CURSOR, False)
    drive(a, (0.0, 15.0, 40.0))
    assert b.cursor_mark is None


def test_the_mapper_is_asked_once_for_every_target():
    asked: list[tuple[ViewportState, list[ViewportState]]] = []

    class Recording(CursorMapper):
        def request(self, source, targets):
            asked.append((source, targets))

    group, (a, b, c) = group_of(volume(), volume(), volume())
    group.cursor_mapper = Recording()
    drive(b, (0.0, 15.0, 40.0))
    assert asked == [(b, [a, c])]


def test_the_same_answer_twice_is_no_change():
    state = ViewportState(volume())
    events: list[str] = []
    state.changed.connect(events.append)
    state.set_cursor(CursorMark.outside("the point lies outside the body"))
    state.set_cursor(CursorMark.outside("the point lies outside the body"))
    assert events == ["cursor"]


def test_set_cursor_announces_changes_only():
    state = ViewportState(volume())
    events: list[str] = []
    state.changed.connect(events.append)
    state.set_cursor(CursorMark((1.0, 2.0, 3.0)))
    state.set_cursor(CursorMark((1.0, 2.0, 3.0)))
    state.set_cursor(None)
    assert events == ["cursor", "cursor"]
