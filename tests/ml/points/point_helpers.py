"""What the point engine's tests share: a moved phantom preset, the truth's slice match, body points."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from engine_helpers import phantom_volume

from app.ml.evaluation.truth import truth_alignment
from app.ml.points.locate import PointPair, PointParams
from app.sim.followup import (
    SIM_PRESETS,
    SimulatedScan,
    identity_scan,
    simulate_followup,
)

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


def body_points(engine: PointPair, n: int, seed: int) -> np.ndarray:
    g = engine.current_grid
    zs, ys, xs = np.nonzero(g.body)
    sel = np.random.default_rng(seed).choice(len(zs), n, replace=False)
    return g.fine.lps_of(np.column_stack([xs[sel], ys[sel], zs[sel]]).astype(float))


def moved_pair(params: PointParams | None = None) -> tuple[SimulatedScan, SimulatedScan, PointPair]:
    """A phantom as the current, a moved and breathing prior of it, and their prepared pair."""
    source = phantom_volume(n_slices=60, spacing_z=4.0, matrix=96, pixel_mm=4.0, seed=3)
    current = identity_scan(source)
    prior = simulate_followup(source, MOVED, np.random.default_rng(7))
    engine = PointPair.prepare(
        current.volume, prior.volume, truth_alignment(current, prior), params
    )
    return current, prior, engine
