"""``priorsync eval-points``: point-correspondence accuracy on simulated pairs.

Prints, per preset, the 3-D error of the point engine beside four baselines
(same LPS coordinate, slice sync with the in-plane point unchanged, SimpleITK
rigid and B-spline registration), the engine's per-point time and the goal
checks, per preset and per body region. ``--role validation`` (default)
uses the validation bodies of :mod:`app.sim.roles`, for choosing settings;
``--role test`` the test bodies, to be run once for the reported figures. ``--json FILE``
also writes every figure and per-pair result. See :mod:`app.ml.evaluation.points`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.commands.exit_codes import EXIT_INPUT, EXIT_MODEL, EXIT_OK
from app.commands.options import add_model_arguments, write_json_results

__all__ = ["add_arguments", "run"]


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"seeds must be integers separated by commas: {text!r}"
        ) from None
    if not seeds:
        raise argparse.ArgumentTypeError("give at least one seed")
    return seeds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``priorsync eval-points``."""
    parser.add_argument(
        "--preset", choices=("standard", "hard", "both"), default="both", help="simulation preset"
    )
    parser.add_argument(
        "--role",
        choices=("test", "validation"),
        default="validation",
        help="validation: the validation bodies (tuning, default); test: the test bodies "
        "(run once, for the reported figures)",
    )
    parser.add_argument(
        "--seeds", type=_seeds, default=[0, 1], help="comma-separated simulation seeds (0,1)"
    )
    parser.add_argument(
        "--pairs", type=int, default=3, help="pairs per preset and seed (default 3)"
    )
    parser.add_argument("--points", type=int, default=200, help="points per pair (default 200)")
    parser.add_argument(
        "--methods",
        default="engine,same_coordinate,slice_sync,rigid,bspline",
        help="comma-separated methods (default: all)",
    )
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="write results")
    add_model_arguments(parser, cache=False)


def run(args: argparse.Namespace) -> int:
    """Run ``priorsync eval-points``; returns the exit code."""
    from app.ml.anatomy.match import Matcher
    from app.ml.evaluation.points import (
        POINT_METHODS,
        format_point_report,
        run_point_evaluation,
    )
    from app.ml.runtime.model import EmbeddingModel, ModelError

    def error(message: str) -> None:
        print(f"priorsync eval-points: error: {message}", file=sys.stderr)

    if args.pairs < 1 or args.points < 1:
        error("--pairs and --points must be at least 1")
        return EXIT_INPUT
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(POINT_METHODS))
    if unknown or not methods:
        error(f"unknown method(s) {unknown}; use {', '.join(POINT_METHODS)}")
        return EXIT_INPUT
    try:
        model = EmbeddingModel.load(args.model, device=args.device)
    except ModelError as exc:
        error(str(exc))
        return EXIT_MODEL
    presets = ("standard", "hard") if args.preset == "both" else (args.preset,)

    def progress(message: str) -> None:
        print(f"  {message}", file=sys.stderr, flush=True)

    # No index cache: every series is new, and the indexing time is reported.
    matcher = Matcher(model, cache=False)
    try:
        report = run_point_evaluation(
            matcher,
            presets,
            args.seeds,
            args.pairs,
            args.points,
            args.role,
            methods=methods,
            progress=progress,
        )
    except ValueError as exc:
        error(str(exc))
        return EXIT_INPUT
    print(format_point_report(report))
    if args.json is not None:
        return write_json_results(args.json, report.to_dict(), "eval-points")
    return EXIT_OK
