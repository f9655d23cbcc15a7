"""The study browser dock: patient → study (date, description) → series with thumbnails."""

from __future__ import annotations

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from app.core.state import newest_first
from app.io.catalog import PatientGroup
from app.ui.resources import icon
from app.ui.viewer.hanging import series_label

__all__ = ["StudyBrowser", "thumbnail_icon"]

_REF_ROLE = QtCore.Qt.ItemDataRole.UserRole + 1
_PATIENT_ROLE = QtCore.Qt.ItemDataRole.UserRole + 2


def thumbnail_icon(pixels: np.ndarray) -> QtGui.QIcon:
    """A QIcon from a uint8 grey thumbnail (rows x cols)."""
    img = np.ascontiguousarray(pixels, dtype=np.uint8)
    if img.ndim != 2:
        raise ValueError("a thumbnail is a 2-D grey image")
    rows, cols = img.shape
    qimage = QtGui.QImage(img.data, cols, rows, cols, QtGui.QImage.Format.Format_Grayscale8)
    # QImage borrows the numpy buffer; copy() makes it own its pixels.
    return QtGui.QIcon(QtGui.QPixmap.fromImage(qimage.copy()))


class StudyBrowser(QtWidgets.QDockWidget):
    """Tree of everything that was scanned.

    Double-clicking a series shows it in its study's viewport; double-clicking
    a patient hangs that patient's studies.
    """

    series_chosen = QtCore.Signal(object)  # SeriesRef
    patient_chosen = QtCore.Signal(int)  # index into the catalogue

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__("Studies", parent)
        self.setObjectName("studyBrowser")
        self.tree = QtWidgets.QTreeWidget()
        self.tree.setHeaderHidden(True)
        self.tree.setIconSize(QtCore.QSize(48, 48))
        self.tree.setAlternatingRowColors(True)
        self.tree.itemActivated.connect(self._on_activated)
        self.setWidget(self.tree)
        self._series_items: dict[str, QtWidgets.QTreeWidgetItem] = {}

    def set_catalogue(self, patients: list[PatientGroup]) -> None:
        """Show the scanned patients (``PatientGroup`` list, studies already newest first)."""
        self.tree.clear()
        self._series_items.clear()
        for p_index, patient in enumerate(patients):
            p_item = QtWidgets.QTreeWidgetItem([_patient_label(patient)])
            p_item.setData(0, _PATIENT_ROLE, p_index)
            self.tree.addTopLevelItem(p_item)
            studies = [s for s in patient.studies if list(s.series)]
            dates = [list(s.series)[0].info.study_date for s in studies]
            for i in newest_first(dates):
                series = list(studies[i].series)
                info = series[0].info
                text = info.display_date()
                if info.study_description.strip():
                    text += f"  {info.study_description.strip()}"
                s_item = QtWidgets.QTreeWidgetItem([text])
                p_item.addChild(s_item)
                for ref in series:
                    r_item = QtWidgets.QTreeWidgetItem([series_label(ref)])
                    r_item.setIcon(0, icon("series"))
                    r_item.setData(0, _REF_ROLE, ref)
                    r_item.setToolTip(0, "Double-click to show this series")
                    s_item.addChild(r_item)
                    self._series_items[str(ref.key)] = r_item
            p_item.setExpanded(True)
            for i in range(p_item.childCount()):
                child = p_item.child(i)
                if child is not None:
                    child.setExpanded(True)

    def set_thumbnail(self, key: str, pixels: np.ndarray | None) -> None:
        item = self._series_items.get(key)
        if item is not None and pixels is not None:
            item.setIcon(0, thumbnail_icon(pixels))

    def mark_shown(self, keys: set[str]) -> None:
        """Bold the series that are on screen."""
        for key, item in self._series_items.items():
            font = item.font(0)
            font.setBold(key in keys)
            item.setFont(0, font)

    def series_item(self, key: str) -> QtWidgets.QTreeWidgetItem | None:
        return self._series_items.get(key)

    def _on_activated(self, item: QtWidgets.QTreeWidgetItem, _column: int) -> None:
        ref = item.data(0, _REF_ROLE)
        if ref is not None:
            self.series_chosen.emit(ref)
            return
        p_index = item.data(0, _PATIENT_ROLE)
        if p_index is not None:
            self.patient_chosen.emit(int(p_index))


def _patient_label(patient: PatientGroup) -> str:
    """Name and ID as the user knows them (shown on screen only, never logged)."""
    info = None
    for study in patient.studies:
        for ref in study.series:
            info = ref.info
            break
        if info is not None:
            break
    if info is None:
        return "Patient"
    name = info.patient_name.replace("^", " ").strip() or "Unnamed patient"
    return f"{name} ({info.patient_id})" if info.patient_id else name
