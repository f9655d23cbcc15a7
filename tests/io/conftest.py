"""Small synthetic CT volumes for the IO tests (made in memory, no shared data needed)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from app.core.volume import Geometry, SeriesInfo, Volume


def phantom(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """A CT-like int16 HU phantom: air, soft-tissue body, two lungs, a spine, noise.

    Every slice differs (the body narrows with the slice index) so that a
    reader that mis-sorts slices produces a detectably different array.
    """
    n, rows, cols = shape
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols]
    cy, cx = (rows - 1) / 2, (cols - 1) / 2
    out = np.full(shape, -1000, dtype=np.int16)
    for k in range(n):
        scale = 1.0 - 0.3 * k / max(n - 1, 1)
        body = ((x - cx) / (0.45 * cols * scale)) ** 2 + ((y - cy) / (0.38 * rows)) ** 2 <= 1
        lung_l = ((x - cx - 0.18 * cols) / (0.12 * cols)) ** 2 + ((y - cy) / (0.2 * rows)) ** 2 <= 1
        lung_r = ((x - cx + 0.18 * cols) / (0.12 * cols)) ** 2 + ((y - cy) / (0.2 * rows)) ** 2 <= 1
        spine = ((x - cx) / (0.06 * cols)) ** 2 + ((y - cy - 0.25 * rows) / (0.06 * rows)) ** 2 <= 1
        sl = out[k]
        sl[body] = 40
        sl[lung_l | lung_r] = -850
        sl[spine] = 700 + 10 * k
        sl += rng.integers(-20, 21, size=(rows, cols), dtype=np.int16)
    return out


def make_volume(
    shape: tuple[int, int, int] = (12, 40, 48),
    spacing: tuple[float, float, float] = (0.8, 0.8, 2.5),
    origin: tuple[float, float, float] = (-19.0, -16.0, -100.0),
    direction: np.ndarray | None = None,
    info: SeriesInfo | None = None,
    seed: int = 0,
) -> Volume:
    """A display-oriented (identity direction by default) synthetic CT volume."""
    return Volume(
        voxels=phantom(shape, seed),
        geometry=Geometry(
            origin=origin,
            spacing=spacing,
            direction=np.eye(3) if direction is None else direction,
        ),
        info=info
        or SeriesInfo(
            patient_id="TEST-001",
            patient_name="Test^Patient",
            study_date="20240315",
            study_time="101500",
            study_description="CT CHEST",
            series_number=3,
            series_description="Axial 2.5",
            body_part="CHEST",
            manufacturer="Synthetic",
            slice_thickness=spacing[2],
            convolution_kernel="B30f",
        ),
    )


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
