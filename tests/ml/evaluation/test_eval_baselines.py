"""Baselines and the evaluation's scoring, on phantoms simulated by the real simulator."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from engine_helpers import phantom_volume

from app.cli import main
from app.ml.anatomy.match import Matcher
from app.ml.evaluation.baselines import coverage_of, match_equal_z, match_ncc, match_rigid
from app.ml.evaluation.slices import EvalReport, evaluate_pair, format_report, summarise
from app.sim.followup import SIM_PRESETS, simulate_followup


@pytest.fixture(scope="module")
def sim_pair():
    """A current and a prior simulated from one phantom (rotation, breathing, noise...)."""
    source = phantom_volume(n_slices=70, spacing_z=4.0, matrix=96, pixel_mm=4.0, seed=3)
    params = replace(SIM_PRESETS["standard"], matrix_sizes=(96,), lesion_probability=0.0)
    rng = np.random.default_rng(0)
    return simulate_followup(source, params, rng), simulate_followup(source, params, rng)


def shifted(volume, dz: float):
    """The same voxels placed ``dz`` mm further along z (another table position)."""
    return volume.with_voxels(
        volume.voxels, volume.geometry, volume.slice_positions + np.array([0.0, 0.0, dz])
    )


def test_equal_z_is_exact_within_one_frame_and_lost_across_frames():
    volume = phantom_volume(n_slices=20)
    same = match_equal_z(volume, volume)
    np.testing.assert_array_equal(same.prior_index, np.arange(20))
    assert same.in_coverage.all()
    moved = match_equal_z(volume, shifted(volume, 300.0))
    assert not moved.in_coverage.any()


def test_coverage_of_includes_half_a_slice_at_each_end():
    pz = np.array([0.0, 2.0, 4.0])
    np.testing.assert_array_equal(
        coverage_of(pz, np.array([-1.1, -0.9, 4.9, 5.1])), [False, True, True, False]
    )


def test_ncc_finds_identical_slices_whatever_the_frame():
    volume = phantom_volume(n_slices=30)
    res = match_ncc(volume, shifted(volume, -120.0))
    np.testing.assert_array_equal(res.prior_index, np.arange(30))


def test_rigid_registration_recovers_a_table_shift():
    current = phantom_volume(n_slices=40, seed=1)
    prior = shifted(phantom_volume(n_slices=40, seed=2), 37.0)
    res = match_rigid(current, prior)
    # Same anatomy, prior moved by +37 mm: each level maps 37 mm up.
    assert np.mean(np.abs(res.mapped_z - (current.slice_z + 37.0))) <= 2.0
    assert res.seconds > 0


@pytest.mark.slow  # rigid registration of the pair: ~5 s on 2 cores
def test_evaluate_pair_scores_every_method(sim_pair, toy_model):
    current, prior = sim_pair
    matcher = Matcher(toy_model, cache=False)
    res = evaluate_pair(current, prior, matcher, preset="standard", source="phantom")
    assert set(res.errors) == {"engine", "exact", "refined", "equal_z", "ncc", "rigid", "oracle"}
    n = res.n_covered
    assert n > 10 and all(len(e) == n for e in res.errors.values())
    spacing = res.prior_spacing_mm
    assert max(res.errors["oracle"]) <= spacing / 2 + 1e-3  # errors are kept to 1 um
    assert res.coverage_correct["oracle"] == res.n_current
    engine = np.mean(res.errors["engine"])
    assert engine <= 4.0
    # Different frames of reference: coordinates alone are far off.
    assert np.mean(res.errors["equal_z"]) > 5 * engine

    summary = summarise([res], "engine")
    assert summary.mean == pytest.approx(engine)
    assert summary.worst_pair_p95 == pytest.approx(res.p95("engine"))
    assert 0 <= summary.within5 <= summary.within10 <= 100
    report = EvalReport(
        "toy",
        0,
        {"standard": {m: summarise([res], m) for m in res.errors}},
        [res],
    )
    text = format_report(report)
    for word in (
        "engine",
        "exact",
        "refined",
        "rigid",
        "ncc",
        "oracle",
        "goal mean |dz| <= 1.0 mm",
    ):
        assert word in text
    assert report.to_dict()["pairs"][0]["n_covered"] == n


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--pairs", "0"], "at least 1"), (["--methods", "engine,magic"], "unknown method")],
)
def test_eval_command_rejects_bad_arguments(args, message, capsys):
    assert main(["eval", *args]) == 2
    assert message in capsys.readouterr().err


def test_eval_command_with_missing_model(tmp_path, capsys):
    assert main(["eval", "--model", str(tmp_path / "none.onnx")]) == 3
    assert "not found" in capsys.readouterr().err


def test_cached_baseline_answers_are_reused(sim_pair, toy_model):
    current, prior = sim_pair
    matcher = Matcher(toy_model, cache=False)
    cache: dict = {}
    first = evaluate_pair(current, prior, matcher, ["equal_z", "ncc"], baseline_cache=cache)
    assert set(cache) == {"equal_z", "ncc"}
    assert len(cache["ncc"]["prior_index"]) == current.volume.n_slices
    # A doctored cache entry is what the second run reports: nothing was recomputed.
    cache["ncc"]["seconds"] = 123.0
    second = evaluate_pair(current, prior, matcher, ["equal_z", "ncc"], baseline_cache=cache)
    assert second.seconds["ncc"] == 123.0
    assert second.errors == first.errors
