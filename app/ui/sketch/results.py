"""The ranked results of a sketch search: a grid of thumbnails with captions.

Each result shows its slice (soft-tissue window) and the caption
"patient · date · Im k/N · score"; the tooltip adds the series and the two
parts of the score. Clicking a result emits :attr:`SketchResults.chosen`; the
dock opens it in the viewer. The patient's name appears only on screen here,
never in a log.
"""

from __future__ import annotations

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from app.export.captions import image_number
from app.ml.sketch.search import SketchHit

__all__ = ["SketchResults", "caption", "display_date"]

_ICON = 112  # thumbnail edge on screen (px)
_HIT_ROLE = QtCore.Qt.ItemDataRole.UserRole + 1


def display_date(study_date: str) -> str:
    """``YYYY-MM-DD`` for a DICOM ``YYYYMMDD`` date, ``"no date"`` when unknown."""
    if len(study_date) == 8 and study_date.isdigit():
        return f"{study_date[:4]}-{study_date[4:6]}-{study_date[6:]}"
    return study_date or "no date"


def caption(hit: SketchHit) -> str:
    """The caption under a result: "patient · date · Im k/N · score"."""
    ref = hit.ref
    patient = ref.patient_label.replace("^", " ").strip() or "unnamed patient"
    number = image_number(ref.slice_index, ref.n_slices)
    return (
        f"{patient} · {display_date(ref.study_date)} · Im {number}/{ref.n_slices} · {hit.score:.2f}"
    )


class SketchResults(QtWidgets.QListWidget):
    """The results grid, best first (left to right, top to bottom)."""

    chosen = QtCore.Signal(object)  # the SketchHit clicked

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("sketchResults")
        self.setViewMode(QtWidgets.QListView.ViewMode.IconMode)
        self.setIconSize(QtCore.QSize(_ICON, _ICON))
        self.setGridSize(QtCore.QSize(_ICON + 44, _ICON + 52))
        self.setResizeMode(QtWidgets.QListView.ResizeMode.Adjust)
        self.setMovement(QtWidgets.QListView.Movement.Static)
        self.setWordWrap(True)
        self.setUniformItemSizes(True)
        self.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        self.itemClicked.connect(self._on_clicked)
        self.itemActivated.connect(self._on_clicked)  # Enter on a selected result

    def set_results(self, hits: list[SketchHit], thumbnails: list[np.ndarray]) -> None:
        """Show ``hits`` (best first) with their ``uint8`` grey thumbnails."""
        if len(hits) != len(thumbnails):
            raise ValueError("one thumbnail per hit is needed")
        self.clear()
        for rank, (hit, thumb) in enumerate(zip(hits, thumbnails, strict=True), start=1):
            item = QtWidgets.QListWidgetItem(_grey_icon(thumb), caption(hit))
            item.setData(_HIT_ROLE, hit)
            item.setToolTip(
                f"#{rank} · {hit.ref.series_label}\n"
                f"score {hit.score:.3f} (anatomy {hit.anatomy_score:.3f}, "
                f"abnormality {hit.abnormality_score:.3f})\n"
                f"z {hit.ref.z_mm:.1f} mm · click to show it in the viewer"
            )
            item.setTextAlignment(QtCore.Qt.AlignmentFlag.AlignHCenter)
            self.addItem(item)

    def set_stale(self, stale: bool) -> None:
        """Dim the results (``stale``: they answer an older search than the one asked)."""
        effect = QtWidgets.QGraphicsOpacityEffect(self) if stale else None
        if effect is not None:
            effect.setOpacity(0.35)
        # Qt takes None (drop the effect); the stub only lists QGraphicsEffect.
        self.setGraphicsEffect(effect)  # type: ignore[arg-type]
        self.setProperty("stale", stale)
        self.setToolTip("Results of the previous search (the last one failed)" if stale else "")

    def is_stale(self) -> bool:
        """True while the results are dimmed as stale."""
        return bool(self.property("stale"))

    def hits(self) -> list[SketchHit]:
        """The hits shown, in rank order."""
        return [self.item(i).data(_HIT_ROLE) for i in range(self.count())]

    def _on_clicked(self, item: QtWidgets.QListWidgetItem) -> None:
        hit = item.data(_HIT_ROLE)
        if hit is not None:
            self.chosen.emit(hit)


def _grey_icon(thumb: np.ndarray) -> QtGui.QIcon:
    grey = np.ascontiguousarray(np.asarray(thumb, dtype=np.uint8))
    if grey.ndim != 2:
        raise ValueError("a thumbnail is a 2-D grey image")
    h, w = grey.shape
    image = QtGui.QImage(grey.data, w, h, w, QtGui.QImage.Format.Format_Grayscale8)
    # QImage borrows the buffer: copy before the array goes away.
    return QtGui.QIcon(QtGui.QPixmap.fromImage(image.copy()))
