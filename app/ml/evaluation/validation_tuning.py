"""Choose the matcher's settings on the VALIDATION bodies (never the test ones).

``python -m app.ml.evaluation.validation_tuning [--seeds 0,1] [--pairs 6] [--json FILE]
[--no-refine]`` simulates validation pairs (the same pairs ``priorsync eval --role
validation`` uses, cached alike), embeds each series once, then scores:

* the alignment with the defaults and with each variant of :data:`ALIGN_GRID`,
  one :class:`~app.ml.anatomy.align.AlignParams` field changed at a time (a
  coordinate search: the fields act on different passes, and a full product
  of nine fields would cost thousands of alignments a pair), mean |dz| and
  coverage;
* the refinement's check (``accept_mm`` x ``trust_mm``) applied to one
  registration per pair (:func:`~app.ml.anatomy.registration.register_levels`:
  the check is a selection on its answer, so the grid costs no more runs);
  ``--no-refine`` skips the registration (tens of seconds a pair);
* the overlap score of every same-body pair, and that of pairs of two
  bodies of different regions (head-and-neck current, chest prior and the
  reverse), for :data:`app.ml.anatomy.match.MIN_OVERLAP`. Beware: OpenKBP scans
  reach the lung apices, so an OpenKBP body and a chest share anatomy and a
  high score there is right; only the head-only body (``head``) against a
  chest is a pair that must score low.

It prints the tables; the chosen values are written into the code by hand,
with the figures, in models/README.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from app.ml.anatomy.align import AlignParams
from app.ml.anatomy.match import MIN_OVERLAP, Matcher
from app.ml.anatomy.registration import RefineParams, register_levels, select_refined

__all__ = ["ALIGN_GRID", "REFINE_GRID", "PairScores", "main", "score_pair"]

# Values tried for each AlignParams field, one field at a time (the others at
# their defaults); each tuple holds the default.
ALIGN_GRID: dict[str, tuple[float, ...]] = {
    "feature_weight": (1.0, 2.0, 3.0),
    "band_mm": (10.0, 15.0, 25.0),
    "residual_band_mm": (4.0, 6.0, 9.0),
    "smoothness": (2.5, 5.0, 10.0),
    "max_slope": (0.15, 0.25, 0.35),
    "shape_cost": (0.05, 0.1, 0.2),
    "shape_slope": (0.1, 0.2, 0.3),
    "shape_bend_mm": (6.0, 12.0, 18.0),
    "coverage_margin_mm": (0.0, 1.0, 2.0),
}
REFINE_GRID: dict[str, tuple[float, ...]] = {
    "accept_mm": (3.0, 5.0, 8.0),
    "trust_mm": (2.0, 4.0, 6.0),
}


@dataclass
class PairScores:
    """Mean |dz| (mm) on one pair for every setting tried, and its overlap score."""

    source: str
    preset: str
    seed: int
    align: dict[str, float]
    coverage: dict[str, float]
    refine: dict[str, float]
    overlap: float


def _key(values: dict[str, float]) -> str:
    return ",".join(f"{k}={v:g}" for k, v in values.items())


def align_variants(base: AlignParams | None = None) -> list[dict[str, float]]:
    """The defaults (``{}``), then each :data:`ALIGN_GRID` value that differs from ``base``."""
    base = base or AlignParams()
    out: list[dict[str, float]] = [{}]
    for name, values in ALIGN_GRID.items():
        out += [{name: v} for v in values if v != getattr(base, name)]
    return out


def _grid(grid: dict[str, tuple[float, ...]]) -> list[dict[str, float]]:
    names = list(grid)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*grid.values())]


def score_pair(
    matcher: Matcher,
    current_scan,
    prior_scan,
    source: str,
    preset: str,
    seed: int,
    base: AlignParams | None = None,
    refine: bool = True,
) -> PairScores:
    """Every grid setting's mean |dz| on one simulated pair (see the module docstring).

    The alignment settings are keyed ``"defaults"`` or ``"field=value"``;
    with ``refine=False`` no registration runs and ``refine`` stays empty.
    """
    from app.ml.evaluation.baselines import nearest_slices
    from app.sim.followup import true_correspondence

    base = base or AlignParams()
    truth, covered = true_correspondence(current_scan, prior_scan)
    cur = matcher.index(current_scan.volume)
    pri = matcher.index(prior_scan.volume)
    pz = prior_scan.volume.slice_z

    def err(index: np.ndarray) -> float:
        return float(np.mean(np.abs(pz[np.asarray(index)] - truth)[covered]))

    align: dict[str, float] = {}
    coverage: dict[str, float] = {}
    saved = matcher.params
    try:
        for values in align_variants(base):
            matcher.params = replace(base, **values)  # type: ignore[arg-type]  # the grid's keys are float fields of AlignParams
            a = matcher.align(cur, pri)
            key = _key(values) or "defaults"
            align[key] = err(a.prior_index)
            coverage[key] = float(np.mean(a.in_coverage == covered) * 100.0)
        matcher.params = base
        alignment = matcher.align(cur, pri)
    finally:
        matcher.params = saved
    refine_scores: dict[str, float] = {}
    registered = None
    if refine:
        try:
            registered = register_levels(current_scan.volume, prior_scan.volume, alignment)
        except (RuntimeError, ValueError):
            registered = None
    for values in _grid(REFINE_GRID) if refine else []:
        if registered is None:
            refine_scores[_key(values)] = err(alignment.prior_index)
            continue
        new, _, _ = select_refined(alignment, registered, values["accept_mm"], values["trust_mm"])
        refine_scores[_key(values)] = err(nearest_slices(pz, new.mapped_z))
    return PairScores(
        source, preset, seed, align, coverage, refine_scores, matcher.overlap_score(cur, alignment)
    )


def _cross_region_overlaps(matcher: Matcher, names: list[str]) -> list[tuple[str, str, float]]:
    """Overlap scores of a head-and-neck body against a chest body (both ways)."""
    from app.sim.roles import region_of
    from app.sim.sources import load_source

    heads = [n for n in names if region_of(n) == "head-neck"][:4]
    chests = [n for n in names if region_of(n) == "chest"]
    out = []
    for h, c in itertools.product(heads, chests):
        hv, cv = load_source(h), load_source(c)
        for a, b, an, bn in ((hv, cv, h, c), (cv, hv, c, h)):
            ia, ib = matcher.index(a), matcher.index(b)
            out.append((an, bn, matcher.overlap_score(ia, matcher.align(ia, ib))))
    return out


def _print_table(
    title: str, rows: list[PairScores], field: str, higher_is_better: bool = False
) -> dict[str, float]:
    """Per preset and over all pairs: each setting's mean over pairs and its worst pair."""
    keys = list(getattr(rows[0], field))
    means = {k: float(np.mean([getattr(r, field)[k] for r in rows])) for k in keys}
    worst_of = np.min if higher_is_better else np.max
    print(f"\n{title} (mean over {len(rows)} pairs of the pair means)")
    for preset in [*dict.fromkeys(r.preset for r in rows), "all"]:
        mine = [r for r in rows if preset in ("all", r.preset)]
        for k in keys:
            value = float(np.mean([getattr(r, field)[k] for r in mine]))
            worst = float(worst_of([getattr(r, field)[k] for r in mine]))
            print(f"  {preset:<9}{k:<40}{value:>7.2f}  worst pair {worst:>6.2f}")
    return means


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.ml.evaluation.validation_tuning")
    parser.add_argument("--seeds", default="0", help="comma-separated simulation seeds")
    parser.add_argument("--pairs", type=int, default=6, help="pairs per preset and seed")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    parser.add_argument("--model", type=Path, default=None, help="ONNX model (default shipped)")
    parser.add_argument(
        "--no-refine", action="store_true", help="skip the registration (refinement check)"
    )
    args = parser.parse_args(argv)
    from app.ml.evaluation.slices import make_pair, region_cycle
    from app.ml.runtime.model import EmbeddingModel
    from app.sim.roles import bodies
    from app.sim.sources import available_sources

    names = available_sources(bodies("validation"))
    if not names:
        print("no validation CT volume is available (shared data)", file=sys.stderr)
        return 1
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    matcher = Matcher(EmbeddingModel.load(args.model, device="cpu"), cache=False, memory_entries=2)
    order = region_cycle(names)
    rows: list[PairScores] = []
    for seed, preset in itertools.product(seeds, ("standard", "hard")):
        for t in range(args.pairs):
            name = order(seed * args.pairs + t)
            sim = make_pair(name, preset, seed, t)
            rows.append(
                score_pair(
                    matcher, sim.current, sim.prior, name, preset, seed, refine=not args.no_refine
                )
            )
            print(f"  {preset} seed {seed} pair {t} {name}: done", file=sys.stderr, flush=True)
    align = _print_table("alignment settings, |dz| mm", rows, "align")
    _print_table("coverage decisions right, %", rows, "coverage", higher_is_better=True)
    refine = _print_table("refinement check, |dz| mm", rows, "refine") if not args.no_refine else {}
    cross = _cross_region_overlaps(matcher, names)
    same = [r.overlap for r in rows]
    print(
        f"\noverlap score: same-body pairs min {min(same):.3f} (median {np.median(same):.3f}); "
        f"MIN_OVERLAP {MIN_OVERLAP}"
    )
    for current, prior, score in cross:
        print(f"  different bodies {current} -> {prior}: overlap {score:.3f}")
    print(f"best alignment setting: {min(align, key=align.__getitem__)}")
    if refine:
        print(f"best refinement check: {min(refine, key=refine.__getitem__)}")
    print(
        f"defaults: {_key({k: getattr(AlignParams(), k) for k in ALIGN_GRID})}; "
        f"{_key({k: getattr(RefineParams(), k) for k in REFINE_GRID})}"
    )
    if args.json is not None:
        payload = {
            "model": matcher.model.identity,
            "seeds": seeds,
            "pairs": [vars(r) for r in rows],
            "cross_region_overlaps": cross,
        }
        args.json.write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
