"""Point correspondence for many pairs: series grids and alignments kept per series.

:class:`PointEngine` wraps the slice engine (:class:`app.ml.anatomy.match.Matcher`):
it indexes and aligns a pair once, resamples each series onto its matching
grids once (:mod:`app.ml.points.grids`), and hands out :class:`PointPair`
objects whose :meth:`~app.ml.points.locate.PointPair.locate` answers a point
in milliseconds. A viewer that already holds a pair's alignment (its sync
engine) passes it in and skips the matching.
"""

from __future__ import annotations

from collections import OrderedDict

from app.core.volume import Volume
from app.ml.anatomy.align import Alignment
from app.ml.anatomy.match import Matcher
from app.ml.points.grids import SeriesGrid, build_grid
from app.ml.points.locate import PointPair, PointParams

__all__ = ["PointEngine"]


class PointEngine:
    """Point correspondence on top of a :class:`~app.ml.anatomy.match.Matcher`.

    Parameters
    ----------
    matcher
        The slice engine (model, index cache, alignment settings).
    params
        Point search settings.
    memory_entries
        Series grids kept in memory (tens of MB each).
    """

    def __init__(
        self, matcher: Matcher, params: PointParams | None = None, memory_entries: int = 6
    ) -> None:
        self.matcher = matcher
        self.params = params or PointParams()
        self._grids: OrderedDict[str, SeriesGrid] = OrderedDict()
        self._memory_entries = memory_entries

    def grid(self, volume: Volume) -> SeriesGrid:
        """The series' matching grids: from memory, else built now."""
        identity = self.matcher.identity(volume)
        hit = self._grids.get(identity)
        if hit is not None:
            self._grids.move_to_end(identity)
            return hit
        grid = build_grid(volume)
        self._grids[identity] = grid
        while len(self._grids) > self._memory_entries:
            self._grids.popitem(last=False)
        return grid

    def pair(self, current: Volume, prior: Volume, alignment: Alignment | None = None) -> PointPair:
        """A ready :class:`PointPair` for ``current`` and ``prior``.

        Raises
        ------
        app.ml.anatomy.match.MatchError
            When no alignment is given and the series cannot be matched
            (not CT, too short, or no common anatomy).
        """
        if alignment is None:
            alignment = self.matcher.match(current, prior).alignment
        return PointPair(
            current, prior, alignment, self.grid(current), self.grid(prior), self.params
        )
