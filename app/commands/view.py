"""``priorsync view PATH...``: open DICOM folders or volume files in the viewer."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.commands.exit_codes import EXIT_INPUT

__all__ = ["add_arguments", "add_window_options", "run"]


def add_window_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``view`` and ``demo`` for scripted runs (tests, docs)."""
    parser.add_argument(
        "--screenshot",
        type=Path,
        metavar="FILE",
        help="save a PNG of the window once loading has finished",
    )
    parser.add_argument(
        "--quit-after",
        type=float,
        metavar="SECONDS",
        help="quit after this many seconds at the latest (with --screenshot: as soon as it is saved)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="DICOM files/folders (searched recursively) or .nii/.nii.gz/.nrrd/.mha files",
    )
    add_window_options(parser)


def check_window_options(args: argparse.Namespace) -> str | None:
    """A message if the scripted-run options are unusable, else None."""
    if args.quit_after is not None and not args.quit_after > 0:
        return "--quit-after needs a positive number of seconds"
    if args.screenshot is not None and args.screenshot.suffix.lower() != ".png":
        return "--screenshot writes a PNG; give a file name ending in .png"
    return None


def run(args: argparse.Namespace) -> int:
    problem = check_window_options(args)
    if problem:
        print(f"priorsync view: {problem}", file=sys.stderr)
        return EXIT_INPUT
    from app.ui.shell.application import run_viewer

    return run_viewer(args.paths, screenshot=args.screenshot, quit_after_s=args.quit_after)
