"""Whether a synced viewport shows a level its scan does not cover, and how far away it is."""

from __future__ import annotations

import numpy as np

from app.core.state import ViewportState

__all__ = ["outside_text", "shows_outside_level"]


def shows_outside_level(state: ViewportState) -> bool:
    """True when the synced level lies outside the scan and its nearest end slice is shown.

    Coverage describes the matched level (the first candidate); another
    candidate the user stepped to is a slice inside the scan.
    """
    match = state.match
    if match is None or match.in_coverage:
        return False
    return not match.candidates or state.slice_index == match.candidates[0][0]


def outside_text(state: ViewportState) -> str:
    """The out-of-coverage mark: ``"level outside this scan · 23 mm above its top"``.

    The distance is from the driver's level (as mapped into this scan) to the
    nearest level the scan covers; without a mapped level only the mark is given.
    """
    text = "level outside this scan"
    mapped = getattr(state.match, "mapped_z", None)
    if mapped is None:
        return text
    z = np.asarray(state.volume.slice_z, dtype=np.float64)
    top, bottom = float(z.max()), float(z.min())
    if mapped > top:
        return f"{text} · {mapped - top:.0f} mm above its top"
    if mapped < bottom:
        return f"{text} · {bottom - mapped:.0f} mm below its bottom"
    return text
