"""``priorsync eval``: slice-matching accuracy on simulated pairs of the test bodies.

Prints, per preset, the engine's |dz| statistics and the engine refined by
registration (stage two of the sync) beside three baselines (equal DICOM z,
raw-pixel NCC, SimpleITK rigid registration) and the oracle floor, pooled over
the simulation seeds, then per seed and per body region, and whether the
accuracy goals are met. ``--role validation`` scores the validation bodies
instead (for choosing settings; the test role is for the model card).
``--json FILE`` also writes every figure and per-pair result. See
:mod:`app.ml.evaluation.slices` and :mod:`app.ml.evaluation.seeds`.

Simulated pairs (DICOM/NIfTI as a user would have them, ~60-200 MB a pair)
and the baselines' answers are kept in ``cache_dir()/eval-pairs`` so reruns
with a new model take minutes; ``--clear-cache`` deletes them first.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.commands.exit_codes import EXIT_INPUT, EXIT_MODEL, EXIT_OK
from app.commands.options import add_model_arguments, write_json_results

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``priorsync eval``."""
    from app.ml.evaluation.slices import METHODS

    parser.add_argument(
        "--preset", choices=("standard", "hard", "both"), default="both", help="simulation preset"
    )
    parser.add_argument(
        "--pairs", type=int, default=6, help="simulated pairs per preset (default 6)"
    )
    parser.add_argument(
        "--seeds",
        default="0,1,2",
        help="comma-separated simulation seeds; each simulates its own pairs (default 0,1,2)",
    )
    parser.add_argument(
        "--role",
        choices=("test", "validation"),
        default="test",
        help="bodies to evaluate on (default test; validation is for choosing settings)",
    )
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="write results")
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated methods (default: all: {','.join(METHODS)})",
    )
    parser.add_argument(
        "--fresh-baselines",
        action="store_true",
        help="recompute the baselines instead of reusing their answers cached with each pair",
    )
    parser.add_argument(
        "--clear-cache",
        action="store_true",
        help="delete the cached simulated pairs (cache_dir()/eval-pairs) before running",
    )
    add_model_arguments(parser, cache=False)


def run(args: argparse.Namespace) -> int:
    """Run ``priorsync eval``; returns the exit code."""
    from app.ml.anatomy.match import Matcher
    from app.ml.evaluation.seeds import format_breakdown, run_seeds
    from app.ml.evaluation.slices import METHODS, format_report
    from app.ml.runtime.model import EmbeddingModel, ModelError

    if args.pairs < 1:
        print("priorsync eval: error: --pairs must be at least 1", file=sys.stderr)
        return EXIT_INPUT
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        print(f"priorsync eval: error: unknown method(s) {unknown}; use {METHODS}", file=sys.stderr)
        return EXIT_INPUT
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds or any(s < 0 for s in seeds):
        print(
            f"priorsync eval: error: --seeds must be non-negative integers, got {args.seeds!r}",
            file=sys.stderr,
        )
        return EXIT_INPUT
    try:
        model = EmbeddingModel.load(args.model, device=args.device)
    except ModelError as exc:
        print(f"priorsync eval: error: {exc}", file=sys.stderr)
        return EXIT_MODEL
    presets = ("standard", "hard") if args.preset == "both" else (args.preset,)
    if args.clear_cache:
        import shutil

        from app.paths import cache_dir

        shutil.rmtree(cache_dir() / "eval-pairs", ignore_errors=True)

    def progress(message: str) -> None:
        print(f"  {message}", file=sys.stderr, flush=True)

    # No index cache: every series is new, and timings must include embedding.
    matcher = Matcher(model, cache=False)
    try:
        report = run_seeds(
            matcher,
            seeds,
            presets,
            args.pairs,
            role=args.role,
            methods=methods,
            progress=progress,
            fresh_baselines=args.fresh_baselines,
        )
    except ValueError as exc:
        print(f"priorsync eval: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    print(f"role: {args.role}")
    print(format_report(report))
    print(format_breakdown(report, methods))
    if args.json is not None:
        return write_json_results(args.json, report.to_dict(), "eval")
    return EXIT_OK
