"""Small synthetic sources for the simulator tests (no shared data needed)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from app.core.volume import Geometry, SeriesInfo, Volume

# Body HU grows linearly with height, so a slice's median body HU reveals the
# level it shows: the tests read the truth back from the pixels.
RAMP_HU_PER_MM = 2.0


def make_phantom(
    shape: tuple[int, int, int] = (80, 64, 64),
    spacing: tuple[float, float, float] = (5.0, 5.0, 2.5),
    z0: float = -100.0,
    lungs: bool = True,
) -> Volume:
    """An ellipsoid-ish body whose soft tissue encodes height, with lungs and a spine.

    Parameters
    ----------
    shape
        ``(slices, rows, cols)``.
    spacing
        ``(x, y, z)`` mm.
    z0
        ``slice_z`` of the first slice.
    lungs
        Two lungs over the upper 60 % (their lower end is the diaphragm).
    """
    n, rows, cols = shape
    sx, sy, sz = spacing
    y, x = np.mgrid[0:rows, 0:cols]
    cy, cx = (rows - 1) / 2, (cols - 1) / 2
    vox = np.full(shape, -1000, dtype=np.int16)
    for k in range(n):
        sl = vox[k]
        body = ((x - cx) / (0.4 * cols)) ** 2 + ((y - cy) / (0.3 * rows)) ** 2 <= 1
        sl[body] = int(round(RAMP_HU_PER_MM * k * sz))
        if lungs and k > 0.4 * n:
            for side in (-1, 1):
                lung = ((x - cx - side * 0.17 * cols) / (0.11 * cols)) ** 2 + (
                    (y - cy) / (0.17 * rows)
                ) ** 2 <= 1
                sl[lung] = -850
        spine = ((x - cx) / (0.05 * cols)) ** 2 + ((y - cy - 0.2 * rows) / (0.05 * rows)) ** 2 <= 1
        sl[spine] = 700
    return Volume(
        voxels=vox,
        geometry=Geometry(origin=(-cx * sx, -cy * sy, z0), spacing=spacing, direction=np.eye(3)),
        info=SeriesInfo(patient_id="SIM-TEST", patient_name="Sim^Test", study_date="20260101"),
        source="phantom",
    )


@pytest.fixture(scope="session")
def phantom() -> Volume:
    """The default 64x64x80 phantom."""
    return make_phantom()


@pytest.fixture(scope="session")
def phantom_factory() -> Callable[..., Volume]:
    """:func:`make_phantom`, for tests that need another size or position."""
    return make_phantom


@pytest.fixture(scope="session")
def ramp_hu_per_mm() -> float:
    """How much the phantom's body HU grows per mm of height."""
    return RAMP_HU_PER_MM
