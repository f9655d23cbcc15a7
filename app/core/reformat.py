"""A sagittal reformat of a series for the "where the match sits" side view (numpy, no Qt).

Computed once per series: a slab through the body's left-right centre,
averaged (a thin plane would be noisy and miss the spine or the airway when
the patient lies off-centre), cropped to the body's front-to-back extent so
the narrow side view spends its pixels on anatomy, windowed wide enough to
show lungs, soft tissue and bone together; head at the top, anterior at the
left, as sagittal images are shown.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.core.imaging import BODY_THRESHOLD_HU, Window, window_to_uint8
from app.core.volume import Volume

__all__ = ["Reformat", "sagittal_reformat", "SCOUT_WINDOW"]

# Lung, soft tissue and bone all distinguishable in one grey ramp.
SCOUT_WINDOW = Window(center=-200.0, width=1600.0)
_MARGIN_MM = 10.0


@dataclass(frozen=True)
class Reformat:
    """A side image of a series and how its rows map to slice positions.

    Attributes
    ----------
    image
        ``(n_slices, width)`` uint8; row 0 is the most superior slice.
    width_mm, height_mm
        Physical size of the image (its columns x spacing, the z extent
        including half slices at both ends): paint it with this aspect.
    z_top, z_bottom
        ``slice_z`` (mm) at the top and bottom edges of the image.
    """

    image: np.ndarray
    width_mm: float
    height_mm: float
    z_top: float
    z_bottom: float

    def fraction_of(self, z: float) -> float:
        """Vertical position of level ``z`` (mm) as a fraction of the image height (0 = top)."""
        span = self.z_top - self.z_bottom
        return float((self.z_top - z) / span) if span else 0.5


def _body_extent(volume: Volume) -> tuple[int, int, int]:
    """Centre column and first/last row of the body, from up to 32 slices.

    Projections of the body mask, not ``np.nonzero``: the coordinates of
    millions of body voxels would cost a GUI-thread stall of a second.
    """
    sample = volume.voxels[:: max(1, volume.n_slices // 32)] > BODY_THRESHOLD_HU
    per_row = sample.any(axis=2).any(axis=0)
    if not per_row.any():
        return volume.shape[2] // 2, 0, volume.shape[1] - 1
    rows = np.flatnonzero(per_row)
    per_col = np.count_nonzero(sample, axis=(0, 1)).astype(np.float64)
    centre = float(per_col @ np.arange(len(per_col))) / float(per_col.sum())
    return int(np.clip(round(centre), 0, volume.shape[2] - 1)), int(rows[0]), int(rows[-1])


def sagittal_reformat(volume: Volume, slab_mm: float = 20.0) -> Reformat:
    """The sagittal slab image of a display-oriented volume.

    Parameters
    ----------
    volume
        Display-oriented CT (rows run anterior to posterior, columns right to
        left, slices toward the head).
    slab_mm
        Thickness of the averaged slab, centred on the body.
    """
    n, n_rows, n_cols = volume.shape
    sx, sy = (float(s) for s in volume.geometry.spacing[:2])
    centre, first, last = _body_extent(volume)
    half = max(0, int(round(slab_mm / (2.0 * sx))))
    lo, hi = max(0, centre - half), min(n_cols, centre + half + 1)
    margin = int(round(_MARGIN_MM / sy))
    r0, r1 = max(0, first - margin), min(n_rows, last + margin + 1)
    # Integer sum, then one division: no float copy of the slab.
    slab = volume.voxels[:, r0:r1, lo:hi].sum(axis=2, dtype=np.int32) / np.float32(hi - lo)
    z = np.asarray(volume.slice_z, dtype=np.float64)
    order = np.argsort(z)[::-1]  # most superior first
    image = window_to_uint8(slab[order], SCOUT_WINDOW)
    zs = z[order]
    if n > 1:
        top_half = abs(zs[0] - zs[1]) / 2.0
        bottom_half = abs(zs[-1] - zs[-2]) / 2.0
    else:
        top_half = bottom_half = float(volume.geometry.spacing[2]) / 2.0
    z_top, z_bottom = float(zs[0] + top_half), float(zs[-1] - bottom_half)
    return Reformat(
        image=np.ascontiguousarray(image),
        width_mm=float((r1 - r0) * sy),
        height_mm=z_top - z_bottom,
        z_top=z_top,
        z_bottom=z_bottom,
    )
