"""Point pairs of the dates on screen, prepared once, for the viewer's linked cursor.

The linked cursor asks, at every mouse move, where one point of the driving
date lies in every other date. :class:`CursorPairs` keeps what makes that
cheap: each series' matching grids (built once per series) and one
:class:`~app.ml.points.locate.PointPair` per ordered pair of series (its shift,
affine and residual field fitted once, when both series are indexed and
aligned, then registered and checked). A query then costs one local refinement per target, milliseconds.

Threading: :meth:`CursorPairs.prepare` runs in a worker thread (seconds);
:meth:`CursorPairs.add_pair`, :meth:`CursorPairs.remove` and the look-ups
belong to the GUI thread; :meth:`CursorPairs.locate` may run in another worker
(it only reads the prepared pairs). The grid memory is shared under a lock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from app.core.volume import Volume
from app.ml.anatomy.align import Alignment
from app.ml.points.grids import SeriesGrid, build_grid
from app.ml.points.locate import PointMatch, PointPair, PointParams

__all__ = ["CursorPairs", "PairStatus"]


@dataclass(frozen=True)
class PairStatus:
    """Whether a pair can answer: ``pair`` once prepared, else why not (``message``)."""

    pair: PointPair | None
    message: str = ""


class CursorPairs:
    """Grids per series and prepared point pairs per ordered pair of series.

    Parameters
    ----------
    params
        Point search settings (the engine's defaults when ``None``).
    """

    def __init__(self, params: PointParams | None = None) -> None:
        self.params = params or PointParams()
        self._grids: dict[int, tuple[Volume, SeriesGrid]] = {}
        self._grid_lock = threading.Lock()
        self._pairs: dict[tuple[int, int], tuple[Volume, Volume, PairStatus]] = {}

    # -- worker side -----------------------------------------------------------------
    def grid(self, volume: Volume) -> SeriesGrid:
        """The series' matching grids, built on first use (worker thread, about a second)."""
        with self._grid_lock:
            hit = self._grids.get(id(volume))
            if hit is not None and hit[0] is volume:
                return hit[1]
        grid = build_grid(volume)
        with self._grid_lock:
            self._grids[id(volume)] = (volume, grid)
        return grid

    def prepare(self, source: Volume, target: Volume, alignment: Alignment) -> PointPair:
        """The pair ``source`` -> ``target``, fitted and registered now (worker thread, seconds).

        The 3-D registration (:meth:`PointPair.register`) runs here, not on the
        first cursor query, where it would freeze the cursor for seconds.
        """
        pair = PointPair(
            source, target, alignment, self.grid(source), self.grid(target), self.params
        )
        pair.register()
        return pair

    # -- registry (GUI thread) -----------------------------------------------------------
    def add_pair(self, source: Volume, target: Volume, status: PairStatus) -> None:
        """Register a prepared pair, or why there is none (e.g. other anatomy)."""
        self._pairs[(id(source), id(target))] = (source, target, status)

    def status(self, source: Volume, target: Volume) -> PairStatus | None:
        """The pair's status; ``None`` while it is not prepared yet."""
        entry = self._pairs.get((id(source), id(target)))
        if entry is None or entry[0] is not source or entry[1] is not target:
            return None
        return entry[2]

    def remove(self, volume: Volume) -> None:
        """Forget a series, its grids and every pair it takes part in."""
        key = id(volume)
        with self._grid_lock:
            self._grids.pop(key, None)
        for pair in [p for p in self._pairs if key in p]:
            del self._pairs[pair]

    def clear(self) -> None:
        with self._grid_lock:
            self._grids.clear()
        self._pairs.clear()

    # -- queries (any thread) ------------------------------------------------------------
    @staticmethod
    def locate(pairs: list[PointPair], point: np.ndarray) -> list[PointMatch]:
        """``point`` (LPS mm of the pairs' common current series) located in every pair's prior."""
        p = np.asarray(point, dtype=np.float64).reshape(3)
        return [pair.locate(p) for pair in pairs]
