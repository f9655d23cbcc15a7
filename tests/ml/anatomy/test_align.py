"""Whole-series alignment on synthetic similarity matrices with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from app.ml.anatomy.align import AlignParams, align_series, normalise_scores


def synthetic_similarity(
    cz: np.ndarray,
    pz: np.ndarray,
    true_z: np.ndarray,
    width_mm: float = 15.0,
    noise: float = 0.02,
    seed: int = 0,
) -> np.ndarray:
    """Cosine-like scores peaking where the prior level equals the truth."""
    rng = np.random.default_rng(seed)
    peak = np.exp(-((pz[None, :] - true_z[:, None]) ** 2) / (2 * width_mm**2))
    return 0.6 + 0.3 * peak + rng.normal(0.0, noise, (len(cz), len(pz)))


def covered_truth(true_z: np.ndarray, pz: np.ndarray) -> np.ndarray:
    half = (pz[1] - pz[0]) / 2
    return (true_z >= pz[0] - half) & (true_z <= pz[-1] + half)


def test_recovers_a_pure_offset_with_slope_one():
    cz = np.arange(0.0, 200.0, 2.5)
    pz = np.arange(-500.0, -150.0, 5.0)
    true_z = cz - 420.0
    a = align_series(synthetic_similarity(cz, pz, true_z), cz, pz)
    assert np.all(a.in_coverage)
    np.testing.assert_allclose(a.mapped_z, true_z, atol=2.0)
    # The nearest prior slice to the truth, or its neighbour at worst.
    assert np.max(np.abs(pz[a.prior_index] - true_z)) <= 5.0
    assert a.offset_mm == pytest.approx(-420.0, abs=1.0)


def test_mapping_is_monotonic_even_with_noisy_rows():
    cz = np.arange(0.0, 150.0, 1.0)
    pz = np.arange(0.0, 200.0, 3.0)
    true_z = cz + 20.0
    sim = synthetic_similarity(cz, pz, true_z, noise=0.08, seed=3)
    a = align_series(sim, cz, pz)
    assert np.all(np.diff(a.mapped_z) > 0)
    assert np.all(np.diff(a.prior_index) >= 0)


def test_outlier_rows_are_overruled_and_flagged():
    cz = np.arange(0.0, 200.0, 5.0)
    pz = np.arange(0.0, 300.0, 5.0)
    true_z = cz + 50.0
    sim = synthetic_similarity(cz, pz, true_z, seed=1)
    rows = [5, 17, 30]
    for i in rows:
        # A look-alike level 100 mm away scores better than the true one.
        j = int(np.argmin(np.abs(pz - (true_z[i] + 100.0))))
        sim[i, j] = 1.2
    a = align_series(sim, cz, pz)
    assert np.max(np.abs(a.mapped_z - true_z)) <= 2.5
    assert set(np.flatnonzero(a.outlier)) == set(rows)


def test_slices_beyond_the_prior_are_out_of_coverage():
    cz = np.arange(0.0, 300.0, 3.0)
    pz = np.arange(1000.0, 1150.0, 5.0)  # covers current z 60 .. 210
    true_z = cz + 940.0
    a = align_series(synthetic_similarity(cz, pz, true_z), cz, pz)
    expected = covered_truth(true_z, pz)
    assert expected.sum() > 0 and (~expected).sum() > 0
    # Only slices within a few mm of the prior's ends may be judged wrongly.
    wrong = a.in_coverage != expected
    edge_distance = np.minimum(np.abs(true_z - pz[0]), np.abs(true_z - pz[-1]))
    assert np.all(edge_distance[wrong] <= 5.0)
    # Covered slices are mapped right; uncovered ones map beyond the ends, not onto them.
    assert np.max(np.abs(a.mapped_z - true_z)[expected]) <= 2.5
    assert np.all(np.abs(a.mapped_z - true_z)[~expected] <= 5.0)


def test_levels_in_a_gap_of_the_prior_are_out_of_coverage():
    cz = np.arange(0.0, 200.0, 2.0)
    pz = np.concatenate([np.arange(0.0, 80.0, 2.0), np.arange(120.0, 260.0, 2.0)])  # 40 mm hole
    true_z = cz + 30.0
    a = align_series(synthetic_similarity(cz, pz, true_z), cz, pz)
    hole = (true_z > 82.0) & (true_z < 118.0)
    assert not a.in_coverage[hole].any()
    assert a.in_coverage[np.abs(true_z - 100.0) > 25.0].all()


def test_breathing_deformation_is_followed():
    cz = np.arange(0.0, 300.0, 2.0)
    pz = np.arange(-100.0, 400.0, 2.0)
    # 10 mm bell-shaped displacement around z = 150 (the diaphragm), slope < 0.1.
    true_z = cz + 30.0 + 10.0 * np.exp(-0.5 * ((cz - 150.0) / 60.0) ** 2)
    sim = synthetic_similarity(cz, pz, true_z, width_mm=8.0, noise=0.01)
    a = align_series(sim, cz, pz, AlignParams(smoothness=1.0))
    assert np.mean(np.abs(a.mapped_z - true_z)) <= 1.5
    assert np.max(np.abs(a.mapped_z - true_z)) <= 3.5
    # The mapping bends (a constant offset would have no spread at all).
    assert np.ptp(a.mapped_z - cz) >= 4.5
    # Without the pull toward the placement, the bend is followed closely.
    free = align_series(sim, cz, pz, AlignParams(smoothness=1.0, anchor=0.0))
    assert np.mean(np.abs(free.mapped_z - true_z)) <= 1.0


def test_order_of_the_inputs_does_not_matter():
    cz = np.arange(0.0, 120.0, 4.0)
    pz = np.arange(0.0, 200.0, 5.0)
    true_z = cz + 40.0
    sim = synthetic_similarity(cz, pz, true_z, seed=4)
    a = align_series(sim, cz, pz)
    rc, rp = slice(None, None, -1), slice(None, None, -1)
    b = align_series(sim[rc][:, rp], cz[rc], pz[rp])
    np.testing.assert_allclose(b.mapped_z[::-1], a.mapped_z)
    # Indices refer to the callers' (reversed) prior order.
    np.testing.assert_array_equal(pz[rp][b.prior_index][::-1], pz[a.prior_index])


def test_fine_similarity_sharpens_a_blunt_embedding():
    cz = np.arange(0.0, 100.0, 5.0)
    pz = np.arange(0.0, 200.0, 1.0)
    true_z = cz + 43.3
    blunt = synthetic_similarity(cz, pz, true_z, width_mm=40.0, noise=0.03, seed=5)
    sharp = synthetic_similarity(cz, pz, true_z, width_mm=2.0, noise=0.01, seed=6)
    coarse = align_series(blunt, cz, pz)
    fine = align_series(blunt, cz, pz, AlignParams(fine_weight=1.0), fine_similarity=sharp)
    # Off by default: the image evidence is then ignored.
    assert np.array_equal(
        align_series(blunt, cz, pz, fine_similarity=sharp).mapped_z, coarse.mapped_z
    )
    err_coarse = np.mean(np.abs(coarse.mapped_z - true_z))
    err_fine = np.mean(np.abs(fine.mapped_z - true_z))
    assert err_fine <= 0.6
    assert err_fine < err_coarse


def test_map_z_interpolates_and_extends_the_offset():
    cz = np.arange(0.0, 100.0, 5.0)
    pz = np.arange(0.0, 200.0, 5.0)
    a = align_series(synthetic_similarity(cz, pz, cz + 60.0), cz, pz)
    assert a.map_z(52.5) == pytest.approx(112.5, abs=2.0)
    # Between slices: the offsets of the two neighbours, interpolated.
    assert a.map_z(52.5) == pytest.approx(
        52.5 + 0.5 * (a.mapped_z[10] - cz[10] + a.mapped_z[11] - cz[11]), abs=1e-9
    )
    # Beyond the series: the end slice's offset, carried on.
    assert a.map_z(-50.0) == pytest.approx(-50.0 + a.mapped_z[0] - cz[0], abs=1e-9)
    assert a.map_z(-50.0) == pytest.approx(10.0, abs=3.0)


def test_normalise_scores_centres_rows_and_keeps_weak_rows_weak():
    sim = np.array([[0.5, 0.6, 0.9, 0.6], [0.5, 0.55, 0.6, 0.55], [0.1, 0.2, 0.5, 0.2]])
    e = normalise_scores(sim)
    np.testing.assert_allclose(np.median(e, axis=1), 0.0, atol=1e-12)
    assert e[1].max() < e[0].max()


@pytest.mark.parametrize(
    ("sim_shape", "cz", "pz", "message"),
    [
        ((3, 4), [0, 1, 2], [0, 1, 2], "does not match"),
        ((2, 2), [0, 0], [0, 1], "distinct"),
        ((2, 2), [0, np.nan], [0, 1], "finite"),
    ],
)
def test_bad_inputs_are_refused(sim_shape, cz, pz, message):
    with pytest.raises(ValueError, match=message):
        align_series(np.ones(sim_shape), np.asarray(cz, float), np.asarray(pz, float))


def test_single_prior_slice_and_tiny_series_work():
    cz = np.array([0.0, 5.0])
    pz = np.array([100.0])
    a = align_series(np.array([[0.9], [0.8]]), cz, pz, AlignParams())
    assert list(a.prior_index) == [0, 0]


def test_placement_rank_separates_matching_from_unrelated_series():
    cz = np.arange(0.0, 150.0, 3.0)
    pz = np.arange(0.0, 300.0, 3.0)
    a = align_series(synthetic_similarity(cz, pz, cz + 80.0), cz, pz)
    assert a.placement_rank >= 0.9
    assert a.placement_offset_mm == pytest.approx(80.0, abs=3.0)
    unrelated = np.random.default_rng(8).normal(0.7, 0.05, (len(cz), len(pz)))
    b = align_series(unrelated, cz, pz)
    assert b.placement_rank <= 0.75


@pytest.mark.parametrize("seed", range(4))
def test_any_geometry_gives_a_finite_monotonic_mapping(seed):
    """Uneven spacing, big gaps, far-apart frames, tiny series: never a crash."""
    rng = np.random.default_rng(seed)
    for n, m in [(2, 2), (2, 50), (50, 2), (3, 3), (300, 20), (20, 300)]:
        cz = np.unique(rng.uniform(0.0, 300.0, n))
        pz = np.unique(rng.uniform(0.0, 300.0, m)) + rng.choice([0.0, 1e4, -3e4])
        a = align_series(rng.random((len(cz), len(pz))), cz, pz)
        assert np.all(np.isfinite(a.mapped_z))
        assert np.all(np.diff(a.mapped_z) > 0)
        assert 0.0 <= a.overlap_score <= 1.0


def test_a_sustained_slope_is_followed_to_the_ends():
    """Two breathing phases stretch one scan against the other by 10 % over the overlap.

    A Brownian prior on the offset itself straightens such a slope toward 1
    (its cost grows with the slope's length), leaving errors that grow
    toward the ends (3-4 mm here); the smooth-curve pass follows it.
    """
    cz = np.arange(0.0, 200.0, 2.0)
    pz = np.arange(-150.0, 350.0, 2.0)
    true_z = 40.0 + 1.1 * cz
    for seed in range(3):
        sim = synthetic_similarity(cz, pz, true_z, width_mm=8.0, noise=0.02, seed=seed)
        err = np.abs(align_series(sim, cz, pz).mapped_z - true_z)
        assert np.mean(err) <= 1.2
        # The ends too: the first and last 10 slices.
        assert np.max(err[np.r_[:10, -10:0]]) <= 2.5


def test_feature_similarity_joins_the_precision_passes():
    cz = np.arange(0.0, 150.0, 3.0)
    pz = np.arange(0.0, 250.0, 2.0)
    true_z = cz + 50.0
    # The embedding is blunt and biased by 4 mm; the feature maps are sharp and right.
    blunt = synthetic_similarity(cz, pz, true_z + 4.0, width_mm=30.0, noise=0.01, seed=1)
    sharp = synthetic_similarity(cz, pz, true_z, width_mm=4.0, noise=0.01, seed=2)
    alone = align_series(blunt, cz, pz)
    both = align_series(blunt, cz, pz, feature_similarity=sharp)
    ignored = align_series(blunt, cz, pz, AlignParams(feature_weight=0.0), feature_similarity=sharp)
    np.testing.assert_array_equal(ignored.mapped_z, alone.mapped_z)
    assert np.mean(np.abs(both.mapped_z - true_z)) < 0.5 * np.mean(np.abs(alone.mapped_z - true_z))
    # The placement votes on both by default, so it starts from the sharp evidence...
    assert abs(both.placement_offset_mm - 50.0) < abs(alone.placement_offset_mm - 50.0)
    # ...and on the embedding alone when asked to.
    own = align_series(
        blunt, cz, pz, AlignParams(placement_features=False), feature_similarity=sharp
    )
    assert own.placement_offset_mm == alone.placement_offset_mm
    assert own.placement_rank == alone.placement_rank
    with pytest.raises(ValueError, match="feature_similarity"):
        align_series(blunt, cz, pz, feature_similarity=sharp[:, :-1])


@pytest.mark.parametrize("seed", range(3))
def test_a_steep_smooth_curve_keeps_the_mapping_monotonic(seed):
    """Evidence that pulls toward the steepest allowed curve cannot fold the mapping."""
    rng = np.random.default_rng(seed)
    cz = np.sort(rng.uniform(0.0, 300.0, 120))
    pz = np.arange(-200.0, 600.0, 1.0)
    true_z = 0.6 * cz + 40.0  # slope 0.6: steeper than any breathing
    a = align_series(synthetic_similarity(cz, pz, true_z, noise=0.05, seed=seed), cz, pz)
    assert np.all(np.diff(a.mapped_z) > 0)


@pytest.mark.parametrize("seed", range(2))
def test_a_short_true_overlap_beats_a_long_look_alike_one(seed):
    """22 mm of a 150 mm current overlap the prior's end; neighbouring levels look alike.

    Rows landing on merely similar levels (a long, wrong overlap) must not
    outvote the few rows that land on their best matches.
    """
    rng = np.random.default_rng(seed)
    cz = np.arange(0.0, 150.0, 1.0)
    pz = np.arange(0.0, 160.0, 4.0)
    true_z = cz - 128.0
    d = pz[None, :] - true_z[:, None]
    sim = 0.6 + 0.15 * np.exp(-0.5 * (d / 60.0) ** 2) + 0.15 * np.exp(-0.5 * (d / 4.0) ** 2)
    sim += rng.normal(0.0, 0.01, sim.shape)
    a = align_series(sim, cz, pz)
    covered = true_z >= pz[0] - 2.0
    assert np.max(np.abs(a.mapped_z - true_z)[covered]) <= 2.0
    assert a.overlap_score >= 0.4
