"""The ``priorsync`` command line.

Each sub-command lives in ``app.commands.<name>`` with ``add_arguments(parser)``
and ``run(args) -> int``. Modules are imported only when their command runs so
that headless commands (``match``, ``eval``) never import Qt or PyTorch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from app import __version__

# name -> (module, one-line help). Order is the order shown in --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "view": ("app.commands.view", "open DICOM folders or volume files in the viewer"),
    "demo": ("app.commands.demo", "open a demo patient with several study dates"),
    "match": ("app.commands.match", "match every slice of CURRENT to PRIOR (headless)"),
    "export": ("app.commands.export", "export a current slice and its matched prior slices as PNG"),
    "eval": ("app.commands.eval", "evaluate slice matching on held-out simulated pairs"),
    "locate": ("app.commands.locate", "find points of CURRENT in PRIOR (headless)"),
    "eval-points": (
        "app.commands.eval_points",
        "evaluate point correspondence on simulated pairs, with baselines",
    ),
    "train": ("app.commands.train", "train the embedding model and export it to ONNX"),
    "train-sketch": ("app.commands.train_sketch", "train the sketch-query models, export to ONNX"),
    "index": ("app.commands.index", "index a folder of CT series for sketch search"),
    "eval-sketch": (
        "app.commands.eval_sketch",
        "evaluate sketch search on held-out inserted lesions and real tumours",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="priorsync",
        description="Compare a patient's current CT with prior scans, synced by anatomy.",
    )
    parser.add_argument("--version", action="version", version=f"priorsync {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(module_name)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args._module.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
