"""The validation grid: every setting scored on a pair, the refinement check offline."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from engine_helpers import phantom_volume

from app.ml.anatomy.align import AlignParams
from app.ml.anatomy.match import Matcher
from app.ml.evaluation.validation_tuning import (
    ALIGN_GRID,
    REFINE_GRID,
    align_variants,
    score_pair,
)
from app.sim.followup import SIM_PRESETS, simulate_followup


@pytest.mark.slow  # one rigid registration
def test_score_pair_covers_every_grid_setting(toy_model):
    source = phantom_volume(n_slices=60, spacing_z=4.0, matrix=96, pixel_mm=4.0, seed=5)
    params = replace(SIM_PRESETS["standard"], matrix_sizes=(96,), lesion_probability=0.0)
    rng = np.random.default_rng(1)
    current, prior = simulate_followup(source, params, rng), simulate_followup(source, params, rng)
    matcher = Matcher(toy_model, cache=False)
    before = matcher.params
    scores = score_pair(matcher, current, prior, "phantom", "standard", 0)
    assert matcher.params is before  # the grid leaves the matcher as it was
    n_align = len(align_variants())
    n_refine = np.prod([len(v) for v in REFINE_GRID.values()])
    assert len(scores.align) == len(scores.coverage) == n_align
    assert len(scores.refine) == n_refine
    assert all(np.isfinite(v) and v >= 0 for v in scores.align.values())
    assert all(0 <= v <= 100 for v in scores.coverage.values())
    # The default alignment's refinement stays near what the engine does on the pair.
    assert min(scores.refine.values()) <= min(scores.align.values()) + 2.0
    assert 0.0 <= scores.overlap <= 1.0
    assert "defaults" in scores.align


def test_variants_change_one_field_at_a_time_and_always_try_the_default():
    base = AlignParams()
    variants = align_variants(base)
    assert variants[0] == {}
    assert all(len(v) == 1 for v in variants[1:])
    for name, values in ALIGN_GRID.items():
        assert getattr(base, name) in values  # the grid brackets the default
        tried = sorted(v[name] for v in variants if name in v)
        assert tried == sorted(x for x in values if x != getattr(base, name))


def test_scoring_without_the_registration(toy_model):
    source = phantom_volume(n_slices=40, spacing_z=4.0, matrix=96, pixel_mm=4.0, seed=6)
    params = replace(SIM_PRESETS["standard"], matrix_sizes=(96,), lesion_probability=0.0)
    rng = np.random.default_rng(2)
    current, prior = simulate_followup(source, params, rng), simulate_followup(source, params, rng)
    scores = score_pair(
        Matcher(toy_model, cache=False), current, prior, "p", "hard", 1, refine=False
    )
    assert scores.refine == {}
    assert len(scores.align) == len(align_variants())
