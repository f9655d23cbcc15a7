"""Every shared real CT volume loads, in display orientation, with a plausible body position."""

from __future__ import annotations

import numpy as np
import pytest

from app.io.load import load_volume
from app.paths import shared_data_dir

DATA = shared_data_dir()
FILES = (
    # Top-level volumes only: openkbp/ is a collection of its own (with its README),
    # checked by the data-role tests.
    sorted(
        p
        for p in DATA.iterdir()
        if p.name != "SOURCES.md" and "mask" not in p.name and p.name != "openkbp"
    )
    if DATA
    else []
)

pytestmark = pytest.mark.skipif(DATA is None, reason="shared CT data (../shared/data/ct) absent")


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_shared_volume_loads_in_display_orientation(path):
    vol = load_volume(path)
    assert vol.voxels.dtype == np.int16 and vol.n_slices >= 20
    np.testing.assert_allclose(vol.geometry.direction, np.eye(3), atol=1e-3)
    assert vol.voxels.min() <= -900 and vol.voxels.max() >= 300  # air and bone present
    # The body lies inside the field of view, roughly central, on every axial slice
    # axis; exact axis handling is proven on synthetic data in test_volume_files.py
    # and test_load.py (same HU at the same LPS points for flipped/permuted inputs).
    body = vol.voxels[vol.n_slices // 2] > -300
    rows, cols = np.nonzero(body)
    assert body.mean() > 0.05
    assert 0.2 < rows.mean() / body.shape[0] < 0.8
    assert 0.2 < cols.mean() / body.shape[1] < 0.8
