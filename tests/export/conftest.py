"""Small synthetic CT series with patient identifiers, for the export tests (no shared data)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from app.core.volume import Geometry, SeriesInfo, Volume

# Identifiers chosen so that none of them can occur by accident in a PNG's
# bytes or in a caption (long, mixed, distinctive).
IDENTIFIERS = {
    "patient_name": "Quixotewright^Philomena",
    "patient_id": "PID-58301947",
    "patient_birth_date": "19480923",
    "accession_number": "ACC77310442",
}
INSTITUTION = "Zanzibar Memorial Hospital"


def make_ct(
    shape: tuple[int, int, int] = (16, 48, 56),
    spacing: tuple[float, float, float] = (4.0, 4.0, 6.0),
    z0: float = -40.0,
    study_date: str = "20260314",
    series_description: str = "CHEST 5mm",
    seed: int = 0,
    identifiers: bool = True,
) -> Volume:
    """A CT-like int16 HU volume whose every slice differs (body shrinks, spine HU grows).

    Parameters
    ----------
    shape
        ``(slices, rows, cols)``.
    spacing
        ``(x, y, z)`` mm.
    z0
        ``slice_z`` of slice 0 (mm).
    study_date
        DICOM date.
    series_description
        Free text, as a scanner would write it.
    seed
        Noise seed.
    identifiers
        Fill the patient identifiers of :data:`IDENTIFIERS`.
    """
    n, rows, cols = shape
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols]
    cy, cx = (rows - 1) / 2, (cols - 1) / 2
    vox = np.full(shape, -1000, dtype=np.int16)
    for k in range(n):
        s = 1.0 - 0.35 * k / max(n - 1, 1)
        body = ((x - cx) / (0.45 * cols * s)) ** 2 + ((y - cy) / (0.38 * rows)) ** 2 <= 1
        lung = (np.abs(x - cx) - 0.18 * cols) ** 2 / (0.1 * cols) ** 2 + (
            (y - cy) / (0.2 * rows * (0.3 + 0.7 * k / max(n - 1, 1)))
        ) ** 2 <= 1
        spine = ((x - cx) / (0.06 * cols)) ** 2 + ((y - cy - 0.25 * rows) / (0.06 * rows)) ** 2 <= 1
        sl = vox[k]
        sl[body] = 40 + 5 * k
        sl[lung & body] = -850
        sl[spine] = 500 + (40 * k) % 1500
        sl += rng.integers(-15, 16, size=(rows, cols), dtype=np.int16)
    info = SeriesInfo(
        study_date=study_date,
        series_description=series_description,
        modality="CT",
        study_uid=f"1.2.826.0.1.3680043.8.498.{seed}1",
        series_uid=f"1.2.826.0.1.3680043.8.498.{seed}2",
        frame_of_reference_uid=f"1.2.826.0.1.3680043.8.498.{seed}3",
        **(IDENTIFIERS if identifiers else {}),
    )
    sx, sy, _ = spacing
    return Volume(
        voxels=vox,
        geometry=Geometry(origin=(-cx * sx, -cy * sy, z0), spacing=spacing, direction=np.eye(3)),
        info=info,
        source=f"synthetic-{seed}",
    )


@pytest.fixture(scope="session")
def ct_factory() -> Callable[..., Volume]:
    """:func:`make_ct`."""
    return make_ct


@pytest.fixture(scope="session")
def identifiers() -> dict[str, str]:
    """The identifiers every synthetic series carries (plus ``institution``)."""
    return {**IDENTIFIERS, "institution": INSTITUTION}
