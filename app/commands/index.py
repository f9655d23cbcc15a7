"""``priorsync index FOLDER [--out DIR] [--json]``: build a sketch-search archive.

Scans FOLDER (many patients, any junk), codes every slice of every CT series
with the anatomy and abnormality models and writes the archive the viewer's
sketch search opens (see :mod:`app.ml.sketch.archive`). Files and series left out are
listed with the reason. With ``--json`` the report is printed as JSON::

    {"n_patients": p, "n_series": s, "n_slices": n, "out_dir": "...",
     "seconds": t, "skipped": [{"path": "...", "reason": "..."}, ...]}

Exit codes: 0 success, 2 nothing usable in FOLDER or a bad --out, 3 a model is
missing or corrupt.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.commands.exit_codes import EXIT_CANCELLED, EXIT_INPUT, EXIT_MODEL, EXIT_OK
from app.commands.options import add_model_arguments, load_sketch_stack

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``priorsync index``."""
    parser.add_argument("folder", metavar="FOLDER", type=Path, help="folder of CT series")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="archive folder (default: in the cache, named after FOLDER)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    add_model_arguments(parser, cache=False, sketch=True)


def _error(message: str) -> None:
    print(f"priorsync index: error: {message}", file=sys.stderr)


def _print_skipped(skipped: list[tuple[str, str]]) -> None:
    for path, reason in skipped:
        print(f"priorsync index: skipped {path}: {reason}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Run ``priorsync index``; returns the exit code."""
    from app.io.errors import Cancelled
    from app.ml.runtime.model import ModelError
    from app.ml.sketch.archive import ArchiveError, build_archive

    if not args.folder.exists():
        _error(f"{args.folder} does not exist")
        return EXIT_INPUT
    try:
        model, sketch_models = load_sketch_stack(args)
    except ModelError as exc:
        _error(str(exc))
        return EXIT_MODEL

    last = [-1]

    def progress(stage: str, done: int, total: int) -> None:
        # A line per 10 %: enough to see it move, not enough to flood a log.
        if args.json or total <= 0:
            return
        tenth = 10 * done // total
        if stage == "index" and tenth != last[0]:
            last[0] = tenth
            print(f"  indexing slices: {done}/{total}", file=sys.stderr, flush=True)

    try:
        report = build_archive(args.folder, args.out, model, sketch_models, progress=progress)
    except ArchiveError as exc:
        _print_skipped(exc.skipped)
        _error(str(exc))
        return EXIT_INPUT
    except Cancelled:
        _error("cancelled")
        return EXIT_CANCELLED
    except OSError as exc:
        _error(f"could not write the archive: {exc.strerror or exc}")
        return EXIT_INPUT
    if args.json:
        print(json.dumps(report.to_dict()))
        return EXIT_OK
    _print_skipped(report.skipped)
    print(
        f"indexed {report.n_slices} slices of {report.n_series} series "
        f"({report.n_patients} patients) in {report.seconds:.1f} s; "
        f"{len(report.skipped)} file(s)/series left out"
    )
    print(f"archive: {report.out_dir}")
    return EXIT_OK
