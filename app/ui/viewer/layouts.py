"""Hanging layouts: where each date's viewport goes on screen (Qt-free, so tested alone).

``1×N`` puts the dates side by side in one row, newest at the left; ``2×2``
puts the first four in two rows of two, reading order. At most
:data:`MAX_VISIBLE` dates are on screen at once; the study browser swaps
which ones.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Layout", "MAX_VISIBLE", "grid_cells", "grid_shape"]

MAX_VISIBLE = 4


class Layout(StrEnum):
    """The hanging layouts (the value is what the settings keep)."""

    ROW = "1xN"
    GRID = "2x2"

    @property
    def label(self) -> str:
        """Menu text."""
        return "1×N (one row)" if self is Layout.ROW else "2×2 (two rows)"

    @classmethod
    def parse(cls, text: object) -> Layout:
        """The layout named ``text``; :attr:`ROW` for anything else (old or broken settings)."""
        try:
            return cls(str(text))
        except ValueError:
            return cls.ROW


def grid_shape(layout: Layout, n: int) -> tuple[int, int]:
    """``(rows, columns)`` for ``n`` viewports (at least one cell)."""
    n = max(1, min(n, MAX_VISIBLE))
    if layout is Layout.GRID and n > 1:
        return (2 if n > 2 else 1), 2
    return 1, n


def grid_cells(layout: Layout, n: int) -> list[tuple[int, int]]:
    """``(row, column)`` of each of the first ``n`` viewports (at most :data:`MAX_VISIBLE`)."""
    _, cols = grid_shape(layout, n)
    return [(i // cols, i % cols) for i in range(min(n, MAX_VISIBLE))]
