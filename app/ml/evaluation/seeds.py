"""Evaluation over several simulation seeds, with figures per seed and per body region.

:func:`run_seeds` runs :func:`app.ml.evaluation.slices.run_evaluation` once per seed
(each seed simulates other pairs, on other bodies of the role) and pools the
pairs into one :class:`~app.ml.evaluation.slices.EvalReport`, whose summaries are over
every seed. :func:`format_breakdown` adds the per-seed and per-region tables
that a pooled mean hides (one region or one seed can carry a failure).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from app.ml.anatomy.match import Matcher
from app.ml.anatomy.registration import RefineParams
from app.ml.evaluation.slices import METHODS, EvalReport, PairResult, run_evaluation, summarise

__all__ = ["format_breakdown", "pool_reports", "region_label", "report_from_dict", "run_seeds"]


def region_label(source: str) -> str:
    """Body region of an evaluated source (``"other"`` for one without a role)."""
    from app.sim.roles import region_of

    try:
        return region_of(source)
    except KeyError:
        return "other"


def run_seeds(
    matcher: Matcher,
    seeds: Sequence[int],
    presets: Sequence[str] = ("standard", "hard"),
    n_pairs: int = 6,
    *,
    role: str = "test",
    methods: Sequence[str] = METHODS,
    progress: Callable[[str], None] | None = None,
    fresh_baselines: bool = False,
    refine_params: RefineParams | None = None,
) -> EvalReport:
    """``n_pairs`` pairs per preset for each seed, pooled (see the module docstring).

    Raises
    ------
    ValueError
        No seed given, or no source volume of the role is available.
    """
    if not seeds:
        raise ValueError("at least one simulation seed is needed")
    pairs: list[PairResult] = []
    for seed in seeds:
        report = run_evaluation(
            matcher,
            presets,
            n_pairs,
            seed,
            methods=methods,
            progress=_seed_progress(progress, seed),
            fresh_baselines=fresh_baselines,
            role=role,
            refine_params=refine_params,
        )
        pairs.extend(report.pairs)
    summaries = {
        preset: {m: summarise([p for p in pairs if p.preset == preset], m) for m in methods}
        for preset in presets
    }
    return EvalReport(matcher.model.identity, int(seeds[0]), summaries, pairs, tuple(seeds))


def report_from_dict(data: dict) -> EvalReport:
    """An :class:`EvalReport` back from its ``to_dict()`` (``priorsync eval --json``)."""
    pairs = [PairResult(**p) for p in data["pairs"]]
    seeds = tuple(int(s) for s in data.get("seeds", [data["seed"]]))
    return _pooled(str(data["model"]), pairs, seeds)


def pool_reports(reports: Sequence[EvalReport]) -> EvalReport:
    """One report over the pairs of several (e.g. one run per seed, run side by side).

    Raises
    ------
    ValueError
        No report, or reports of different models.
    """
    if not reports:
        raise ValueError("no report to pool")
    models = {r.model for r in reports}
    if len(models) > 1:
        raise ValueError(f"reports of different models cannot be pooled: {sorted(models)}")
    seeds = tuple(dict.fromkeys(s for r in reports for s in (r.seeds or (r.seed,))))
    return _pooled(reports[0].model, [p for r in reports for p in r.pairs], seeds)


def _pooled(model: str, pairs: list[PairResult], seeds: tuple[int, ...]) -> EvalReport:
    presets = list(dict.fromkeys(p.preset for p in pairs))
    methods = [m for m in METHODS if pairs and all(m in p.errors for p in pairs)]
    summaries = {
        preset: {m: summarise([p for p in pairs if p.preset == preset], m) for m in methods}
        for preset in presets
    }
    return EvalReport(model, int(seeds[0]) if seeds else 0, summaries, pairs, seeds)


def _table(title: str, groups: dict[str, list[PairResult]], methods: Sequence[str]) -> list[str]:
    lines = [
        "",
        title,
        f"{'':<26}{'method':<9}{'pairs':>6}{'mean':>7}{'p95':>7}{'<=10mm':>8}{'worst p95':>11}"
        f"{'coverage':>10}",
    ]
    for label, members in groups.items():
        for method in methods:
            if method == "oracle" or not all(method in p.errors for p in members):
                continue
            s = summarise(members, method)
            lines.append(
                f"{label:<26}{method:<9}{len(members):>6}{s.mean:>7.2f}{s.p95:>7.2f}"
                f"{s.within10:>7.1f}%{s.worst_pair_p95:>11.2f}{s.coverage_accuracy:>9.1f}%"
            )
    return lines


def format_breakdown(report: EvalReport, methods: Sequence[str] | None = None) -> str:
    """Per preset: a table per seed and a table per body region (|dz| in mm)."""
    methods = list(methods or METHODS)
    lines: list[str] = []
    presets = list(dict.fromkeys(p.preset for p in report.pairs))
    for preset in presets:
        mine = [p for p in report.pairs if p.preset == preset]
        by_seed: dict[str, list[PairResult]] = {}
        for p in mine:
            by_seed.setdefault(f"{preset} seed {p.seed}", []).append(p)
        lines += _table(f"preset {preset}, per seed:", by_seed, methods)
        by_region: dict[str, list[PairResult]] = {}
        for p in sorted(mine, key=lambda p: region_label(p.source)):
            by_region.setdefault(f"{preset} {region_label(p.source)}", []).append(p)
        lines += _table(f"preset {preset}, per body region:", by_region, methods)
    return "\n".join(lines)


def _seed_progress(
    progress: Callable[[str], None] | None, seed: int
) -> Callable[[str], None] | None:
    """``progress`` with each message prefixed by its simulation seed."""
    if progress is None:
        return None
    report = progress

    def tick(message: str) -> None:
        report(f"seed {seed}: {message}")

    return tick
