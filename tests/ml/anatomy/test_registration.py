"""Stage two of the sync: rigid registration started from (and checked against) the engine."""

from __future__ import annotations

import numpy as np
import pytest
from engine_helpers import phantom_volume

from app.ml.anatomy.align import Alignment
from app.ml.anatomy.registration import RefineParams, refine_alignment, slice_centres
from app.ml.evaluation.baselines import nearest_slices


def shifted(volume, dz: float):
    return volume.with_voxels(
        volume.voxels, volume.geometry, volume.slice_positions + np.array([0.0, 0.0, dz])
    )


def engine_like(current, prior, error_mm: float, covered=None) -> Alignment:
    """An alignment that maps each slice ``error_mm`` beyond the true +37 mm."""
    mapped = current.slice_z + 37.0 + error_mm
    n = current.n_slices
    in_cov = np.ones(n, dtype=bool) if covered is None else covered
    return Alignment(
        current_z=current.slice_z.copy(),
        mapped_z=mapped,
        prior_index=nearest_slices(prior.slice_z, mapped),
        score=np.ones(n),
        in_coverage=in_cov,
        prior_z=prior.slice_z.copy(),
        outlier=np.zeros(n, dtype=bool),
    )


@pytest.fixture(scope="module")
def pair():
    current = phantom_volume(n_slices=40, seed=1)
    prior = shifted(phantom_volume(n_slices=40, seed=2), 37.0)
    return current, prior


def test_refinement_sharpens_an_answer_a_few_mm_off(pair):
    current, prior = pair
    out = refine_alignment(current, prior, engine_like(current, prior, 3.0))
    assert out.used and out.refined.all()
    err = np.abs(out.alignment.mapped_z - (current.slice_z + 37.0))
    assert np.mean(err) <= 1.0
    assert 2.0 <= out.median_shift_mm <= 4.0
    # The coverage decision stays the engine's; indices follow the refined levels.
    np.testing.assert_array_equal(
        out.alignment.prior_index, nearest_slices(prior.slice_z, out.alignment.mapped_z)
    )
    assert out.seconds > 0


def test_a_registration_that_ends_far_from_the_engine_is_discarded(pair):
    current, prior = pair
    start = engine_like(current, prior, 20.0)
    # On the phantom the optimiser finds the truth, 20 mm from the engine's answer:
    # beyond accept_mm it is not used, the engine's answer stands.
    out = refine_alignment(current, prior, start, RefineParams(accept_mm=5.0))
    assert not out.used and out.alignment is start and not out.refined.any()
    assert out.median_shift_mm == pytest.approx(20.0, abs=1.0)
    assert "mm from the engine" in out.reason
    loose = refine_alignment(current, prior, start, RefineParams(accept_mm=50.0, trust_mm=50.0))
    assert loose.used
    assert np.mean(np.abs(loose.alignment.mapped_z - (current.slice_z + 37.0))) <= 1.0


def test_only_trusted_covered_slices_change(pair):
    current, prior = pair
    covered = np.ones(current.n_slices, dtype=bool)
    covered[:5] = False
    start = engine_like(current, prior, 2.0, covered)
    out = refine_alignment(current, prior, start, RefineParams(trust_mm=3.0))
    assert out.used
    assert not out.refined[:5].any()
    np.testing.assert_array_equal(out.alignment.mapped_z[:5], start.mapped_z[:5])
    np.testing.assert_array_equal(out.alignment.in_coverage, covered)


def test_nothing_to_refine_and_foreign_alignments(pair):
    current, prior = pair
    none = np.zeros(current.n_slices, dtype=bool)
    out = refine_alignment(current, prior, engine_like(current, prior, 0.0, none))
    assert not out.used and "fewer than two" in out.reason
    with pytest.raises(ValueError, match="not computed on these two series"):
        refine_alignment(current, phantom_volume(n_slices=7), out.alignment)


def test_slice_centres_lie_on_the_slices(pair):
    current, _ = pair
    centres = slice_centres(current)
    np.testing.assert_allclose(centres @ current.geometry.normal, current.slice_z)
