"""Point-correspondence latency once a pair is indexed, against rigid registration.

Simulates a current and a prior scan (standard preset) from a real CT when
the shared data is present (``chest-angio``, a training volume), else from a
synthetic torso, then measures in this same run:

* indexing: the slice engine's embedding and alignment of both series;
* preparation: the point engine's grids, global shift and anchor affine;
* registration: its 3-D rigid + B-spline registration, checked against the anchors;
* per point: :meth:`app.ml.points.locate.PointPair.locate` for random body
  points (p50, p95);
* the baseline: one SimpleITK rigid registration of the pair (what a "3-D
  sync" reading station runs before it can map a point), against which the
  per-point figures are given as ratios.

Run: ``.venv/bin/python benchmarks/bench_points.py [--points 300] [--seed 0]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def synthetic_source():
    """A 200-slice torso with lungs, spine and an organ that drift along z."""
    from app.core.volume import Geometry, SeriesInfo, Volume

    n, matrix, px, dz = 200, 256, 1.5, 2.0
    y, x = np.mgrid[0:matrix, 0:matrix].astype(np.float32)
    c = (matrix - 1) / 2.0
    xm, ym = (x - c) * px, (y - c) * px
    rng = np.random.default_rng(0)
    vox = np.full((n, matrix, matrix), -1000, dtype=np.int16)
    for k in range(n):
        t = k * dz
        sl = vox[k]
        body = (xm / (150 + 20 * np.sin(t / 50))) ** 2 + (ym / 105) ** 2 <= 1
        sl[body] = 40
        for side in (-1, 1):
            lung = ((xm - side * 70) / 45) ** 2 + (ym / (50 + 10 * np.sin(t / 40))) ** 2 <= 1
            sl[lung & body] = -850
        organ = ((xm + 30 * np.sin(t / 30)) / 30) ** 2 + ((ym - 20) / 25) ** 2 <= 1
        sl[organ & body] = 90
        spine = (xm / 16) ** 2 + ((ym - 75) / 16) ** 2 <= 1
        sl[spine] = 700
        sl += rng.integers(-10, 11, size=sl.shape, dtype=np.int16)
    geom = Geometry((-c * px, -c * px, 0.0), (px, px, dz), np.eye(3))
    return Volume(vox, geom, info=SeriesInfo(series_uid="1.2.bench"), source="synthetic")


def source_volume():
    from app.sim.sources import available_sources, load_source

    if available_sources(["chest-angio"]):
        return load_source("chest-angio"), "chest-angio"
    return synthetic_source(), "synthetic torso"


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from app.ml.anatomy.match import Matcher
    from app.ml.evaluation.registration import rigid_transform
    from app.ml.points.locate import PointPair
    from app.ml.runtime.model import EmbeddingModel
    from app.sim.followup import SIM_PRESETS, simulate_followup

    source, name = source_volume()
    rng = np.random.default_rng(args.seed)
    current = simulate_followup(source, SIM_PRESETS["standard"], rng).volume
    prior = simulate_followup(source, SIM_PRESETS["standard"], rng).volume
    print(f"pair from {name}: current {current.shape}, prior {prior.shape}")

    matcher = Matcher(EmbeddingModel.load(None, device="cpu"), cache=False)
    t0 = time.perf_counter()
    alignment = matcher.align(matcher.index(current), matcher.index(prior))
    t_index = time.perf_counter() - t0
    t0 = time.perf_counter()
    pair = PointPair.prepare(current, prior, alignment)
    t_prepare = time.perf_counter() - t0
    t0 = time.perf_counter()
    pair.register()
    t_register = time.perf_counter() - t0

    g = pair.current_grid
    zs, ys, xs = np.nonzero(g.body)
    sel = rng.choice(len(zs), size=min(args.points, len(zs)), replace=False)
    pts = g.fine.lps_of(np.column_stack([xs[sel], ys[sel], zs[sel]]).astype(np.float64))
    pair.locate(pts[0])  # warm-up (first FFT plans)
    times = []
    for p in pts:
        t1 = time.perf_counter()
        pair.locate(p)
        times.append((time.perf_counter() - t1) * 1e3)

    t0 = time.perf_counter()
    rigid_transform(current, prior)
    t_rigid = time.perf_counter() - t0

    p50, p95 = pct(times, 50), pct(times, 95)
    rigid_ms = t_rigid * 1e3
    print(f"indexing (embed + align both series): {t_index:.2f} s")
    print(f"point engine preparation (grids, shift, affine): {t_prepare:.2f} s")
    print(f"point engine registration: {t_register:.2f} s ({pair.registration_note})")
    print(
        f"per point ({len(times)} points): p50 {p50:.1f} ms, p95 {p95:.1f} ms (goal p95 <= 50 ms)"
    )
    print(f"baseline, rigid registration of the pair: {t_rigid:.2f} s")
    print(
        f"ratios to the rigid registration: per point p50 {p50 / rigid_ms:.4f}, "
        f"p95 {p95 / rigid_ms:.4f}; preparation {t_prepare / t_rigid:.2f}, "
        f"registration {t_register / t_rigid:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
