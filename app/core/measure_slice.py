"""Measurements on axial slices: image millimetres <-> LPS, the slice a measurement lies on.

A viewport paints the axial slice ``k`` of a display-oriented volume as an
image whose pixel ``(row, col)`` covers ``[col * sx, (col + 1) * sx] x
[row * sy, (row + 1) * sy]`` mm (see :mod:`app.core.planes`). The tools draw
in those image millimetres; the store keeps LPS millimetres, so a measurement
survives zoom, pan and scrolling and can be saved and propagated. Each slice
is placed at its own ``slice_positions`` row (unevenly spaced series stay
exact), and the in-plane axes come from the volume's direction matrix (a
sheared, gantry-tilted one too).

The numbers (length, area, HU statistics) are :mod:`app.core.measure`'s.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from app.core.measure import (
    EllipseStats,
    Measurement,
    MeasurementError,
    ellipse_mask,
    ellipse_stats,
)
from app.core.volume import Volume

__all__ = [
    "EllipseShape",
    "ellipse_shape",
    "image_to_lps",
    "lps_to_image",
    "measurement_slice",
    "roi_stats",
    "series_key",
    "snap_to_slice",
    "summary",
]

Point3 = tuple[float, float, float]


def series_key(volume: Volume) -> str:
    """What a measurement names its series by: the series UID, else a hash of the source.

    The hash keeps a file name (which may hold a patient's name) out of the
    measurements file.
    """
    uid = volume.info.series_uid.strip()
    if uid:
        return uid
    digest = hashlib.sha256(f"{volume.source}|{volume.shape}".encode()).hexdigest()[:24]
    return f"source-{digest}"


def _in_plane_matrix(volume: Volume) -> np.ndarray:
    """3x3 matrix turning ``(col, row, slice)`` index steps into LPS mm."""
    g = volume.geometry
    m: np.ndarray = g.direction * g.spacing
    return m


def image_to_lps(volume: Volume, k: int, x_mm: float, y_mm: float) -> Point3:
    """The LPS point at image position ``(x_mm, y_mm)`` of axial slice ``k``."""
    sx, sy = (float(s) for s in volume.geometry.spacing[:2])
    col = x_mm / sx - 0.5
    row = y_mm / sy - 0.5
    p = volume.slice_positions[k] + _in_plane_matrix(volume) @ np.array([col, row, 0.0])
    return float(p[0]), float(p[1]), float(p[2])


def _slice_offset(volume: Volume, k: int, lps: np.ndarray) -> np.ndarray:
    """``(col, row, through-plane slices)`` of ``lps`` relative to slice ``k``'s first voxel."""
    d = np.asarray(lps, dtype=np.float64) - volume.slice_positions[k]
    offset: np.ndarray = np.linalg.solve(_in_plane_matrix(volume), d)
    return offset


def nearest_slice(volume: Volume, lps: np.ndarray) -> tuple[int, float]:
    """The slice nearest ``lps`` and the distance (mm) from its plane."""
    z = float(np.asarray(lps, dtype=np.float64) @ volume.geometry.normal)
    k = int(np.argmin(np.abs(volume.slice_z - z)))
    return k, abs(float(volume.slice_z[k]) - z)


def lps_to_image(volume: Volume, k: int, lps: Point3 | np.ndarray) -> tuple[float, float]:
    """Image position ``(x_mm, y_mm)`` of ``lps`` projected onto axial slice ``k``."""
    col, row, _ = _slice_offset(volume, k, np.asarray(lps, dtype=np.float64))
    sx, sy = (float(s) for s in volume.geometry.spacing[:2])
    return (float(col) + 0.5) * sx, (float(row) + 0.5) * sy


def _half_step(volume: Volume, k: int) -> float:
    z = volume.slice_z
    if len(z) < 2:
        return float(volume.geometry.spacing[2]) / 2.0
    neighbours = [abs(float(z[j] - z[k])) for j in (k - 1, k + 1) if 0 <= j < len(z)]
    return min(neighbours) / 2.0


def measurement_slice(volume: Volume, measurement: Measurement) -> int | None:
    """The axial slice ``measurement`` lies on, or ``None`` when it is not on one slice.

    All control points must lie within half a slice step of the slice nearest
    the first point (a measurement drawn on a slice always does; a propagated
    one does once :func:`snap_to_slice` placed it).
    """
    k, _ = nearest_slice(volume, np.asarray(measurement.points[0]))
    half = _half_step(volume, k) + 1e-6
    for p in measurement.points:
        if abs(float(_slice_offset(volume, k, np.asarray(p))[2])) * _slice_step(volume) > half:
            return None
    return k


def _slice_step(volume: Volume) -> float:
    """mm per unit of the through-plane index (the geometry's slice spacing along the normal)."""
    col = _in_plane_matrix(volume)[:, 2]
    return abs(float(col @ volume.geometry.normal))


def snap_to_slice(volume: Volume, measurement: Measurement) -> tuple[Measurement, int]:
    """``measurement`` projected onto the slice nearest its centroid, and that slice.

    Propagated control points land at slightly different levels of a prior;
    the reader adjusts the measurement on one slice, so it is placed on one.
    In-plane positions are kept (projected along the slice axis).
    """
    centroid = np.mean(np.asarray(measurement.points, dtype=np.float64), axis=0)
    k, _ = nearest_slice(volume, centroid)
    flat = []
    for p in measurement.points:
        x, y = lps_to_image(volume, k, p)
        flat.append(image_to_lps(volume, k, x, y))
    return measurement.moved(flat, measurement.series_uid, measurement.study_date), k


@dataclass(frozen=True)
class EllipseShape:
    """An ellipse on slice ``k``: centre in image mm, semi-axes in mm, angle in degrees.

    ``angle_deg`` turns the first semi-axis from the image's x axis (columns)
    toward its y axis (rows), as :func:`app.core.measure.ellipse_mask` reads it.
    """

    k: int
    centre: tuple[float, float]
    semi_axes_mm: tuple[float, float]
    angle_deg: float


def ellipse_shape(volume: Volume, measurement: Measurement) -> EllipseShape:
    """The ellipse of an ``"ellipse"`` measurement on its slice.

    Raises
    ------
    MeasurementError
        When it is not an ellipse or not on one slice.
    """
    if measurement.kind != "ellipse":
        raise MeasurementError(f"a {measurement.kind} is not an ellipse")
    k = measurement_slice(volume, measurement)
    if k is None:
        raise MeasurementError("the ellipse does not lie on one slice")
    c, p1, p2 = (np.array(lps_to_image(volume, k, p)) for p in measurement.points)
    a = float(np.linalg.norm(p1 - c))
    b = float(np.linalg.norm(p2 - c))
    angle = math.degrees(math.atan2(p1[1] - c[1], p1[0] - c[0]))
    return EllipseShape(k, (float(c[0]), float(c[1])), (a, b), angle)


def roi_stats(volume: Volume, measurement: Measurement) -> EllipseStats:
    """Area and HU statistics of an ellipse measurement (:func:`app.core.measure.ellipse_stats`).

    Raises
    ------
    MeasurementError
        Not an ellipse, not on one slice, or too small to hold a pixel centre.
    """
    shape = ellipse_shape(volume, measurement)
    sx, sy = (float(s) for s in volume.geometry.spacing[:2])
    centre_px = (shape.centre[0] / sx - 0.5, shape.centre[1] / sy - 0.5)
    _, rows, cols = volume.shape
    mask = ellipse_mask(
        (rows, cols), centre_px, shape.semi_axes_mm, volume.geometry, shape.angle_deg
    )
    return ellipse_stats(volume.slice(shape.k), mask, volume.geometry)


def summary(volume: Volume | None, measurement: Measurement) -> str:
    """The text shown beside a measurement: its length, or its diameter, area and HU statistics."""
    if measurement.kind == "line":
        return f"{measurement.diameter_mm:.1f} mm"
    text = f"⌀ {measurement.diameter_mm:.1f} mm"
    if volume is None:
        return text
    try:
        s = roi_stats(volume, measurement)
    except MeasurementError as exc:
        return f"{text}\n{exc}"
    return f"{text}\n{s.area_mm2:.0f} mm² · {s.mean_hu:.0f} ± {s.sd_hu:.0f} HU"
