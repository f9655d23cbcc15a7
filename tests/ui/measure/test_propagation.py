"""Propagate to priors: copies land on the same anatomy (simulated pair with known truth)."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "ml"))

from engine_helpers import phantom_volume  # noqa: E402

from app.core.measure import Measurement  # noqa: E402
from app.core.measure_slice import image_to_lps, measurement_slice, series_key  # noqa: E402
from app.core.measure_store import MeasurementStore  # noqa: E402
from app.core.state import ViewportState  # noqa: E402
from app.ml.anatomy.sync_service import PairAlignment  # noqa: E402
from app.ml.evaluation.truth import truth_alignment
from app.sim.followup import (  # noqa: E402
    SIM_PRESETS,
    identity_scan,
    simulate_followup,
    true_correspondence,
)
from app.sim.point_truth import true_points  # noqa: E402
from app.ui.measure.propagation import Propagator  # noqa: E402

MOVED = replace(
    SIM_PRESETS["standard"],
    rotation_deg=(3.0, 3.0, 3.0),
    shift_mm=(25.0, 15.0),
    deformation_mm=(3.0, 5.0),
    coverage=(0.7, 0.8),
    matrix_sizes=(96,),
    noise_hu=(3.0, 5.0),
    lesion_probability=0.0,
)


class TruthEngine:
    """The sync engine's alignment, as a perfect slice engine reports it (no model here)."""

    def __init__(self, scans):
        self.scans = {id(s.volume): s for s in scans}
        self.calls = 0

    def alignment_of(self, source, target):
        self.calls += 1
        current, prior = self.scans[id(source)], self.scans[id(target)]
        return PairAlignment(truth_alignment(current, prior), overlap=1.0)


@pytest.fixture(scope="module")
def scans():
    source = phantom_volume(n_slices=60, spacing_z=4.0, matrix=96, pixel_mm=4.0, seed=3)
    current = identity_scan(source)
    prior = simulate_followup(source, MOVED, np.random.default_rng(7), study_date="20230101")
    return current, prior


def test_propagated_copies_land_on_the_true_anatomy(qtbot, scans):
    current, prior = scans
    assert current.volume.info.study_date != prior.volume.info.study_date
    cur_state, prior_state = ViewportState(current.volume), ViewportState(prior.volume)
    store = MeasurementStore()
    engine = TruthEngine(scans)
    held = []

    @contextlib.contextmanager
    def hold():
        held.append(True)
        yield

    propagator = Propagator(store, engine, lambda: [cur_state, prior_state], hold)
    vol = current.volume
    k = vol.n_slices // 2
    cx, cy = vol.shape[2] * vol.geometry.spacing[0] / 2, vol.shape[1] * vol.geometry.spacing[1] / 2
    a, b = image_to_lps(vol, k, cx - 30, cy), image_to_lps(vol, k, cx + 20, cy + 10)
    truth, covered = true_points(current, prior, np.array([a, b]))
    assert covered.all()
    mid = store.add(Measurement("line", series_key(vol), vol.info.study_date, (a, b)))
    cur_slice = cur_state.slice_index
    with qtbot.waitSignal(propagator.finished, timeout=120000) as signal:
        assert "propagating F1 to 1 prior" in propagator.propagate(mid)
    assert "placed on 1 of 1" in signal.args[0]
    (copy_id,) = [i for i in store.ids_of_finding("F1") if i != mid]
    copy = store.get(copy_id)
    assert copy.series_uid == series_key(prior.volume) and copy.study_date == "20230101"
    kp = measurement_slice(prior.volume, copy)
    assert kp is not None and prior_state.slice_index == kp and held
    assert cur_state.slice_index == cur_slice
    # On the same anatomy: within the engine's error plus half a slice (the snap).
    for got, want in zip(copy.points, truth, strict=True):
        assert np.linalg.norm(np.array(got) - want) < 6.0 + prior.volume.geometry.spacing[2] / 2
    assert abs(copy.diameter_mm - store.get(mid).diameter_mm) < 6.0
    # Again: the prior keeps the copy (the reader may have adjusted it).
    assert "already holds it" in propagator.propagate(mid)
    # One undo step removes the copy, the original stays.
    store.undo()
    assert store.ids_of_finding("F1") == [mid]
    propagator.shutdown()


def test_an_uncovered_place_gets_no_copy_and_says_why(qtbot, scans):
    current, prior = scans
    cur_state, prior_state = ViewportState(current.volume), ViewportState(prior.volume)
    store = MeasurementStore()
    propagator = Propagator(
        store, TruthEngine(scans), lambda: [cur_state, prior_state], contextlib.nullcontext
    )
    vol = current.volume
    _, covered = true_correspondence(current, prior)
    k = int(np.flatnonzero(~covered)[0])  # a level the prior does not image
    cx = vol.shape[2] * vol.geometry.spacing[0] / 2
    cy = vol.shape[1] * vol.geometry.spacing[1] / 2
    pts = (image_to_lps(vol, k, cx - 10, cy), image_to_lps(vol, k, cx + 10, cy))
    mid = store.add(Measurement("line", series_key(vol), vol.info.study_date, pts))
    with qtbot.waitSignal(propagator.finished, timeout=120000) as signal:
        propagator.propagate(mid)
    assert "placed on 0 of 1" in signal.args[0] and "not in the prior" in signal.args[0]
    assert store.ids_of_finding("F1") == [mid]
    assert propagator.propagate("nope").startswith("select a measurement")
    propagator.shutdown()
