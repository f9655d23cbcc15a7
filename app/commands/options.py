"""Command-line options shared by the commands that run the embedding model."""

from __future__ import annotations

import argparse
from pathlib import Path


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
