"""Where a viewport's overlay texts go, so that none overprints another at any size.

The corners hold: top left the sync status, top right the zoom, bottom left
the slice block, bottom right the window; the edge letters sit at the middle
of their edges, the out-of-coverage mark under the top row and the candidate
list at the left, clear of the "R" letter. When the viewport is too small for
all of them, the least needed give way: the zoom first, then the window moves
up a row, then the candidate list yields to the slice block.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6 import QtCore, QtWidgets

from app.ui.viewer.overlay_labels import place_orientation_letters

__all__ = ["MARGIN", "place_overlays"]

MARGIN = 6
_GAP = 3


def _visible(label: QtWidgets.QWidget) -> bool:
    return not label.isHidden()


def _clear(a: QtWidgets.QWidget, others: Sequence[QtWidgets.QWidget]) -> bool:
    box = a.geometry().adjusted(-1, -1, 1, 1)
    return not any(_visible(o) and box.intersects(o.geometry()) for o in others)


def place_overlays(
    w: int,
    h: int,
    slice_label: QtWidgets.QLabel,
    window_label: QtWidgets.QLabel,
    zoom_label: QtWidgets.QLabel,
    banner: QtWidgets.QLabel,
    sync_label: QtWidgets.QLabel,
    candidates: QtWidgets.QLabel,
    letters: dict[str, QtWidgets.QLabel],
    legend: QtWidgets.QLabel | None = None,
) -> None:
    """Place every overlay label inside a ``w`` x ``h`` image area."""
    m = MARGIN
    for label in (slice_label, window_label, zoom_label, sync_label, candidates):
        label.adjustSize()
    place_orientation_letters(letters, w, h, m)
    top, bottom, left, right = letters["top"], letters["bottom"], letters["left"], letters["right"]

    # Bottom corners: side by side when they fit, else the window goes up a row.
    slice_label.move(m, h - slice_label.height() - m)
    window_y = h - window_label.height() - m
    if slice_label.geometry().right() + _GAP >= w - window_label.width() - m:
        window_y = slice_label.y() - window_label.height() - _GAP
    window_label.move(w - window_label.width() - m, window_y)
    corners_top = min(slice_label.y(), window_label.y())
    if not _clear(bottom, [slice_label, window_label]):
        # Keep the orientation letter readable above the corner text.
        bottom.move(bottom.x(), corners_top - bottom.height() - _GAP)

    # Top row: status left, "A" centre, zoom right; the zoom gives way first.
    sync_label.move(m, m)
    zoom_label.move(w - zoom_label.width() - m, m)
    zoom_label.setVisible(_clear(zoom_label, [top, sync_label]))
    if not _clear(top, [sync_label]):
        top.move(top.x(), sync_label.geometry().bottom() + _GAP)
    row2 = (
        max(
            m + (sync_label.height() if _visible(sync_label) else 0),
            top.geometry().bottom() if top.text() else m,
        )
        + _GAP
    )

    # The out-of-coverage mark: centred under the top row, wrapped to the width.
    if _visible(banner):
        banner.setWordWrap(False)
        natural = banner.sizeHint()
        if natural.width() <= w - 2 * m:
            banner.resize(natural)
        else:
            banner.setWordWrap(True)
            width = max(1, w - 2 * m)
            banner.resize(width, banner.heightForWidth(width))
        banner.move((w - banner.width()) // 2, row2)
        row2 = banner.geometry().bottom() + _GAP

    # The saliency colour key: at the right under the top row, if it fits there.
    if legend is not None and _visible(legend):
        legend.adjustSize()
        legend.move(w - legend.width() - m, row2)
        if legend.x() < m or not _clear(legend, [banner, top, zoom_label, right]):
            legend.hide()  # the caption still says "saliency"; the key needs more room

    # Candidates at the left, right of the "R" letter when they would cover it.
    candidates.move(m, row2)
    if not _clear(candidates, [left]):
        candidates.move(left.geometry().right() + _GAP, row2)
    blockers = [window_label, bottom, slice_label, right]
    if legend is not None:
        blockers.append(legend)
    if _visible(candidates) and not _clear(candidates, blockers):
        column = QtCore.QRect(candidates.x(), row2, candidates.width(), h)
        below = [o.y() for o in blockers if _visible(o) and o.geometry().intersects(column)]
        room = min(below, default=h - m) - _GAP - row2
        if room < candidates.fontMetrics().lineSpacing() * 2 + 4:
            candidates.hide()  # no room for even one row: N / Shift+N still step
        else:
            candidates.resize(candidates.width(), room)  # the rows that fit
