"""Saliency as shown to a reader: smooth, inside the body, with a colour key."""

from __future__ import annotations

import numpy as np
import pytest

from app.ml.saliency.gradcam import COLORMAPS, colormap_rgb, readable_map


def body_slice(size: int = 128) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    hu = np.full((size, size), -1000, np.int16)
    hu[((x - 64) / 50.0) ** 2 + ((y - 64) / 40.0) ** 2 <= 1] = 40
    return hu


def test_blocks_are_smoothed_and_air_gets_no_colour():
    hu = body_slice()
    cells = np.kron(np.random.default_rng(0).random((8, 8)), np.ones((16, 16))).astype(np.float32)
    cells[:, :10] = 1.0  # strong "evidence" in the air at the left edge
    shown = readable_map(cells, hu, cell_mm=16.0, pixel_mm=1.0)
    assert shown.shape == hu.shape
    assert shown.max() == pytest.approx(1.0)
    assert np.all(shown[hu < -500] == 0.0)  # nothing outside the body
    inside = hu > -500
    # Steps between 16-pixel blocks were up to ~1 per pixel; now gentle.
    step = np.abs(np.diff(shown, axis=1))[inside[:, 1:] & inside[:, :-1]]
    raw = np.abs(np.diff(cells, axis=1))[inside[:, 1:] & inside[:, :-1]]
    assert step.max() < 0.25 * raw.max()


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="differs"):
        readable_map(np.zeros((4, 4)), np.zeros((5, 5)), 16.0, 1.0)


def test_legend_colours_run_from_low_to_high():
    for name in COLORMAPS:
        ramp = colormap_rgb(name, 8)
        assert ramp.shape == (8, 3) and ramp.dtype == np.uint8
    with pytest.raises(ValueError, match="unknown colormap"):
        colormap_rgb("rainbow-ish")
