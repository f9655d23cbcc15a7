"""Evaluation of point correspondence on simulated pairs, with baselines in the same run.

Pairs come from :func:`app.ml.evaluation.slices.make_pair` (simulated from a real CT,
written to disk as DICOM or NIfTI and read back through the real readers), so
the engine sees what a user's files give. The simulator's point truth
(:func:`app.sim.point_truth.true_points`) says where each current point lies
in the prior.

Per pair, ``n_points`` points are drawn at random inside the current's body
(the body mask of :mod:`app.ml.points.grids`: lungs and bowel count). Points
the truth says both scans image are *covered*; each method's 3-D error is
measured on them (an answer of "not covered" counts as an infinite error, so
it weighs in the percentiles and the within-X rates). The engine's coverage
decision is scored on all points.

Methods:

* ``engine``: :class:`app.ml.points.locate.PointPair`;
* ``same_coordinate``: the same LPS point (a viewer in one frame of reference);
* ``slice_sync``: the engine's slice match moves the point along the prior's
  normal to the matched level; in-plane it stays put;
* ``rigid``: SimpleITK rigid registration of the whole volumes
  (:func:`app.ml.evaluation.baselines.rigid_transform`);
* ``bspline``: SimpleITK B-spline deformable registration on top of it
  (:func:`app.ml.evaluation.registration.bspline_transform`).

Times: the engine's per-point ``locate`` (p50, p95), its per-pair preparation
(grids, shift, affine), its 3-D registration and the slice engine's indexing
(embedding both series) separately; the baselines' per-pair time. Roles
(:mod:`app.sim.roles`, named volumes only): ``validation`` pairs (the
default) come from the validation bodies and choose every setting; ``test``
pairs from the test bodies, run once for the reported figures. Figures are
given per preset and per body region (:func:`app.sim.roles.region_of`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from app.ml.anatomy.match import Matcher
from app.ml.evaluation.registration import bspline_transform, map_points, rigid_transform
from app.ml.points.locate import PointPair, PointParams

__all__ = [
    "POINT_METHODS",
    "PointEvalReport",
    "PointMethodSummary",
    "PointPairResult",
    "evaluate_point_pair",
    "format_point_report",
    "pair_source",
    "role_sources",
    "run_point_evaluation",
    "sample_body_points",
    "sample_pair_points",
    "summarise_points",
]

log = logging.getLogger(__name__)

POINT_METHODS = ("engine", "same_coordinate", "slice_sync", "rigid", "bspline")
GOALS = {"median": 2.5, "p95": 7.0}
ROLES = ("test", "validation")


@dataclass
class PointPairResult:
    """Every method's errors on one pair."""

    preset: str
    source: str
    seed: int
    pair: int
    n_points: int
    n_covered: int
    errors: dict[str, list[float]] = field(default_factory=dict)  # mm, inf = missed
    seconds: dict[str, float] = field(default_factory=dict)  # per pair
    point_ms: list[float] = field(default_factory=list)  # engine, per point
    confidence: list[float] = field(default_factory=list)  # engine, per covered point
    coverage_correct: int = 0
    region: str = ""
    # Why the engine answered "not covered" where the truth says both scans image the point.
    missed_reasons: dict[str, int] = field(default_factory=dict)
    registration: str = ""  # the engine's registration note
    # Baselines whose registration raised (their points count as missed).
    baseline_failures: list[str] = field(default_factory=list)


@dataclass
class PointMethodSummary:
    """One method's figures over a preset's pairs (points pooled)."""

    n: int
    median: float
    p95: float
    within5: float
    within10: float
    missed: float
    seconds_per_pair: float


@dataclass
class PointEvalReport:
    """Summaries per preset and method, engine timings, and per-pair results."""

    model: str
    role: str
    seeds: list[int]
    summaries: dict[str, dict[str, PointMethodSummary]]
    point_ms_p50: dict[str, float]
    point_ms_p95: dict[str, float]
    coverage_accuracy: dict[str, float]
    pairs: list[PointPairResult]
    # preset -> region -> method
    regions: dict[str, dict[str, dict[str, PointMethodSummary]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "role": self.role,
            "seeds": self.seeds,
            "summaries": {
                p: {m: asdict(s) for m, s in per.items()} for p, per in self.summaries.items()
            },
            "point_ms_p50": self.point_ms_p50,
            "point_ms_p95": self.point_ms_p95,
            "coverage_accuracy": self.coverage_accuracy,
            "regions": {
                p: {r: {m: _jsonable(asdict(s)) for m, s in per.items()} for r, per in rs.items()}
                for p, rs in self.regions.items()
            },
            "pairs": [_jsonable(asdict(p)) for p in self.pairs],
        }


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float):
        return None if not np.isfinite(obj) else obj
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_jsonable(v) for v in obj]
    return obj


def sample_body_points(body_lps: Callable[[], np.ndarray], n: int, seed: int) -> np.ndarray:
    """``n`` points drawn without replacement from the ``(M, 3)`` body voxels ``body_lps()``."""
    pts = body_lps()
    rng = np.random.default_rng(seed)
    if len(pts) == 0:
        return np.zeros((0, 3))
    sel = rng.choice(len(pts), size=min(n, len(pts)), replace=False)
    # Jitter within the 2 mm voxel so points are not all on grid nodes.
    return pts[sel] + rng.uniform(-1.0, 1.0, size=(len(sel), 3))


def sample_pair_points(engine: PointPair, n: int, seed: int, pair: int) -> np.ndarray:
    """The ``n`` evaluation points of one pair: inside the current's body, seeded by the pair."""
    grid = engine.current_grid

    def body_lps() -> np.ndarray:
        zs, ys, xs = np.nonzero(grid.body)
        return grid.fine.lps_of(np.column_stack([xs, ys, zs]).astype(np.float64))

    return sample_body_points(body_lps, n, seed * 1000 + pair)


def pair_source(names: Sequence[str], seed: int, pair: int) -> str:
    """The body of pair ``pair`` of ``seed``: the role's bodies in turn, one step per seed."""
    return names[(pair + seed) % len(names)]


def role_sources(role: str) -> list[str]:
    """The available named bodies of a role (OpenKBP scans are head-and-neck only and coarse).

    Raises
    ------
    ValueError
        An unknown role.
    """
    from app.sim.roles import bodies
    from app.sim.sources import available_sources

    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    return available_sources(
        list(bodies("test" if role == "test" else "validation", openkbp=False))
    )


def evaluate_point_pair(
    current_scan: Any,
    prior_scan: Any,
    matcher: Matcher,
    methods: Sequence[str] = POINT_METHODS,
    n_points: int = 200,
    params: PointParams | None = None,
    labels: tuple[str, str, int, int] = ("", "", 0, 0),
) -> PointPairResult:
    """Score the chosen methods on one simulated pair (see the module docstring)."""
    from app.sim.point_truth import true_points

    preset, source, seed, pair = labels
    current, prior = current_scan.volume, prior_scan.volume
    t0 = time.perf_counter()
    cur_index, pri_index = matcher.index(current), matcher.index(prior)
    alignment = matcher.align(cur_index, pri_index)
    t_index = time.perf_counter() - t0
    t0 = time.perf_counter()
    engine = PointPair.prepare(current, prior, alignment, params)
    t_prepare = time.perf_counter() - t0
    t0 = time.perf_counter()
    engine.register()
    t_register = time.perf_counter() - t0
    pts = sample_pair_points(engine, n_points, seed, pair)
    truth, covered = true_points(current_scan, prior_scan, pts)
    result = PointPairResult(preset, source, seed, pair, len(pts), int(covered.sum()))
    result.region = _region(source)
    result.registration = engine.registration_note
    sel = np.flatnonzero(covered)

    def errors(answers: np.ndarray) -> list[float]:
        d = np.linalg.norm(answers[sel] - truth[sel], axis=1)
        return [round(float(v), 3) if np.isfinite(v) else float("inf") for v in d]

    rigid = None
    for method in methods:
        t0 = time.perf_counter()
        if method == "engine":
            answers = np.full((len(pts), 3), np.nan)
            decided = np.zeros(len(pts), dtype=bool)
            for i, p in enumerate(pts):
                t1 = time.perf_counter()
                m = engine.locate(p)
                result.point_ms.append(round((time.perf_counter() - t1) * 1e3, 3))
                decided[i] = m.in_coverage
                if covered[i] and not m.in_coverage:
                    result.missed_reasons[m.message] = result.missed_reasons.get(m.message, 0) + 1
                if m.prior_point is not None:
                    answers[i] = m.prior_point
                    if covered[i]:
                        result.confidence.append(m.confidence)
            result.coverage_correct = int(np.sum(decided == covered))
            result.seconds["engine_index"] = round(t_index, 3)
            result.seconds["engine_prepare"] = round(t_prepare, 3)
            result.seconds["engine_register"] = round(t_register, 3)
            seconds = t_prepare + t_register
        elif method == "same_coordinate":
            answers = pts.copy()
            seconds = 0.0
        elif method == "slice_sync":
            n_prior = prior.geometry.normal
            zc = pts @ current.geometry.normal
            zp = alignment.map_z(zc)
            answers = pts + (zp - pts @ n_prior)[:, None] * n_prior
            seconds = 0.0
        elif method == "rigid" or method == "bspline":
            if rigid is None:
                t1 = time.perf_counter()
                rigid = rigid_transform(current, prior)
                result.seconds["rigid"] = round(time.perf_counter() - t1, 3)
            if method == "rigid":
                answers = map_points(rigid, pts)
                seconds = result.seconds["rigid"]
            else:
                t1 = time.perf_counter()
                try:
                    bspline = bspline_transform(current, prior, rigid)
                    answers = map_points(bspline, pts)
                except RuntimeError as exc:
                    # SimpleITK gives up when the rigid start leaves no overlap
                    # (validation head pair, standard seed 1): the baseline
                    # answers nothing, so every point counts as missed.
                    log.warning("B-spline baseline failed: %s", str(exc).strip()[-120:])
                    result.baseline_failures.append("bspline")
                    answers = np.full((len(pts), 3), np.nan)
                # Its time includes the rigid registration it starts from.
                seconds = time.perf_counter() - t1 + result.seconds["rigid"]
        else:
            raise ValueError(f"unknown method {method!r}")
        del t0
        result.errors[method] = errors(answers)
        result.seconds[method] = round(float(seconds), 3)
    return result


def _region(source: str) -> str:
    """The body region of a source volume ("" for a name the roles do not know)."""
    from app.sim.roles import region_of

    try:
        return region_of(source)
    except KeyError:
        return ""


def _pair_line(res: PointPairResult, methods: Sequence[str]) -> str:
    """One pair's figures for the progress log: median / p95 (mm) per method, times."""
    parts = []
    for m in methods:
        e = np.asarray(res.errors[m], dtype=np.float64)
        if len(e):
            med = np.percentile(e, 50, method="lower")
            p95 = np.percentile(e, 95, method="higher")
            parts.append(f"{m} {med:.2f}/{p95:.2f}")
    ms = f"; engine {np.percentile(res.point_ms, 95):.0f} ms p95/point" if res.point_ms else ""
    note = f"; {res.registration}" if res.registration else ""
    return f"{res.n_covered} covered points; median/p95 mm: " + ", ".join(parts) + ms + note


def summarise_points(pairs: Sequence[PointPairResult], method: str) -> PointMethodSummary:
    """Pool one method's errors over pairs."""
    e = np.concatenate([np.asarray(p.errors[method], dtype=np.float64) for p in pairs])
    if len(e) == 0:
        nan = float("nan")
        return PointMethodSummary(0, nan, nan, nan, nan, nan, nan)
    return PointMethodSummary(
        n=int(len(e)),
        median=float(np.percentile(e, 50, method="lower")),
        p95=float(np.percentile(e, 95, method="higher")),
        within5=float(np.mean(e <= 5.0) * 100),
        within10=float(np.mean(e <= 10.0) * 100),
        missed=float(np.mean(~np.isfinite(e)) * 100),
        seconds_per_pair=float(np.mean([p.seconds[method] for p in pairs])),
    )


def run_point_evaluation(
    matcher: Matcher,
    presets: Sequence[str] = ("standard", "hard"),
    seeds: Sequence[int] = (0, 1),
    n_pairs: int = 3,
    n_points: int = 200,
    role: str = "validation",
    sources: Sequence[str] | None = None,
    methods: Sequence[str] = POINT_METHODS,
    params: PointParams | None = None,
    progress: Callable[[str], None] | None = None,
) -> PointEvalReport:
    """Evaluate on ``n_pairs`` pairs per preset and seed, cycling over the role's volumes.

    Raises
    ------
    ValueError
        An unknown role, or no source volume of the role is available.
    """
    from app.ml.evaluation.slices import make_pair

    names = role_sources(role)  # checks the role, whatever ``sources`` says
    if sources is not None:
        names = list(sources)
    if not names:
        raise ValueError(f"no {role} CT volume is available to evaluate on")
    pairs: list[PointPairResult] = []
    summaries: dict[str, dict[str, PointMethodSummary]] = {}
    ms50: dict[str, float] = {}
    ms95: dict[str, float] = {}
    cov_acc: dict[str, float] = {}
    regions: dict[str, dict[str, dict[str, PointMethodSummary]]] = {}
    for preset in presets:
        done: list[PointPairResult] = []
        for seed in seeds:
            for t in range(n_pairs):
                name = pair_source(names, seed, t)
                if progress:
                    progress(f"{preset} seed {seed} pair {t + 1}/{n_pairs} ({name})")
                sim = make_pair(name, preset, seed, t)
                res = evaluate_point_pair(
                    sim.current, sim.prior, matcher, methods, n_points, params,
                    (preset, name, seed, t),
                )  # fmt: skip
                done.append(res)
                if progress:
                    progress("  " + _pair_line(res, methods))
        pairs.extend(done)
        summaries[preset] = {m: summarise_points(done, m) for m in methods}
        regions[preset] = {
            r: {m: summarise_points([p for p in done if p.region == r], m) for m in methods}
            for r in sorted({p.region for p in done})
        }
        if "engine" in methods:
            ms = np.concatenate([np.asarray(p.point_ms) for p in done])
            ms50[preset] = float(np.percentile(ms, 50)) if len(ms) else float("nan")
            ms95[preset] = float(np.percentile(ms, 95)) if len(ms) else float("nan")
            n_all = sum(p.n_points for p in done)
            cov_acc[preset] = 100.0 * sum(p.coverage_correct for p in done) / max(n_all, 1)
    return PointEvalReport(
        matcher.model.identity, role, list(seeds), summaries, ms50, ms95, cov_acc, pairs, regions
    )


def calibration_rows(pairs: Sequence[PointPairResult]) -> list[tuple[float, int, float, float]]:
    """Per engine confidence band: (lower edge, points, median, 90th percentile error mm)."""
    conf = np.concatenate([np.asarray(p.confidence) for p in pairs])
    err = np.concatenate(
        [np.asarray([e for e in p.errors["engine"] if np.isfinite(e)]) for p in pairs]
    )
    rows = []
    edges = (0.8, 0.6, 0.4, 0.0)
    upper = 1.01
    for lo in edges:
        sel = (conf >= lo) & (conf < upper)
        if sel.any():
            rows.append(
                (lo, int(sel.sum()), float(np.median(err[sel])), float(np.percentile(err[sel], 90)))
            )
        upper = lo
    return rows


def format_point_report(report: PointEvalReport) -> str:
    """The evaluation table, the engine's timings and the goal checks."""
    lines = [
        f"model: {report.model}   role: {report.role}   seeds: {report.seeds}",
        "3-D error (mm) over points both scans image; a 'not covered' answer counts as "
        "infinite. s/pair: registration time (engine: grids, shift, affine and its 3-D "
        "registration, after indexing).",
    ]
    for preset, per in report.summaries.items():
        n_pairs = sum(1 for p in report.pairs if p.preset == preset)
        lines += [
            "",
            f"[{preset}]  {n_pairs} pairs",
            f"{'method':<16} {'points':>6} {'median':>7} {'p95':>7} {'<=5mm':>6} {'<=10mm':>7} "
            f"{'missed':>7} {'s/pair':>7}",
        ]
        for method, s in per.items():
            lines.append(
                f"{method:<16} {s.n:>6} {s.median:>7.2f} {s.p95:>7.2f} {s.within5:>5.1f}% "
                f"{s.within10:>6.1f}% {s.missed:>6.1f}% {s.seconds_per_pair:>7.1f}"
            )
        if preset in report.point_ms_p50:
            idx = np.mean(
                [p.seconds.get("engine_index", np.nan) for p in report.pairs if p.preset == preset]
            )
            lines.append(
                f"engine per point: p50 {report.point_ms_p50[preset]:.1f} ms, "
                f"p95 {report.point_ms_p95[preset]:.1f} ms; indexing both series "
                f"{idx:.1f} s/pair; coverage decisions correct "
                f"{report.coverage_accuracy[preset]:.1f}%"
            )
        if "engine" in per:
            e = per["engine"]
            ok_med = e.median <= GOALS["median"]
            ok_p95 = e.p95 <= GOALS["p95"]
            if "rigid" in per:
                r = per["rigid"]
                better = "yes" if e.median < r.median and e.p95 < r.p95 else "NO"
            else:
                better = "n/a (rigid not run)"
            lines.append(
                f"goals: median <= {GOALS['median']} mm {'met' if ok_med else 'MISSED'}; "
                f"p95 <= {GOALS['p95']} mm {'met' if ok_p95 else 'MISSED'}; "
                f"better than rigid {better}"
            )
    for preset, per_region in report.regions.items():
        lines += ["", f"[{preset}] per region: median / p95 mm (points)"]
        for region, per in per_region.items():
            cells = [f"{m} {s.median:.2f}/{s.p95:.2f}" for m, s in per.items()]
            n = next(iter(per.values())).n if per else 0
            lines.append(f"  {region or '?':<15} ({n:>4}) " + ", ".join(cells))
    misses: dict[str, int] = {}
    for p in report.pairs:
        for reason, count in p.missed_reasons.items():
            misses[reason] = misses.get(reason, 0) + count
    if misses:
        lines += ["", "engine 'not covered' where both scans image the point:"]
        for reason, count in sorted(misses.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {count:>5}  {reason}")
    if any(p.confidence for p in report.pairs):
        lines += ["", "engine confidence band: points, median, p90 error (mm)"]
        for lo, n, med, p90 in calibration_rows(report.pairs):
            lines.append(f"  >= {lo:.1f}: {n:>5} {med:>6.2f} {p90:>6.2f}")
    return "\n".join(lines)
