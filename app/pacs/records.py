"""What a PACS search asks and answers: queries, and patient/study/series records.

Records hold identifiers (names, IDs, birth dates): never log them; log UIDs
or counts instead.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.valuerep import CUSTOMIZABLE_CHARSET_VR, TEXT_VR_DELIMS

__all__ = [
    "SeriesRecord",
    "StudyQuery",
    "StudyRecord",
    "identifier_attributes",
    "json_attributes",
    "series_from_dataset",
    "study_from_dataset",
]

# A C-FIND identifier, or a keyword -> value mapping (json_attributes, identifier_attributes).
Attributes = Dataset | Mapping[str, Any]

# What the records are made of, per level.
STUDY_KEYWORDS = (
    "StudyInstanceUID",
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "AccessionNumber",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)
SERIES_KEYWORDS = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "NumberOfSeriesRelatedInstances",
)
_PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")

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


def _person_name(value: object) -> object:
    # PS3.18 F.2.2: {"Alphabetic": ..., "Ideographic": ..., "Phonetic": ...}; joined
    # with "=" as in the DICOM encoding (and pydicom's str of a PersonName).
    if not isinstance(value, Mapping):
        return value
    groups = [str(value.get(g, "") or "") for g in _PN_GROUPS]
    while groups and not groups[-1]:
        groups.pop()
    return "=".join(groups)


def json_attributes(answer: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword -> value of one DICOM JSON object (PS3.18 F.2), as a QIDO-RS answer holds it.

    A single value stays itself and several become a list; a person name is
    its component groups joined with ``=`` (``DOE^JOHN``). Read directly,
    without building a pydicom dataset per answer (that round trip was most
    of a search's client time); unknown and private tags are left out.
    """
    out: dict[str, Any] = {}
    for tag, element in answer.items():
        if not isinstance(element, Mapping):
            continue
        try:
            keyword = keyword_for_tag(int(tag, 16))
        except ValueError:
            continue
        values = element.get("Value")
        if not keyword or not isinstance(values, list) or not values:
            continue
        if element.get("vr") == "PN":
            values = [_person_name(v) for v in values]
        out[keyword] = values[0] if len(values) == 1 else values
    return out


def _charset(ds: Dataset) -> list[str]:
    """The Python encodings of an identifier's Specific Character Set (default: ASCII)."""
    elem = ds.get_item(0x00080005)
    if elem is None:
        return convert_encodings(None)
    value = elem.value
    if isinstance(value, bytes):
        value = [t.strip() for t in value.decode("ascii", "replace").split("\\")]
    if isinstance(value, str):
        value = [value]
    return convert_encodings(list(value) if value else None)


@functools.cache
def _tag_and_vr(keyword: str) -> tuple[int, str]:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(f"not a DICOM keyword: {keyword}")
    return tag, dictionary_VR(tag)


def identifier_attributes(ds: Dataset, keywords: Iterable[str]) -> dict[str, Any]:
    """Keyword -> value of the text attributes ``keywords`` of a C-FIND identifier.

    Values are read from the raw element bytes and decoded with the
    identifier's character set by pydicom's own decoder, but without
    pydicom's per-element conversion and validation, which cost 1-4 ms an
    answer (a search of 50 studies spent more time there than on the
    network). Elements already converted are taken as they are. A single
    value stays itself and several (backslash-separated) become a list; a
    missing or empty attribute is left out.
    """
    encodings: list[str] | None = None
    out: dict[str, Any] = {}
    for keyword in keywords:
        tag, dictionary_vr = _tag_and_vr(keyword)
        elem = ds.get_item(tag)
        if elem is None:
            continue
        if isinstance(elem, RawDataElement):
            raw = elem.value
            if not raw:
                continue
            vr = elem.VR or dictionary_vr
            if vr in CUSTOMIZABLE_CHARSET_VR:
                if encodings is None:
                    encodings = _charset(ds)
                text = decode_bytes(raw, encodings, TEXT_VR_DELIMS)
            else:
                text = raw.decode("ascii", "replace")
            values: list[Any] = [v.strip("\0 ") for v in text.split("\\")]
        else:
            value = elem.value
            if value is None or value == "":
                continue
            many = isinstance(value, Sequence) and not isinstance(value, str | bytes)
            values = list(value) if many else [value]
            values = [str(v).strip() for v in values]
        out[keyword] = values[0] if len(values) == 1 else values
    return out


def _text(ds: Mapping[str, Any], keyword: str) -> str:
    value = ds.get(keyword, "")
    if value is None:
        return ""
    return str(value).strip()


def _count(ds: Mapping[str, Any], keyword: str) -> int | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def study_from_dataset(ds: Attributes) -> StudyRecord | None:
    """A :class:`StudyRecord` from a C-FIND identifier or a QIDO-RS answer's
    :func:`json_attributes`, or None without a Study UID."""
    if isinstance(ds, Dataset):
        ds = identifier_attributes(ds, STUDY_KEYWORDS)
    uid = _text(ds, "StudyInstanceUID")
    if not uid:
        return None
    raw = ds.get("ModalitiesInStudy", [])
    if isinstance(raw, str):
        raw = raw.split("\\") if raw else []
    elif raw is None:
        raw = []
    modalities = tuple(sorted({str(m).strip() for m in raw if str(m).strip()}))
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


def series_from_dataset(ds: Attributes, study_uid: str) -> SeriesRecord | None:
    """A :class:`SeriesRecord` from a C-FIND identifier or a QIDO-RS answer's
    :func:`json_attributes`, or None without a Series UID."""
    if isinstance(ds, Dataset):
        ds = identifier_attributes(ds, SERIES_KEYWORDS)
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
