"""Both protocols against a real Orthanc: echo, search, retrieve into the cache, reuse."""

from __future__ import annotations

import threading

import numpy as np
import pydicom
import pytest
from pacs_data import CT_DATES, OTHER_ID, PATIENT_ID, PATIENT_NAME, dimse_config

from app.io.load import load_volume
from app.pacs.backend import open_backend
from app.pacs.dimse import DimseBackend
from app.pacs.records import StudyQuery
from app.pacs.retrieve import fetch_patient, fetch_study, find_priors
from app.pacs.servers import ServerConfig


def test_echo(server_config) -> None:
    with open_backend(server_config) as backend:
        backend.echo()


def test_find_by_patient_id(server_config, patients) -> None:
    with open_backend(server_config) as backend:
        found = backend.find_studies(StudyQuery(patient_id=PATIENT_ID))
    assert {s.study_uid for s in found} == {
        patients[k].study_uid for k in ("current", "prior1", "prior2", "mr")
    }
    current = next(s for s in found if s.study_uid == patients["current"].study_uid)
    assert current.study_date == CT_DATES[0]
    assert current.description == "CT CHEST"
    assert current.n_series == 3
    assert current.n_instances == 30
    assert "CT" in current.modalities and "SR" in current.modalities


@pytest.mark.parametrize(
    ("query", "keys"),
    [
        (StudyQuery(patient_name="Zebedee*"), {"current", "prior1", "prior2", "mr"}),
        (StudyQuery(accession="ACC-25"), {"prior1"}),
        (StudyQuery(date_from="20240101", date_to="20251231"), {"prior1", "prior2", "mr"}),
        (StudyQuery(date_from="20260101"), {"current"}),
        (StudyQuery(patient_id=OTHER_ID), {"other"}),
        (StudyQuery(patient_id="NOBODY"), set()),
    ],
)
def test_find_by_name_accession_and_dates(server_config, patients, query, keys) -> None:
    with open_backend(server_config) as backend:
        found = backend.find_studies(query)
    assert {s.study_uid for s in found} == {patients[k].study_uid for k in keys}


def test_find_series(server_config, patients) -> None:
    study = patients["current"]
    with open_backend(server_config) as backend:
        series = backend.find_series(study.study_uid)
    assert sorted((s.series_uid, s.modality, s.n_instances) for s in series) == sorted(
        zip(study.series_uids, ["CT", "CT", "SR"], [10, 10, 10], strict=True)
    )


def test_patient_level_find(orthanc) -> None:
    backend = DimseBackend(dimse_config(orthanc))
    found = backend.find_patients(patient_id=PATIENT_ID)
    assert [(p.patient_id, p.patient_name, p.n_studies) for p in found] == [
        (PATIENT_ID, PATIENT_NAME, 4)
    ]


def test_fetch_writes_the_ct_series_and_reuses_the_cache(server_config, patients, cache) -> None:
    study = patients["current"]
    seen: list[tuple[int, int]] = []
    with open_backend(server_config) as backend:
        result = fetch_study(backend, study.study_uid, cache, lambda d, t: seen.append((d, t)))
    assert not result.from_cache
    assert result.skipped_series == 1  # the SR series
    assert result.study.n_instances == 20
    assert seen[-1] == (20, 20)
    assert sorted(p.name for p in result.study.series_folders) == sorted(study.series_uids[:2])
    # The pixels are the ones uploaded, file for file.
    for original in study.files[:20]:
        sent = pydicom.dcmread(original)
        got = pydicom.dcmread(
            result.study.folder / sent.SeriesInstanceUID / f"{sent.SOPInstanceUID}.dcm"
        )
        np.testing.assert_array_equal(got.pixel_array, sent.pixel_array)
    # The series open in the viewer's reader.
    volume = load_volume(result.study.series_folders[0])
    assert volume.n_slices == 10
    # A second fetch never asks the server: a backend whose every call would fail still works.
    nowhere = ServerConfig(
        name="nowhere", protocol="dimse", host="127.0.0.1", port=9, called_ae="X"
    )
    with open_backend(nowhere) as backend:
        again = fetch_study(backend, study.study_uid, cache)
    assert again.from_cache and again.study == result.study


def test_priors_are_the_same_patients_older_ct_studies_newest_first(
    server_config, patients
) -> None:
    with open_backend(server_config) as backend:
        current = backend.find_studies(StudyQuery(study_uid=patients["current"].study_uid))[0]
        priors = find_priors(backend, current)
    assert [p.study_uid for p in priors] == [
        patients["prior1"].study_uid,
        patients["prior2"].study_uid,
    ]


def test_fetch_patient_takes_the_newest_ct_and_n_priors(server_config, patients, cache) -> None:
    with open_backend(server_config) as backend:
        got = fetch_patient(backend, PATIENT_ID, cache, n_priors=1)
    assert got.current.study_uid == patients["current"].study_uid
    assert [p.study_uid for p in got.priors] == [patients["prior1"].study_uid]
    assert [r.study.study_uid for r in got.results] == [
        patients["current"].study_uid,
        patients["prior1"].study_uid,
    ]


def test_cancel_leaves_nothing(server_config, patients, cache) -> None:
    from app.pacs.errors import TransferCancelled

    cancel = threading.Event()
    with open_backend(server_config) as backend, pytest.raises(TransferCancelled):
        fetch_study(
            backend, patients["current"].study_uid, cache, lambda d, t: cancel.set(), cancel
        )
    assert cache.lookup(patients["current"].study_uid) is None
    assert list(cache.staging_root.iterdir()) == []
