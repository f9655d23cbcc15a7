"""Small synthetic CT volumes for the IO tests (made in memory, no shared data needed).

Also :func:`run_python`: the child process the CLI and crash tests run readers in.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from app.core.volume import Geometry, SeriesInfo, Volume

REPO = Path(__file__).resolve().parents[2]


def run_python(
    args: Sequence[str], timeout: float, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGS`` from the repository root and capture its text output.

    Parameters
    ----------
    args
        What follows the interpreter: ``["-m", "app.cli", ...]``, ``["-c", code]``, a script.
    timeout
        Seconds before ``subprocess.TimeoutExpired``.
    env
        Variables set on top of this process's environment (``None``: inherit it as it is).
    """
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env={**os.environ, **env} if env is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def phantom(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """A CT-like int16 HU phantom: air, soft-tissue body, two lungs, a spine, noise.

    Every slice differs (the body narrows with the slice index) so that a
    reader that mis-sorts slices produces a detectably different array.
    """
    n, rows, cols = shape
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols]
    cy, cx = (rows - 1) / 2, (cols - 1) / 2
    out = np.full(shape, -1000, dtype=np.int16)
    for k in range(n):
        scale = 1.0 - 0.3 * k / max(n - 1, 1)
        body = ((x - cx) / (0.45 * cols * scale)) ** 2 + ((y - cy) / (0.38 * rows)) ** 2 <= 1
        lung_l = ((x - cx - 0.18 * cols) / (0.12 * cols)) ** 2 + ((y - cy) / (0.2 * rows)) ** 2 <= 1
        lung_r = ((x - cx + 0.18 * cols) / (0.12 * cols)) ** 2 + ((y - cy) / (0.2 * rows)) ** 2 <= 1
        spine = ((x - cx) / (0.06 * cols)) ** 2 + ((y - cy - 0.25 * rows) / (0.06 * rows)) ** 2 <= 1
        sl = out[k]
        sl[body] = 40
        sl[lung_l | lung_r] = -850
        sl[spine] = 700 + 10 * k
        sl += rng.integers(-20, 21, size=(rows, cols), dtype=np.int16)
    return out


def make_volume(
    shape: tuple[int, int, int] = (12, 40, 48),
    spacing: tuple[float, float, float] = (0.8, 0.8, 2.5),
    origin: tuple[float, float, float] = (-19.0, -16.0, -100.0),
    direction: np.ndarray | None = None,
    info: SeriesInfo | None = None,
    seed: int = 0,
) -> Volume:
    """A display-oriented (identity direction by default) synthetic CT volume."""
    return Volume(
        voxels=phantom(shape, seed),
        geometry=Geometry(
            origin=origin,
            spacing=spacing,
            direction=np.eye(3) if direction is None else direction,
        ),
        info=info
        or SeriesInfo(
            patient_id="TEST-001",
            patient_name="Test^Patient",
            study_date="20240315",
            study_time="101500",
            study_description="CT CHEST",
            series_number=3,
            series_description="Axial 2.5",
            body_part="CHEST",
            manufacturer="Synthetic",
            slice_thickness=spacing[2],
            convolution_kernel="B30f",
        ),
    )
