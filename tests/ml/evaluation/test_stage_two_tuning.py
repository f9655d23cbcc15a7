"""The stage-two tuning's selection rule is the point engine's own."""

from __future__ import annotations

from app.ml.evaluation.stage_two_tuning import choose
from app.ml.points.locate import prefer_bspline


def _c(name: str, ncc: float, trusted: bool = True) -> dict[str, object]:
    return {"name": name, "ncc": ncc, "trusted": trusted}


def test_the_better_rigid_fit_then_the_bspline_by_its_lead():
    cands = [_c("B-spline", 0.92), _c("rigid", 0.90), _c("coarse rigid", 0.91)]
    assert choose(cands, 0.0)["name"] == "B-spline"
    assert choose(cands, 0.03)["name"] == "coarse rigid"
    for lead in (0.0, 0.005, 0.03):
        picked = choose(cands, lead)["name"] == "B-spline"
        assert picked == prefer_bspline(0.91, 0.92, lead)


def test_rejected_candidates_never_answer():
    assert choose([_c("B-spline", 0.99, False), _c("rigid", 0.5)], 0.0)["name"] == "rigid"
    assert choose([_c("B-spline", 0.7), _c("rigid", 0.9, False)], 0.5)["name"] == "B-spline"
    assert choose([_c("rigid", 0.9, False)], 0.0) is None
