"""Propagating a measurement to a prior: each control point through the point engine.

The propagated measurement is a starting place for the reader to adjust, not
a measurement of the prior: its points are where the engine maps the
current's control points. When any control point is not covered, nothing is
propagated (a line with one end guessed would be worse than none).
"""

from __future__ import annotations

from dataclasses import dataclass

from app.core.measure import Measurement
from app.ml.points.locate import PointMatch, PointPair

__all__ = ["Propagated", "propagate_measurement"]


@dataclass(frozen=True)
class Propagated:
    """The result of propagating one measurement to one prior.

    ``measurement`` is ``None`` when a control point is not covered;
    ``message`` then says why. ``matches`` holds each control point's answer.
    """

    measurement: Measurement | None
    matches: tuple[PointMatch, ...]
    message: str = ""

    @property
    def confidence(self) -> float:
        """The least confident control point's confidence (0 when not propagated)."""
        return min((m.confidence for m in self.matches), default=0.0)


def propagate_measurement(measurement: Measurement, pair: PointPair) -> Propagated:
    """Place ``measurement`` (on ``pair.current``) at the corresponding place in ``pair.prior``."""
    matches = tuple(pair.locate(p) for p in measurement.points)
    missing = [i for i, m in enumerate(matches) if not m.in_coverage or m.prior_point is None]
    if missing:
        first = matches[missing[0]]
        return Propagated(
            None, matches, f"control point {missing[0] + 1} not in the prior: {first.message}"
        )
    info = pair.prior.info
    moved = measurement.moved(
        [m.prior_point for m in matches if m.prior_point is not None],
        info.series_uid,
        info.study_date,
    )
    return Propagated(moved, matches)
