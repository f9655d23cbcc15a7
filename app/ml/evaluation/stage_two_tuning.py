"""Choose the point engine's B-spline lead on VALIDATION pairs (never the test ones).

``python -m app.ml.evaluation.stage_two_tuning [--seeds 0,1,2,3,4,5] [--pairs 3]
[--json FILE]`` simulates the pairs of ``priorsync eval-points --role validation``
(named validation bodies, ``--pairs`` per preset and seed, 100 points a pair),
registers each once (:meth:`app.ml.points.locate.PointPair.register`) and keeps
each trusted candidate's anchor NCC and its 3-D point errors against the
simulator's truth. Each B-spline lead of :data:`LEADS` (the B-spline answers
only when its anchors' NCC exceeds the best rigid fit's by more than the lead:
:func:`app.ml.points.locate.prefer_bspline`) is then a selection on those
candidates, so the grid costs no more registrations. ``--json`` keeps the
records and resumes from them.

It prints the pooled median / p95 / mean of the answered points per preset;
the chosen value is written into the code by hand, with the figures
(:data:`app.ml.points.locate.BSPLINE_NCC_LEAD`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.ml.anatomy.match import Matcher
from app.ml.points.locate import PointPair, prefer_bspline
from app.ml.points.register import map_points

__all__ = ["LEADS", "choose", "main", "point_record"]

# B-spline leads tried (anchor NCC); inf: never the B-spline when a rigid fit is trusted.
LEADS: tuple[float, ...] = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05, float("inf"))


def choose(cands: Sequence[dict[str, Any]], lead: float) -> dict[str, Any] | None:
    """The candidate that answers with B-spline lead ``lead`` (:meth:`PointPair.register`'s rule)."""
    rigid = [c for c in cands if c["trusted"] and c["name"] != "B-spline"]
    best = max(rigid, key=lambda c: c["ncc"]) if rigid else None
    spline = [c for c in cands if c["trusted"] and c["name"] == "B-spline"]
    rigid_ncc = float("nan") if best is None else best["ncc"]
    if spline and prefer_bspline(rigid_ncc, spline[0]["ncc"], lead):
        return spline[0]
    return best


def point_record(sim: Any, matcher: Matcher, labels: tuple[str, str, int, int]) -> dict[str, Any]:
    """One point pair: the engine's own errors and every candidate's (module docstring)."""
    from app.ml.evaluation.points import sample_pair_points
    from app.sim.point_truth import true_points

    current, prior = sim.current.volume, sim.prior.volume
    alignment = matcher.align(matcher.index(current), matcher.index(prior))
    pair = PointPair.prepare(current, prior, alignment)
    pair.register()
    preset, source, seed, t = labels
    pts = sample_pair_points(pair, 100, seed, t)
    truth, covered = true_points(sim.current, sim.prior, pts)
    sel = np.flatnonzero(covered)
    engine = []
    for i in sel:
        m = pair.locate(pts[i])
        engine.append(
            float(np.linalg.norm(m.prior_point - truth[i])) if m.in_coverage else float("inf")
        )
    cands = []
    for c in pair.candidate_checks:
        err = np.linalg.norm(map_points(c.transform, pts[sel]) - truth[sel], axis=1)
        cands.append(
            {"name": c.name, "trusted": c.trusted, "ncc": c.similarity, "errors": err.tolist()}
        )
    return {
        "preset": preset,
        "source": source,
        "seed": seed,
        "pair": t,
        "note": pair.registration_note,
        "engine": engine,
        "candidates": cands,
    }


def _point_errors(rec: dict[str, Any], lead: float) -> np.ndarray:
    chosen = choose(rec["candidates"], lead)
    if chosen is None:
        return np.asarray(rec["engine"], dtype=np.float64)
    # Points the engine called uncovered stay missed: the lead does not change coverage.
    missed = ~np.isfinite(np.asarray(rec["engine"], dtype=np.float64))
    return np.where(missed, np.inf, np.asarray(chosen["errors"], dtype=np.float64))


def _collect(seeds: Sequence[int], n_pairs: int, store: Path | None) -> list[dict[str, Any]]:
    from app.io.safe_write import safe_write
    from app.ml.evaluation.points import pair_source, role_sources
    from app.ml.evaluation.slices import make_pair
    from app.ml.runtime.model import EmbeddingModel

    names = role_sources("validation")
    if not names:
        raise SystemExit("no validation CT volume is available (shared data)")
    done: dict[str, dict[str, Any]] = {}
    if store is not None and store.exists():
        done = {_label(r): r for r in json.loads(store.read_text())}
    matcher = Matcher(EmbeddingModel.load(None, device="cpu"), cache=False, memory_entries=2)
    for preset, seed in itertools.product(("standard", "hard"), seeds):
        for t in range(n_pairs):
            name = pair_source(names, seed, t)  # eval-points' own pairs
            key = f"{preset}/{name}/{seed}/{t}"
            if key in done:
                continue
            sim = make_pair(name, preset, seed, t)
            done[key] = point_record(sim, matcher, (preset, name, seed, t))
            print(f"  {key}: {done[key]['note']}", file=sys.stderr, flush=True)
            if store is not None:
                safe_write(store, json.dumps(list(done.values())).encode(), overwrite=True)
    return list(done.values())


def _label(rec: dict[str, Any]) -> str:
    return f"{rec['preset']}/{rec['source']}/{rec['seed']}/{rec['pair']}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.ml.evaluation.stage_two_tuning")
    parser.add_argument("--seeds", default="0,1,2,3,4,5", help="comma-separated seeds")
    parser.add_argument("--pairs", type=int, default=3, help="pairs per preset and seed")
    parser.add_argument("--json", type=Path, default=None, help="records (resumed when present)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    recs = _collect(seeds, args.pairs, args.json)
    for preset in ("standard", "hard"):
        rows = [r for r in recs if r["preset"] == preset]
        print(f"\n{preset}: {len(rows)} pairs; answered points' 3-D error (mm), missed %")
        print("  lead      median    p95   mean  missed")
        for lead in LEADS:
            e = np.concatenate([_point_errors(r, lead) for r in rows])
            f = e[np.isfinite(e)]
            print(
                f"  {lead:<8g} {np.median(f):7.2f} {np.percentile(f, 95):6.2f} "
                f"{np.mean(f):6.2f} {100 * np.mean(~np.isfinite(e)):6.1f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
