"""Masked NCC equals the textbook formula computed block by block."""

from __future__ import annotations

import numpy as np
import pytest

from app.ml.points.ncc import ncc_map, peak_subvoxel


def brute(t: np.ndarray, r: np.ndarray, mt: np.ndarray, mr: np.ndarray) -> np.ndarray:
    out = np.zeros(tuple(a - b + 1 for a, b in zip(r.shape, t.shape, strict=True)))
    for z in range(out.shape[0]):
        for y in range(out.shape[1]):
            for x in range(out.shape[2]):
                block = r[z : z + t.shape[0], y : y + t.shape[1], x : x + t.shape[2]]
                m = mt & mr[z : z + t.shape[0], y : y + t.shape[1], x : x + t.shape[2]]
                if m.sum() < 0.5 * mt.sum():
                    continue
                a, b = t[m] - t[m].mean(), block[m] - block[m].mean()
                out[z, y, x] = np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b))
    return out


@pytest.mark.parametrize("masked", [False, True])
def test_matches_the_block_by_block_formula(masked):
    rng = np.random.default_rng(0)
    r = rng.normal(size=(9, 10, 11)) * 100
    t = rng.normal(size=(4, 5, 3)) * 100
    mt = np.ones(t.shape, dtype=bool)
    mr = np.ones(r.shape, dtype=bool)
    if masked:
        mt[0, :, :] = False
        mr[:, :3, :] = False
    got = ncc_map(t, r, mt, mr)
    np.testing.assert_allclose(got, brute(t, r, mt, mr), atol=1e-9)


def test_finds_a_planted_block_and_its_subvoxel_peak():
    rng = np.random.default_rng(1)
    r = rng.normal(size=(20, 20, 20))
    t = r[6:13, 4:11, 9:16].copy()
    score = ncc_map(t, r)
    at = np.unravel_index(int(np.argmax(score)), score.shape)
    assert at == (6, 4, 9) and score[at] == pytest.approx(1.0)
    np.testing.assert_allclose(peak_subvoxel(score, at), (6, 4, 9), atol=0.5)


def test_flat_blocks_carry_no_evidence():
    assert not np.any(ncc_map(np.zeros((3, 3, 3)), np.ones((6, 6, 6))))
    # A region that is padding everywhere the template looks.
    mask = np.zeros((6, 6, 6), dtype=bool)
    assert not np.any(ncc_map(np.ones((3, 3, 3)), np.ones((6, 6, 6)), None, mask))
