"""Held-out evaluation of slice matching on simulated follow-up pairs.

For each pair, a current and a prior scan are simulated from one held-out real
CT (or the real CT itself serves as the current), written to disk through the
application's writers (DICOM or NIfTI, alternating) and read back through the
real readers, so the evaluation sees exactly what a user's files would give.
The simulator's ground truth says, for every current slice, at which ``z`` of
the prior the same anatomy lies (:func:`app.sim.followup.true_correspondence`).

Every method (the engine; ``exact``, the engine blended with the point
engine's verified registration (:mod:`app.ml.points.levels`, stage two of
"instant, then exact"); ``refined``, the engine refined by a rigid
registration started from its answer (:mod:`app.ml.anatomy.registration`);
three baselines and the oracle) is scored the same way, per preset:

* ``|dz|`` = ``|z(prior_index) - true prior z|`` (mm, in the prior's slice_z)
  over the current slices that truly lie in the prior's coverage, whatever the
  method decided about coverage (a wrongly "uncovered" slice still counts, at
  the prior slice nearest the level the method mapped it to);
* mean, median, p95 of ``|dz|``, % within 5 and 10 mm, the worst pair's p95;
* coverage-decision accuracy over all current slices;
* the oracle is the prior slice nearest the truth: the floor set by the
  prior's slice spacing.

Simulated pairs are cached on disk (keyed by source, preset, seed, pair and a
fingerprint of the simulator's code), and so are the baselines' answers on
each pair (keyed by a fingerprint of the baselines' code and SimpleITK's
version, with their measured wall times), so a rerun with a new model costs
only the engine's matching; ``fresh_baselines`` recomputes them.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np

from app.core.volume import Volume
from app.io.safe_write import safe_write
from app.ml.anatomy.match import Matcher
from app.ml.anatomy.registration import RefineParams, refine_alignment
from app.ml.evaluation.baselines import match_equal_z, match_ncc, match_rigid, nearest_slices
from app.ml.points.levels import refine_levels
from app.ml.points.locate import PointPair
from app.paths import cache_dir

__all__ = [
    "METHODS",
    "EvalReport",
    "MethodSummary",
    "PairResult",
    "SimPair",
    "evaluate_pair",
    "format_report",
    "make_pair",
    "run_evaluation",
    "summarise",
]

log = logging.getLogger(__name__)

METHODS = ("engine", "exact", "refined", "equal_z", "ncc", "rigid", "oracle")
_FORMATS: tuple[Literal["dicom"], Literal["nifti"]] = ("dicom", "nifti")


@dataclass
class PairResult:
    """Scores of every method on one simulated pair."""

    preset: str
    source: str
    pair: int
    n_current: int
    n_prior: int
    n_covered: int
    current_spacing_mm: float
    prior_spacing_mm: float
    errors: dict[str, list[float]] = field(default_factory=dict)  # |dz| per covered slice
    coverage_correct: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def p95(self, method: str) -> float:
        e = self.errors.get(method, [])
        return float(np.percentile(e, 95)) if e else float("nan")


@dataclass
class MethodSummary:
    """Aggregate figures of one method over one preset's pairs."""

    mean: float
    median: float
    p95: float
    within5: float
    within10: float
    worst_pair_p95: float
    coverage_accuracy: float
    seconds_per_pair: float


@dataclass
class EvalReport:
    """Per-preset summaries and per-pair results."""

    model: str
    seed: int
    summaries: dict[str, dict[str, MethodSummary]]
    pairs: list[PairResult]
    seeds: tuple[int, ...] = ()  # set when the report pools several simulation seeds

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "seed": self.seed,
            "seeds": list(self.seeds or (self.seed,)),
            "summaries": {
                preset: {m: asdict(s) for m, s in per.items()}
                for preset, per in self.summaries.items()
            },
            "pairs": [asdict(p) for p in self.pairs],
        }


# --------------------------------------------------------------------------- pairs


def _simulator_fingerprint() -> str:
    """Hash of the simulator's source, so cached pairs die with a simulator change."""
    from app.sim import followup

    path = inspect.getsourcefile(followup)
    data = Path(path).read_bytes() if path else b""
    return hashlib.sha256(data).hexdigest()[:16]


@dataclass
class SimPair:
    """A simulated pair read back from disk, its simulation parameters and its folder."""

    current: Any
    prior: Any
    params: dict[str, Any]
    folder: Path


def make_pair(
    source_name: str, preset: str, seed: int, pair: int, root: Path | None = None
) -> SimPair:
    """Simulate (or reuse) one pair on disk and read it back through the real readers.

    One pair in three uses the real source itself as the current scan (the
    prior is always simulated); pairs go to disk as DICOM or NIfTI, two by two.
    Both patterns are staggered against the cycle over sources so every
    source meets both kinds of pair and both formats.

    Returns
    -------
    SimPair
        :class:`~app.sim.followup.SimulatedScan` objects read back from disk,
        what the simulator drew for each, and the pair's folder.
    """
    from app.sim.followup import (
        SIM_PRESETS,
        identity_scan,
        read_scan,
        simulate_followup,
        write_scan,
    )
    from app.sim.sources import load_source

    root = root or cache_dir() / "eval-pairs"
    key = hashlib.sha256(
        f"{source_name}|{preset}|{seed}|{pair}|{_simulator_fingerprint()}".encode()
    ).hexdigest()[:20]
    folder = root / f"{preset}-{source_name}-{pair:03d}-{key}"
    done = folder / "complete"
    if done.is_file():
        try:
            return SimPair(
                read_scan(folder / "current"),
                read_scan(folder / "prior"),
                _read_params(folder),
                folder,
            )
        except Exception as exc:  # a damaged cache entry: rebuild it below
            log.info("cached pair %s unreadable (%s); simulating it again", folder.name, exc)
    shutil.rmtree(folder, ignore_errors=True)
    source = load_source(source_name)
    rng = np.random.default_rng([seed, sum(map(ord, preset)), pair, sum(map(ord, source_name))])
    params = SIM_PRESETS[preset]
    use_source = (pair + pair // 3) % 3 == 2
    current = identity_scan(source) if use_source else simulate_followup(source, params, rng)
    prior = simulate_followup(source, params, rng)
    fmt = _FORMATS[(pair // 2) % 2]
    folder.mkdir(parents=True, exist_ok=True)
    write_scan(current, folder / "current", fmt=fmt)
    write_scan(prior, folder / "prior", fmt=fmt)
    meta = {"current": current.params_used, "prior": prior.params_used, "format": fmt}
    (folder / "params.json").write_text(json.dumps(meta, default=str))
    cur_back, pri_back = read_scan(folder / "current"), read_scan(folder / "prior")
    # The reader must return the slices in the order the simulator made them.
    for made, back in ((current, cur_back), (prior, pri_back)):
        if not np.allclose(made.volume.slice_z, back.volume.slice_z, atol=0.01):
            raise RuntimeError(f"{folder.name}: slices read back in another order or place")
    done.write_text("ok")
    return SimPair(cur_back, pri_back, meta, folder)


def _read_params(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "params.json").read_text())


def _baselines_fingerprint() -> str:
    """Hash of the baselines' code and SimpleITK's version: cached answers die with either."""
    import SimpleITK as sitk

    from app.ml.evaluation import baselines

    path = inspect.getsourcefile(baselines)
    data = Path(path).read_bytes() if path else b""
    return hashlib.sha256(data + sitk.Version_VersionString().encode()).hexdigest()[:16]


def _load_baseline_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_baseline_cache(path: Path, cache: dict[str, Any]) -> None:
    safe_write(path, json.dumps(cache).encode(), overwrite=True)


# --------------------------------------------------------------------------- scoring


def _spacing(volume: Volume) -> float:
    z = np.sort(volume.slice_z)
    return float(np.median(np.diff(z))) if len(z) > 1 else 0.0


def evaluate_pair(
    current_scan: Any,
    prior_scan: Any,
    matcher: Matcher,
    methods: Sequence[str] = METHODS,
    preset: str = "",
    source: str = "",
    pair: int = 0,
    params: dict[str, Any] | None = None,
    baseline_cache: dict[str, Any] | None = None,
    refine_params: RefineParams | None = None,
    seed: int = 0,
) -> PairResult:
    """Score the chosen methods on one pair of simulated scans.

    ``baseline_cache`` (a dict, filled in place) holds the baselines' answers
    and wall times on this pair; present answers are reused, not recomputed.
    ``"exact"`` and ``"refined"`` start from the engine's alignment (computed
    here if the engine is not among ``methods``); their time is the stage's
    alone (``exact``: the point pair's grids, anchors and registration).
    """
    from app.sim.followup import true_correspondence

    true_z, covered = true_correspondence(current_scan, prior_scan)
    current: Volume = current_scan.volume
    prior: Volume = prior_scan.volume
    pz = prior.slice_z
    result = PairResult(
        preset=preset,
        source=source,
        pair=pair,
        n_current=current.n_slices,
        n_prior=prior.n_slices,
        n_covered=int(covered.sum()),
        current_spacing_mm=_spacing(current),
        prior_spacing_mm=_spacing(prior),
        params=params or {},
        seed=seed,
    )
    engine_alignment = None
    for method in sorted(methods, key=lambda m: m != "engine"):  # the engine first
        t0 = time.perf_counter()
        if method == "engine":
            # Fresh series each time (no cache hit): the timing includes embedding.
            cur = matcher.index(current)
            pri = matcher.index(prior)
            engine_alignment = matcher.align(cur, pri)
            idx, in_cov = engine_alignment.prior_index, engine_alignment.in_coverage
            seconds = time.perf_counter() - t0
        elif method == "exact":
            if engine_alignment is None:
                engine_alignment = matcher.align(matcher.index(current), matcher.index(prior))
            t0 = time.perf_counter()
            pair_engine = PointPair.prepare(current, prior, engine_alignment)
            exact = refine_levels(pair_engine).alignment
            idx, in_cov = exact.prior_index, exact.in_coverage
            seconds = time.perf_counter() - t0
        elif method == "refined":
            if engine_alignment is None:
                engine_alignment = matcher.align(matcher.index(current), matcher.index(prior))
            t0 = time.perf_counter()
            refined = refine_alignment(current, prior, engine_alignment, refine_params).alignment
            idx, in_cov = refined.prior_index, refined.in_coverage
            seconds = time.perf_counter() - t0
        elif method == "oracle":
            idx = nearest_slices(pz, true_z)
            in_cov = covered
            seconds = 0.0
        elif baseline_cache is not None and method in baseline_cache:
            hit = baseline_cache[method]
            idx = np.asarray(hit["prior_index"], dtype=np.int64)
            in_cov = np.asarray(hit["in_coverage"], dtype=bool)
            seconds = float(hit["seconds"])
        else:
            fn = {"equal_z": match_equal_z, "ncc": match_ncc, "rigid": match_rigid}[method]
            res = fn(current, prior)
            idx, in_cov, seconds = res.prior_index, res.in_coverage, res.seconds
            if baseline_cache is not None:
                baseline_cache[method] = {
                    "prior_index": [int(j) for j in idx],
                    "in_coverage": [bool(c) for c in in_cov],
                    "seconds": float(seconds),
                }
        err = np.abs(pz[np.asarray(idx)] - true_z)[covered]
        result.errors[method] = [round(float(e), 3) for e in err]
        result.coverage_correct[method] = int(np.sum(np.asarray(in_cov) == covered))
        result.seconds[method] = round(float(seconds), 3)
    return result


def summarise(pairs: Sequence[PairResult], method: str) -> MethodSummary:
    """Aggregate one method over pairs (slices pooled; worst pair by p95)."""
    errs = np.concatenate([np.asarray(p.errors[method], dtype=np.float64) for p in pairs])
    n_all = sum(p.n_current for p in pairs)
    if len(errs) == 0:
        errs = np.array([np.nan])
    return MethodSummary(
        mean=float(np.mean(errs)),
        median=float(np.median(errs)),
        p95=float(np.percentile(errs, 95)),
        within5=float(np.mean(errs <= 5.0) * 100.0),
        within10=float(np.mean(errs <= 10.0) * 100.0),
        worst_pair_p95=float(max(p.p95(method) for p in pairs)),
        coverage_accuracy=float(sum(p.coverage_correct[method] for p in pairs) / n_all * 100.0),
        seconds_per_pair=float(np.mean([p.seconds[method] for p in pairs])),
    )


def run_evaluation(
    matcher: Matcher,
    presets: Sequence[str] = ("standard", "hard"),
    n_pairs: int = 6,
    seed: int = 0,
    sources: Sequence[str] | None = None,
    methods: Sequence[str] = METHODS,
    progress: Callable[[str], None] | None = None,
    fresh_baselines: bool = False,
    role: str = "test",
    refine_params: RefineParams | None = None,
) -> EvalReport:
    """Evaluate on ``n_pairs`` simulated pairs per preset, cycling over one role's bodies.

    Pairs go round the body regions (chest, abdomen-pelvis, head-neck), then
    round the bodies of each region, starting ``seed * n_pairs`` pairs into
    that cycle, so several seeds meet different bodies and every region gets
    its share whatever the number of bodies in it. Baseline answers cached
    with each pair are reused unless ``fresh_baselines``.

    Raises
    ------
    ValueError
        No source volume of the role is available.
    """
    from app.sim.roles import Role, bodies
    from app.sim.sources import available_sources

    # ``role`` is a Role; the CLI's choices keep it one.
    names = list(sources) if sources is not None else available_sources(bodies(cast(Role, role)))
    if not names:
        raise ValueError(f"no {role} CT volume is available to evaluate on")
    order = region_cycle(names)
    results: list[PairResult] = []
    summaries: dict[str, dict[str, MethodSummary]] = {}
    for preset in presets:
        preset_results = []
        for t in range(n_pairs):
            name = order(seed * n_pairs + t)
            if progress:
                progress(f"{preset} pair {t + 1}/{n_pairs} ({name}): simulating / reading")
            sim = make_pair(name, preset, seed, t)
            cache_path = sim.folder / f"baselines-{_baselines_fingerprint()}.json"
            cache = {} if fresh_baselines else _load_baseline_cache(cache_path)
            n_cached = len(cache)
            if progress:
                progress(f"{preset} pair {t + 1}/{n_pairs} ({name}): matching")
            res = evaluate_pair(
                sim.current,
                sim.prior,
                matcher,
                methods,
                preset,
                name,
                t,
                sim.params,
                cache,
                refine_params,
                seed,
            )
            if len(cache) != n_cached or fresh_baselines:
                _save_baseline_cache(cache_path, cache)
            preset_results.append(res)
            if progress:
                progress(
                    f"{preset} pair {t + 1}/{n_pairs}: "
                    + ", ".join(
                        f"{m} mean {np.mean(res.errors[m]):.2f} mm"
                        for m in methods
                        if res.errors[m]
                    )
                )
        results.extend(preset_results)
        summaries[preset] = {m: summarise(preset_results, m) for m in methods}
    return EvalReport(matcher.model.identity, seed, summaries, results)


def region_cycle(names: Sequence[str]) -> Callable[[int], str]:
    """``t -> body``: round the regions of ``names`` in turn, then round each region's bodies."""
    from app.sim.roles import REGIONS, region_of

    def region(name: str) -> str:
        try:
            return region_of(name)
        except KeyError:  # a source without a role (given by name): a region of its own
            return "other"

    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(region(n), []).append(n)
    ordered = [groups[r] for r in (*REGIONS, "other") if r in groups]

    def pick(t: int) -> str:
        members = ordered[t % len(ordered)]
        return members[(t // len(ordered)) % len(members)]

    return pick


# --------------------------------------------------------------------------- report

# Issue 18's goals on the test role: mean |dz| per preset, share within 10 mm,
# worst pair p95, coverage decisions.
_GOALS = {"standard": 1.0, "hard": 2.0}
_GOAL_WITHIN10 = 99.5
_GOAL_WORST_P95 = 6.0
_GOAL_COVERAGE = 99.0


def format_report(report: EvalReport) -> str:
    """The evaluation table and the goal checks, as printed by ``priorsync eval``."""
    seeds = ", ".join(map(str, report.seeds)) if report.seeds else str(report.seed)
    lines = [
        f"model: {report.model}   seed{'s' if len(report.seeds) > 1 else ''}: {seeds}",
        "s/pair: wall time per pair; the engine's includes embedding both series; the "
        "baselines' were measured when first computed (their answers are cached with each pair)",
    ]
    header = (
        f"{'method':<9}{'mean':>7}{'median':>8}{'p95':>7}{'<=5mm':>8}{'<=10mm':>8}"
        f"{'worst p95':>11}{'coverage':>10}{'s/pair':>8}"
    )
    for preset, per in report.summaries.items():
        pairs = [p for p in report.pairs if p.preset == preset]
        n_slices = sum(p.n_covered for p in pairs)
        lines += [
            "",
            f"preset {preset}: {len(pairs)} pairs, {n_slices} covered current slices "
            "(|dz| in mm, coverage = correct in/out decisions %)",
            header,
        ]
        for method, s in per.items():
            lines.append(
                f"{method:<9}{s.mean:>7.2f}{s.median:>8.2f}{s.p95:>7.2f}{s.within5:>7.1f}%"
                f"{s.within10:>7.1f}%{s.worst_pair_p95:>11.2f}{s.coverage_accuracy:>9.1f}%"
                f"{s.seconds_per_pair:>8.2f}"
            )
        for method in ("engine", "exact", "refined"):
            lines += _goal_lines(preset, per, method)
    return "\n".join(lines)


def _goal_lines(preset: str, per: dict[str, MethodSummary], method: str) -> list[str]:
    e = per.get(method)
    if e is None:
        return []

    def mark(ok: bool) -> str:
        return "met" if ok else "NOT met"

    out = [f"  {method}:"]
    if preset in _GOALS:
        goal = _GOALS[preset]
        out.append(f"  goal mean |dz| <= {goal} mm: {e.mean:.2f} mm ({mark(e.mean <= goal)})")
    out.append(
        f"  goal >= {_GOAL_WITHIN10} % within 10 mm: {e.within10:.1f} % "
        f"({mark(e.within10 >= _GOAL_WITHIN10)})"
    )
    out.append(
        f"  goal no pair p95 > {_GOAL_WORST_P95:g} mm: worst {e.worst_pair_p95:.2f} mm "
        f"({mark(e.worst_pair_p95 <= _GOAL_WORST_P95)})"
    )
    out.append(
        f"  goal coverage decisions >= {_GOAL_COVERAGE:g} % right: {e.coverage_accuracy:.1f} % "
        f"({mark(e.coverage_accuracy >= _GOAL_COVERAGE)})"
    )
    if "ncc" in per and e.mean > 0:
        ratio = per["ncc"].mean / e.mean
        out.append(f"  goal >= 3x better than NCC: {ratio:.1f}x ({mark(ratio >= 3.0)})")
    if "rigid" in per and per["rigid"].seconds_per_pair > 0 and e.seconds_per_pair > 0:
        r = per["rigid"]
        out.append(
            f"  vs rigid registration: mean {e.mean:.2f} vs {r.mean:.2f} mm "
            f"({mark(e.mean <= r.mean)}: no worse), worst pair p95 "
            f"{e.worst_pair_p95:.2f} vs {r.worst_pair_p95:.2f} mm, "
            f"{r.seconds_per_pair / e.seconds_per_pair:.1f}x faster"
        )
    return out
