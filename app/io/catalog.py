"""Organising scanned series by patient and study (newest study first), and thumbnails."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import cv2
import numpy as np

from app.core.imaging import SOFT_TISSUE_WINDOW, Window, window_to_uint8
from app.core.volume import Volume
from app.io.records import SeriesRef

__all__ = ["PatientGroup", "StudyGroup", "group_series", "slice_thumbnail", "thumbnail"]


@dataclass
class StudyGroup:
    """One study (visit) of a patient and its series."""

    study_uid: str
    study_date: str
    study_time: str
    description: str
    series: list[SeriesRef] = field(default_factory=list)

    @property
    def display_date(self) -> str:
        """``YYYY-MM-DD`` or ``"undated"``."""
        return self.series[0].info.display_date() if self.series else "undated"


@dataclass
class PatientGroup:
    """All studies of one patient, newest first. ``patient_id`` "" means unknown."""

    patient_id: str
    patient_name: str
    studies: list[StudyGroup] = field(default_factory=list)

    @property
    def series(self) -> list[SeriesRef]:
        """Every series of the patient, newest study first."""
        return [s for study in self.studies for s in study.series]


def _date_key(study: StudyGroup) -> tuple[int, str, str]:
    dated = len(study.study_date) == 8 and study.study_date.isdigit()
    # Dated studies first, newest first; undated ones after, in a stable order.
    return (0 if dated else 1, _invert(study.study_date + study.study_time), study.study_uid)


def _invert(text: str) -> str:
    """A string that sorts in the reverse order of ``text`` for digit strings."""
    return "".join(chr(0x10FFFF - ord(c)) for c in text)


def group_series(refs: Iterable[SeriesRef]) -> list[PatientGroup]:
    """Group series into patient → study (newest first) → series.

    Series with no patient ID are grouped by patient name; with neither, into
    one "unknown patient". Series with no StudyInstanceUID form a study each.

    Parameters
    ----------
    refs
        Series from one or more scans.

    Returns
    -------
    list of PatientGroup
        Sorted by patient name and ID; studies newest first; series by number.
    """
    patients: dict[tuple[str, str], PatientGroup] = {}
    studies: dict[tuple[tuple[str, str], str], StudyGroup] = {}
    for ref in refs:
        info = ref.info
        pkey = (info.patient_id, "" if info.patient_id else info.patient_name)
        patient = patients.get(pkey)
        if patient is None:
            patient = patients[pkey] = PatientGroup(info.patient_id, info.patient_name)
        skey = (pkey, info.study_uid or f"series:{ref.key}")
        study = studies.get(skey)
        if study is None:
            study = studies[skey] = StudyGroup(
                info.study_uid, info.study_date, info.study_time, info.study_description
            )
            patient.studies.append(study)
        study.series.append(ref)
    for patient in patients.values():
        patient.studies.sort(key=_date_key)
        for study in patient.studies:
            study.series.sort(
                key=lambda r: (
                    r.info.series_number is None,
                    r.info.series_number or 0,
                    r.info.series_description,
                    r.key,
                )
            )
    return sorted(patients.values(), key=lambda p: (p.patient_name, p.patient_id))


def thumbnail(volume: Volume, size: int = 96, window: Window | None = None) -> np.ndarray:
    """A ``uint8`` picture of the middle slice, longest side ``size`` pixels.

    The mediastinal window is used by default; the aspect ratio follows the
    physical pixel spacing, and ``cv2.INTER_AREA`` avoids aliasing.
    """
    return slice_thumbnail(volume, volume.n_slices // 2, size, window or SOFT_TISSUE_WINDOW)


def slice_thumbnail(
    volume: Volume, k: int, size: int, window: Window, *, square: bool = False
) -> np.ndarray:
    """A ``uint8`` picture of slice ``k``, longest side ``size`` pixels, in ``window``.

    The aspect ratio follows the physical pixel spacing (non-square pixels,
    non-square field of view), and ``cv2.INTER_AREA`` avoids aliasing.

    Parameters
    ----------
    volume, k
        The series and the slice index.
    size
        Length of the longest side (pixels).
    window
        The grey-level window.
    square
        Centre the picture on a black ``size`` x ``size`` square, as the
        viewer paints a slice.
    """
    if size < 1:
        raise ValueError("thumbnail size must be positive")
    grey = window_to_uint8(volume.slice(int(k)), window)
    rows, cols = grey.shape
    height_mm = rows * float(volume.geometry.spacing[1])
    width_mm = cols * float(volume.geometry.spacing[0])
    scale = size / max(height_mm, width_mm)
    out_w = max(1, min(size, round(width_mm * scale)))
    out_h = max(1, min(size, round(height_mm * scale)))
    small = cv2.resize(grey, (out_w, out_h), interpolation=cv2.INTER_AREA)
    if not square:
        return small
    out = np.zeros((size, size), dtype=np.uint8)
    top, left = (size - out_h) // 2, (size - out_w) // 2
    out[top : top + out_h, left : left + out_w] = small
    return out
