"""``priorsync doctor``: one screen of what this machine has and lacks for PriorSync.

The report is built from :data:`CHECKS`, a registry of small check functions
(:mod:`app.commands.doctor_checks`), one per section. Another part of PriorSync
adds its own section by adding an entry, e.g.::

    CHECKS["pacs"] = Check("PACS", my_pacs_server_findings)

Exit status 0 when everything needed is there; 1 with the list of what is
missing, each with the command that fixes it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import textwrap
from collections.abc import Callable
from dataclasses import asdict, dataclass

from app import __version__
from app.commands.doctor_checks import (
    Finding,
    cache_findings,
    decoder_findings,
    model_findings,
    onnxruntime_findings,
    package_findings,
    pacs_findings,
    python_findings,
    qt_findings,
)
from app.commands.exit_codes import EXIT_FAILURE, EXIT_OK

__all__ = ["CHECKS", "Check", "SectionReport", "add_arguments", "run", "run_checks"]

_WIDTH = 100


@dataclass(frozen=True)
class Check:
    """A section of the report and the function that fills it.

    Attributes
    ----------
    title
        The section's heading.
    findings
        The check.
    compact
        Show the findings that are ok on shared wrapped lines (``"label"`` or
        ``"label value"`` each), to keep long sections to a few lines; the ones
        that are not ok always get a line of their own.
    """

    title: str
    findings: Callable[[], list[Finding]]
    compact: str | None = None


@dataclass(frozen=True)
class SectionReport:
    """The findings of one check (a check that raised gets one finding saying so)."""

    key: str
    title: str
    findings: list[Finding]


# Section key -> check, in the order shown.
CHECKS: dict[str, Check] = {
    "python": Check("Python", python_findings),
    "packages": Check("Packages", package_findings, compact="label value"),
    "qt": Check("Qt and OpenGL", qt_findings),
    "onnxruntime": Check("onnxruntime", onnxruntime_findings),
    "dicom": Check(
        "DICOM decoders (pydicom, per transfer syntax)", decoder_findings, compact="label"
    ),
    "models": Check("Models", model_findings),
    "cache": Check("Cache folders", cache_findings),
    "pacs": Check("PACS", pacs_findings),
}


def run_checks(checks: dict[str, Check] | None = None) -> list[SectionReport]:
    """Run every check; one that fails is reported as such and the others still run."""
    reports = []
    for key, check in (CHECKS if checks is None else checks).items():
        try:
            findings = list(check.findings())
        except Exception as exc:  # a bug in one check must not hide the rest of the report
            findings = [
                Finding(
                    check.title,
                    f"the check itself failed ({type(exc).__name__}: {exc})",
                    ok=False,
                    fix="report this to the PriorSync developers, with the line above",
                )
            ]
        reports.append(SectionReport(key, check.title, findings))
    return reports


def missing(reports: list[SectionReport]) -> list[Finding]:
    """The findings that are needed and not there."""
    return [f for r in reports for f in r.findings if f.needed and not f.ok]


def _line(finding: Finding) -> str:
    mark = "ok" if finding.ok else ("!!" if finding.needed else "--")
    head = f"  {mark} {finding.label}: "
    return textwrap.fill(
        finding.value,
        width=_WIDTH,
        initial_indent=head,
        subsequent_indent=" " * min(len(head), 24),
        break_on_hyphens=False,
    )


def _compact_lines(findings: list[Finding], style: str) -> list[str]:
    """The findings that are ok on shared wrapped lines, each one that is not on its own."""
    good = [f.label if style == "label" else f"{f.label} {f.value}" for f in findings if f.ok]
    lines = []
    if good:
        lines.append(
            textwrap.fill(
                ", ".join(good),
                width=_WIDTH,
                initial_indent=f"  ok {len(good)} of {len(findings)}: ",
                subsequent_indent="     ",
                break_on_hyphens=False,
            )
        )
    lines += [_line(f) for f in findings if not f.ok]
    return lines


def format_report(reports: list[SectionReport]) -> str:
    """The report as text: one block per section, then what is missing and how to fix it."""
    out = [f"PriorSync {__version__} doctor  (ok: there, !!: needed and missing, --: optional)"]
    for report in reports:
        out.append(report.title)
        style = CHECKS[report.key].compact if report.key in CHECKS else None
        if style:
            out += _compact_lines(report.findings, style)
        else:
            out += [_line(f) for f in report.findings]
    lacking = missing(reports)
    optional = [f for r in reports for f in r.findings if not f.needed and not f.ok and f.fix]
    if optional:
        out.append("Optional, not needed to run PriorSync:")
        out += [f"  -- {f.label}: {f.fix}" for f in optional]
    if lacking:
        out.append(f"Missing ({len(lacking)}): PriorSync will not work fully until fixed:")
        for f in lacking:
            out.append(f"  !! {f.label}: {f.value}")
            out.append(f"     fix: {f.fix or 'see the message above'}")
    else:
        out.append("Everything PriorSync needs is here.")
    return "\n".join(out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print the report as JSON (sections, findings, ok)"
    )
    # Internal: the Qt check runs this in a child process (doctor_checks.qt_findings).
    parser.add_argument("--qt-probe", action="store_true", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    if args.qt_probe:
        from app.ui.shell.qt_probe import qt_probe

        print(json.dumps(qt_probe()))
        return EXIT_OK
    if not args.verbose:
        # The checks load the models; their "model X on CPU" lines are not the report.
        logging.getLogger("app").setLevel(logging.WARNING)
    reports = run_checks()
    lacking = missing(reports)
    if args.json:
        doc = {
            "version": __version__,
            "ok": not lacking,
            "sections": [
                {
                    "key": r.key,
                    "title": r.title,
                    "findings": [asdict(f) for f in r.findings],
                }
                for r in reports
            ],
            "missing": [asdict(f) for f in lacking],
        }
        print(json.dumps(doc, indent=1))
    else:
        print(format_report(reports))
    sys.stdout.flush()
    return EXIT_FAILURE if lacking else EXIT_OK  # something is missing
