"""Patient → study → series grouping and thumbnails."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from app.core.volume import SeriesInfo
from app.io.catalog import group_series, thumbnail
from app.io.records import SeriesRef


def _ref(key: str, **info) -> SeriesRef:
    return SeriesRef(kind="dicom", key=key, info=SeriesInfo(**info), n_slices=10, source="")


def test_grouping_newest_study_first():
    refs = [
        _ref("a", patient_id="P1", study_uid="s1", study_date="20200105", series_number=2),
        _ref("b", patient_id="P1", study_uid="s2", study_date="20240101"),
        _ref("c", patient_id="P1", study_uid="s1", study_date="20200105", series_number=1),
        _ref("d", patient_id="P1", study_uid="s3", study_date=""),
        _ref("e", patient_id="P1", study_uid="s4", study_date="20220101"),
        _ref("f", patient_id="P2", study_uid="t1", study_date="20230101"),
    ]
    patients = group_series(refs)
    assert [p.patient_id for p in patients] == ["P1", "P2"]
    p1 = patients[0]
    assert [s.study_uid for s in p1.studies] == ["s2", "s4", "s1", "s3"]
    assert [r.key for r in p1.studies[2].series] == ["c", "a"]
    assert p1.studies[-1].display_date == "undated"
    assert [r.key for r in p1.series] == ["b", "e", "c", "a", "d"]


def test_series_without_identifiers_each_form_a_study():
    patients = group_series([_ref("x"), _ref("y")])
    assert len(patients) == 1 and len(patients[0].studies) == 2


def test_thumbnail_is_uint8_with_physical_aspect(ct_volume):
    thumb = thumbnail(ct_volume, size=64)
    assert thumb.dtype == np.uint8
    assert thumb.shape == (53, 64)  # 40 x 48 pixels of 0.8 mm: height/width = 5/6
    wide = replace(ct_volume)
    wide.geometry = replace(ct_volume.geometry, spacing=np.array([0.4, 0.8, 2.5]))
    assert thumbnail(wide, size=64).shape == (64, 38)
    assert thumb.min() == 0 and thumb.max() == 255  # air below, spine above the window
