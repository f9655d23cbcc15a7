"""The real app in its own process on a real X server (Xvfb): it shows anatomy and exits 0.

In-process tests paint offscreen and never finalise an interpreter, so they
cannot see a crash at exit. This is the test that caught PySide6 6.12.0's
reference-counting bug (Python aborted at exit, status 134, "Fatal Python
error: bool_dealloc"); see app/ui/qt_compat.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[3]
CRASH_MARKERS = ("Fatal Python error", "Traceback", "Segmentation fault", "core dumped", "Aborted")


def run_app(
    args: list[str], display: str, timeout_s: float, module: bool = True
) -> subprocess.CompletedProcess:
    """Run ``python -m app ARGS`` (or ``python ARGS`` with ``module=False``) on ``display``."""
    env = dict(os.environ)
    env["DISPLAY"] = display
    env["QT_QPA_PLATFORM"] = "xcb"  # the real X server, not the tests' offscreen buffers
    env.pop("WAYLAND_DISPLAY", None)
    return subprocess.run(
        [sys.executable, *(["-m", "app"] if module else []), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def assert_clean_exit(proc: subprocess.CompletedProcess) -> None:
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"exit status {proc.returncode}:\n{output[-3000:]}"
    for marker in CRASH_MARKERS:
        assert marker not in output, f"{marker!r} in the app's output:\n{output[-3000:]}"


@pytest.mark.slow
@pytest.mark.xvfb
def test_demo_shows_anatomy_in_every_viewport_and_exits_0(x_display, tmp_path):
    shot = tmp_path / "demo.png"
    # The demo is built on first use (tens of seconds on 2 cores) and cached.
    proc = run_app(["demo", "--screenshot", str(shot), "--quit-after", "400"], x_display, 480)
    assert_clean_exit(proc)
    layout = json.loads(shot.with_suffix(".layout.json").read_text())
    grey = cv2.imread(str(shot), cv2.IMREAD_GRAYSCALE)
    assert grey is not None and list(grey.shape[::-1]) == layout["size"]
    assert len(layout["viewports"]) >= 3, "the demo patient has three study dates"
    for vp in layout["viewports"]:
        x, y, w, h = vp["rect"]
        region = grey[y : y + h, x : x + w].astype(np.float32)
        assert region.size > 100 * 100
        assert region.std() > 20, f"viewport at x={x} looks blank"
        # Soft tissue in the default mediastinal window is mid grey; a CT slice
        # through the body has lots of it, an empty or black viewport has none.
        body = np.mean((region > 60) & (region < 250))
        assert body > 0.05, f"viewport at x={x}: only {body:.1%} body pixels"
        air = np.mean(region < 10)
        assert air > 0.05, f"viewport at x={x}: no air around the body"


@pytest.mark.slow
@pytest.mark.xvfb
def test_a_reading_session_ends_with_a_clean_exit(x_display):
    # Scrolling, W/L drags, zoom, pan and slice sync on the real demo. With
    # PySide6 6.12.0 this aborted at exit ("bool_dealloc"), status 134.
    driver = Path(__file__).resolve().parents[1] / "drive_app.py"
    proc = run_app([str(driver), "150"], x_display, 480, module=False)
    assert_clean_exit(proc)
    assert "DRIVE-OK viewports=3" in proc.stdout


@pytest.mark.xvfb
def test_view_without_files_opens_and_exits_0(x_display, tmp_path):
    shot = tmp_path / "empty.png"
    proc = run_app(["view", "--quit-after", "1"], x_display, 120)
    assert_clean_exit(proc)
    assert not shot.exists()


@pytest.mark.xvfb
def test_view_of_a_non_ct_file_reports_and_exits_0(x_display, tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_text("not an image")
    proc = run_app(["view", str(junk), "--quit-after", "2"], x_display, 120)
    assert_clean_exit(proc)
