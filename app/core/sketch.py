"""The sketch a user draws on a template slice for a sketch query, without Qt.

A sketch is a label image the size of the template slice: 0 is background,
1..3 the lesion classes of :data:`SKETCH_CLASSES` (the order of
``app.sim.lesions.LESION_CLASSES``, which the sketch model was trained with).
:class:`SketchCanvasModel` holds it with the drawing tools a painter needs:
round brush and eraser strokes, a brush size in millimetres, undo/redo of
whole strokes and an undoable clear. The Qt canvas only turns mouse input
into calls here and repaints on :attr:`SketchCanvasModel.changed`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from app.core.observable import Signal

__all__ = [
    "BRUSH_RADIUS_MM",
    "BRUSH_STEP",
    "DEFAULT_BRUSH_MM",
    "LesionClass",
    "MAX_HISTORY",
    "SKETCH_CLASSES",
    "SketchCanvasModel",
    "Tool",
    "class_by_value",
]


@dataclass(frozen=True)
class LesionClass:
    """One class a sketch can mark.

    Attributes
    ----------
    value
        Its label value in the sketch (1, 2, 3; 0 is background).
    name
        Machine name, as in ``app.sim.lesions.LESION_CLASSES``.
    display_name
        What the dock's button says.
    rgb
        Its colour on screen and in a saved sketch PNG.
    """

    value: int
    name: str
    display_name: str
    rgb: tuple[int, int, int]


# Label value = position + 1; the order is the sketch model's channel order.
SKETCH_CLASSES: tuple[LesionClass, ...] = (
    LesionClass(1, "mass", "Mass / nodule", (230, 57, 70)),
    LesionClass(2, "hypodense", "Hypodense", (58, 134, 255)),
    LesionClass(3, "hyperdense", "Hyperdense", (255, 200, 0)),
)

# Brush radius limits (mm): below 1 mm a stroke vanishes in the model's 3.2 mm
# pixels; above 40 mm one dab covers a whole organ.
BRUSH_RADIUS_MM = (1.0, 40.0)
DEFAULT_BRUSH_MM = 6.0
BRUSH_STEP = 1.2  # radius factor per wheel notch
# Undo steps kept. Each holds only the changed rectangle of the label image,
# so even whole-slice steps (clear, load) cost two slice-sized uint8 copies.
MAX_HISTORY = 50


def class_by_value(value: int) -> LesionClass:
    """The :class:`LesionClass` with label ``value`` (``KeyError`` if there is none)."""
    for cls in SKETCH_CLASSES:
        if cls.value == value:
            return cls
    raise KeyError(f"no sketch class has label value {value}")


class Tool(StrEnum):
    """What a stroke does."""

    BRUSH = "brush"  # paints the current class
    ERASER = "eraser"  # paints background


@dataclass(frozen=True)
class _Edit:
    """One undo step: a rectangle of the label image before and after."""

    rows: slice
    cols: slice
    before: np.ndarray
    after: np.ndarray


class SketchCanvasModel:
    """A label image with brush/eraser strokes, undo/redo and clear.

    Coordinates are ``(col, row)`` pixel positions of the template slice as
    painted (row 0 on top), pixel centres at integers; fractional positions are
    fine. ``changed`` is emitted with what changed: ``"labels"`` (the sketch,
    also while a stroke is drawn), ``"history"`` (what undo/redo can do),
    ``"tool"``, ``"class"``, ``"brush"`` or ``"template"`` (a new shape).

    Parameters
    ----------
    shape
        ``(rows, cols)`` of the template slice; ``(0, 0)`` until one is chosen.
    spacing_mm
        Pixel size ``(column spacing, row spacing)`` in mm, so the brush stays
        round in millimetres on non-square pixels.
    max_history
        Undo steps kept (the oldest are dropped).
    """

    def __init__(
        self,
        shape: tuple[int, int] = (0, 0),
        spacing_mm: tuple[float, float] = (1.0, 1.0),
        max_history: int = MAX_HISTORY,
    ) -> None:
        if max_history < 1:
            raise ValueError("max_history must be at least 1")
        self.changed = Signal()
        self._labels = np.zeros(_checked_shape(shape), dtype=np.uint8)
        self._spacing = _checked_spacing(spacing_mm)
        self._undo: deque[_Edit] = deque(maxlen=max_history)
        self._redo: list[_Edit] = []
        self._tool = Tool.BRUSH
        self._class = SKETCH_CLASSES[0].value
        self._radius_mm = DEFAULT_BRUSH_MM
        self._stroke_before: np.ndarray | None = None
        self._last_point: tuple[float, float] | None = None

    # -- reading -------------------------------------------------------------------------
    @property
    def labels(self) -> np.ndarray:
        """The sketch, ``uint8 (rows, cols)``; a read-only view (edit through the methods)."""
        view = self._labels.view()
        view.flags.writeable = False
        return view

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self._labels.shape[0]), int(self._labels.shape[1]))

    @property
    def spacing_mm(self) -> tuple[float, float]:
        return self._spacing

    def is_empty(self) -> bool:
        """True when nothing is drawn (every pixel is background)."""
        return not self._labels.any()

    def pixel_counts(self) -> dict[int, int]:
        """Pixels of each class value present in the sketch (background left out)."""
        values, counts = np.unique(self._labels, return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts, strict=True) if v != 0}

    # -- template ------------------------------------------------------------------------
    def set_template_shape(self, shape: tuple[int, int], spacing_mm: tuple[float, float]) -> None:
        """Draw on a template of ``shape`` with pixels of ``spacing_mm``.

        A template of the same shape keeps the sketch (the user may move to a
        neighbouring slice to place it better); any other shape clears it and
        its history, since the drawing no longer lies over the same anatomy.
        """
        shape = _checked_shape(shape)
        self._spacing = _checked_spacing(spacing_mm)
        self._abort_stroke()
        if shape != self.shape:
            self._labels = np.zeros(shape, dtype=np.uint8)
            self._undo.clear()
            self._redo.clear()
            self.changed.emit("template")
            self.changed.emit("labels")
            self.changed.emit("history")

    # -- tools ---------------------------------------------------------------------------
    @property
    def tool(self) -> Tool:
        return self._tool

    def set_tool(self, tool: Tool | str) -> None:
        tool = Tool(tool)
        if tool != self._tool:
            self._tool = tool
            self.changed.emit("tool")

    @property
    def current_class(self) -> int:
        """Label value the brush paints (1..3)."""
        return self._class

    def set_class(self, value: int) -> None:
        """Paint class ``value`` from now on (``KeyError`` if not in :data:`SKETCH_CLASSES`)."""
        value = class_by_value(int(value)).value
        if value != self._class:
            self._class = value
            self.changed.emit("class")

    @property
    def brush_radius_mm(self) -> float:
        return self._radius_mm

    def set_brush_radius_mm(self, radius_mm: float) -> None:
        """Set the brush radius, clamped to :data:`BRUSH_RADIUS_MM`."""
        radius = float(radius_mm)
        if not np.isfinite(radius):
            raise ValueError("brush radius must be finite")
        radius = float(np.clip(radius, *BRUSH_RADIUS_MM))
        if radius != self._radius_mm:
            self._radius_mm = radius
            self.changed.emit("brush")

    def scale_brush(self, notches: float) -> None:
        """Grow (``notches`` > 0) or shrink the brush by :data:`BRUSH_STEP` per wheel notch."""
        self.set_brush_radius_mm(self._radius_mm * BRUSH_STEP ** float(notches))

    def brush_radius_px(self) -> tuple[float, float]:
        """Brush radius in pixels along columns and rows (differ on non-square pixels)."""
        return self._radius_mm / self._spacing[0], self._radius_mm / self._spacing[1]

    # -- strokes -------------------------------------------------------------------------
    @property
    def in_stroke(self) -> bool:
        return self._stroke_before is not None

    def begin_stroke(self, col: float, row: float) -> None:
        """Start a stroke at ``(col, row)`` with the current tool (paints one dab)."""
        if self.in_stroke:
            self.end_stroke()
        self._stroke_before = self._labels.copy()
        self._last_point = (float(col), float(row))
        self._paint_segment(self._last_point, self._last_point)

    def continue_stroke(self, col: float, row: float) -> None:
        """Extend the stroke to ``(col, row)``, painting the whole segment from the last point.

        Painting the segment (not just a dab at each mouse position) leaves no
        gaps however fast the mouse moves between two events.
        """
        if self._last_point is None:
            self.begin_stroke(col, row)
            return
        point = (float(col), float(row))
        self._paint_segment(self._last_point, point)
        self._last_point = point

    def end_stroke(self) -> None:
        """Finish the stroke: it becomes one undo step (none if it changed nothing)."""
        before = self._stroke_before
        self._stroke_before = None
        self._last_point = None
        if before is not None:
            self._record(before)

    def _abort_stroke(self) -> None:
        if self._stroke_before is not None:
            self.end_stroke()

    def _paint_segment(self, p0: tuple[float, float], p1: tuple[float, float]) -> None:
        rows, cols = self.shape
        if rows == 0 or cols == 0:
            return
        rx, ry = self.brush_radius_px()
        # Only the segment's bounding box (grown by the brush) can change.
        c0 = max(0, int(np.floor(min(p0[0], p1[0]) - rx)))
        c1 = min(cols, int(np.ceil(max(p0[0], p1[0]) + rx)) + 1)
        r0 = max(0, int(np.floor(min(p0[1], p1[1]) - ry)))
        r1 = min(rows, int(np.ceil(max(p0[1], p1[1]) + ry)) + 1)
        if c0 >= c1 or r0 >= r1:
            return  # entirely outside the slice
        sx, sy = self._spacing
        yy, xx = np.mgrid[r0:r1, c0:c1]
        # Distance (mm) from each pixel centre to the segment: a capsule, i.e.
        # the round brush swept along the mouse path.
        ax, ay = p0[0] * sx, p0[1] * sy
        dx, dy = (p1[0] - p0[0]) * sx, (p1[1] - p0[1]) * sy
        px, py = xx * sx - ax, yy * sy - ay
        length2 = dx * dx + dy * dy
        t = np.zeros_like(px, dtype=np.float64) if length2 == 0 else (px * dx + py * dy) / length2
        t = np.clip(t, 0.0, 1.0)
        dist2 = (px - t * dx) ** 2 + (py - t * dy) ** 2
        inside = dist2 <= self._radius_mm**2
        if not inside.any():
            return
        value = self._class if self._tool is Tool.BRUSH else 0
        patch = self._labels[r0:r1, c0:c1]
        if np.all(patch[inside] == value):
            return
        patch[inside] = value
        self.changed.emit("labels")

    # -- whole-sketch edits ----------------------------------------------------------------
    def clear(self) -> None:
        """Erase everything (one undo step; nothing happens on an empty sketch)."""
        self._abort_stroke()
        if self.is_empty():
            return
        before = self._labels.copy()
        self._labels[...] = 0
        self.changed.emit("labels")
        self._record(before)

    def replace_labels(self, labels: np.ndarray) -> None:
        """Put ``labels`` in place of the sketch (one undo step), e.g. a sketch loaded from a file.

        Raises
        ------
        ValueError
            When the shape differs from the template's or a value is not 0 or a class.
        """
        labels = np.asarray(labels)
        if labels.shape != self.shape:
            raise ValueError(
                f"the sketch is {_size_text(labels.shape)}, the template {_size_text(self.shape)}"
            )
        valid = {0, *(c.value for c in SKETCH_CLASSES)}
        if not set(np.unique(labels).tolist()) <= valid:
            raise ValueError("labels must be 0 (background) or a sketch class value")
        self._abort_stroke()
        before = self._labels.copy()
        self._labels[...] = labels.astype(np.uint8)
        if self._record(before):
            self.changed.emit("labels")

    # -- history ---------------------------------------------------------------------------
    def can_undo(self) -> bool:
        return bool(self._undo)

    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo(self) -> bool:
        """Take back the last stroke or clear; False when there is nothing to undo."""
        self._abort_stroke()
        if not self._undo:
            return False
        edit = self._undo.pop()
        self._labels[edit.rows, edit.cols] = edit.before
        self._redo.append(edit)
        self.changed.emit("labels")
        self.changed.emit("history")
        return True

    def redo(self) -> bool:
        """Do again what :meth:`undo` took back; False when there is nothing to redo."""
        self._abort_stroke()
        if not self._redo:
            return False
        edit = self._redo.pop()
        self._labels[edit.rows, edit.cols] = edit.after
        self._undo.append(edit)
        self.changed.emit("labels")
        self.changed.emit("history")
        return True

    def _record(self, before: np.ndarray) -> bool:
        """Push the change from ``before`` to now as one undo step; False if nothing changed."""
        diff = before != self._labels
        if not diff.any():
            return False
        rows = np.flatnonzero(diff.any(axis=1))
        cols = np.flatnonzero(diff.any(axis=0))
        rs, cs = slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)
        self._undo.append(_Edit(rs, cs, before[rs, cs].copy(), self._labels[rs, cs].copy()))
        self._redo.clear()  # a new edit forks history: the undone steps are gone
        self.changed.emit("history")
        return True


def _checked_shape(shape: tuple[int, int]) -> tuple[int, int]:
    rows, cols = (int(v) for v in shape)
    if rows < 0 or cols < 0:
        raise ValueError(f"a template shape cannot be negative: {shape}")
    return rows, cols


def _checked_spacing(spacing: tuple[float, float]) -> tuple[float, float]:
    sx, sy = (float(v) for v in spacing)
    if not (np.isfinite(sx) and np.isfinite(sy) and sx > 0 and sy > 0):
        raise ValueError(f"pixel spacing must be positive and finite: {spacing}")
    return sx, sy


def _size_text(shape: tuple[int, ...]) -> str:
    # Width x height, as image sizes are usually written.
    return f"{shape[1]}×{shape[0]} pixels" if len(shape) >= 2 else f"{shape} pixels"
