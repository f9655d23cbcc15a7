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
from app.commands.exit_codes import EXIT_CANCELLED, EXIT_OK

# name -> (module, one-line help). Order is the order shown in --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "view": ("app.commands.view", "open DICOM folders or volume files in the viewer"),
    "demo": ("app.commands.demo", "open a demo patient with several study dates"),
    "match": ("app.commands.match", "match every slice of CURRENT to PRIOR (headless)"),
    "export": ("app.commands.export", "export a current slice and its matched prior slices as PNG"),
    "doctor": ("app.commands.doctor", "say what this machine has and lacks for PriorSync"),
    "eval": ("app.commands.eval", "evaluate slice matching on held-out simulated pairs"),
    "locate": ("app.commands.locate", "find points of CURRENT in PRIOR (headless)"),
    "eval-points": (
        "app.commands.eval_points",
        "evaluate point correspondence on simulated pairs, with baselines",
    ),
    "train": ("app.commands.train", "train the embedding model and export it to ONNX"),
    "train-sketch": ("app.commands.train_sketch", "train the sketch-query models, export to ONNX"),
    "index": ("app.commands.index", "index a folder of CT series for sketch search"),
    "pacs": ("app.commands.pacs", "search and fetch studies on a PACS (DIMSE or DICOMweb)"),
    "search-sketch": (
        "app.commands.search_sketch",
        "search an archive or folder by a template slice and a drawn sketch",
    ),
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


class _DemoteLibraryRecords(logging.Filter):
    """Logs pydicom's messages and Python warnings at debug level (and drops their tracebacks)."""

    _NAMES = ("pydicom", "py.warnings")

    def filter(self, record: logging.LogRecord) -> bool:
        if not any(record.name == n or record.name.startswith(n + ".") for n in self._NAMES):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        record.exc_info = record.exc_text = None
        return logging.getLogger().isEnabledFor(logging.DEBUG)


def _quiet_library_chatter(verbose: bool) -> None:
    """Keep pydicom's per-file warnings and logged tracebacks out of the terminal.

    A folder of odd files makes pydicom warn hundreds of times (unknown
    character sets, non-conformant values) and log decoder tracebacks; the
    commands report each unusable file once, grouped by reason, so these
    details are shown only with ``--verbose``.
    """
    logging.captureWarnings(True)
    demote = _DemoteLibraryRecords()
    for handler in logging.getLogger().handlers:
        handler.addFilter(demote)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    _quiet_library_chatter(args.verbose)
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    try:
        return int(args._module.run(args) or 0)
    except KeyboardInterrupt:
        return EXIT_CANCELLED


if __name__ == "__main__":
    sys.exit(main())
