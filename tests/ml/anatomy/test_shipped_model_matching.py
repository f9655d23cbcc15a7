"""The shipped model on real CT: a simulated follow-up pair, and a pair that does not overlap.

Real CT exists here only in the development/CI data folder (``../shared``);
without it these tests are skipped, with that reason. The engine's logic is
covered without it by the phantom tests.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from app.ml.anatomy.match import Matcher, MatchError
from app.ml.runtime.model import EmbeddingModel, default_model_path
from app.paths import shared_data_dir
from app.sim.followup import SIM_PRESETS, simulate_followup, true_correspondence
from app.sim.sources import load_source

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shared_data_dir() is None, reason="needs the real CT volumes of ../shared/data/ct"
    ),
]


@pytest.fixture(scope="module")
def matcher():
    if not default_model_path().is_file():
        pytest.fail(f"the shipped model {default_model_path()} is missing")
    return Matcher(EmbeddingModel.load(), cache=False)


def test_simulated_follow_up_of_a_held_out_chest(matcher):
    source = load_source("chest-lung2")
    params = replace(SIM_PRESETS["standard"], matrix_sizes=(256,))
    rng = np.random.default_rng(7)
    current = simulate_followup(source, params, rng)
    prior = simulate_followup(source, params, rng)
    result = matcher.match(current.volume, prior.volume)
    true_z, covered = true_correspondence(current, prior)
    a = result.alignment
    err = np.abs(prior.volume.slice_z[a.prior_index] - true_z)[covered]
    assert np.mean(err) <= 3.0
    assert np.percentile(err, 95) <= 8.0
    assert np.mean(a.in_coverage == covered) >= 0.9
    assert result.overlap >= 0.5


def test_head_and_chest_do_not_overlap(matcher):
    with pytest.raises(MatchError, match="does not appear to show"):
        matcher.match(load_source("head"), load_source("chest-lung2"))
