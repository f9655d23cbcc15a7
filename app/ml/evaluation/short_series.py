"""Choose :data:`~app.ml.anatomy.match.MIN_SHORT_SIMILARITY` for a model, on non-test bodies.

``python -m app.ml.evaluation.short_series [--model FILE] [--json FILE]``

A series shorter than :data:`~app.ml.anatomy.match.SHORT_SERIES_MM` cannot have
its overlap checked by the alignment's slope, so the matcher also asks that its
matched slices look alike: their mean cosine must reach the threshold. The
threshold is a property of the model's embedding and is re-chosen with each
model, here:

* **same anatomy**: 25 and 36 mm slabs (at 20, 50 and 80 % of the body's
  length) of each body, against a simulated follow-up of the same body that
  images it whole (the ``standard`` preset), both ways (slab as current, then as
  prior);
* **different anatomy**: the same slabs against whole bodies of regions that
  share no anatomy with them (:data:`DISJOINT`), both ways.

Only validation and training bodies take part (:mod:`app.sim.roles`), never
test ones. It prints both distributions and the threshold in their gap (the
midpoint between the highest different-anatomy score and the lowest
same-anatomy one); with no gap it says so and prints the value with the
fewest errors. The chosen value is written into ``match.py`` by hand, with the
figures, in models/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from app.core.volume import Volume
from app.ml.anatomy.match import SHORT_SERIES_MM, Matcher, matched_similarity, series_extent_mm
from app.sim.roles import role_of

__all__ = ["BODIES", "DISJOINT", "SLAB_MM", "PairScore", "choose_threshold", "main", "slab"]

# Validation and training bodies (never test) of every region.
BODIES: tuple[str, ...] = (
    "chest-lung2",
    "chest-4dlung",
    "head",
    "openkbp-007",
    "openkbp-047",
    "abdomen-pancreas",
)
# Which slabs meet which whole bodies as different anatomy: (slab body, where
# toward the head, other body). The head-only body shares nothing with a chest
# or an abdomen; a pelvis slab nothing with a head or neck; a skull-level
# OpenKBP slab nothing with a chest or an abdomen. OpenKBP scans reach the lung
# apices, so an OpenKBP body against a chest is *not* a different-anatomy pair.
DISJOINT: tuple[tuple[str, float, str], ...] = (
    ("head", 0.2, "chest-lung2"),
    ("head", 0.5, "abdomen-pancreas"),
    ("head", 0.8, "chest-4dlung"),
    ("chest-lung2", 0.5, "head"),
    ("chest-4dlung", 0.5, "head"),
    ("abdomen-pancreas", 0.05, "openkbp-007"),
    ("abdomen-pancreas", 0.1, "head"),
    ("abdomen-pancreas", 0.05, "openkbp-047"),
    ("openkbp-007", 0.9, "abdomen-pancreas"),
    ("openkbp-047", 0.9, "chest-lung2"),
)
SLAB_MM: tuple[float, ...] = (25.0, 36.0)
SAME_AT: tuple[float, ...] = (0.2, 0.5, 0.8)


@dataclass(frozen=True)
class PairScore:
    """One matched pair: what was matched and the mean cosine of its matched slices."""

    kind: str  # "same" or "different"
    current: str
    prior: str
    slab_mm: float
    similarity: float


def slab(volume: Volume, toward_head: float, mm: float) -> Volume:
    """The slices of ``volume`` within an ``mm`` slab ``toward_head`` of the way feet -> head."""
    z = volume.slice_z
    up = float(volume.geometry.normal[2]) >= 0  # LPS: +z is toward the head
    fraction = toward_head if up else 1.0 - toward_head
    lo = z.min() + fraction * (np.ptp(z) - mm)
    sel = np.flatnonzero((z >= lo) & (z < lo + mm))
    return volume.with_voxels(volume.voxels[sel], volume.geometry, volume.slice_positions[sel])


def _score(matcher: Matcher, current: Volume, prior: Volume) -> float:
    return matched_similarity(matcher.align(matcher.index(current), matcher.index(prior)))


def choose_threshold(same: list[float], different: list[float]) -> tuple[float, bool]:
    """The threshold between the two score lists and whether it separates them.

    With a gap, its midpoint (rounded to 0.01); without one, the candidate
    with the fewest errors, a refused same-anatomy pair counting as much as an
    accepted different-anatomy one.
    """
    lo, hi = max(different), min(same)
    if hi > lo:
        return round((lo + hi) / 2, 2), True
    candidates = np.round(np.arange(0.0, 1.0, 0.01), 2)
    errors = [sum(s < c for s in same) + sum(d >= c for d in different) for c in candidates]
    return float(candidates[int(np.argmin(errors))]), False


def run(matcher: Matcher) -> list[PairScore]:
    """Score every same- and different-anatomy pair (prints as it goes)."""
    from app.sim.followup import SIM_PRESETS, simulate_followup
    from app.sim.sources import load_source

    if any(role_of(n) == "test" for n in BODIES):  # guards a future edit of the lists
        raise ValueError("a test body is listed for choosing the short-series threshold")
    sources = {n: load_source(n) for n in BODIES}
    params = replace(SIM_PRESETS["standard"], coverage=(1.0, 1.0))
    scores: list[PairScore] = []

    def add(kind: str, a: str, b: str, mm: float, value: float) -> None:
        scores.append(PairScore(kind, a, b, mm, round(value, 4)))
        print(f"{kind:9s} {a:34s} {b:34s} {value:.3f}", flush=True)

    for i, name in enumerate(BODIES):
        followup = simulate_followup(sources[name], params, np.random.default_rng(100 + i))
        for mm in SLAB_MM:
            for at in SAME_AT:
                s = slab(sources[name], at, mm)
                if series_extent_mm(s.slice_z) >= SHORT_SERIES_MM:  # never with SLAB_MM's values
                    raise ValueError(f"a {mm:.0f} mm slab of {name} is not a short series")
                tag = f"{name} {mm:.0f} mm slab at {at:.2f}"
                add("same", tag, f"{name} follow-up", mm, _score(matcher, s, followup.volume))
                add("same", f"{name} follow-up", tag, mm, _score(matcher, followup.volume, s))
    for name, at, other in DISJOINT:
        for mm in SLAB_MM:
            s = slab(sources[name], at, mm)
            tag = f"{name} {mm:.0f} mm slab at {at:.2f}"
            add("different", tag, other, mm, _score(matcher, s, sources[other]))
            add("different", other, tag, mm, _score(matcher, sources[other], s))
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.ml.evaluation.short_series")
    parser.add_argument("--model", type=Path, help="ONNX model (default: the shipped one)")
    parser.add_argument("--json", type=Path, help="write the scores and the choice here")
    args = parser.parse_args(argv)

    from app.ml.runtime.model import EmbeddingModel

    matcher = Matcher(EmbeddingModel.load(args.model, device="cpu"), cache=False)
    scores = run(matcher)
    same = [s.similarity for s in scores if s.kind == "same"]
    different = [s.similarity for s in scores if s.kind == "different"]
    threshold, separates = choose_threshold(same, different)
    print(
        f"same anatomy: {len(same)} pairs, min {min(same):.3f}, median {np.median(same):.3f}\n"
        f"different anatomy: {len(different)} pairs, max {max(different):.3f}, "
        f"median {np.median(different):.3f}\n"
        f"threshold {threshold:.2f}"
        + ("" if separates else " (NO gap: the lists overlap; fewest errors)")
    )
    if args.json:
        from app.io.safe_write import safe_write

        payload = {
            "threshold": threshold,
            "separates": separates,
            "scores": [asdict(s) for s in scores],
        }
        safe_write(args.json, json.dumps(payload, indent=2).encode(), overwrite=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
