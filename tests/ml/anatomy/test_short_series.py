"""Series under 40 mm: the matched slices must look alike, or the pair is refused.

The synthetic tests build alignments by hand (no model needed); the real-CT
tests (skipped without ``../shared``) cut 36 mm slabs of validation and
training bodies, never test ones, and match them with the shipped model.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from app.core.volume import Volume
from app.ml.anatomy.align import Alignment
from app.ml.anatomy.match import (
    MIN_SHORT_SIMILARITY,
    SHORT_SERIES_MM,
    Matcher,
    MatchError,
    series_extent_mm,
    short_series_doubt,
)
from app.ml.evaluation.short_series import slab
from app.paths import shared_data_dir


def alignment(current_mm: float, prior_mm: float, similarity: float, spacing: float = 2.0):
    cz = np.arange(0.0, current_mm - spacing / 2, spacing)
    pz = np.arange(-50.0, -50.0 + prior_mm - spacing / 2, spacing)
    n = len(cz)
    return Alignment(
        current_z=cz,
        mapped_z=cz,
        prior_index=np.zeros(n, dtype=np.int64),
        score=np.full(n, similarity),
        in_coverage=np.ones(n, dtype=bool),
        prior_z=pz,
        outlier=np.zeros(n, dtype=bool),
        placement_rank=0.75,
        best_z=cz.copy(),
    )


def test_extent_counts_one_slice_spacing_beyond_the_end_slices():
    assert series_extent_mm(np.arange(0.0, 36.0, 2.0)) == pytest.approx(36.0)
    assert series_extent_mm(np.array([5.0])) == 0.0
    assert series_extent_mm(np.array([10.0, 0.0, 5.0])) == pytest.approx(15.0)


@pytest.mark.parametrize(("current_mm", "prior_mm"), [(36.0, 300.0), (300.0, 36.0)])
def test_a_short_series_whose_slices_do_not_look_alike_is_doubted(current_mm, prior_mm):
    low = alignment(current_mm, prior_mm, MIN_SHORT_SIMILARITY - 0.2)
    doubt = short_series_doubt(low)
    role = "CURRENT" if current_mm < prior_mm else "PRIOR"
    assert doubt is not None and role in doubt and "36 mm" in doubt
    assert short_series_doubt(alignment(current_mm, prior_mm, MIN_SHORT_SIMILARITY + 0.1)) is None


def test_long_series_are_left_to_the_overlap_score():
    assert short_series_doubt(alignment(SHORT_SERIES_MM + 10, 300.0, 0.0)) is None


def test_no_covered_slice_counts_as_no_likeness():
    a = alignment(30.0, 300.0, 0.9)
    a = replace(a, in_coverage=np.zeros_like(a.in_coverage))
    assert short_series_doubt(a) is not None


def test_overlap_score_is_zero_for_a_doubted_pair(toy_model):
    matcher = Matcher(toy_model, cache=False)
    good = alignment(36.0, 300.0, 0.9)
    assert good.overlap_score > 0
    assert matcher.overlap_score(None, good) == pytest.approx(good.overlap_score)
    assert matcher.overlap_score(None, alignment(36.0, 300.0, 0.1)) == 0.0


# --------------------------------------------------------------------------- real CT

needs_ct = pytest.mark.skipif(
    shared_data_dir() is None, reason="needs the real CT volumes of ../shared/data/ct"
)


@pytest.fixture(scope="module")
def shipped():
    from app.ml.runtime.model import EmbeddingModel

    return Matcher(EmbeddingModel.load(device="cpu"), cache=False)


@needs_ct
@pytest.mark.slow
@pytest.mark.parametrize(
    ("current", "where", "prior"),
    [
        ("head", 0.6, "abdomen-pancreas"),  # head vs abdomen
        ("abdomen-pancreas", 0.1, "openkbp-007"),  # pelvis vs neck
        ("chest-lung2", 0.5, "head"),  # mid chest vs head
    ],
)
def test_short_slab_of_another_region_is_refused(shipped, current, where, prior):
    from app.sim.sources import load_source

    volume = load_source(current)
    short = slab(volume, where, 36.0)
    assert series_extent_mm(short.slice_z) < SHORT_SERIES_MM
    other = load_source(prior)
    for a, b in ((short, other), (other, short)):
        with pytest.raises(MatchError, match="too short to check"):
            shipped.match(a, b)


def _same_body_slab_pair(name: str) -> tuple[Volume, Volume, np.ndarray]:
    """A 36 mm slab of ``name`` (source slices), a simulated follow-up and the slab's true levels."""
    from app.sim.followup import SIM_PRESETS, simulate_followup
    from app.sim.sources import load_source

    source = load_source(name)
    params = replace(SIM_PRESETS["standard"], coverage=(1.0, 1.0), matrix_sizes=(384,))
    prior = simulate_followup(source, params, np.random.default_rng(3))
    current = slab(source, 0.5, 36.0)
    # The slab's slices are source slices: their level is their own slice_z,
    # found in the prior through the simulator's truth (its source_z).
    order = np.argsort(prior.source_z)
    truth = np.interp(current.slice_z, prior.source_z[order], prior.volume.slice_z[order])
    return current, prior.volume, truth


@needs_ct
@pytest.mark.slow
def test_short_mid_brain_slab_is_matched_or_refused_never_misplaced(shipped):
    # Nine 4 mm slices of mid-brain look alike from level to level. The
    # shipped model (trained on the training role, which holds no head-only
    # scan) places this slab about 22 mm off with a placement rank of 0.63,
    # and the overlap check then refuses it (score 0.00); the previous model,
    # trained on this very body, matched it within 3 mm. Either is acceptable
    # for a reader: a refusal with its reason, or a right match. A wrong
    # match that is shown is not.
    current, prior, truth = _same_body_slab_pair("head")
    try:
        result = shipped.match(current, prior)
    except MatchError as exc:
        assert "does not appear to show the current's anatomy" in str(exc)
        return
    err = np.abs(prior.slice_z[result.alignment.prior_index] - truth)
    assert np.median(err) <= 6.0


@needs_ct
@pytest.mark.slow
@pytest.mark.parametrize("name", ["chest-lung2", "abdomen-pancreas"])
def test_short_slab_of_the_same_body_is_matched(shipped, name):
    current, prior, truth = _same_body_slab_pair(name)
    result = shipped.match(current, prior)
    err = np.abs(prior.slice_z[result.alignment.prior_index] - truth)
    assert np.median(err) <= 6.0
