"""The point engine on simulated pairs with a known answer (no model: the slice match is given)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from point_helpers import body_points, moved_pair

from app.core.cursor import contains_point
from app.ml.evaluation.truth import truth_alignment
from app.ml.points.locate import PointPair
from app.sim.point_truth import true_points


@pytest.fixture(scope="module")
def pair():
    return moved_pair()


def test_points_land_on_the_same_anatomy(pair):
    current, prior, engine = pair
    pts = body_points(engine, 80, 0)
    truth, covered = true_points(current, prior, pts)
    found = [engine.locate(p) for p in pts]
    err = np.array(
        [
            np.linalg.norm(np.array(m.prior_point) - t) if m.in_coverage else np.inf
            for m, t, c in zip(found, truth, covered, strict=True)
            if c
        ]
    )
    same = np.linalg.norm((pts - truth)[covered], axis=1)
    assert len(err) >= 40
    assert np.median(same) > 20.0  # the motion is far from trivial
    assert np.median(err) < 2.5 and np.percentile(err, 90) < 6.0, np.sort(err)
    answered = [m for m in found if m.in_coverage]
    assert all(0.0 <= m.confidence <= 1.0 and m.radius_mm > 0 for m in answered)
    assert all(m.prior_slice is not None for m in answered)


def test_a_frame_of_reference_far_off_in_plane(pair):
    """Across frames of reference the in-plane offset can exceed the shift search
    (a validation chest pair: 181 mm); the body centres still find it."""
    current, prior, _ = pair
    vol = prior.volume
    n = vol.geometry.normal
    offset = np.array([160.0, -170.0, 0.0])
    offset -= (offset @ n) * n  # in the prior's plane: its levels stay put
    far = vol.with_voxels(
        vol.voxels,
        replace(vol.geometry, origin=vol.geometry.origin + offset),
        vol.slice_positions + offset,
    )
    engine = PointPair.prepare(current.volume, far, truth_alignment(current, prior))
    pts = body_points(engine, 60, 1)
    truth, covered = true_points(current, prior, pts)
    err = [
        np.linalg.norm(np.array(m.prior_point) - t - offset) if m.in_coverage else np.inf
        for m, t, c in zip((engine.locate(p) for p in pts), truth, covered, strict=True)
        if c
    ]
    assert len(err) >= 30
    assert np.median(err) < 2.5, np.sort(err)


def test_outside_the_current_volume(pair):
    _, _, engine = pair
    g = engine.current.geometry
    far = g.index_to_lps(np.array([-20.0, 10.0, 5.0]))
    m = engine.locate(far)
    assert not m.in_coverage and m.prior_point is None
    assert "outside the current volume" in m.message
    assert m.to_dict()["prior_point"] is None and "message" in m.to_dict()


def test_outside_the_body(pair):
    _, _, engine = pair
    g = engine.current.geometry
    corner = g.index_to_lps(np.array([2.0, 2.0, 30.0]))  # air in the field's corner
    assert contains_point(engine.current, corner)
    m = engine.locate(corner)
    assert not m.in_coverage and "outside the body" in m.message


def test_level_the_prior_does_not_image(pair):
    current, prior, engine = pair
    a = engine.alignment
    k = int(np.flatnonzero(~a.in_coverage)[0])
    g = engine.current.geometry
    n, rows, cols = engine.current.shape
    p = g.index_to_lps(np.array([cols / 2, rows / 2, float(k)]))
    m = engine.locate(p)
    assert not m.in_coverage and "does not image this level" in m.message
    _, covered = true_points(current, prior, p[None, :])
    assert not covered[0]


def test_nonfinite_point_is_refused(pair):
    _, _, engine = pair
    m = engine.locate((float("nan"), 0.0, 0.0))
    assert not m.in_coverage and "finite" in m.message


def test_json_entry_has_the_contract_keys(pair):
    _, _, engine = pair
    p = body_points(engine, 1, 5)[0]
    d = engine.locate(p).to_dict()
    assert {"current_point", "prior_point", "confidence", "radius_mm", "in_coverage"} <= set(d)
    assert len(d["current_point"]) == 3


def test_propagating_a_line_maps_both_ends(pair):
    from app.core.measure import Measurement
    from app.ml.points.propagate import propagate_measurement

    current, prior, engine = pair
    pts = body_points(engine, 30, 11)
    truth, covered = true_points(current, prior, pts)
    (i, j), truth = np.flatnonzero(covered)[:2], truth[np.flatnonzero(covered)[:2]]
    a, b = pts[i], pts[j]
    line = Measurement("line", "cur", "20250101", (tuple(a), tuple(b)), "n1", "nodule")
    result = propagate_measurement(line, engine)
    moved = result.measurement
    assert moved is not None and moved.finding == "n1" and moved.kind == "line"
    assert moved.series_uid == prior.volume.info.series_uid
    for got, want in zip(moved.points, truth, strict=True):
        assert np.linalg.norm(np.array(got) - want) < 6.0
    assert 0.0 <= result.confidence <= 1.0


def test_propagation_refuses_an_uncovered_end(pair):
    from app.core.measure import Measurement
    from app.ml.points.propagate import propagate_measurement

    _, _, engine = pair
    a = body_points(engine, 1, 12)[0]
    far = engine.current.geometry.index_to_lps(np.array([-50.0, 0.0, 0.0]))
    line = Measurement("line", "cur", "", (tuple(a), tuple(far)))
    result = propagate_measurement(line, engine)
    assert result.measurement is None and "control point 2" in result.message
    assert result.confidence == 0.0
