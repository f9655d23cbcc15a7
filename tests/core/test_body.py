"""The one body mask (app.core.body)."""

from __future__ import annotations

import numpy as np

from app.core.body import body_mask


def test_body_mask_includes_the_lungs():
    """A nodule drawn in a lung (below -500 HU) is inside the body; air outside is not."""
    rows, cols = np.mgrid[0:80, 0:100]
    sl = np.full((80, 100), -1000, np.int16)
    sl[((rows - 40) / 30.0) ** 2 + ((cols - 50) / 45.0) ** 2 <= 1] = 40
    for c in (30, 70):
        sl[((rows - 40) / 15.0) ** 2 + ((cols - c) / 12.0) ** 2 <= 1] = -850
    sl[2:5, 2:5] = 100  # a cable: small, not the body
    body = body_mask(sl)
    lung = sl == -850
    assert body[lung].all()
    assert not body[2:5, 2:5].any()
    assert not body[0, 50] and body[40, 50]
    assert not body_mask(np.full((8, 8), -1000, np.int16)).any()


def test_body_mask_is_the_largest_region_only() -> None:
    sl = np.full((40, 40), -1000, np.int16)
    sl[5:35, 5:25] = 40  # the body
    sl[10:20, 30:38] = 40  # an arm beside it, smaller
    body = body_mask(sl)
    assert body[20, 15] and not body[15, 34]
    assert body.sum() == 30 * 20
