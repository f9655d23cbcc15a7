"""Several seeds, per-seed and per-region tables, and the role's pair order."""

from __future__ import annotations

import pytest

from app.cli import main
from app.ml.evaluation.seeds import format_breakdown, region_label
from app.ml.evaluation.slices import EvalReport, PairResult, format_report, region_cycle, summarise


def pair(source: str, seed: int, error: float, preset: str = "standard") -> PairResult:
    return PairResult(
        preset=preset,
        source=source,
        pair=0,
        n_current=4,
        n_prior=4,
        n_covered=4,
        current_spacing_mm=2.0,
        prior_spacing_mm=2.0,
        errors={"engine": [error] * 4, "rigid": [2 * error] * 4},
        coverage_correct={"engine": 4, "rigid": 3},
        seconds={"engine": 0.1, "rigid": 1.0},
        seed=seed,
    )


def test_region_cycle_goes_round_regions_then_bodies():
    names = ["chest-lung1", "chest-nsclc", "abdomen-pelvis", "openkbp-013", "openkbp-053"]
    order = region_cycle(names)
    picked = [order(t) for t in range(6)]
    assert picked == [
        "chest-lung1",
        "abdomen-pelvis",
        "openkbp-013",
        "chest-nsclc",
        "abdomen-pelvis",
        "openkbp-053",
    ]
    # A name without a role is its own region, never dropped.
    assert set(map(region_cycle(["chest-lung1", "phantom"]), range(2))) == {
        "chest-lung1",
        "phantom",
    }


def test_breakdown_shows_each_seed_and_region():
    pairs = [
        pair("chest-lung1", 0, 1.0),
        pair("openkbp-013", 0, 3.0),
        pair("chest-lung1", 1, 2.0),
        pair("abdomen-pelvis", 1, 4.0),
    ]
    summaries = {"standard": {m: summarise(pairs, m) for m in ("engine", "rigid")}}
    report = EvalReport("toy", 0, summaries, pairs, (0, 1))
    assert "seeds: 0, 1" in format_report(report)
    text = format_breakdown(report, ["engine", "rigid", "oracle"])
    lines = text.splitlines()

    def row(label: str, method: str) -> list[str]:
        (line,) = [x for x in lines if x.startswith(label) and f" {method} " in x]
        return line[26:].split()

    assert row("standard seed 0", "engine")[1:3] == ["2", "2.00"]
    assert row("standard seed 1", "rigid")[2] == "6.00"
    assert row("standard chest", "engine")[2] == "1.50"
    assert row("standard head-neck", "engine")[2] == "3.00"
    assert row("standard abdomen-pelvis", "rigid")[-1] == "75.0%"
    assert "oracle" not in text
    assert region_label("nowhere") == "other"
    assert report.to_dict()["seeds"] == [0, 1]


@pytest.mark.parametrize("seeds", ["", "a,b", "-1"])
def test_eval_command_rejects_bad_seeds(seeds, capsys):
    assert main(["eval", "--seeds", seeds]) == 2
    assert "--seeds" in capsys.readouterr().err


def test_reports_pool_and_round_trip_through_json():
    from app.ml.evaluation.seeds import pool_reports, report_from_dict

    a = [pair("chest-lung1", 0, 1.0), pair("openkbp-013", 0, 3.0)]
    b = [pair("abdomen-pelvis", 1, 5.0)]

    def report(pairs, seed):
        summaries = {"standard": {m: summarise(pairs, m) for m in ("engine", "rigid")}}
        return EvalReport("toy", seed, summaries, pairs)

    pooled = pool_reports([report(a, 0), report(b, 1)])
    assert pooled.seeds == (0, 1)
    assert pooled.summaries["standard"]["engine"].mean == pytest.approx(3.0)
    back = report_from_dict(pooled.to_dict())
    assert back.seeds == (0, 1) and len(back.pairs) == 3
    assert back.summaries["standard"]["rigid"].mean == pytest.approx(6.0)
    assert set(back.summaries["standard"]) == {"engine", "rigid"}
    with pytest.raises(ValueError, match="different models"):
        pool_reports([report(a, 0), EvalReport("other", 1, {}, b)])
    with pytest.raises(ValueError, match="no report"):
        pool_reports([])
