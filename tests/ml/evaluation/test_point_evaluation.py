"""The point evaluation scores every method on a simulated pair (toy model, small phantom)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from engine_helpers import phantom_volume

from app.cli import main
from app.ml.anatomy.match import Matcher
from app.ml.evaluation.points import (
    POINT_METHODS,
    PointEvalReport,
    evaluate_point_pair,
    format_point_report,
    summarise_points,
)
from app.sim.followup import SIM_PRESETS, identity_scan, simulate_followup

SMALL = replace(
    SIM_PRESETS["standard"], matrix_sizes=(64,), coverage=(0.7, 0.8), lesion_probability=0.0
)


@pytest.fixture(scope="module")
def result(toy_model):
    source = phantom_volume(n_slices=50, spacing_z=5.0, matrix=64, pixel_mm=6.0, seed=4)
    current = identity_scan(source)
    prior = simulate_followup(source, SMALL, np.random.default_rng(3))
    matcher = Matcher(toy_model, cache=False)
    return evaluate_point_pair(
        current, prior, matcher, POINT_METHODS, n_points=40, labels=("standard", "ph", 0, 0)
    )


def test_every_method_is_scored_on_the_covered_points(result):
    assert result.n_points == 40 and 10 <= result.n_covered <= 40
    for method in POINT_METHODS:
        assert len(result.errors[method]) == result.n_covered
        assert method in result.seconds
    assert len(result.point_ms) == result.n_points
    same = np.median(result.errors["same_coordinate"])
    assert np.median(result.errors["engine"]) < same / 3
    assert np.isfinite(result.errors["rigid"]).all() and np.isfinite(result.errors["bspline"]).all()
    assert 0 <= result.coverage_correct <= result.n_points


def test_summary_and_report(result):
    s = summarise_points([result], "engine")
    assert s.n == result.n_covered and 0 <= s.within5 <= s.within10 <= 100
    summaries = {"standard": {m: summarise_points([result], m) for m in POINT_METHODS}}
    report = PointEvalReport("toy", "test", [0], summaries, {"standard": 1.0},
                             {"standard": 2.0}, {"standard": 90.0}, [result])  # fmt: skip
    text = format_point_report(report)
    assert "[standard]" in text and "goals:" in text and "bspline" in text
    doc = report.to_dict()
    assert doc["role"] == "test" and len(doc["pairs"]) == 1


def test_bad_arguments(capsys, toy_model_path, tmp_path):
    assert main(["eval-points", "--pairs", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err
    assert main(["eval-points", "--methods", "engine,magic"]) == 2
    assert "magic" in capsys.readouterr().err
    assert main(["eval-points", "--model", str(tmp_path / "none.onnx")]) == 3
    with pytest.raises(SystemExit):
        main(["eval-points", "--seeds", "a,b"])
    assert "integers" in capsys.readouterr().err


def test_progress_line_names_every_method(result):
    from app.ml.evaluation.points import _pair_line

    line = _pair_line(result, POINT_METHODS)
    assert all(m in line for m in POINT_METHODS) and "covered points" in line


def test_engine_registration_is_timed_and_noted(result):
    assert result.seconds["engine_register"] >= 0.0
    assert result.registration  # which transform answers, or why none does
    assert result.seconds["engine"] >= result.seconds["engine_register"]
    assert all(count > 0 for count in result.missed_reasons.values())
    assert result.region == ""  # the phantom is no body of the data roles


def test_region_table_and_miss_reasons_in_the_report(result):
    per = {m: summarise_points([result], m) for m in POINT_METHODS}
    tagged = replace(
        result, region="chest", missed_reasons={"the prior does not image this level": 3}
    )
    report = PointEvalReport("toy", "validation", [0], {"standard": per}, {"standard": 1.0},
                             {"standard": 2.0}, {"standard": 90.0}, [tagged],
                             {"standard": {"chest": per}})  # fmt: skip
    text = format_point_report(report)
    assert "[standard] per region" in text and "  chest" in text
    assert "3  the prior does not image this level" in text
    assert report.to_dict()["regions"]["standard"]["chest"]["engine"]["n"] == result.n_covered


def test_the_default_role_is_validation():
    import argparse

    from app.commands.eval_points import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args([]).role == "validation"
    assert parser.parse_args(["--role", "test"]).role == "test"


def test_a_failed_bspline_baseline_counts_as_missed(toy_model, monkeypatch, caplog):
    import app.ml.evaluation.points as points

    def gives_up(*_args, **_kwargs):
        raise RuntimeError("All samples map outside moving image buffer.")

    monkeypatch.setattr(points, "bspline_transform", gives_up)
    source = phantom_volume(n_slices=40, spacing_z=5.0, matrix=64, pixel_mm=6.0, seed=5)
    current = identity_scan(source)
    prior = simulate_followup(source, SMALL, np.random.default_rng(4))
    res = evaluate_point_pair(
        current, prior, Matcher(toy_model, cache=False), ("rigid", "bspline"), n_points=20
    )
    assert res.baseline_failures == ["bspline"]
    assert res.n_covered > 0 and not np.isfinite(res.errors["bspline"]).any()
    assert np.isfinite(res.errors["rigid"]).all()
    assert summarise_points([res], "bspline").missed == 100.0
    assert "B-spline baseline failed" in caplog.text
