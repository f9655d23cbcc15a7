"""``priorsync eval-sketch``: sketch-search accuracy on a data role's lesions and real tumours.

Prints hit@1, hit@10 and mAP with bootstrap 95 % intervals for the
representation's default weight, the anatomy-only baseline (w = 0) and the
sketch alone (w = 1), overall and per lesion class, for inserted lesions, the
role's real tumours and its visibly abnormal OpenKBP targets; ``--json FILE``
writes every figure and per-query result. See :mod:`app.ml.evaluation.sketch`.
``--role validation`` (with ``--sweep``) is for choosing settings; the test
role (the default) is run once per shipped setting, for the report. A validation
``--sweep`` also prints (and writes to the JSON, ``chosen_weight``) each
representation's default weight by the fixed rule of
:func:`app.ml.evaluation.sketch.choose_validation_weight`; ``priorsync
train-sketch --validation-json FILE`` stamps it into the exported models. The role's
bodies, tumour masks and OpenKBP labels come from the shared data folder;
what is missing is reported in the notes.

Exit codes: 0 success, 2 no usable source volume, 3 a model is missing or corrupt.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.commands.exit_codes import EXIT_INPUT, EXIT_MODEL, EXIT_OK
from app.commands.options import add_model_arguments, load_sketch_stack, write_json_results

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``priorsync eval-sketch``."""
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="write results")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--patients-per-volume",
        type=int,
        default=4,
        metavar="N",
        help="simulated lesion patients per held-out volume (default 4)",
    )
    parser.add_argument(
        "--sketches-per-lesion", type=int, default=2, help="queries per lesion (default 2)"
    )
    parser.add_argument(
        "--role",
        choices=("validation", "test"),
        default="test",
        help="data role evaluated (app/sim/roles.py): choose settings on validation, "
        "report the test role once (default test)",
    )
    parser.add_argument(
        "--openkbp",
        type=int,
        default=6,
        metavar="N",
        help="OpenKBP patients of the role to include (default 6)",
    )
    parser.add_argument(
        "--openkbp-patients",
        type=int,
        default=None,
        metavar="N",
        help="simulated lesion patients per OpenKBP volume (default: --patients-per-volume)",
    )
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="also score weights 0.1 ... 0.9 (for choosing the default on validation)",
    )
    parser.add_argument(
        "--compare",
        choices=("evidence", "learned"),
        action="append",
        default=None,
        help="also score this representation on the same patients and sketches, at its own "
        "default weight (figures named evidence/... or learned/...; learned is the shipped "
        "pair in models/); may be given twice",
    )
    add_model_arguments(parser, cache=False, sketch=True)


def _error(message: str) -> None:
    print(f"priorsync eval-sketch: error: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Run ``priorsync eval-sketch``; returns the exit code."""
    from app.ml.evaluation.sketch import (
        WEIGHT_RULE,
        choose_validation_weight,
        format_sketch_report,
        load_eval_sources,
        run_sketch_eval,
    )
    from app.ml.runtime.model import ModelError

    if (
        args.patients_per_volume < 1
        or args.sketches_per_lesion < 1
        or args.openkbp < 0
        or (args.openkbp_patients is not None and args.openkbp_patients < 1)
    ):
        _error(
            "--patients-per-volume, --sketches-per-lesion and --openkbp-patients must be at "
            "least 1, --openkbp at least 0"
        )
        return EXIT_INPUT
    try:
        model, sketch_models = load_sketch_stack(args)
    except ModelError as exc:
        _error(str(exc))
        return EXIT_MODEL

    compare = {}
    if args.compare:
        from app.ml.sketch.representation import load_sketch_representation

        for kind in dict.fromkeys(args.compare):
            try:
                compare[kind] = load_sketch_representation(kind, device=args.device)
            except ModelError as exc:
                _error(str(exc))
                return EXIT_MODEL

    def progress(message: str) -> None:
        print(f"  {message}", file=sys.stderr, flush=True)

    try:
        sources = load_eval_sources(progress, role=args.role, openkbp_limit=args.openkbp)
        weights = {
            "default": float(sketch_models.default_weight),
            "anatomy-only": 0.0,
            "sketch-only": 1.0,
        }
        if args.sweep:
            weights.update({f"w={w / 10:.1f}": w / 10 for w in range(1, 10)})
        report = run_sketch_eval(
            model,
            sketch_models,
            sources,
            seed=args.seed,
            patients_per_volume=args.patients_per_volume,
            sketches_per_lesion=args.sketches_per_lesion,
            progress=progress,
            weights=weights,
            compare=compare,
            openkbp_patients_per_volume=args.openkbp_patients,
        )
    except ValueError as exc:
        _error(str(exc))
        return EXIT_INPUT
    print(format_sketch_report(report))
    results = report.to_dict()
    if args.sweep and args.role == "validation":
        # The default weight of each representation by the fixed rule (never on the test role).
        results["chosen_weight"] = {}
        for name in ("", *compare):
            try:
                choice = choose_validation_weight(results, name)
            except ValueError as exc:
                print(f"no weight chosen for {name or 'the models'}: {exc}")
                continue
            results["chosen_weight"][name or "main"] = choice
            print(
                f"chosen default weight ({name or 'main'}): {choice['weight']:.2f} by {WEIGHT_RULE}"
            )
    if args.json is not None:
        return write_json_results(args.json, results, "eval-sketch")
    return EXIT_OK
