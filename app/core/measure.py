"""Measurement maths: line lengths, ellipse ROIs and their HU statistics, follow-up tables.

Pure numpy, Qt-free. Positions are LPS mm, or continuous voxel indices
``(col, row, slice)`` converted through the volume's :class:`~app.core.volume.Geometry`
(any pixel spacing, orientation, even a sheared gantry-tilt matrix). A viewer
draws what these functions compute; it never measures on screen pixels.

Measurements are plain dataclasses (:class:`Measurement`, :class:`Finding`)
that serialise to JSON-ready dicts; :mod:`app.io.measurements_file` stores them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from app.core.volume import Geometry

__all__ = [
    "EllipseStats",
    "Finding",
    "FollowUpRow",
    "Measurement",
    "MeasurementError",
    "ellipse_mask",
    "ellipse_stats",
    "followup_rows",
    "line_length_mm",
    "line_length_from_indices",
    "long_axis_mm",
    "pixel_area_mm2",
]

Kind = Literal["line", "ellipse"]
KINDS: tuple[str, ...] = ("line", "ellipse")


class MeasurementError(ValueError):
    """A measurement that cannot be made or read; the message is for the user."""


# --------------------------------------------------------------------------- lines


def line_length_mm(a: np.ndarray | tuple[float, ...], b: np.ndarray | tuple[float, ...]) -> float:
    """Physical distance (mm) between two LPS points."""
    return float(np.linalg.norm(np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)))


def line_length_from_indices(geometry: Geometry, a_ijk: np.ndarray, b_ijk: np.ndarray) -> float:
    """Distance (mm) between two continuous voxel indices ``(col, row, slice)`` of a volume."""
    return line_length_mm(geometry.index_to_lps(a_ijk), geometry.index_to_lps(b_ijk))


# --------------------------------------------------------------------------- ellipses


def pixel_area_mm2(geometry: Geometry) -> float:
    """Area (mm²) of one pixel of a slice: ``|col_step x row_step|``."""
    col = geometry.direction[:, 0] * geometry.spacing[0]
    row = geometry.direction[:, 1] * geometry.spacing[1]
    return float(np.linalg.norm(np.cross(col, row)))


def _in_plane_metric(geometry: Geometry) -> np.ndarray:
    """2x2 matrix turning (col, row) pixel steps into in-plane mm (orthonormal basis)."""
    col = geometry.direction[:, 0] * geometry.spacing[0]
    row = geometry.direction[:, 1] * geometry.spacing[1]
    e1 = col / np.linalg.norm(col)
    e2 = row - (row @ e1) * e1
    e2 /= max(np.linalg.norm(e2), 1e-12)
    return np.array([[col @ e1, row @ e1], [col @ e2, row @ e2]])


def ellipse_mask(
    shape: tuple[int, int],
    centre: tuple[float, float],
    semi_axes_mm: tuple[float, float],
    geometry: Geometry,
    angle_deg: float = 0.0,
) -> np.ndarray:
    """Pixels of a slice whose centres lie inside an ellipse drawn in millimetres.

    Parameters
    ----------
    shape
        ``(rows, cols)`` of the slice.
    centre
        Centre as continuous ``(col, row)`` pixel indices.
    semi_axes_mm
        Semi-axes ``(a, b)`` in mm; ``a`` along the slice's column direction
        when ``angle_deg`` is 0.
    geometry
        The volume's geometry (pixel spacing and in-plane orientation).
    angle_deg
        Rotation of the ``a`` axis from the column direction, in the slice plane.

    Returns
    -------
    np.ndarray
        ``(rows, cols)`` bool mask.

    Raises
    ------
    MeasurementError
        Non-positive or non-finite semi-axes.
    """
    a, b = (float(v) for v in semi_axes_mm)
    if not (math.isfinite(a) and math.isfinite(b) and a > 0 and b > 0):
        raise MeasurementError(f"an ellipse needs positive semi-axes, got {a} x {b} mm")
    rows, cols = shape
    rr, cc = np.mgrid[0:rows, 0:cols].astype(np.float64)
    m = _in_plane_metric(geometry)
    d = np.stack([cc - centre[0], rr - centre[1]], axis=-1) @ m.T  # mm in the plane
    t = math.radians(angle_deg)
    u = d[..., 0] * math.cos(t) + d[..., 1] * math.sin(t)
    v = -d[..., 0] * math.sin(t) + d[..., 1] * math.cos(t)
    inside: np.ndarray = (u / a) ** 2 + (v / b) ** 2 <= 1.0
    return inside


@dataclass(frozen=True)
class EllipseStats:
    """Statistics of an ROI: pixel count, area (mm²), mean and SD of HU (numpy's, ddof 0)."""

    n_pixels: int
    area_mm2: float
    mean_hu: float
    sd_hu: float


def ellipse_stats(slice_hu: np.ndarray, mask: np.ndarray, geometry: Geometry) -> EllipseStats:
    """Area and HU statistics of the pixels in ``mask`` on one slice.

    Raises
    ------
    MeasurementError
        When the mask does not fit the slice or selects no pixel.
    """
    hu = np.asarray(slice_hu)
    mask = np.asarray(mask, dtype=bool)
    if hu.shape != mask.shape:
        raise MeasurementError(f"the ROI ({mask.shape}) does not fit the slice ({hu.shape})")
    values = hu[mask].astype(np.float64)
    if values.size == 0:
        raise MeasurementError("the ROI holds no pixel centre; draw it larger")
    return EllipseStats(
        n_pixels=int(values.size),
        area_mm2=float(values.size * pixel_area_mm2(geometry)),
        mean_hu=float(np.mean(values)),
        sd_hu=float(np.std(values)),
    )


def long_axis_mm(mask: np.ndarray, geometry: Geometry) -> float:
    """Longest distance (mm) between two pixel centres of a 2-D ``mask`` (its Feret diameter).

    Only the mask's boundary pixels can be the ends of the longest chord, so
    only they are compared. 0 for an empty or single-pixel mask.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.sum() < 2:
        return 0.0
    inner = mask.copy()
    inner[1:-1, 1:-1] &= mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    inner[[0, -1], :] = False
    inner[:, [0, -1]] = False
    rows, cols = np.nonzero(mask & ~inner)
    pts = np.stack([cols, rows], axis=1).astype(np.float64) @ _in_plane_metric(geometry).T
    if len(pts) > 4000:  # keep the pairwise distances in memory bounds
        pts = pts[np.linspace(0, len(pts) - 1, 4000).astype(int)]
    d2 = np.sum((pts[:, None, :] - pts[None, :, :]) ** 2, axis=-1)
    return float(np.sqrt(d2.max()))


# --------------------------------------------------------------------------- measurements


def _point(value: Any, what: str) -> tuple[float, float, float]:
    try:
        p = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise MeasurementError(f"{what} is not a point: {value!r}") from None
    if len(p) != 3 or not all(math.isfinite(v) for v in p):
        raise MeasurementError(f"{what} is not a finite 3-D point: {value!r}")
    return p


@dataclass(frozen=True)
class Measurement:
    """One measurement on one series.

    ``points`` (LPS mm) are the control points: a line's two ends; an
    ellipse's centre, the end of its first semi-axis and the end of its
    second. ``finding`` links measurements of one lesion across dates.
    """

    kind: Kind
    series_uid: str
    study_date: str
    points: tuple[tuple[float, float, float], ...]
    finding: str = ""
    label: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise MeasurementError(f"unknown measurement kind {self.kind!r}")
        need = 2 if self.kind == "line" else 3
        if len(self.points) != need:
            raise MeasurementError(f"a {self.kind} needs {need} points, got {len(self.points)}")
        pts = tuple(_point(p, f"point {i + 1} of a {self.kind}") for i, p in enumerate(self.points))
        object.__setattr__(self, "points", pts)

    @property
    def diameter_mm(self) -> float:
        """Long-axis diameter (mm): a line's length, an ellipse's major axis."""
        if self.kind == "line":
            return line_length_mm(self.points[0], self.points[1])
        c = self.points[0]
        return 2.0 * max(line_length_mm(c, self.points[1]), line_length_mm(c, self.points[2]))

    def moved(
        self, points: list[tuple[float, float, float]], series_uid: str, study_date: str
    ) -> Measurement:
        """The same measurement (kind, finding, label) at other points of another series."""
        return Measurement(
            self.kind, series_uid, study_date, tuple(points), self.finding, self.label
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "series_uid": self.series_uid,
            "study_date": self.study_date,
            "points": [list(p) for p in self.points],
            "finding": self.finding,
            "label": self.label,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Measurement:
        """Parse :meth:`to_dict` output.

        Raises
        ------
        MeasurementError
            When ``data`` is not a measurement.
        """
        if not isinstance(data, dict):
            raise MeasurementError(f"a measurement must be an object, got {type(data).__name__}")
        try:
            return cls(
                kind=data["kind"],
                series_uid=str(data.get("series_uid", "")),
                study_date=str(data.get("study_date", "")),
                points=tuple(data["points"]),
                finding=str(data.get("finding", "")),
                label=str(data.get("label", "")),
            )
        except KeyError as exc:
            raise MeasurementError(f"a measurement lacks {exc}") from None
        except TypeError as exc:
            raise MeasurementError(f"a measurement is malformed: {exc}") from None


@dataclass
class Finding:
    """A tracked finding: its name and its measurements across dates."""

    name: str
    measurements: list[Measurement] = field(default_factory=list)


@dataclass(frozen=True)
class FollowUpRow:
    """One date of a finding in the follow-up table.

    ``change_vs_oldest_pct`` / ``change_vs_previous_pct`` are ``None`` on the
    oldest date (and where the reference diameter is 0).
    """

    study_date: str
    diameter_mm: float
    change_vs_oldest_pct: float | None
    change_vs_previous_pct: float | None


def _pct(new: float, ref: float) -> float | None:
    return None if ref <= 0 else 100.0 * (new - ref) / ref


def followup_rows(finding: Finding) -> list[FollowUpRow]:
    """The finding's follow-up table, oldest date first.

    Per date the largest long-axis diameter measured counts (a reader who
    draws two lines on one date measures the longer axis). Dates sort as
    ``YYYYMMDD`` strings; undated measurements come last, in the order given.
    """
    per_date: dict[str, float] = {}
    order: list[str] = []
    for m in finding.measurements:
        if m.study_date not in per_date:
            order.append(m.study_date)
            per_date[m.study_date] = m.diameter_mm
        else:
            per_date[m.study_date] = max(per_date[m.study_date], m.diameter_mm)
    dated = sorted(d for d in order if d)
    dates = dated + [d for d in order if not d]
    rows: list[FollowUpRow] = []
    for i, date in enumerate(dates):
        d = per_date[date]
        oldest = per_date[dates[0]]
        prev = per_date[dates[i - 1]] if i > 0 else None
        rows.append(
            FollowUpRow(
                study_date=date,
                diameter_mm=d,
                change_vs_oldest_pct=None if i == 0 else _pct(d, oldest),
                change_vs_previous_pct=None if prev is None else _pct(d, prev),
            )
        )
    return rows
