"""Sketch search: weighted scores, exact vs. graph search, one hit per patient and level."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from sketch_helpers import TOY_DIM

from app.core.volume import SeriesInfo
from app.io.errors import Cancelled
from app.ml.sketch.search import (
    SketchHit,
    SketchIndex,
    SliceRef,
    build_sketch_index,
    dedupe_hits,
    patient_key,
    slice_refs,
)

DA, DB = 12, 8


def _unit(rng, n, d):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _ref(patient, series, k, z, n=100):
    return SliceRef(patient, f"name {patient}", "20240101", series, "CT", "/x", k, n, z)


def _random_index(n, seed=0, exact_below=5000):
    rng = np.random.default_rng(seed)
    index = SketchIndex(DA, DB, exact_below=exact_below)
    refs = [_ref(f"p{i}", f"s{i}", 0, 0.0) for i in range(n)]  # every slice its own patient
    index.add(refs, _unit(rng, n, DA), _unit(rng, n, DB))
    return index, rng


@pytest.mark.parametrize("weight", [0.0, 0.3, 1.0])
def test_exact_query_is_the_weighted_score(weight):
    index, rng = _random_index(300)
    a_q, b_q = _unit(rng, 1, DA)[0], _unit(rng, 1, DB)[0]
    hits = index.query(a_q, b_q, weight, k=15, one_per_patient_level=False)
    expected = (1 - weight) * (index.anatomy @ a_q) + weight * (index.abnormality @ b_q)
    assert [h.row for h in hits] == list(np.argsort(-expected, kind="stable")[:15])
    for h in hits:
        assert h.score == pytest.approx(
            (1 - weight) * h.anatomy_score + weight * h.abnormality_score, abs=1e-5
        )
        assert h.anatomy_score == pytest.approx(float(index.anatomy[h.row] @ a_q), abs=1e-5)
        assert h.ref is index.refs[h.row]


def test_ranking_covers_everything_best_first():
    index, rng = _random_index(50)
    order, scores = index.ranking(_unit(rng, 1, DA)[0], _unit(rng, 1, DB)[0], 0.5)
    assert sorted(order.tolist()) == list(range(50))
    assert np.all(np.diff(scores) <= 1e-7)


def test_graph_search_agrees_with_exact_search():
    index, rng = _random_index(3000, exact_below=0)
    agree = []
    for _ in range(20):
        a_q, b_q = _unit(rng, 1, DA)[0], _unit(rng, 1, DB)[0]
        w = float(rng.uniform())
        graph = {h.row for h in index.query(a_q, b_q, w, k=10, one_per_patient_level=False)}
        exact = {
            h.row for h in index.query(a_q, b_q, w, k=10, one_per_patient_level=False, exact=True)
        }
        agree.append(len(graph & exact) / 10)
    assert np.mean(agree) >= 0.95


def test_graph_grows_with_later_additions():
    index, rng = _random_index(200, exact_below=0)
    index.build_graph()
    a, b = _unit(rng, 1, DA), _unit(rng, 1, DB)
    index.add([_ref("new", "snew", 0, 0.0)], a, b)
    hits = index.query(a[0], b[0], 0.5, k=1, one_per_patient_level=False)
    assert hits[0].ref.patient_key == "new"


def _hit(ref, score, row):
    return SketchHit(ref, score, score, score, row)


def test_dedupe_keeps_one_hit_per_patient_and_level():
    refs = [
        _ref("A", "A1", 10, 50.0),
        _ref("A", "A1", 11, 55.0),  # same series, 5 mm away: same level
        _ref("B", "B1", 10, 50.0),  # another patient: kept
        _ref("A", "A1", 30, 150.0),  # same series, 100 mm away: another level
        _ref("A", "A2", 10, 900.0),  # another study of A, same anatomy: same level
        _ref("A", "A3", 50, -400.0),  # another study of A, other anatomy
    ]
    anat = np.eye(6, dtype=np.float32)
    anat[4] = anat[0]
    hits = [_hit(r, 1.0 - 0.1 * i, i) for i, r in enumerate(refs)]
    kept = dedupe_hits(hits, anat)
    assert [h.row for h in kept] == [0, 2, 3, 5]
    assert [h.row for h in dedupe_hits(hits)] == [0, 2, 3, 4, 5]  # no anatomy: series test only
    assert [h.row for h in dedupe_hits(hits, anat, k=2)] == [0, 2]


def test_query_fills_k_distinct_hits_past_a_crowded_top():
    """One patient's 300 near-identical slices must not hide everyone else."""
    rng = np.random.default_rng(3)
    index = SketchIndex(DA, DB)
    target_a, target_b = _unit(rng, 1, DA), _unit(rng, 1, DB)
    crowd = [_ref("crowd", "c", k, float(k) * 0.5) for k in range(300)]
    index.add(crowd, np.repeat(target_a, 300, 0), np.repeat(target_b, 300, 0))
    others = [_ref(f"o{i}", f"o{i}", 0, 0.0) for i in range(30)]
    index.add(others, _unit(rng, 30, DA), _unit(rng, 30, DB))
    hits = index.query(target_a[0], target_b[0], 0.5, k=10)
    assert len(hits) == 10
    assert hits[0].ref.patient_key == "crowd"
    assert len({h.ref.patient_key for h in hits}) == 10
    raw = index.query(target_a[0], target_b[0], 0.5, k=10, one_per_patient_level=False)
    assert {h.ref.patient_key for h in raw} == {"crowd"}


def test_bad_queries_and_additions_are_value_errors():
    index, rng = _random_index(10)
    with pytest.raises(ValueError, match="weight"):
        index.query(_unit(rng, 1, DA)[0], _unit(rng, 1, DB)[0], 1.5)
    with pytest.raises(ValueError, match=r"\(n, 12\)"):
        index.query(_unit(rng, 1, DB)[0], _unit(rng, 1, DB)[0], 0.5)
    with pytest.raises(ValueError, match="one ref"):
        index.add([_ref("x", "x", 0, 0.0)], _unit(rng, 2, DA), _unit(rng, 2, DB))
    with pytest.raises(ValueError, match="NaN"):
        index.add([_ref("x", "x", 0, 0.0)], np.full((1, DA), np.nan), _unit(rng, 1, DB))
    assert SketchIndex(DA, DB).query(_unit(rng, 1, DA)[0], _unit(rng, 1, DB)[0], 0.5) == []


def test_patient_key_is_hashed_and_anonymous_series_stay_apart():
    info = SeriesInfo(patient_id="12345", patient_name="DOE^JANE")
    key = patient_key(info, "series-1")
    assert "12345" not in key and "DOE" not in key
    assert key == patient_key(SeriesInfo(patient_id="12345"), "series-2")
    anon = SeriesInfo()
    assert patient_key(anon, "a.nii") != patient_key(anon, "b.nii")


def test_slice_ref_round_trip(ct_phantom):
    vol = ct_phantom(n_slices=4, spacing_z=2.5)
    refs = slice_refs(vol, "key-1")
    assert [r.slice_index for r in refs] == [0, 1, 2, 3]
    assert refs[2].z_mm == pytest.approx(float(vol.slice_z[2]))
    assert all(r.n_slices == 4 and r.series_key == "key-1" for r in refs)
    assert SliceRef.from_dict(refs[1].to_dict()) == refs[1]


def test_build_sketch_index_from_loaded_series(toy_model, toy_sketch_models, ct_phantom):
    vols = [ct_phantom(n_slices=12, seed=1), ct_phantom(n_slices=8, seed=2, z0=40.0)]
    anat = [toy_model.embed_volume(v) for v in vols]
    seen = []
    index = build_sketch_index(
        vols, anat, toy_sketch_models, progress=lambda d, n: seen.append((d, n))
    )
    assert len(index) == 20
    assert index.abnormality_dim == TOY_DIM
    assert seen[-1] == (20, 20)
    assert np.allclose(index.anatomy[12:], anat[1], atol=1e-6)
    # Querying with slice 5's own codes finds slice 5 first.
    hits = index.query(anat[0][5], index.abnormality[5], 0.5, k=3)
    assert hits[0].row == 5


def test_build_sketch_index_can_be_cancelled(toy_model, toy_sketch_models, ct_phantom):
    vols = [ct_phantom(n_slices=40)]
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        build_sketch_index(
            vols, [toy_model.embed_volume(vols[0])], toy_sketch_models, cancel=cancel
        )
    with pytest.raises(ValueError, match="one row per slice"):
        build_sketch_index(vols, [np.zeros((3, 5))], toy_sketch_models)


def test_similar_slices_leaves_the_own_patient_out():
    from app.ml.sketch.search import SketchIndex, SliceRef, similar_slices

    rng = np.random.default_rng(0)
    anat = rng.normal(size=(30, 8)).astype(np.float32)
    refs = [SliceRef(f"p{i % 3}", "", "", f"s{i % 3}", "", "", i, 30, 20.0 * i) for i in range(30)]
    index = SketchIndex(8, 4)
    index.add(refs, anat, rng.normal(size=(30, 4)))
    hits = similar_slices(index, anat[0], "p0", k=5)
    assert len(hits) == 5 and all(h.ref.patient_key != "p0" for h in hits)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert similar_slices(index, anat[0], None, k=1)[0].row == 0
