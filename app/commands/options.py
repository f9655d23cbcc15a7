"""Command-line options shared by the commands that run the embedding model."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from app.core.volume import Volume
    from app.ml.index import IndexCache

log = logging.getLogger(__name__)


def add_model_arguments(parser: argparse.ArgumentParser, *, cache: bool = True) -> None:
    """Add ``--model`` and ``--device`` (and ``--no-cache`` when ``cache``) to ``parser``."""
    parser.add_argument(
        "--model", type=Path, default=None, help="ONNX model file (default: the shipped model)"
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default=None,
        help="where the model runs (default: CUDA when available, else CPU)",
    )
    if cache:
        parser.add_argument(
            "--no-cache", action="store_true", help="do not read or write the index cache"
        )


class InputError(Exception):
    """An input series cannot be used; the message is for the user."""


def load_input_volumes(command: str, inputs: list[tuple[str, Path]]) -> list[Volume]:
    """Load each ``(role, path)`` through the real readers, printing load warnings.

    Raises
    ------
    InputError
        When a path is missing or unreadable (message names the role and path).
    """
    from app.io.load import LoadError, load_volume

    volumes = []
    for role, path in inputs:
        if not path.exists():
            raise InputError(f"{role} {path} does not exist")
        try:
            volume = load_volume(path)
        except LoadError as exc:
            raise InputError(f"cannot read {role} {path}: {exc}") from None
        for warning in volume.warnings:
            print(f"priorsync {command}: warning: {role}: {warning}", file=sys.stderr)
        volumes.append(volume)
    return volumes


def open_index_cache(no_cache: bool) -> IndexCache | Literal[False]:
    """The user's index cache, or ``False`` (match without one) if disabled or not writable."""
    from app.ml.index import IndexCache

    if no_cache:
        return False
    try:
        return IndexCache()
    except OSError as exc:
        log.warning("index cache unavailable (%s); continuing without it", exc)
        return False
