"""``priorsync demo``: build (once, then cached) and open a demo patient with three study dates."""

from __future__ import annotations

import argparse
import sys

from app.commands.exit_codes import EXIT_INPUT
from app.commands.view import add_window_options, check_window_options

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pacs",
        action="store_true",
        help="serve the demo patient from a local Orthanc (if installed) and open it from there",
    )
    add_window_options(parser)


def run(args: argparse.Namespace) -> int:
    problem = check_window_options(args)
    if problem:
        print(f"priorsync demo: {problem}", file=sys.stderr)
        return EXIT_INPUT
    if args.pacs:
        from app.commands.pacs_demo import run_pacs_demo

        return run_pacs_demo(args)
    from dataclasses import replace

    from app.commands.demo_start import DemoBuild

    # The build starts before Qt is even imported and runs beside the window's
    # start; the window's loader waits for it instead of building.
    build = DemoBuild().start()
    try:
        from app.ui.loading.loader import Loader, default_backend
        from app.ui.shell.application import run_viewer

        loader = Loader(replace(default_backend(), build_demo=build.wait))
        return run_viewer(
            demo=True, screenshot=args.screenshot, quit_after_s=args.quit_after, loader=loader
        )
    finally:
        build.stop()
