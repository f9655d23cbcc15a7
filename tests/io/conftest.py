"""Fixtures for the IO tests; the volumes come from ``io_helpers``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from io_helpers import make_volume, phantom

from app.core.volume import Volume

__all__ = ["make_volume", "phantom"]


@pytest.fixture
def volume_factory() -> Callable[..., Volume]:
    """Factory for synthetic volumes: ``volume_factory(shape=..., spacing=..., ...)``."""
    return make_volume


@pytest.fixture
def ct_volume() -> Volume:
    """The default small synthetic CT volume."""
    return make_volume()


def lps_of(volume: Volume, ijk: np.ndarray) -> np.ndarray:
    """LPS of integer voxel indices ``(col, row, slice)``, using each slice's own position."""
    ijk = np.asarray(ijk)
    g = volume.geometry
    in_plane = (ijk[:, :2] * g.spacing[:2]) @ g.direction[:, :2].T
    return volume.slice_positions[ijk[:, 2]] + in_plane


def index_of(volume: Volume, xyz: np.ndarray) -> np.ndarray:
    """``(col, row, slice)`` of LPS points, via each slice's measured position.

    Works for unevenly spaced and sheared (tilted) stacks; in-plane indices are
    continuous, the slice index is the nearest slice.
    """
    xyz = np.asarray(xyz, dtype=np.float64)
    g = volume.geometry
    plane_normal = np.cross(g.direction[:, 0], g.direction[:, 1])  # not the tilted stack axis
    z = volume.slice_positions @ plane_normal
    k = np.abs((xyz @ plane_normal)[:, None] - z[None, :]).argmin(axis=1)
    axes = g.direction[:, :2] * g.spacing[:2]  # one column/row step, in mm
    offset = xyz - volume.slice_positions[k]
    cr, *_ = np.linalg.lstsq(axes, offset.T, rcond=None)
    residual = offset - (axes @ cr).T
    np.testing.assert_allclose(residual, 0, atol=1e-3)
    return np.column_stack([cr.T, k])


def assert_same_hu_at_same_points(original: Volume, loaded: Volume, n: int = 300) -> None:
    """Voxels of ``original`` reappear in ``loaded`` at the same LPS position with the same HU."""
    rng = np.random.default_rng(7)
    shape_xyz = np.array(original.shape[::-1])
    ijk = rng.integers(0, shape_xyz, size=(n, 3))
    xyz = lps_of(original, ijk)
    found = index_of(loaded, xyz)
    np.testing.assert_allclose(found, np.rint(found), atol=1e-3)
    c, r, k = np.rint(found).astype(int).T
    np.testing.assert_array_equal(
        loaded.voxels[k, r, c], original.voxels[ijk[:, 2], ijk[:, 1], ijk[:, 0]]
    )
    # Unevenly spaced DICOM slices: check the measured positions, not just the grid.
    np.testing.assert_allclose(lps_of(loaded, np.column_stack([c, r, k])), xyz, atol=1e-3)


@pytest.fixture
def same_hu_check() -> Callable[[Volume, Volume], None]:
    """``same_hu_check(original, loaded)``: see :func:`assert_same_hu_at_same_points`."""
    return assert_same_hu_at_same_points
