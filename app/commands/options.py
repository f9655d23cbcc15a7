"""Command-line options shared by the commands that run the embedding model."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from app.core.volume import Volume
    from app.io.records import SkippedFile
    from app.ml.anatomy.index import IndexCache
    from app.ml.runtime.model import EmbeddingModel
    from app.ml.sketch.encoder import SketchEncoder

log = logging.getLogger(__name__)


def add_model_arguments(
    parser: argparse.ArgumentParser, *, cache: bool = True, sketch: bool = False
) -> None:
    """Add ``--model`` and ``--device`` (and ``--no-cache`` when ``cache``) to ``parser``.

    With ``sketch``, ``--abnormality-model`` and ``--sketch-model`` too, for the
    commands that run the sketch-query models beside the anatomy model
    (:func:`load_sketch_stack`).
    """
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help=(
            "anatomy ONNX model (default: the shipped one)"
            if sketch
            else "ONNX model file (default: the shipped model)"
        ),
    )
    if sketch:
        parser.add_argument(
            "--abnormality-model", type=Path, default=None, help="abnormality ONNX model"
        )
        parser.add_argument("--sketch-model", type=Path, default=None, help="sketch ONNX model")
        parser.add_argument(
            "--representation",
            choices=("evidence", "learned"),
            default=None,
            help="abnormality representation: the learned ONNX pair (the default) or rule-based "
            "lesion evidence (evidence-first ranking)",
        )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default=None,
        help=f"where the model{'s' if sketch else ''} run{'' if sketch else 's'} "
        "(default: CUDA when available, else CPU)",
    )
    if cache:
        parser.add_argument(
            "--no-cache", action="store_true", help="do not read or write the index cache"
        )


def load_sketch_stack(
    args: argparse.Namespace,
) -> tuple[EmbeddingModel, SketchEncoder]:
    """The anatomy model and the sketch representation named by :func:`add_model_arguments`.

    Raises
    ------
    app.ml.runtime.model.ModelError
        A model is missing, corrupt or does not fit the others, or model files
        were given with ``--representation evidence``.
    """
    from app.ml.runtime.model import EmbeddingModel, ModelError
    from app.ml.sketch.representation import load_sketch_representation

    model = EmbeddingModel.load(args.model, device=args.device)
    try:
        sketch_models = load_sketch_representation(
            getattr(args, "representation", None),
            args.abnormality_model,
            args.sketch_model,
            device=args.device,
        )
    except ValueError as exc:
        raise ModelError(str(exc)) from None
    return model, sketch_models


class InputError(Exception):
    """An input series cannot be used; the message is for the user."""


def load_input_volumes(
    command: str,
    inputs: list[tuple[str, Path]],
    skipped: list[tuple[str, SkippedFile]] | None = None,
) -> list[Volume]:
    """Load each ``(role, path)`` through the real readers, printing load warnings.

    Files the scan left out are reported on stderr, one line per reason with
    its count, and appended to ``skipped`` as ``(role, file)`` when given.

    Raises
    ------
    InputError
        When a path is missing or unreadable (message names the role and path).
    """
    from app.io.load import LoadError, load_volume_report, skip_summary_lines

    volumes = []
    for role, path in inputs:
        if not path.exists():
            raise InputError(f"{role} {path} does not exist")
        try:
            report = load_volume_report(path)
        except LoadError as exc:
            raise InputError(f"cannot read {role} {path}: {exc}") from None
        volume = report.volume
        for warning in volume.warnings:
            print(f"priorsync {command}: warning: {role}: {warning}", file=sys.stderr)
        if report.skipped:
            print(
                f"priorsync {command}: warning: {role}: {len(report.skipped)} file(s) skipped:",
                file=sys.stderr,
            )
            for line in skip_summary_lines(report.skipped):
                print(f"priorsync {command}:   {line}", file=sys.stderr)
        if skipped is not None:
            skipped.extend((role, s) for s in report.skipped)
        volumes.append(volume)
    return volumes


def open_index_cache(no_cache: bool) -> IndexCache | Literal[False]:
    """The user's index cache, or ``False`` (match without one) if disabled or not writable."""
    from app.ml.anatomy.index import IndexCache

    if no_cache:
        return False
    try:
        return IndexCache()
    except OSError as exc:
        log.warning("index cache unavailable (%s); continuing without it", exc)
        return False


def write_json_results(path: Path, results: dict[str, object], command: str) -> int:
    """Write a command's ``--json`` results atomically; the exit status to return.

    Parameters
    ----------
    path
        The ``--json`` file (replaced when it exists, never left half-written).
    results
        JSON-serialisable results.
    command
        The command's name, for the error message (``"eval"``).

    Returns
    -------
    int
        ``EXIT_OK``, or ``EXIT_OUTPUT`` after a one-line error when it cannot be written.
    """
    from app.commands.exit_codes import EXIT_OK, EXIT_OUTPUT
    from app.io.safe_write import WriteError, safe_write

    try:
        safe_write(path, json.dumps(results, indent=1).encode(), overwrite=True)
    except WriteError as exc:
        print(f"priorsync {command}: error: {exc}", file=sys.stderr)
        return EXIT_OUTPUT
    print(f"results written to {path}")
    return EXIT_OK


def print_result(text: str) -> None:
    """Print a command's result to stdout; a reader that went away is not an error.

    ``priorsync match ... | head`` closes the pipe early: stdout is then pointed
    at devnull so that the interpreter's final flush stays quiet too.
    """
    try:
        print(text)
        sys.stdout.flush()
    except BrokenPipeError:
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
