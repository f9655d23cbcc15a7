"""The linked cursor: one point in LPS mm, and where each date's plane shows it.

Pure numpy, no Qt. The driving date's cursor is the point the user clicked;
every other date gets the corresponding point from the point engine, with an
uncertainty radius, or "outside this scan" (:class:`CursorMark`). The viewer
paints a mark on whichever plane it shows: :func:`point_on_plane` turns a click
in a plane's image millimetres into LPS, :func:`plane_position` turns an LPS
point back into the plane's image millimetres and its distance from the plane.

Plane images follow :mod:`app.core.planes` (axial: the slice, anterior up;
coronal and sagittal: head up, one image row per slice), and so do the
positions here: for a voxel centre they equal :func:`app.core.planes.reference_lines`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.core.planes import Plane, level_at_y, level_y_mm, plane_geometry
from app.core.volume import Volume

__all__ = [
    "NO_ENGINE_MARK",
    "OUTSIDE_SCAN",
    "CursorMark",
    "PlanePosition",
    "circle_radius_in_plane",
    "contains_point",
    "fractional_slice",
    "plane_position",
    "point_on_plane",
]


@dataclass(frozen=True)
class CursorMark:
    """The linked cursor as one viewport shows it.

    Attributes
    ----------
    point
        LPS mm in this viewport's volume; ``None`` when this date does not show it.
    radius_mm
        Uncertainty radius (mm): 0 on the driving date (the point is where the
        user clicked), the point engine's ``radius_mm`` on the others; 0 when
        there is no point (never NaN: equal marks must compare equal, so an
        unchanged answer repaints nothing).
    in_coverage
        Whether this date images the point (False: ``message`` says why).
    message
        Why the point is not shown ("" when it is).
    confidence
        The point engine's confidence (0..1); ``None`` on the driving date.
    driving
        True on the date where the user placed the cursor.
    pending
        True while the answer for this date is being computed or prepared.
    """

    point: tuple[float, float, float] | None
    radius_mm: float = 0.0
    in_coverage: bool = True
    message: str = ""
    confidence: float | None = None
    driving: bool = False
    pending: bool = False

    @classmethod
    def outside(cls, message: str, *, pending: bool = False) -> CursorMark:
        """A mark without a point: this date does not show it, and ``message`` says why."""
        return cls(None, 0.0, False, message, pending=pending)

    @property
    def shown(self) -> bool:
        """True when a point is to be painted (covered and not pending)."""
        return self.point is not None and self.in_coverage and not self.pending


OUTSIDE_SCAN = "outside this scan"

# A target in another frame of reference, without the point engine's answer.
NO_ENGINE_MARK = CursorMark.outside("another frame of reference: no point sync without the model")


def contains_point(volume: Volume, lps: np.ndarray) -> bool:
    """Whether an LPS point lies within the volume's voxels (half a voxel of slack).

    One test for the linked cursor and the point engine (``app.ml.points.locate``).
    """
    p = np.asarray(lps, dtype=np.float64).reshape(3)
    if not np.all(np.isfinite(p)):
        return False
    idx = volume.geometry.lps_to_index(p)
    z = np.asarray(volume.slice_z, dtype=np.float64)
    along = float(p @ volume.geometry.normal)
    half = float(np.median(np.abs(np.diff(z)))) / 2.0 if len(z) > 1 else 0.5
    _, rows, cols = volume.shape
    return bool(
        -0.5 <= idx[0] <= cols - 0.5
        and -0.5 <= idx[1] <= rows - 0.5
        and z.min() - half <= along <= z.max() + half
    )


@dataclass(frozen=True)
class PlanePosition:
    """Where an LPS point lies on a plane image.

    Attributes
    ----------
    x_mm, y_mm
        Image millimetres from the top left (the viewport's scene coordinates).
    offset_mm
        Signed distance (mm) of the point from the plane shown.
    inside
        Whether the point projects inside the image (half a pixel of slack).
    """

    x_mm: float
    y_mm: float
    offset_mm: float
    inside: bool


def fractional_slice(volume: Volume, along_mm: float) -> float:
    """Continuous slice index of a position along the slice normal (mm).

    Interpolated in ``slice_z``, so unevenly spaced slices are placed where
    they are; beyond the ends it extrapolates with the end spacing.
    """
    z = np.asarray(volume.slice_z, dtype=np.float64)
    n = len(z)
    if n == 1:
        spacing = float(volume.geometry.spacing[2]) or 1.0
        return float((along_mm - z[0]) / spacing)
    order = np.argsort(z)
    zs, ks = z[order], order.astype(np.float64)
    if along_mm < zs[0]:
        step = (ks[1] - ks[0]) / (zs[1] - zs[0])
        return float(ks[0] + (along_mm - zs[0]) * step)
    if along_mm > zs[-1]:
        step = (ks[-1] - ks[-2]) / (zs[-1] - zs[-2])
        return float(ks[-1] + (along_mm - zs[-1]) * step)
    return float(np.interp(along_mm, zs, ks))


def _slice_origin(volume: Volume, k: float) -> np.ndarray:
    """LPS of voxel (0, 0) at continuous slice index ``k`` (between stored slice positions)."""
    pos = volume.slice_positions
    n = len(pos)
    if n == 1:
        single: np.ndarray = pos[0] + k * float(volume.geometry.spacing[2]) * volume.geometry.normal
        return single
    lo = int(np.clip(np.floor(k), 0, n - 2))
    t = k - lo
    origin: np.ndarray = pos[lo] + t * (pos[lo + 1] - pos[lo])
    return origin


def point_on_plane(
    volume: Volume, plane: Plane, cursor: tuple[int, int, int], x_mm: float, y_mm: float
) -> np.ndarray:
    """The LPS point (mm) under a click at ``(x_mm, y_mm)`` of ``plane`` through ``cursor``.

    Parameters
    ----------
    volume
        The viewport's volume.
    plane
        The plane shown.
    cursor
        ``(slice, row, column)`` the plane passes through: the plane's own
        index (the slice of an axial plane, the row of a coronal one, the
        column of a sagittal one) is taken from it.
    x_mm, y_mm
        Image millimetres from the top left. Not clipped: a click beside the
        image gives a point outside the volume, which the point engine reports
        as such.

    Returns
    -------
    np.ndarray
        ``(3,)`` LPS mm.
    """
    geo = plane_geometry(volume, plane)
    row_mm, col_mm = geo.pixel_mm
    k, r, c = cursor
    sx, sy = (float(s) for s in volume.geometry.spacing[:2])
    if plane is Plane.AXIAL:
        ks, row, col = float(k), y_mm / row_mm - 0.5, x_mm / col_mm - 0.5
    elif plane is Plane.CORONAL:
        ks, row, col = level_at_y(volume, plane, y_mm), float(r), x_mm / col_mm - 0.5
    else:
        ks, row, col = level_at_y(volume, plane, y_mm), x_mm / col_mm - 0.5, float(c)
    d = volume.geometry.direction
    p: np.ndarray = _slice_origin(volume, ks) + col * sx * d[:, 0] + row * sy * d[:, 1]
    return p


def plane_position(
    volume: Volume, plane: Plane, cursor: tuple[int, int, int], point: np.ndarray
) -> PlanePosition:
    """Where LPS ``point`` lies on ``plane`` through ``cursor`` (the inverse of :func:`point_on_plane`)."""
    p = np.asarray(point, dtype=np.float64).reshape(3)
    n, rows, cols = volume.shape
    geo = plane_geometry(volume, plane)
    row_mm, col_mm = geo.pixel_mm
    normal = volume.geometry.normal
    along = float(p @ normal)
    ks = fractional_slice(volume, along)
    # In-plane indices from the slice's own origin (uneven or shifted slice positions).
    d = volume.geometry.direction
    sx, sy = (float(s) for s in volume.geometry.spacing[:2])
    m = np.column_stack([d[:, 0] * sx, d[:, 1] * sy, normal])
    col, row, _ = np.linalg.solve(m, p - _slice_origin(volume, ks))
    k, r, c = cursor
    if plane is Plane.AXIAL:
        x, y = (col + 0.5) * col_mm, (row + 0.5) * row_mm
        offset = along - float(volume.slice_z[int(np.clip(k, 0, n - 1))])
    elif plane is Plane.CORONAL:
        x, y = (col + 0.5) * col_mm, level_y_mm(volume, plane, ks)
        offset = (row - r) * sy
    else:
        x, y = (row + 0.5) * col_mm, level_y_mm(volume, plane, ks)
        offset = (col - c) * sx
    width, height = geo.extent_mm
    slack_x, slack_y = col_mm / 2.0, row_mm / 2.0
    inside = bool(-slack_x <= x <= width + slack_x and -slack_y <= y <= height + slack_y)
    return PlanePosition(float(x), float(y), float(offset), inside)


def circle_radius_in_plane(radius_mm: float, offset_mm: float) -> float | None:
    """Radius (mm) of the uncertainty sphere's cut through a plane ``offset_mm`` away.

    ``None`` when the plane misses the sphere: the mark is then not painted
    on that plane, rather than drawn where the point is not.
    """
    if not np.isfinite(radius_mm) or radius_mm < 0:
        return None
    left = radius_mm**2 - offset_mm**2
    if left < 0:
        return None
    return float(np.sqrt(left))
