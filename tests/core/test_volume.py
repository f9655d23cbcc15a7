"""Volume geometry."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.volume import Geometry, SeriesInfo, Volume


def test_index_lps_round_trip_with_oblique_direction():
    t = np.deg2rad(20)
    d = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    g = Geometry(origin=[1, 2, 3], spacing=[0.5, 0.75, 2.0], direction=d)
    ijk = np.array([[3.0, 4.0, 5.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(g.lps_to_index(g.index_to_lps(ijk)), ijk, atol=1e-12)
    np.testing.assert_allclose(g.index_to_lps([0, 0, 1]), [1, 2, 5])


def test_default_slice_positions_and_z():
    v = Volume(np.zeros((4, 2, 2), np.int16), Geometry([0, 0, -10], [1, 1, 2.5], np.eye(3)))
    np.testing.assert_allclose(v.slice_z, [-10, -7.5, -5, -2.5])
    assert v.n_slices == 4 and v.shape == (4, 2, 2)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError):
        Volume(np.zeros((4, 4), np.int16), Geometry([0, 0, 0], [1, 1, 1], np.eye(3)))
    with pytest.raises(ValueError):
        Volume(
            np.zeros((3, 2, 2), np.int16),
            Geometry([0, 0, 0], [1, 1, 1], np.eye(3)),
            slice_positions=np.zeros((2, 3)),
        )


def test_display_date():
    assert SeriesInfo(study_date="20261014").display_date() == "2026-10-14"
    assert SeriesInfo(study_date="").display_date() == "undated"


def test_lps_to_index_inverts_a_sheared_gantry_tilt_geometry():
    t = np.deg2rad(15)
    # Slices stacked along a tilted axis: the direction matrix is not orthonormal.
    d = np.array([[1, 0, 0], [0, 1, np.sin(t)], [0, 0, np.cos(t)]])
    g = Geometry(origin=[0, 0, 0], spacing=[0.5, 0.5, 3.0], direction=d)
    ijk = np.array([[10.0, 20.0, 7.0]])
    np.testing.assert_allclose(g.lps_to_index(g.index_to_lps(ijk)), ijk, atol=1e-9)
