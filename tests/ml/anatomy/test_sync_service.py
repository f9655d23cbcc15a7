"""The viewer's Qt-free sync engine: indexes, alignments and the slice mapper (toy model)."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.state import Channel, SyncGroup, ViewportState
from app.ml.anatomy.index import IndexCache
from app.ml.anatomy.match import MatchError
from app.ml.anatomy.sync_service import AnatomicalSliceMapper, SyncEngine, distinct_candidates


@pytest.fixture
def engine(toy_model_path, tmp_path):
    return SyncEngine(toy_model_path, cache=IndexCache(tmp_path / "index"), device="cpu")


@pytest.fixture
def pair(ct_phantom):
    # The prior shows levels 60..235 mm, the current 0..295 mm: the current's
    # lowest and highest levels are not in the prior.
    current = ct_phantom(n_slices=60, spacing_z=5.0, z0=-300.0, level0=0.0, seed=1)
    prior = ct_phantom(n_slices=36, spacing_z=5.0, z0=500.0, level0=60.0, seed=2)
    return current, prior


def true_prior_z(current_z: float) -> float:
    # level = current_z + 300 = prior_z - 500 + 60
    return current_z + 300.0 + 440.0


def test_distinct_candidates_drop_neighbours_of_better_hits():
    z = np.arange(20) * 2.0
    hits = [(5, 0.9), (6, 0.89), (5, 0.9), (12, 0.8), (4, 0.7), (19, 0.6), (0, 0.5)]
    assert distinct_candidates(hits, z, 3, separation_mm=5.0) == [(5, 0.9), (12, 0.8), (19, 0.6)]
    assert distinct_candidates(hits, z, 10, separation_mm=5.0)[-1] == (0, 0.5)


def test_build_index_reports_cache_use(engine, pair, toy_model_path, tmp_path):
    current, _ = pair
    calls: list[tuple[int, int]] = []
    first = engine.build_index(current, lambda d, t: calls.append((d, t)))
    assert first.embedded and calls[-1] == (60, 60)
    again = SyncEngine(toy_model_path, cache=IndexCache(tmp_path / "index"), device="cpu")
    second = again.build_index(current)
    assert not second.embedded
    np.testing.assert_allclose(second.index.embeddings, first.index.embeddings)


def test_unmatchable_series_are_refused(engine, ct_phantom):
    with pytest.raises(MatchError, match="not CT"):
        engine.build_index(ct_phantom(n_slices=10, modality="MR"))


def test_map_slice_uses_the_alignment_and_reports_coverage(engine, pair):
    current, prior = pair
    assert engine.map_slice(current, 30, prior) is None  # no index yet
    for volume in pair:
        engine.add_index(volume, engine.build_index(volume).index)
    knn_k, knn = engine.map_slice(current, 30, prior)
    assert not knn.aligned and knn.in_coverage
    engine.add_alignment(
        current,
        prior,
        engine.compute_alignment(engine.index_of(current), engine.index_of(prior)),
    )
    k, match = engine.map_slice(current, 30, prior)
    assert match.aligned and match.in_coverage and match.source_index == 30
    assert abs(prior.slice_z[k] - true_prior_z(current.slice_z[30])) <= 5.0
    assert match.candidates[0] == (k, pytest.approx(match.score))
    assert len({j for j, _ in match.candidates}) == len(match.candidates)
    # Level 10 mm (current slice 2) lies 50 mm below the prior's first level.
    k_low, low = engine.map_slice(current, 2, prior)
    assert not low.in_coverage and k_low == 0
    assert low.mapped_z is not None and low.mapped_z < prior.slice_z[0]


def test_refined_alignment_replaces_the_engine_answer_silently(engine, pair):
    current, prior = pair
    for volume in pair:
        engine.add_index(volume, engine.build_index(volume).index)
    first = engine.compute_alignment(engine.index_of(current), engine.index_of(prior))
    engine.add_alignment(current, prior, first)
    refined = engine.refine_alignment(current, prior, first)
    assert refined.refined and refined.overlap == first.overlap
    covered = first.alignment.in_coverage
    truth = np.array([true_prior_z(z) for z in current.slice_z])
    before = np.abs(first.alignment.mapped_z - truth)[covered].mean()
    after = np.abs(refined.alignment.mapped_z - truth)[covered].mean()
    assert after <= max(before, 1.0)
    engine.add_alignment(current, prior, refined)
    assert engine.alignment_of(current, prior) is refined
    k, match = engine.map_slice(current, 30, prior)
    assert match.mapped_z == pytest.approx(float(refined.alignment.mapped_z[30]))
    # A pair that does not overlap is handed back untouched.
    apart = type(first)(first.alignment, 0.0)
    assert engine.refine_alignment(current, prior, apart) is apart


def test_slice_embedding_of_an_unindexed_series_runs_the_model_once(engine, pair):
    current, _ = pair
    vec = engine.slice_embedding(current, 12)
    index = engine.build_index(current).index
    np.testing.assert_allclose(vec, index.embeddings[12], atol=1e-5)


def test_mapper_drives_a_sync_group_and_leaves_unindexed_targets(engine, pair, ct_phantom):
    current, prior = pair
    other = ct_phantom(n_slices=20, seed=3)
    for volume in pair:
        engine.add_index(volume, engine.build_index(volume).index)
    states = [ViewportState(v) for v in (current, prior, other)]
    group = SyncGroup()
    for s in states:
        group.add(s)
    group.slice_mapper = AnatomicalSliceMapper(engine)
    before = states[2].slice_index
    group.set_enabled(Channel.SLICE, True)
    states[0].set_slice(31)
    assert states[1].match is not None
    assert states[2].slice_index == before and states[2].match is None
    assert group.slice_mapper.last_source is states[0]
    engine.remove(prior)
    assert engine.index_of(prior) is None and engine.alignment_of(current, prior) is None
