"""What a PACS search asks and answers: queries, and patient/study/series records.

Records hold identifiers (names, IDs, birth dates): never log them; log UIDs
or counts instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydicom.dataset import Dataset

__all__ = [
    "SeriesRecord",
    "StudyQuery",
    "StudyRecord",
    "series_from_dataset",
    "study_from_dataset",
]

_DATE = re.compile(r"^\d{8}$")


@dataclass(frozen=True)
class StudyQuery:
    """Filters of a study search; empty fields match anything.

    Parameters
    ----------
    patient_id
        Exact patient ID.
    patient_name
        DICOM person name; ``*`` and ``?`` are wildcards (``DOE*``).
    accession
        Exact accession number.
    date_from, date_to
        ``YYYYMMDD`` bounds of the study date (inclusive).
    modality
        A modality the study must contain (``CT``).
    study_uid
        One study.
    """

    patient_id: str = ""
    patient_name: str = ""
    accession: str = ""
    date_from: str = ""
    date_to: str = ""
    modality: str = ""
    study_uid: str = ""

    def __post_init__(self) -> None:
        for label, value in (("from", self.date_from), ("to", self.date_to)):
            if value and not _DATE.match(value):
                raise ValueError(f"the 'date {label}' {value!r} is not a date (YYYYMMDD)")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValueError("the date range ends before it starts")

    def is_empty(self) -> bool:
        return (
            not any(
                (self.patient_id, self.patient_name, self.accession, self.date_from, self.date_to)
            )
            and not self.study_uid
        )

    @property
    def date_range(self) -> str:
        """The DICOM range matching form (``20240101-20241231``, ``-20241231``...), or ``""``."""
        if not (self.date_from or self.date_to):
            return ""
        if self.date_from == self.date_to:
            return self.date_from
        return f"{self.date_from}-{self.date_to}"


@dataclass(frozen=True)
class StudyRecord:
    """One study as the server describes it."""

    study_uid: str
    patient_id: str = ""
    patient_name: str = ""
    patient_birth_date: str = ""
    study_date: str = ""
    study_time: str = ""
    description: str = ""
    accession: str = ""
    modalities: tuple[str, ...] = ()
    n_series: int | None = None
    n_instances: int | None = None

    @property
    def display_date(self) -> str:
        d = self.study_date
        return f"{d[:4]}-{d[4:6]}-{d[6:]}" if _DATE.match(d) else "undated"

    @property
    def sort_key(self) -> tuple[str, str]:
        """Newest last when sorted ascending (undated sorts first)."""
        return (self.study_date, self.study_time)

    def to_json(self) -> dict[str, object]:
        return {
            "study_uid": self.study_uid,
            "patient_id": self.patient_id,
            "patient_name": self.patient_name,
            "study_date": self.study_date,
            "study_time": self.study_time,
            "description": self.description,
            "accession": self.accession,
            "modalities": list(self.modalities),
            "n_series": self.n_series,
            "n_instances": self.n_instances,
        }


@dataclass(frozen=True)
class SeriesRecord:
    """One series of a study as the server describes it."""

    series_uid: str
    study_uid: str
    modality: str = ""
    number: int | None = None
    description: str = ""
    n_instances: int | None = None


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    if value is None:
        return ""
    return str(value).strip()


def _count(ds: Dataset, keyword: str) -> int | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def study_from_dataset(ds: Dataset) -> StudyRecord | None:
    """A :class:`StudyRecord` from a C-FIND or QIDO-RS answer, or None without a Study UID."""
    uid = _text(ds, "StudyInstanceUID")
    if not uid:
        return None
    raw = ds.get("ModalitiesInStudy", [])
    if isinstance(raw, str):
        raw = raw.split("\\") if raw else []
    modalities = tuple(sorted({str(m).strip() for m in (raw or []) if str(m).strip()}))
    return StudyRecord(
        study_uid=uid,
        patient_id=_text(ds, "PatientID"),
        patient_name=_text(ds, "PatientName"),
        patient_birth_date=_text(ds, "PatientBirthDate"),
        study_date=_text(ds, "StudyDate"),
        study_time=_text(ds, "StudyTime"),
        description=_text(ds, "StudyDescription"),
        accession=_text(ds, "AccessionNumber"),
        modalities=modalities,
        n_series=_count(ds, "NumberOfStudyRelatedSeries"),
        n_instances=_count(ds, "NumberOfStudyRelatedInstances"),
    )


def series_from_dataset(ds: Dataset, study_uid: str) -> SeriesRecord | None:
    """A :class:`SeriesRecord` from a C-FIND or QIDO-RS answer, or None without a Series UID."""
    uid = _text(ds, "SeriesInstanceUID")
    if not uid:
        return None
    return SeriesRecord(
        series_uid=uid,
        study_uid=_text(ds, "StudyInstanceUID") or study_uid,
        modality=_text(ds, "Modality"),
        number=_count(ds, "SeriesNumber"),
        description=_text(ds, "SeriesDescription"),
        n_instances=_count(ds, "NumberOfSeriesRelatedInstances"),
    )
