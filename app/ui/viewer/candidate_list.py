"""The clickable list of a prior's match candidates, drawn over its viewport.

Anatomical sync offers, besides the best match, the next-best slices at other
levels. Each row shows the image number, the score and how far (mm) the
candidate lies from the match; clicking a row shows that candidate, like N /
Shift+N, in this viewport only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from app.core.state import MatchInfo

__all__ = ["CandidateList", "offered_candidates"]


def offered_candidates(match: MatchInfo | None, slice_z: np.ndarray) -> list[tuple[int, float]]:
    """The candidates worth offering: none out of coverage, none beyond the prior's extent.

    Out of coverage the level is not imaged at all, so no slice is a candidate
    (the viewport shows only the mark and the distance). A candidate further
    from the match than the prior's own length cannot be the same anatomy.
    """
    if match is None or not match.in_coverage or len(match.candidates) < 2:
        return []
    z = np.asarray(slice_z, dtype=np.float64)
    extent = float(z.max() - z.min())
    first = match.candidates[0][0]
    kept = [(j, s) for j, s in match.candidates if abs(z[j] - z[first]) <= extent]
    return kept if len(kept) >= 2 else []


class CandidateList(QtWidgets.QLabel):
    """Rows ``▶Im  60 0.92 +12mm``; a click on a row emits :attr:`picked` with its slice.

    Signals
    -------
    picked(int)
        The slice index of the row clicked.
    """

    picked = QtCore.Signal(int)

    def __init__(self, parent: QtWidgets.QWidget) -> None:
        super().__init__(parent)
        self.setObjectName("candidates")
        self.setCursor(QtCore.Qt.CursorShape.PointingHandCursor)
        self.setToolTip("Match candidates: click a row (or press N / Shift+N) to show it")
        self._slices: list[int] = []

    def set_candidates(
        self, candidates: Sequence[tuple[int, float]], current: int, slice_z: np.ndarray, n: int
    ) -> None:
        """Show ``candidates`` (``(slice, score)``, the match first); hide when fewer than two."""
        self._slices = [j for j, _ in candidates]
        if len(candidates) < 2:
            self.hide()
            return
        first = candidates[0][0]
        rows = ["match  N/⇧N"]
        for j, score in candidates:
            mark = "▶" if j == current else " "
            offset = "   0mm" if j == first else f"{slice_z[j] - slice_z[first]:+5.0f}mm"
            rows.append(f"{mark}Im{n - j:>4} {score:.2f} {offset}")
        self.setText("\n".join(rows))
        self.adjustSize()
        self.show()

    def row_at(self, y: float) -> int | None:
        """The candidate row under widget height ``y`` (``None`` on the title or outside)."""
        margins = self.contentsMargins()
        line = self.fontMetrics().lineSpacing()
        row = int((y - margins.top()) // max(line, 1)) - 1  # row 0 is the title
        return row if 0 <= row < len(self._slices) else None

    def mousePressEvent(self, event: QtGui.QMouseEvent) -> None:  # noqa: N802 (Qt override)
        row = self.row_at(event.position().y())
        if event.button() == QtCore.Qt.MouseButton.LeftButton and row is not None:
            self.picked.emit(self._slices[row])
            event.accept()
            return
        event.accept()  # a click on the list never reaches the image (it would drive)
