"""The sagittal reformat behind the viewport's side view (numpy only)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from app.core.reformat import SCOUT_WINDOW, sagittal_reformat
from app.core.volume import Geometry, Volume


def make_volume(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> Volume:
    """Air around an elliptical body whose HU grows toward the head (40 + 5 k), with noise."""
    n, rows, cols = shape
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:rows, 0:cols]
    body = ((x - (cols - 1) / 2) / (0.42 * cols)) ** 2 + ((y - (rows - 1) / 2) / (0.38 * rows)) ** 2
    voxels = np.full(shape, -1000, dtype=np.int16)
    for k in range(n):
        voxels[k][body <= 1] = 40 + 5 * k
        voxels[k] += rng.integers(-10, 11, size=(rows, cols), dtype=np.int16)
    geometry = Geometry(
        origin=np.array([-(cols * spacing[0]) / 2, -(rows * spacing[1]) / 2, -100.0]),
        spacing=np.array(spacing),
        direction=np.eye(3),
    )
    return Volume(voxels=voxels, geometry=geometry)


def test_reformat_puts_the_head_on_top_with_physical_size():
    vol = make_volume(shape=(20, 48, 64), spacing=(0.8, 0.7, 2.5))
    r = sagittal_reformat(vol)
    # Cropped to the body's front-to-back extent plus 10 mm, never beyond the image.
    assert r.image.shape[0] == 20 and r.image.dtype == np.uint8
    assert 0.76 * 48 < r.image.shape[1] <= 48
    assert r.width_mm == pytest.approx(r.image.shape[1] * 0.7)
    assert r.height_mm == pytest.approx(20 * 2.5)
    z = vol.slice_z
    assert r.fraction_of(z[-1]) == pytest.approx(0.5 / 20)  # top slice: top row
    assert r.fraction_of(z[0]) == pytest.approx(1 - 0.5 / 20)
    # The phantom's body grows brighter toward the head (40 + 5 k HU): row 0 is slice 19.
    body = r.image[:, r.image.shape[1] // 4].astype(int)
    assert body[0] > body[-1]


def test_reformat_averages_a_slab_through_the_body_and_crops_to_it():
    vol = make_volume(shape=(6, 80, 64), spacing=(1.0, 1.0, 2.0))
    vox = np.full(vol.voxels.shape, -1000, dtype=np.int16)
    vox[:, 30:50, 24:40] = 40  # a body block: rows 30-49, columns 24-39
    r = sagittal_reformat(replace(vol, voxels=vox), slab_mm=8.0)
    # Rows 20..59 (10 mm margin each side), anterior at the left.
    assert r.image.shape == (6, 40)
    expected = np.rint((40 - SCOUT_WINDOW.lower) / SCOUT_WINDOW.width * 255)
    assert np.all(np.abs(r.image[:, 10:30].astype(int) - expected) <= 1)
    assert np.all(r.image[:, :10] == 0) and np.all(r.image[:, 30:] == 0)
