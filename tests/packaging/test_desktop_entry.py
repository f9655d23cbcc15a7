"""packaging/priorsync.desktop: a valid menu entry whose command line the app accepts.

Fast and not ``frozen``: it runs in every test run.
"""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from app.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
DESKTOP = REPO / "packaging" / "priorsync.desktop"


@pytest.fixture(scope="module")
def entry() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # desktop keys are case-sensitive
    parser.read(DESKTOP, encoding="utf-8")
    return parser["Desktop Entry"]


def test_entry_opens_dicom_in_the_viewer(entry: configparser.SectionProxy) -> None:
    assert entry["Type"] == "Application"
    assert "application/dicom" in entry["MimeType"].split(";")
    assert {"Graphics", "MedicalSoftware", "Science"} <= set(entry["Categories"].split(";"))
    assert entry["Terminal"] == "false"
    # The icon build.sh installs beside the binary is the app's own window icon.
    assert (REPO / "app" / "resources" / "icons" / f"{entry['Icon']}.svg").is_file()


def test_exec_line_is_a_command_the_cli_accepts(entry: configparser.SectionProxy) -> None:
    argv = shlex.split(entry["Exec"])
    assert argv[0] == "priorsync"
    # The desktop expands %F to the dropped / opened files.
    files = ["/data/ct/IM0001.dcm", "/data/ct/series 2"]
    args = [a for a in argv[1:] if a != "%F"] + files
    parsed = build_parser().parse_args(args)
    assert parsed.command == "view"
    assert [str(p) for p in parsed.paths] == files
    # With no file (menu launch) %F expands to nothing: an empty viewer.
    assert build_parser().parse_args([a for a in argv[1:] if a != "%F"]).paths == []


def test_entry_passes_desktop_file_validate() -> None:
    validate = shutil.which("desktop-file-validate")
    if validate is None:
        pytest.skip("desktop-file-validate is not installed (Debian: desktop-file-utils)")
    proc = subprocess.run([validate, str(DESKTOP)], capture_output=True, text=True, check=False)
    # Hints (e.g. two main categories, as asked for) are not errors.
    errors = [line for line in proc.stdout.splitlines() if "error:" in line]
    assert proc.returncode == 0 and not errors, proc.stdout + proc.stderr
