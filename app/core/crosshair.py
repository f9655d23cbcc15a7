"""Where another date's MPR crosshair goes when this date's moves: row and column across dates.

The level (slice) of each date follows by anatomical sync (the slice
mapper); this module maps the in-plane part, the crosshair's row and column,
so that the other dates' coronal and sagittal planes cut the same anatomy.
The default, :class:`BodyBoxMapper`, maps the position relative to the
patient's body outline on the two levels: a point a third of the way across
the body and halfway down stays a third across and halfway down, whatever
the table height, field of view or pixel size of each date. Where a level
holds no body it falls back to patient coordinates (LPS).

A better answer (the point engine, issue 20) plugs in as another object with
the :class:`CrosshairMapper` ``map`` method, assigned to
``SyncGroup.crosshair_mapper``.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Protocol

import numpy as np

from app.core.body import body_mask
from app.core.volume import Volume

__all__ = ["BodyBox", "BodyBoxMapper", "CrosshairMapper", "body_box", "map_by_lps"]

# Body boxes are found on a slice subsampled to about this many pixels a side:
# a box to within a few pixels is plenty for placing a crosshair, and it keeps
# a click that moves three dates' crosshairs at well under a millisecond each.
_BOX_GRID = 128
# A body narrower than this (pixels of the full slice) is a scout edge or
# noise, not an outline to scale by.
_MIN_BOX_PX = 8
# Boxes remembered per volume (a scroll through a 600-slice series and back).
_BOXES_PER_VOLUME = 1024


class CrosshairMapper(Protocol):
    """Maps a date's crosshair to another date's row and column."""

    def map(
        self, source: Volume, cursor: tuple[int, int, int], target: Volume, target_k: int
    ) -> tuple[int, int]:
        """``(row, column)`` in ``target``'s slice ``target_k`` for ``source``'s ``cursor``.

        ``cursor`` is ``(slice, row, column)`` of ``source``; ``target_k`` the
        target's level, already mapped by the slice mapper.
        """
        ...


# (top row, left column, bottom row, right column), edges inclusive-exclusive, in pixels.
BodyBox = tuple[float, float, float, float]


def body_box(volume: Volume, k: int) -> BodyBox | None:
    """The bounding box of the body on slice ``k``, or None where the slice holds no body.

    Parameters
    ----------
    volume
        The series.
    k
        Slice index (clipped to the volume).

    Returns
    -------
    BodyBox or None
        ``(top, left, bottom, right)`` in pixels of the full slice.
    """
    _, rows, cols = volume.shape
    k = int(np.clip(k, 0, volume.n_slices - 1))
    stride = max(1, max(rows, cols) // _BOX_GRID)
    small = np.ascontiguousarray(volume.voxels[k, ::stride, ::stride])
    mask = body_mask(small)
    if not mask.any():
        return None
    row_hits = np.flatnonzero(mask.any(axis=1))
    col_hits = np.flatnonzero(mask.any(axis=0))
    top, bottom = row_hits[0] * stride, min(rows, (row_hits[-1] + 1) * stride)
    left, right = col_hits[0] * stride, min(cols, (col_hits[-1] + 1) * stride)
    if bottom - top < _MIN_BOX_PX or right - left < _MIN_BOX_PX:
        return None
    return float(top), float(left), float(bottom), float(right)


def map_by_lps(
    source: Volume, cursor: tuple[int, int, int], target: Volume, target_k: int
) -> tuple[int, int]:
    """``target``'s row and column at the patient position (LPS mm) of ``source``'s ``cursor``.

    Right within one frame of reference (two series of one study); across
    dates only as good as the two patients' positions on the table agree.
    """
    k, r, c = cursor
    k = int(np.clip(k, 0, source.n_slices - 1))
    g = source.geometry
    point = (
        source.slice_positions[k]
        + c * g.spacing[0] * g.direction[:, 0]
        + r * g.spacing[1] * g.direction[:, 1]
    )
    t = target.geometry
    k_t = int(np.clip(target_k, 0, target.n_slices - 1))
    offset = point - target.slice_positions[k_t]
    column = float(offset @ t.direction[:, 0]) / float(t.spacing[0])
    row = float(offset @ t.direction[:, 1]) / float(t.spacing[1])
    return _clipped(target, row, column)


def _clipped(volume: Volume, row: float, column: float) -> tuple[int, int]:
    _, rows, cols = volume.shape
    if not (np.isfinite(row) and np.isfinite(column)):
        return rows // 2, cols // 2
    return int(np.clip(round(row), 0, rows - 1)), int(np.clip(round(column), 0, cols - 1))


class BodyBoxMapper:
    """Maps a crosshair by its place in the body's bounding box on the two levels.

    Boxes are computed on demand and remembered per volume (dropped with it).
    """

    def __init__(self) -> None:
        # id(voxels) -> (weak reference to the voxels, {slice: box}); the weak
        # reference tells a reused id from the volume it was computed for.
        self._boxes: dict[
            int, tuple[weakref.ref[np.ndarray], OrderedDict[int, BodyBox | None]]
        ] = {}

    def box(self, volume: Volume, k: int) -> BodyBox | None:
        """:func:`body_box` of ``volume``'s slice ``k``, remembered."""
        key = id(volume.voxels)
        entry = self._boxes.get(key)
        if entry is None or entry[0]() is not volume.voxels:
            self._forget_dead()
            entry = (weakref.ref(volume.voxels), OrderedDict())
            self._boxes[key] = entry
        boxes = entry[1]
        if k in boxes:
            boxes.move_to_end(k)
            return boxes[k]
        found = body_box(volume, k)
        boxes[k] = found
        if len(boxes) > _BOXES_PER_VOLUME:
            boxes.popitem(last=False)
        return found

    def _forget_dead(self) -> None:
        for key in [key for key, (ref, _) in self._boxes.items() if ref() is None]:
            del self._boxes[key]

    def map(
        self, source: Volume, cursor: tuple[int, int, int], target: Volume, target_k: int
    ) -> tuple[int, int]:
        """See :meth:`CrosshairMapper.map`; LPS (:func:`map_by_lps`) where a level has no body."""
        k, r, c = cursor
        here = self.box(source, k)
        there = self.box(target, target_k)
        if here is None or there is None:
            return map_by_lps(source, cursor, target, target_k)
        top, left, bottom, right = here
        # Pixel centres: the box's edges are pixel edges.
        v = (r + 0.5 - top) / (bottom - top)
        u = (c + 0.5 - left) / (right - left)
        top_t, left_t, bottom_t, right_t = there
        row = top_t + v * (bottom_t - top_t) - 0.5
        column = left_t + u * (right_t - left_t) - 0.5
        return _clipped(target, row, column)
