"""Measurement maths: lengths in mm for any geometry, ROI statistics equal numpy's, follow-up."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.core.measure import (
    Finding,
    Measurement,
    MeasurementError,
    ellipse_mask,
    ellipse_stats,
    followup_rows,
    line_length_from_indices,
    line_length_mm,
    long_axis_mm,
    pixel_area_mm2,
)
from app.core.volume import Geometry


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = (
        f(math.radians(a)) for a in (ax, ay, az) for f in (math.cos, math.sin)
    )
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


GEOMETRIES = [
    Geometry((0, 0, 0), (1.0, 1.0, 1.0), np.eye(3)),
    Geometry((-200.5, 13.0, 700.0), (0.703, 0.703, 5.0), np.eye(3)),
    Geometry((10, 20, 30), (0.45, 0.9, 2.5), np.diag([-1.0, 1.0, -1.0])),  # flipped axes
    Geometry((5, -5, 0), (0.8, 0.6, 3.0), rotation(20, -35, 50)),  # oblique
    # A gantry tilt: the slice axis sheared against the rows.
    Geometry((0, 0, 0), (0.7, 0.7, 2.0), np.array([[1, 0, 0], [0, 1, 0.3], [0, 0, 0.954]])),
]


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_line_length_is_the_physical_distance(geometry):
    rng = np.random.default_rng(0)
    for _ in range(50):
        a, b = rng.uniform(-50, 300, size=(2, 3))
        # The physical distance computed independently of index_to_lps.
        m = geometry.direction * geometry.spacing
        truth = float(np.linalg.norm(m @ (b - a)))
        assert abs(line_length_from_indices(geometry, a, b) - truth) < 0.1
        pa, pb = geometry.index_to_lps(a), geometry.index_to_lps(b)
        assert abs(line_length_mm(pa, pb) - truth) < 0.1


def test_a_known_length_on_anisotropic_pixels():
    g = Geometry((0, 0, 0), (0.5, 2.0, 3.0), np.eye(3))
    assert line_length_from_indices(g, np.array([0, 0, 0]), np.array([6, 0, 0])) == 3.0
    assert line_length_from_indices(g, np.array([0, 0, 0]), np.array([3, 1, 0])) == pytest.approx(
        math.hypot(1.5, 2.0)
    )


@pytest.mark.parametrize("geometry", GEOMETRIES[:4])
def test_ellipse_area_and_hu_statistics(geometry):
    rng = np.random.default_rng(1)
    hu = rng.normal(40, 25, size=(300, 300)).astype(np.int16)
    a, b = 30.0, 18.0
    sx, sy = geometry.spacing[:2]
    mask = ellipse_mask(hu.shape, (150.0, 140.0), (a, b), geometry, angle_deg=30.0)
    stats = ellipse_stats(hu, mask, geometry)
    assert stats.mean_hu == np.mean(hu[mask]) and stats.sd_hu == np.std(hu[mask])
    assert stats.n_pixels == int(mask.sum())
    # Pixel-counted area converges to pi a b (within the boundary's pixels).
    assert stats.area_mm2 == pytest.approx(math.pi * a * b, rel=0.05)
    assert pixel_area_mm2(geometry) == pytest.approx(sx * sy)
    # The mask's longest chord is the major axis (to about a pixel).
    assert long_axis_mm(mask, geometry) == pytest.approx(2 * a, abs=2 * max(sx, sy))


def test_rotated_ellipse_is_the_same_region_turned():
    g = Geometry((0, 0, 0), (1.0, 1.0, 1.0), np.eye(3))
    flat = ellipse_mask((101, 101), (50.0, 50.0), (40.3, 10.3), g)
    upright = ellipse_mask((101, 101), (50.0, 50.0), (40.3, 10.3), g, angle_deg=90.0)
    np.testing.assert_array_equal(flat.T, upright)


def test_bad_rois_are_refused():
    g = GEOMETRIES[0]
    with pytest.raises(MeasurementError, match="positive"):
        ellipse_mask((10, 10), (5.0, 5.0), (0.0, 3.0), g)
    with pytest.raises(MeasurementError, match="no pixel"):
        ellipse_stats(np.zeros((10, 10)), np.zeros((10, 10), bool), g)
    with pytest.raises(MeasurementError, match="does not fit"):
        ellipse_stats(np.zeros((10, 10)), np.zeros((5, 5), bool), g)


def line(date: str, length: float, finding: str = "n1") -> Measurement:
    return Measurement("line", f"1.2.{date}", date, ((0, 0, 0), (length, 0, 0)), finding)


def test_followup_table_changes():
    f = Finding("nodule", [line("20260301", 12.0), line("20240101", 8.0), line("20250101", 10.0)])
    rows = followup_rows(f)
    assert [r.study_date for r in rows] == ["20240101", "20250101", "20260301"]
    assert [r.diameter_mm for r in rows] == [8.0, 10.0, 12.0]
    assert rows[0].change_vs_oldest_pct is None and rows[0].change_vs_previous_pct is None
    assert rows[1].change_vs_oldest_pct == pytest.approx(25.0)
    assert rows[2].change_vs_oldest_pct == pytest.approx(50.0)
    assert rows[2].change_vs_previous_pct == pytest.approx(20.0)


def test_followup_takes_the_longest_axis_per_date_and_ellipse_diameters():
    ell = Measurement("ellipse", "s", "20250101", ((0, 0, 0), (7, 0, 0), (0, 3, 0)))
    assert ell.diameter_mm == 14.0
    f = Finding("x", [line("20240101", 10.0), line("20240101", 11.0), ell])
    rows = followup_rows(f)
    assert [r.diameter_mm for r in rows] == [11.0, 14.0]


def test_measurement_round_trip_and_validation():
    m = line("20240101", 5.0)
    assert Measurement.from_dict(m.to_dict()) == m
    assert m.moved([(1, 1, 1), (2, 2, 2)], "9.9", "20250101").finding == "n1"
    with pytest.raises(MeasurementError, match="needs 2 points"):
        Measurement("line", "s", "", ((0, 0, 0),))
    with pytest.raises(MeasurementError, match="finite"):
        Measurement("line", "s", "", ((0, 0, 0), (math.nan, 0, 0)))
    with pytest.raises(MeasurementError, match="kind"):
        Measurement.from_dict({"kind": "angle", "points": []})
    with pytest.raises(MeasurementError, match="lacks"):
        Measurement.from_dict({"kind": "line"})
