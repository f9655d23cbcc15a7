"""Multiplanar reformats (app.core.planes): which voxels each plane shows, and its geometry."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.planes import (
    Plane,
    cursor_at,
    plane_geometry,
    plane_image,
    plane_index,
    reference_lines,
)
from app.core.volume import Geometry, Volume


def volume(shape=(6, 4, 5), spacing=(0.5, 0.75, 0.5)) -> Volume:
    """Voxel value = 100 k + 10 r + c: every voxel says where it is."""
    n, rows, cols = shape
    k, r, c = np.meshgrid(np.arange(n), np.arange(rows), np.arange(cols), indexing="ij")
    voxels = (100 * k + 10 * r + c).astype(np.int16)
    geometry = Geometry(origin=np.zeros(3), spacing=np.array(spacing), direction=np.eye(3))
    return Volume(voxels=voxels, geometry=geometry)


def test_each_plane_shows_its_voxels_head_up():
    v = volume()
    cursor = (2, 1, 3)
    assert np.array_equal(plane_image(v, Plane.AXIAL, cursor), v.voxels[2])
    coronal = plane_image(v, Plane.CORONAL, cursor)
    assert coronal.shape == (6, 5)
    # Top row is the most superior slice (the last index); row 1 of every slice.
    assert coronal[0, 0] == 100 * 5 + 10 * 1 + 0
    assert coronal[-1, 4] == 10 * 1 + 4
    sagittal = plane_image(v, Plane.SAGITTAL, cursor)
    assert sagittal.shape == (6, 4)
    assert sagittal[0, 0] == 500 + 3 and sagittal[-1, -1] == 30 + 3


def test_geometry_uses_the_slice_spacing_for_the_vertical_axis():
    v = volume()
    assert plane_geometry(v, Plane.AXIAL).extent_mm == pytest.approx((5 * 0.5, 4 * 0.75))
    assert plane_geometry(v, Plane.CORONAL).extent_mm == pytest.approx((5 * 0.5, 6 * 0.5))
    # Slices thinner than the sagittal columns (0.75 mm): one row per slice, no resampling.
    assert plane_geometry(v, Plane.SAGITTAL).extent_mm == pytest.approx((4 * 0.75, 6 * 0.5))


def test_cursor_out_of_range_is_clipped():
    v = volume()
    assert np.array_equal(plane_image(v, Plane.CORONAL, (0, 99, 0)), v.voxels[::-1, 3, :])
    assert np.array_equal(plane_image(v, Plane.SAGITTAL, (0, 0, -4)), v.voxels[::-1, :, 0])


@pytest.mark.parametrize("plane", list(Plane))
def test_a_click_on_a_reference_line_gives_back_the_cursor(plane):
    v = volume()
    cursor = (4, 2, 1)
    x, y = reference_lines(v, plane, cursor)
    assert cursor_at(v, plane, cursor, x, y) == cursor


def test_coronal_click_sets_level_and_column_and_keeps_the_row():
    v = volume()
    # Top-left pixel of the coronal image: most superior slice, first column.
    assert cursor_at(v, Plane.CORONAL, (0, 2, 4), 0.1, 0.1) == (5, 2, 0)
    # Far outside the image: clipped to the volume.
    assert cursor_at(v, Plane.SAGITTAL, (0, 2, 4), 1e6, 1e6) == (0, 3, 4)


def test_thick_series_reformats_are_interpolated_linearly_between_slices():
    # 4 mm slices under 1 mm pixels: 20 mm between the first and last slice
    # centres become 21 rows 1 mm apart, each 0.25 slice below the one above.
    v = volume(spacing=(1.0, 1.0, 4.0))
    cursor = (2, 1, 3)
    geo = plane_geometry(v, Plane.CORONAL)
    assert geo.shape == (21, 5) and geo.pixel_mm == pytest.approx((1.0, 1.0))
    coronal = plane_image(v, Plane.CORONAL, cursor)
    assert coronal.shape == geo.shape
    f = 5.0 - 0.25 * np.arange(21)  # the fractional slice of each row, head first
    expected = 100.0 * f[:, None] + 10 * 1 + np.arange(5)[None, :]
    assert np.array_equal(coronal, expected.astype(np.float32))
    sagittal = plane_image(v, Plane.SAGITTAL, cursor)
    assert sagittal.shape == (21, 4)
    assert np.array_equal(sagittal, (100.0 * f[:, None] + 10 * np.arange(4) + 3).astype(np.float32))


def test_thick_series_keep_their_physical_aspect():
    v = volume(shape=(6, 4, 5), spacing=(0.5, 0.75, 3.0))
    for plane, col_mm in ((Plane.CORONAL, 0.5), (Plane.SAGITTAL, 0.75)):
        geo = plane_geometry(v, plane)
        span = (geo.shape[0] - 1) * geo.pixel_mm[0]
        assert span == pytest.approx(5 * 3.0)  # first to last slice centre, in mm
        assert geo.pixel_mm[0] <= col_mm + 1e-9  # rows at most as far apart as columns
        assert geo.pixel_mm[0] > col_mm * 0.9


def test_thick_series_level_lines_and_clicks_meet_the_slices():
    v = volume(spacing=(1.0, 1.0, 4.0))
    for k in range(6):
        x, y = reference_lines(v, Plane.CORONAL, (k, 2, 1))
        # Slice k is row 4 (5 - k) of the 1 mm rows: the line runs through its centre.
        assert y == pytest.approx((4 * (5 - k) + 0.5) * 1.0)
        assert cursor_at(v, Plane.CORONAL, (0, 2, 1), x, y) == (k, 2, 1)
    # A click between two slices picks the nearer one: row 9 shows slice 2.75, row 11 2.25.
    assert cursor_at(v, Plane.SAGITTAL, (0, 2, 1), 0.5, 9.5)[0] == 3
    assert cursor_at(v, Plane.SAGITTAL, (0, 2, 1), 0.5, 11.5)[0] == 2


def test_a_single_slice_series_has_a_one_row_reformat():
    v = volume(shape=(1, 4, 5), spacing=(0.5, 0.5, 5.0))
    assert plane_image(v, Plane.CORONAL, (0, 1, 1)).shape == (1, 5)
    assert cursor_at(v, Plane.CORONAL, (0, 1, 1), 0.2, 2.0) == (0, 1, 0)


def test_the_plane_index_is_what_selects_the_image():
    v = volume()
    for plane in Plane:
        base = plane_image(v, plane, (2, 1, 3))
        for cursor in ((2, 1, 3), (4, 1, 3), (2, 3, 3), (2, 1, 0)):
            same = plane_index(plane, cursor) == plane_index(plane, (2, 1, 3))
            assert np.array_equal(plane_image(v, plane, cursor), base) == same
