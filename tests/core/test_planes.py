"""Multiplanar reformats (app.core.planes): which voxels each plane shows, and its geometry."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.planes import Plane, cursor_at, plane_geometry, plane_image, reference_lines
from app.core.volume import Geometry, Volume


def volume(shape=(6, 4, 5), spacing=(0.5, 0.75, 2.0)) -> Volume:
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
    assert plane_geometry(v, Plane.CORONAL).extent_mm == pytest.approx((5 * 0.5, 6 * 2.0))
    assert plane_geometry(v, Plane.SAGITTAL).extent_mm == pytest.approx((4 * 0.75, 6 * 2.0))


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
