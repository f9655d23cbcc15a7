"""Simulated reader sketches of a lesion mask."""

from __future__ import annotations

import numpy as np
import pytest

from app.sim.lesions import random_lesion_mask_2d
from app.sim.sketches import sketch_from_mask


def lesion(size: int, pixel_mm: float, diameter_mm: float = 30.0, seed: int = 0) -> np.ndarray:
    c = (size - 1) / 2
    soft = random_lesion_mask_2d(
        (size, size), (c, c), diameter_mm / pixel_mm, np.random.default_rng(seed)
    )
    return soft >= 0.5


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def centroid(mask: np.ndarray) -> np.ndarray:
    return np.array(np.nonzero(mask), dtype=float).mean(axis=1)


def test_without_jitter_the_sketch_is_a_simplified_outline() -> None:
    mask = lesion(128, 1.0)
    drawn = sketch_from_mask(
        mask, np.random.default_rng(0), pixel_mm=1.0, jitter_mm=0.0, scale_jitter=0.0
    )
    assert drawn.dtype == bool and drawn.shape == mask.shape
    assert iou(drawn, mask) > 0.8
    assert not np.array_equal(drawn, mask)  # simplified, not traced


def test_jitter_moves_and_scales_within_the_limits() -> None:
    mask = lesion(200, 0.5)
    shifts, ratios = [], []
    for seed in range(20):
        drawn = sketch_from_mask(mask, np.random.default_rng(seed), pixel_mm=0.5, jitter_mm=8.0)
        shifts.append(np.linalg.norm(centroid(drawn) - centroid(mask)) * 0.5)
        ratios.append(drawn.sum() / mask.sum())
    assert max(shifts) <= 8.0 + 1.5 and max(shifts) > 2.0
    assert min(ratios) >= 0.8**2 - 0.1 and max(ratios) <= 1.2**2 + 0.1
    assert np.ptp(ratios) > 0.1


def test_the_same_lesion_gives_the_same_physical_sketch_at_any_pixel_size() -> None:
    areas = []
    for pixel_mm, size in ((0.5, 240), (3.2, 40)):
        drawn = sketch_from_mask(
            lesion(size, pixel_mm),
            np.random.default_rng(0),
            pixel_mm=pixel_mm,
            jitter_mm=0.0,
            scale_jitter=0.0,
        )
        areas.append(drawn.sum() * pixel_mm**2)
    assert areas[1] == pytest.approx(areas[0], rel=0.35)


def test_seeded_and_edge_cases() -> None:
    mask = lesion(64, 1.0)
    a = sketch_from_mask(mask, np.random.default_rng(4), pixel_mm=1.0)
    b = sketch_from_mask(mask, np.random.default_rng(4), pixel_mm=1.0)
    assert np.array_equal(a, b)
    empty = np.zeros((32, 32), dtype=bool)
    assert not sketch_from_mask(empty, np.random.default_rng(0), pixel_mm=1.0).any()
    dot = empty.copy()
    dot[10, 12] = True  # a one-pixel lesion still yields a mark
    assert sketch_from_mask(dot, np.random.default_rng(0), pixel_mm=3.2).any()
    with pytest.raises(ValueError, match="2-D"):
        sketch_from_mask(np.zeros((2, 8, 8)), np.random.default_rng(0), pixel_mm=1.0)
    with pytest.raises(ValueError, match="pixel_mm"):
        sketch_from_mask(mask, np.random.default_rng(0), pixel_mm=0.0)
