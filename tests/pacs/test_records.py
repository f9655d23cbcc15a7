"""Search answers into records: C-FIND identifiers and QIDO-RS JSON read without pydicom's conversion.

No server here: identifiers are encoded and decoded the way pynetdicom does it,
and each fast reading is checked against pydicom's own conversion of the same bytes.
"""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom.dataset import Dataset
from pynetdicom.dsutils import decode, encode

from app.pacs.records import (
    SERIES_KEYWORDS,
    STUDY_KEYWORDS,
    identifier_attributes,
    json_attributes,
    series_from_dataset,
    study_from_dataset,
)

NAMES = {
    None: "Doe^John",
    "ISO_IR 100": "Müller^Jürgen",
    "ISO_IR 192": "Ōsaka^Hanako",
}


def study_identifier(charset: str | None, name: str) -> Dataset:
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientID = "PAT-7"
    ds.PatientName = name
    ds.PatientBirthDate = "19600101"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"  # odd length: padded with NUL
    ds.StudyDate = "20240918"
    ds.StudyTime = "101500"
    ds.StudyDescription = "CT THORAX" if charset is None else "Thorax natif é"
    ds.AccessionNumber = "ACC1"  # even length
    ds.ModalitiesInStudy = ["CT", "SR"]
    ds.NumberOfStudyRelatedSeries = 2
    ds.NumberOfStudyRelatedInstances = 301
    ds.ReferringPhysicianName = ""  # empty: left out
    return ds


def over_the_wire(ds: Dataset, implicit: bool) -> Dataset:
    """The identifier as pynetdicom hands it over: decoded, elements still raw."""
    raw = encode(ds, implicit, True)
    assert raw is not None
    return decode(BytesIO(raw), implicit, True)


@pytest.mark.parametrize("implicit", [True, False], ids=["implicit-VR", "explicit-VR"])
@pytest.mark.parametrize("charset", list(NAMES), ids=["ascii", "latin1", "utf8"])
def test_identifier_values_match_pydicom(charset, implicit) -> None:
    fast = over_the_wire(study_identifier(charset, NAMES[charset]), implicit)
    slow = over_the_wire(study_identifier(charset, NAMES[charset]), implicit)

    got = identifier_attributes(fast, STUDY_KEYWORDS)

    for keyword in STUDY_KEYWORDS:
        value = slow[keyword].value  # pydicom's conversion of the same bytes
        expected = [str(v) for v in value] if keyword == "ModalitiesInStudy" else str(value)
        assert got[keyword] == expected, keyword
    assert "ReferringPhysicianName" not in identifier_attributes(fast, ["ReferringPhysicianName"])
    assert got["PatientName"] == NAMES[charset]
    assert study_from_dataset(fast) == study_from_dataset(slow)


def test_study_record_from_an_identifier() -> None:
    record = study_from_dataset(
        over_the_wire(study_identifier("ISO_IR 100", "Müller^Jürgen"), True)
    )
    assert record is not None
    assert record.study_uid == "1.2.826.0.1.3680043.8.498.1"
    assert record.patient_name == "Müller^Jürgen"
    assert record.modalities == ("CT", "SR")
    assert (record.n_series, record.n_instances) == (2, 301)
    assert record.display_date == "2024-09-18"


def test_converted_elements_are_read_too() -> None:
    # A dataset built in Python (never encoded) holds converted elements, not raw ones.
    record = study_from_dataset(study_identifier(None, "Doe^John"))
    assert record is not None
    assert (record.patient_name, record.modalities, record.n_instances) == (
        "Doe^John",
        ("CT", "SR"),
        301,
    )


def test_series_record_and_missing_uid() -> None:
    ds = Dataset()
    ds.QueryRetrieveLevel = "SERIES"
    ds.SeriesInstanceUID = "1.2.3.4"
    ds.Modality = "CT"
    ds.SeriesNumber = 3
    ds.SeriesDescription = "Axial 1.0"
    ds.NumberOfSeriesRelatedInstances = 300
    record = series_from_dataset(over_the_wire(ds, True), "1.2.3")
    assert record is not None
    assert (record.series_uid, record.study_uid, record.modality) == ("1.2.3.4", "1.2.3", "CT")
    assert (record.number, record.description, record.n_instances) == (3, "Axial 1.0", 300)
    assert set(SERIES_KEYWORDS) >= {"SeriesInstanceUID", "Modality"}

    no_uid = Dataset()
    no_uid.PatientID = "X"
    assert study_from_dataset(over_the_wire(no_uid, True)) is None
    assert series_from_dataset(over_the_wire(no_uid, True), "1.2") is None


@pytest.mark.parametrize("charset", list(NAMES), ids=["ascii", "latin1", "utf8"])
def test_qido_json_gives_the_same_record_as_the_identifier(charset) -> None:
    ds = study_identifier(charset, NAMES[charset])
    answer = ds.to_json_dict()  # what a QIDO-RS server answers for this study
    assert study_from_dataset(json_attributes(answer)) == study_from_dataset(ds)


def test_json_person_name_groups_and_unknown_tags() -> None:
    answer = {
        "00100010": {
            "vr": "PN",
            "Value": [{"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎"}],
        },
        "00080061": {"vr": "CS", "Value": ["CT"]},
        "00091001": {"vr": "LO", "Value": ["private"]},  # private: no keyword
        "not-a-tag": {"vr": "LO", "Value": ["x"]},
        "00081030": {"vr": "LO"},  # no value
        "0020000D": "not an element",
    }
    got = json_attributes(answer)
    assert got == {"PatientName": "Yamada^Tarou=山田^太郎", "ModalitiesInStudy": "CT"}
