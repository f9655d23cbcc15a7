"""The real app on Xvfb opens a patient from the real Orthanc with its priors (``view --pacs``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pacs_data import PATIENT_ID, PATIENT_NAME

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.slow
@pytest.mark.xvfb
def test_view_pacs_hangs_the_current_study_and_its_priors(x_display, orthanc, tmp_path) -> None:
    shot = tmp_path / "pacs.png"
    env = dict(os.environ)
    env.update(
        DISPLAY=x_display,
        QT_QPA_PLATFORM="xcb",
        PRIORSYNC_PACS_SECRET=orthanc.password,  # the subprocess has no keyring
        PRIORSYNC_CACHE_DIR=str(tmp_path / "cache"),
        PRIORSYNC_CONFIG_DIR=str(tmp_path / "config"),
        XDG_CONFIG_HOME=str(tmp_path / "xdg"),
    )
    url = f"dicomweb+http://{orthanc.username}@127.0.0.1:{orthanc.http_port}/dicom-web"
    args = ["view", "--pacs", url, "--patient", PATIENT_ID, "--priors", "2"]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "app",
            "-v",
            *args,
            "--screenshot",
            str(shot),
            "--quit-after",
            "240",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "3 CT studies (2 priors, 0 from the local cache)" in output
    for identifier in (PATIENT_NAME, "Zebedee", "19610203"):
        assert identifier not in output  # not even at debug level (-v)
    layout = json.loads(shot.with_suffix(".layout.json").read_text())
    assert len(layout["viewports"]) == 3
    assert all(v["n_slices"] == 10 for v in layout["viewports"])


@pytest.mark.slow
@pytest.mark.xvfb
def test_demo_pacs_serves_the_demo_patient_from_a_local_orthanc(x_display, tmp_path) -> None:
    from app.pacs.local_orthanc import find_orthanc

    if find_orthanc() is None:
        pytest.skip("Orthanc is not installed (scripts/system-deps.sh --tests installs it)")
    shot = tmp_path / "demo-pacs.png"
    env = dict(os.environ)  # the session's cache: the demo patient is built once per run
    env.update(
        DISPLAY=x_display,
        QT_QPA_PLATFORM="xcb",
        PRIORSYNC_CONFIG_DIR=str(tmp_path / "config"),
        XDG_CONFIG_HOME=str(tmp_path / "xdg"),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "app", "demo", "--pacs", "--screenshot", str(shot)]
        + ["--quit-after", "400"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=560,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "local Orthanc at http://127.0.0.1:" in output
    assert "3 CT studies (2 priors" in output
    layout = json.loads(shot.with_suffix(".layout.json").read_text())
    assert len(layout["viewports"]) == 3


@pytest.mark.slow
@pytest.mark.xvfb
def test_demo_pacs_hangs_the_priors_synced_by_anatomy(x_display, tmp_path) -> None:
    # The "done when": the demo patient pushed to a real Orthanc, opened from it,
    # and the priors following the current study by anatomy in the real app.
    from app.pacs.local_orthanc import find_orthanc

    if find_orthanc() is None:
        pytest.skip("Orthanc is not installed (scripts/system-deps.sh --tests installs it)")
    env = dict(os.environ)  # the session's cache: the demo patient is built once per run
    env.update(
        DISPLAY=x_display,
        QT_QPA_PLATFORM="xcb",
        PRIORSYNC_CONFIG_DIR=str(tmp_path / "config"),
        XDG_CONFIG_HOME=str(tmp_path / "xdg"),
    )
    driver = Path(__file__).with_name("drive_pacs_demo.py")
    proc = subprocess.run(
        [sys.executable, str(driver)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=560,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "3 CT studies (2 priors" in output
    assert "PACS-SYNC-FAILED" not in output, output[-3000:]
    assert "PACS-SYNC-OK viewports=3" in output, output[-3000:]
