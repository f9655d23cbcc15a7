"""Measurements on axial slices: image mm <-> LPS, the slice they lie on, ROI numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.core.measure import Measurement, MeasurementError, ellipse_mask, ellipse_stats
from app.core.measure_slice import (
    ellipse_shape,
    image_to_lps,
    lps_to_image,
    measurement_slice,
    roi_stats,
    snap_to_slice,
    summary,
)
from app.core.volume import Geometry, Volume


def volume(spacing=(0.7, 0.9, 2.5), direction=None, uneven=False) -> Volume:
    rng = np.random.default_rng(3)
    voxels = rng.integers(-1000, 1000, size=(12, 60, 50)).astype(np.int16)
    geo = Geometry((-100.0, 40.0, 300.0), spacing, np.eye(3) if direction is None else direction)
    vol = Volume(voxels, geo)
    if uneven:  # one larger gap: slice positions are not the geometry's grid
        pos = vol.slice_positions.copy()
        pos[6:] += vol.geometry.normal * 1.5
        vol = Volume(voxels, geo, slice_positions=pos)
    return vol


@pytest.mark.parametrize("uneven", [False, True])
@pytest.mark.parametrize("direction", [None, np.diag([-1.0, 1.0, -1.0])])
def test_image_and_lps_round_trip_and_lengths_are_physical(direction, uneven):
    vol = volume(direction=direction, uneven=uneven)
    for k in (0, 5, 11):
        a = image_to_lps(vol, k, 3.0, 4.0)
        b = image_to_lps(vol, k, 3.0 + 30.0, 4.0 + 40.0)
        # Image mm are physical mm: a 30 x 40 mm step is 50 mm long.
        assert math.dist(a, b) == pytest.approx(50.0, abs=1e-9)
        assert lps_to_image(vol, k, b) == pytest.approx((33.0, 44.0))
        assert measurement_slice(vol, Measurement("line", "s", "", (a, b))) == k


def test_pixel_centres_map_to_voxel_centres():
    vol = volume()
    sx, sy = vol.geometry.spacing[:2]
    p = image_to_lps(vol, 4, (7 + 0.5) * sx, (9 + 0.5) * sy)
    assert np.allclose(vol.geometry.lps_to_index(np.array(p)), [7, 9, 4])


def test_points_on_different_slices_are_not_on_one_slice_until_snapped():
    vol = volume()
    a = image_to_lps(vol, 3, 10, 10)
    b = image_to_lps(vol, 6, 30, 10)
    m = Measurement("line", "s", "", (a, b))
    assert measurement_slice(vol, m) is None
    snapped, k = snap_to_slice(vol, m)
    assert k in (4, 5)
    assert measurement_slice(vol, snapped) == k
    # In-plane positions are kept.
    assert lps_to_image(vol, k, snapped.points[1]) == pytest.approx((30, 10))


def test_roi_statistics_equal_numpy_on_the_same_mask():
    vol = volume()
    k = 7
    c = image_to_lps(vol, k, 20.0, 25.0)
    p1 = image_to_lps(vol, k, 20.0 + 8.0 * math.cos(0.5), 25.0 + 8.0 * math.sin(0.5))
    p2 = image_to_lps(vol, k, 20.0 - 5.0 * math.sin(0.5), 25.0 + 5.0 * math.cos(0.5))
    m = Measurement("ellipse", "s", "", (c, p1, p2))
    shape = ellipse_shape(vol, m)
    assert shape.k == k
    assert shape.semi_axes_mm == pytest.approx((8.0, 5.0))
    assert shape.angle_deg == pytest.approx(math.degrees(0.5))
    stats = roi_stats(vol, m)
    sx, sy = vol.geometry.spacing[:2]
    mask = ellipse_mask(
        (60, 50), (20.0 / sx - 0.5, 25.0 / sy - 0.5), (8.0, 5.0), vol.geometry, math.degrees(0.5)
    )
    assert stats == ellipse_stats(vol.slice(k), mask, vol.geometry)
    values = vol.slice(k)[mask].astype(np.float64)
    assert stats.mean_hu == pytest.approx(values.mean()) and stats.sd_hu == pytest.approx(
        values.std()
    )
    # About the ellipse's area (pixel-centre counting).
    assert stats.area_mm2 == pytest.approx(math.pi * 40.0, rel=0.1)
    assert "HU" in summary(vol, m) and "mm²" in summary(vol, m)


def test_a_line_is_no_ellipse_and_a_tiny_roi_says_so():
    vol = volume()
    line = Measurement("line", "s", "", (image_to_lps(vol, 1, 0, 0), image_to_lps(vol, 1, 5, 0)))
    with pytest.raises(MeasurementError):
        ellipse_shape(vol, line)
    assert summary(vol, line) == "5.0 mm"
    c = image_to_lps(vol, 1, 0.1, 0.1)
    tiny = Measurement(
        "ellipse", "s", "", (c, image_to_lps(vol, 1, 0.15, 0.1), image_to_lps(vol, 1, 0.1, 0.15))
    )
    with pytest.raises(MeasurementError):
        roi_stats(vol, tiny)
    assert "draw it larger" in summary(vol, tiny)
