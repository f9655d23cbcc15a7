"""Measurements in exported pictures: the shapes on their slices, the follow-up table as a caption.

Only when the user asks (the export dialog's option, ``priorsync export
--measurements``). Shapes are drawn into each panel's picture at native
resolution (a line, or the ellipse as a polygon through its outline, with its
long-axis diameter beside it); the follow-up table (finding, date, long axis,
change against the oldest and the previous date) becomes a caption under the
panels. Neither holds a patient identifier: findings are named ``F1``, ``F2``,
..., dates are study dates.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

import cv2
import numpy as np

from app.core.imaging import window_to_uint8
from app.core.measure import Finding, FollowUpRow, Measurement, MeasurementError, followup_rows
from app.core.measure_slice import ellipse_shape, lps_to_image, measurement_slice
from app.core.volume import SeriesInfo, Volume
from app.export.render import SlicePanel

__all__ = [
    "draw_measurements",
    "format_change",
    "table_lines",
    "table_rows",
    "with_measurements",
]

_COLOUR = (235, 203, 139)  # the viewer's measurement colour, RGB
_OUTLINE_POINTS = 72


def format_change(pct: float | None) -> str:
    """``"+12.5 %"``, ``"-3.0 %"``, or ``"-"`` where there is no reference."""
    return "-" if pct is None else f"{pct:+.1f} %"


def _date(study_date: str) -> str:
    return SeriesInfo(study_date=study_date).display_date()


def table_rows(findings: Sequence[Finding]) -> list[tuple[str, FollowUpRow]]:
    """``(finding name, row)`` of every finding, in order, each oldest date first."""
    return [(f.name, row) for f in findings for row in followup_rows(f)]


def table_lines(findings: Sequence[Finding]) -> list[str]:
    """The follow-up table as tab-separated lines, a header first; ``[]`` without findings.

    The cells: finding, date, long-axis diameter, change against the oldest
    and against the previous date (the export's footer draws them in columns).
    """
    rows = table_rows(findings)
    if not rows:
        return []
    lines = ["FOLLOW-UP\tdate\tlong axis\tvs oldest\tvs previous"]
    for name, row in rows:
        lines.append(
            f"{name}\t{_date(row.study_date)}\t{row.diameter_mm:.1f} mm\t"
            f"{format_change(row.change_vs_oldest_pct)}\t"
            f"{format_change(row.change_vs_previous_pct)}"
        )
    return lines


def _to_px(volume: Volume, k: int, lps: Sequence[float]) -> tuple[float, float]:
    x, y = lps_to_image(volume, k, tuple(lps))  # type: ignore[arg-type]
    sx, sy = (float(s) for s in volume.geometry.spacing[:2])
    return x / sx - 0.5, y / sy - 0.5


def _outline_px(volume: Volume, m: Measurement) -> np.ndarray:
    """``(n, 2)`` pixel positions along the shape (a line's two ends, an ellipse's outline)."""
    k = measurement_slice(volume, m)
    assert k is not None
    if m.kind == "line":
        return np.array([_to_px(volume, k, p) for p in m.points])
    shape = ellipse_shape(volume, m)
    t = np.linspace(0.0, 2.0 * math.pi, _OUTLINE_POINTS, endpoint=False)
    a, b = shape.semi_axes_mm
    th = math.radians(shape.angle_deg)
    u, v = a * np.cos(t), b * np.sin(t)
    x_mm = shape.centre[0] + u * math.cos(th) - v * math.sin(th)
    y_mm = shape.centre[1] + u * math.sin(th) + v * math.cos(th)
    sx, sy = (float(s) for s in volume.geometry.spacing[:2])
    return np.stack([x_mm / sx - 0.5, y_mm / sy - 0.5], axis=1)


def draw_measurements(
    rgb: np.ndarray, volume: Volume, index: int, measurements: Sequence[Measurement]
) -> tuple[np.ndarray, int]:
    """``rgb`` (a copy) with the measurements that lie on slice ``index`` drawn in.

    Returns
    -------
    (np.ndarray, int)
        The picture and how many measurements were drawn.
    """
    out = np.ascontiguousarray(rgb).copy()
    drawn = 0
    for m in measurements:
        if measurement_slice(volume, m) != index:
            continue
        try:
            px = _outline_px(volume, m)
        except MeasurementError:
            continue
        shift = 4  # sub-pixel positions: OpenCV takes them as fixed point
        pts = np.round(px * (1 << shift)).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(out, [pts], m.kind != "line", _COLOUR, 1, cv2.LINE_AA, shift)
        x, y = px[:, 0].max() + 3, px[:, 1].min()
        cv2.putText(
            out,
            f"{m.finding} {m.diameter_mm:.1f} mm",
            (int(min(x, out.shape[1] - 80)), int(max(y, 12))),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4,
            _COLOUR,
            1,
            cv2.LINE_AA,
        )
        drawn += 1
    return out, drawn


def with_measurements(
    panels: Sequence[SlicePanel], measurements_of: Callable[[Volume], Sequence[Measurement]]
) -> list[SlicePanel]:
    """The panels with their series' measurements drawn on (on top of any colour overlay)."""
    out = []
    for p in panels:
        ms = measurements_of(p.volume)
        if p.overlay is not None:
            base = np.asarray(p.overlay)
        else:
            grey = window_to_uint8(p.volume.slice(p.index), p.window)
            base = np.repeat(grey[:, :, None], 3, axis=2)
        picture, drawn = draw_measurements(base, p.volume, p.index, ms)
        if not drawn:
            out.append(p)
            continue
        label = "measurements" if p.overlay is None else f"{p.overlay_label} + measurements"
        out.append(replace(p, overlay=picture, overlay_label=label))
    return out
