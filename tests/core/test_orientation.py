"""Display orientation: any axis order and flip ends in the radiological convention."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from app.core.orientation import (
    axis_permutation,
    direction_label,
    is_oblique,
    to_display_orientation,
)
from app.core.volume import Geometry, Volume


def _volume(direction: np.ndarray, shape=(5, 6, 7), spacing=(0.7, 0.9, 2.5)) -> Volume:
    rng = np.random.default_rng(0)
    vox = rng.integers(-1000, 1000, size=shape).astype(np.int16)
    return Volume(vox, Geometry(origin=[10.0, -20.0, 30.0], spacing=spacing, direction=direction))


def _all_signed_permutations():
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            m = np.zeros((3, 3))
            for a, d in enumerate(perm):
                m[d, a] = signs[a]
            yield m


@pytest.mark.parametrize("direction", list(_all_signed_permutations()))
def test_every_axis_order_ends_in_lps_with_same_hu_at_same_point(direction):
    vol = _volume(direction)
    out = to_display_orientation(vol)
    np.testing.assert_allclose(out.geometry.direction, np.eye(3), atol=1e-12)
    # Same HU at the same physical point, for every voxel.
    n_z, n_y, n_x = vol.voxels.shape
    kk, jj, ii = np.meshgrid(np.arange(n_z), np.arange(n_y), np.arange(n_x), indexing="ij")
    ijk = np.stack([ii.ravel(), jj.ravel(), kk.ravel()], axis=1)
    lps = vol.geometry.index_to_lps(ijk)
    new_ijk = np.rint(out.geometry.lps_to_index(lps)).astype(int)
    got = out.voxels[new_ijk[:, 2], new_ijk[:, 1], new_ijk[:, 0]]
    np.testing.assert_array_equal(got, vol.voxels.ravel())
    # Slice positions are the first voxel of each displayed slice.
    first = out.geometry.index_to_lps(
        np.c_[np.zeros(out.n_slices), np.zeros(out.n_slices), np.arange(out.n_slices)]
    )
    np.testing.assert_allclose(out.slice_positions, first, atol=1e-9)
    assert np.all(np.diff(out.slice_z) > 0)


def test_identity_is_returned_unchanged():
    vol = _volume(np.eye(3))
    assert to_display_orientation(vol) is vol


def test_uneven_slice_positions_survive_an_in_plane_flip():
    vol = _volume(np.diag([-1.0, -1.0, 1.0]))
    z = np.array([0.0, 2.5, 5.0, 10.0, 12.5])  # a missing slice at 7.5 mm
    vol.slice_positions = np.c_[np.full(5, 10.0), np.full(5, -20.0), 30 + z]
    out = to_display_orientation(vol)
    np.testing.assert_allclose(np.diff(out.slice_z), np.diff(30 + z))


def test_oblique_direction_keeps_residual_rotation():
    t = np.deg2rad(12)
    rot = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    perm, sign = axis_permutation(rot)
    assert list(perm) == [0, 1, 2] and list(sign) == [1, 1, 1]
    assert is_oblique(rot)
    assert not is_oblique(np.eye(3))


def test_direction_labels():
    assert direction_label([1, 0, 0]) == "L"
    assert direction_label([-1, 0, 0]) == "R"
    assert direction_label([0, -1, 0]) == "A"
    assert direction_label([0, 0, 1]) == "S"
    assert direction_label([0.8, -0.6, 0]) == "LA"
