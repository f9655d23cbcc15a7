"""Multiplanar reformats of a display-oriented volume: axial, coronal and sagittal planes.

Pure numpy (views into the voxel array, no copies until windowing). A
display-oriented :class:`~app.core.volume.Volume` has rows running anterior to
posterior, columns running from the patient's right to left, and slice index
growing toward the head. The planes are shown as radiologists read them:

- axial ``k``: the slice itself (anterior up, patient's right on the left);
- coronal ``r``: row ``r`` of every slice, head up, patient's right on the left;
- sagittal ``c``: column ``c`` of every slice, head up, anterior on the left.

A *cursor* ``(k, r, c)`` is one voxel; each plane shows the cursor's plane of
its kind and the two others cross it along reference lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from app.core.volume import Volume

__all__ = [
    "Plane",
    "PlaneGeometry",
    "cursor_at",
    "plane_geometry",
    "plane_image",
    "reference_lines",
]


class Plane(StrEnum):
    """The three orthogonal planes."""

    AXIAL = "axial"
    CORONAL = "coronal"
    SAGITTAL = "sagittal"

    @property
    def letter(self) -> str:
        """One-letter label shown in the viewport (``A``, ``C``, ``S``)."""
        return self.value[0].upper()


@dataclass(frozen=True)
class PlaneGeometry:
    """How a plane's image maps to millimetres.

    Attributes
    ----------
    shape
        ``(rows, columns)`` of the plane image.
    pixel_mm
        ``(row spacing, column spacing)`` in mm.
    """

    shape: tuple[int, int]
    pixel_mm: tuple[float, float]

    @property
    def extent_mm(self) -> tuple[float, float]:
        """``(width, height)`` of the image in mm."""
        return self.shape[1] * self.pixel_mm[1], self.shape[0] * self.pixel_mm[0]


def _slice_spacing(volume: Volume) -> float:
    z = np.asarray(volume.slice_z, dtype=np.float64)
    if len(z) > 1:
        # The mean step: uneven spacing is already resampled or flagged by the reader.
        return float(abs(z[-1] - z[0]) / (len(z) - 1)) or float(volume.geometry.spacing[2])
    return float(volume.geometry.spacing[2])


def plane_geometry(volume: Volume, plane: Plane) -> PlaneGeometry:
    """Shape and pixel size of ``volume``'s images in ``plane``."""
    n, rows, cols = volume.shape
    sx, sy = (float(s) for s in volume.geometry.spacing[:2])
    sz = _slice_spacing(volume)
    if plane is Plane.AXIAL:
        return PlaneGeometry((rows, cols), (sy, sx))
    if plane is Plane.CORONAL:
        return PlaneGeometry((n, cols), (sz, sx))
    return PlaneGeometry((n, rows), (sz, sy))


def plane_image(volume: Volume, plane: Plane, cursor: tuple[int, int, int]) -> np.ndarray:
    """The 2-D HU image of ``plane`` through ``cursor`` = ``(k, r, c)`` (a view, not a copy).

    Out-of-range cursor components are clipped to the volume.
    """
    n, rows, cols = volume.shape
    k = int(np.clip(cursor[0], 0, n - 1))
    r = int(np.clip(cursor[1], 0, rows - 1))
    c = int(np.clip(cursor[2], 0, cols - 1))
    v = volume.voxels
    if plane is Plane.AXIAL:
        return np.asarray(v[k])
    if plane is Plane.CORONAL:
        return v[::-1, r, :]  # head (last slice) at the top
    return v[::-1, :, c]


def reference_lines(
    volume: Volume, plane: Plane, cursor: tuple[int, int, int]
) -> tuple[float, float]:
    """Where the other two planes cross ``plane``: ``(x_mm, y_mm)`` from the image's top left.

    Axial: the sagittal plane at x, the coronal plane at y. Coronal: the
    sagittal plane at x, the axial level at y. Sagittal: the coronal plane at
    x, the axial level at y. Lines run through pixel centres.
    """
    n = volume.shape[0]
    k, r, c = cursor
    geo = plane_geometry(volume, plane)
    row_mm, col_mm = geo.pixel_mm
    if plane is Plane.AXIAL:
        return (c + 0.5) * col_mm, (r + 0.5) * row_mm
    level_y = (n - 1 - k + 0.5) * row_mm
    if plane is Plane.CORONAL:
        return (c + 0.5) * col_mm, level_y
    return (r + 0.5) * col_mm, level_y


def cursor_at(
    volume: Volume, plane: Plane, cursor: tuple[int, int, int], x_mm: float, y_mm: float
) -> tuple[int, int, int]:
    """The cursor after a click at ``(x_mm, y_mm)`` in ``plane`` (the plane's own index kept)."""
    n, rows, cols = volume.shape
    geo = plane_geometry(volume, plane)
    row_mm, col_mm = geo.pixel_mm
    i = int(np.clip(np.floor(y_mm / row_mm), 0, geo.shape[0] - 1))
    j = int(np.clip(np.floor(x_mm / col_mm), 0, geo.shape[1] - 1))
    k, r, c = cursor
    if plane is Plane.AXIAL:
        return k, i, j
    if plane is Plane.CORONAL:
        return n - 1 - i, r, j
    return n - 1 - i, j, c
