"""``priorsync doctor``: the report, its exit status, and each check's missing-case finding.

Qt is never imported here: the Qt check runs in a child process.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from app.commands import doctor, doctor_checks
from app.commands.doctor import Check, format_report, missing, run_checks
from app.commands.doctor_checks import Finding

REPO = Path(__file__).resolve().parents[2]


def run_doctor(
    tmp_path: Path, *args: str, **env_overrides: str
) -> subprocess.CompletedProcess[str]:
    """``python -m app.cli doctor ARGS`` with a private cache and no display."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.pop("QT_QPA_PLATFORM", None)
    env["PRIORSYNC_CACHE_DIR"] = str(tmp_path / "cache")
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "doctor", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_runtime_dependency_of_pyproject_is_checked() -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!;\s]", req, maxsplit=1)[0].lower() for req in declared}
    needed = [p for p in doctor_checks.PACKAGES if p.needed]
    # A package may be declared under another distribution that gives the same
    # module (onnxruntime-gpu on Linux x86_64 and Windows, onnxruntime elsewhere).
    covered = {d.lower() for p in needed for d in (p.dist, *p.dists)}
    assert names <= covered
    assert all({d.lower() for d in (p.dist, *p.dists)} & names for p in needed)


def test_doctor_json_reports_every_section_and_exits_0(tmp_path: Path) -> None:
    proc = run_doctor(tmp_path, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is True and report["missing"] == []
    keys = [s["key"] for s in report["sections"]]
    assert keys == list(doctor.CHECKS)
    findings = {(s["key"], f["label"]): f for s in report["sections"] for f in s["findings"]}
    # The anatomy model is named and hashed exactly as `priorsync match --json` names it.
    from app.ml.runtime.model import EmbeddingModel

    model = EmbeddingModel.load(device="cpu")
    anatomy = findings[("models", "anatomy model")]["value"]
    assert anatomy.startswith(f"{model.name} sha256:{model.sha256[:12]}")
    assert findings[("qt", "Qt platform plugin")]["value"] == "offscreen"
    assert findings[("onnxruntime", "execution providers")]["ok"] is True
    assert findings[("dicom", "JPEG2000Lossless")]["ok"] is True
    assert findings[("python", "Python")]["value"].startswith(
        ".".join(map(str, sys.version_info[:3]))
    )


def test_text_report_fits_one_screen(tmp_path: Path) -> None:
    proc = run_doctor(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) <= 50 and max(map(len, lines)) <= 110
    assert lines[-1] == "Everything PriorSync needs is here."
    assert "Traceback" not in proc.stderr and proc.stderr.strip() == ""


def test_missing_models_exit_1_with_the_fix(tmp_path: Path) -> None:
    empty = tmp_path / "no-models"
    empty.mkdir()
    proc = run_doctor(tmp_path, PRIORSYNC_MODELS_DIR=str(empty))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    tail = proc.stdout.split("Missing (", 1)[1]
    assert "!! anatomy model: model file not found" in tail
    assert "fix: reinstall PriorSync" in tail and "PRIORSYNC_MODELS_DIR" in tail
    assert "Traceback" not in proc.stderr


def test_unwritable_cache_exits_1_with_the_fix(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = run_doctor(tmp_path, "--json", PRIORSYNC_CACHE_DIR=str(blocker / "cache"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (item,) = json.loads(proc.stdout)["missing"]
    assert item["label"] == "cache" and "not writable" in item["value"]
    assert item["fix"].startswith("export PRIORSYNC_CACHE_DIR=")


def test_qt_that_cannot_start_is_a_finding_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QT_QPA_PLATFORM", "no-such-platform")
    findings = doctor_checks.qt_findings()
    (plugin,) = findings
    assert plugin.label == "Qt platform plugin" and not plugin.ok and plugin.needed
    assert plugin.value.startswith("no-such-platform: cannot start")
    assert plugin.fix


def test_a_missing_or_too_old_package_gets_the_pip_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = (
        doctor_checks._Package("no-such-dist-priorsync>=1.0", "no_such_module_priorsync"),
        doctor_checks._Package("numpy>=999.0", "numpy"),
        doctor_checks._Package("also-absent-priorsync>=1", "also_absent", needed=False),
    )
    monkeypatch.setattr(doctor_checks, "PACKAGES", fake)
    absent, old, optional = doctor_checks.package_findings()
    assert (absent.ok, absent.needed, absent.value) == (False, True, "not installed")
    assert absent.fix == f"{sys.executable} -m pip install 'no-such-dist-priorsync>=1.0'"
    assert not old.ok and "needs >= 999.0" in old.value and "'numpy>=999.0'" in str(old.fix)
    assert not optional.ok and not optional.needed


@pytest.mark.parametrize(
    ("version", "release"),
    [
        ("2.1.0", (2, 1, 0)),
        ("5.0.0.93", (5, 0, 0, 93)),
        ("2.13.0+cpu", (2, 13, 0)),
        ("1.2rc1", (1, 2)),
    ],
)
def test_release_parts(version: str, release: tuple[int, ...]) -> None:
    assert doctor_checks._release(version) == release


def test_a_decoder_that_is_unavailable_is_reported_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pydicom.pixels.decoders.base import Decoder

    monkeypatch.setattr(Decoder, "is_available", property(lambda self: False))
    findings = {f.label: f for f in doctor_checks.decoder_findings()}
    jpeg2000 = findings["JPEG2000Lossless"]
    assert not jpeg2000.ok and jpeg2000.needed and "pylibjpeg-openjpeg" in str(jpeg2000.fix)
    assert not findings["HTJ2K"].needed  # not promised by the dependencies: reported only
    assert len(findings) >= 16


def test_pacs_section_without_the_pacs_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "app.pacs", None)  # import now fails as if absent
    (finding,) = doctor_checks.pacs_findings()
    assert finding.value == "no PACS support installed" and not finding.needed


def test_a_check_added_to_the_registry_is_run_and_a_failing_one_is_reported() -> None:
    def broken() -> list[Finding]:
        raise RuntimeError("boom")

    def server() -> list[Finding]:
        return [Finding("server A", "unreachable", ok=False, fix="start it")]

    checks = {"broken": Check("Broken", broken), "pacs": Check("PACS", server)}
    reports = run_checks(checks)
    assert [r.key for r in reports] == ["broken", "pacs"]
    (failed,) = reports[0].findings
    assert not failed.ok and "RuntimeError: boom" in failed.value
    assert [f.label for f in missing(reports)] == ["Broken", "server A"]
    text = format_report(reports)
    assert "!! server A: unreachable\n     fix: start it" in text


def test_the_doctor_itself_never_imports_qt(tmp_path: Path) -> None:
    # Qt is only started in the probe's child process: a machine where Qt aborts
    # (no display, missing xcb libraries) still gets the whole report.
    code = (
        "import sys\n"
        "from app.cli import main\n"
        "status = main(['doctor', '--json'])\n"
        "print('QT-IMPORTED' if 'PySide6' in sys.modules else 'QT-FREE', file=sys.stderr)\n"
        "sys.exit(status)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["PRIORSYNC_CACHE_DIR"] = str(tmp_path / "cache")
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().endswith("QT-FREE")
