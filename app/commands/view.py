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
    add_pacs_options(parser)
    add_window_options(parser)


def add_pacs_options(parser: argparse.ArgumentParser) -> None:
    """``--pacs SERVER --patient ID [--priors N]``: open a patient from a PACS."""
    parser.add_argument(
        "--pacs", metavar="SERVER", help="fetch from this PACS (configured name or URL)"
    )
    parser.add_argument("--patient", metavar="ID", help="with --pacs: the patient ID to open")
    parser.add_argument(
        "--priors",
        type=int,
        default=None,
        metavar="N",
        help="with --pacs: also fetch the newest N earlier CT studies (default: the setting, 2)",
    )


def check_window_options(args: argparse.Namespace) -> str | None:
    """A message if the scripted-run options are unusable, else None."""
    if args.quit_after is not None and not args.quit_after > 0:
        return "--quit-after needs a positive number of seconds"
    if args.screenshot is not None and args.screenshot.suffix.lower() != ".png":
        return "--screenshot writes a PNG; give a file name ending in .png"
    return None


def run(args: argparse.Namespace) -> int:
    problem = check_window_options(args)
    if problem is None and args.pacs is not None:
        problem = _pacs_problem(args)
    if problem:
        print(f"priorsync view: {problem}", file=sys.stderr)
        return EXIT_INPUT
    paths = list(args.paths)
    if args.pacs is not None:
        from app.commands.pacs_open import fetch_patient_folders
        from app.pacs.errors import PacsError
        from app.pacs.servers import ServerConfigError, ServerStore, resolve_server

        n_priors = args.priors if args.priors is not None else ServerStore().options().n_priors
        try:
            paths += fetch_patient_folders(resolve_server(args.pacs), args.patient, n_priors)
        except (PacsError, ServerConfigError) as exc:
            print(f"priorsync view: {exc}", file=sys.stderr)
            return EXIT_INPUT
    from app.ui.shell.application import run_viewer

    return run_viewer(paths, screenshot=args.screenshot, quit_after_s=args.quit_after)


def _pacs_problem(args: argparse.Namespace) -> str | None:
    if not args.patient:
        return "--pacs needs --patient ID"
    if args.priors is not None and args.priors < 0:
        return "--priors needs a number of studies (0 or more)"
    return None
