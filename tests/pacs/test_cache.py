"""The study cache on its own: commit, reuse, damage, LRU eviction, crash left-overs."""

from __future__ import annotations

import json
import os
import time

import pydicom
import pytest
from pacs_data import write_patients

from app.pacs.backend import Instance
from app.pacs.cache import StudyCache
from app.pacs.errors import BadInstances


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_patients(tmp_path_factory.mktemp("cache-patients"), n_slices=4, matrix=24)


def _commit(cache: StudyCache, study) -> None:
    with cache.stage(study.study_uid) as staged:
        for path in study.files:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            if ds.Modality == "CT":
                staged.add(ds.SeriesInstanceUID, Instance(data=path.read_bytes()))
        staged.commit()


def test_commit_then_lookup(tmp_path, files) -> None:
    cache = StudyCache(tmp_path)
    study = files["current"]
    assert cache.lookup(study.study_uid) is None
    _commit(cache, study)
    found = cache.lookup(study.study_uid)
    assert found is not None and found.n_instances == 8
    assert [p.name for p in found.series_folders] == study.series_uids[:2]
    assert list(cache.staging_root.iterdir()) == []


def test_uncommitted_staging_is_invisible_and_removed(tmp_path, files) -> None:
    cache = StudyCache(tmp_path)
    study = files["prior1"]
    with cache.stage(study.study_uid) as staged:
        staged.add(study.series_uids[0], Instance(data=study.files[0].read_bytes()))
        assert cache.lookup(study.study_uid) is None
    assert cache.lookup(study.study_uid) is None
    assert list(cache.staging_root.iterdir()) == []


def test_a_crashed_transfer_is_cleared_by_the_next_user(tmp_path) -> None:
    dead = tmp_path / "staging" / "999999999-abc"  # no such process
    dead.mkdir(parents=True)
    (dead / "x.dcm").write_bytes(b"half")
    StudyCache(tmp_path)
    assert not dead.exists()


def test_a_damaged_study_is_dropped_and_fetched_again(tmp_path, files) -> None:
    cache = StudyCache(tmp_path)
    study = files["prior1"]
    _commit(cache, study)
    victim = next(cache.study_folder(study.study_uid).rglob("*.dcm"))
    victim.write_bytes(victim.read_bytes()[:100])  # cut short
    assert cache.lookup(study.study_uid) is None
    assert not cache.study_folder(study.study_uid).exists()


def test_a_corrupt_manifest_means_not_cached(tmp_path, files) -> None:
    cache = StudyCache(tmp_path)
    study = files["prior2"]
    _commit(cache, study)
    (cache.study_folder(study.study_uid) / "manifest.json").write_text("{not json")
    assert cache.lookup(study.study_uid) is None


def test_least_recently_used_studies_are_evicted(tmp_path, files) -> None:
    cache = StudyCache(tmp_path)
    for key in ("prior2", "prior1", "other"):
        _commit(cache, files[key])
        time.sleep(0.01)
    sizes = {uid: n for _t, uid, n in cache.studies()}
    # prior2 is used again, so prior1 is now the least recently used.
    manifest = cache.study_folder(files["prior2"].study_uid) / "manifest.json"
    os.utime(manifest, (time.time() + 5, time.time() + 5))
    cache.max_bytes = sum(sizes.values()) - 1
    assert cache.evict() == [files["prior1"].study_uid]
    assert cache.lookup(files["prior1"].study_uid) is None
    assert cache.lookup(files["prior2"].study_uid) is not None
    assert cache.size() <= cache.max_bytes


def test_the_newest_study_is_kept_even_when_alone_too_big(tmp_path, files) -> None:
    cache = StudyCache(tmp_path, max_bytes=10)
    _commit(cache, files["prior1"])
    assert cache.lookup(files["prior1"].study_uid) is not None


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda ds: setattr(ds, "Modality", "MR"), "MR instance in a CT series"),
        (lambda ds: setattr(ds, "PixelData", ds.PixelData[:10]), "cut short"),
        (lambda ds: setattr(ds, "SeriesInstanceUID", "1.2.3"), "another series"),
        (lambda ds: setattr(ds, "SOPInstanceUID", "../../evil"), "invalid SOP instance UID"),
    ],
)
def test_unusable_instances_are_refused(tmp_path, files, edit, words) -> None:
    cache = StudyCache(tmp_path)
    study = files["prior1"]
    ds = pydicom.dcmread(study.files[0])
    with pydicom.config.disable_value_validation():
        edit(ds)  # a server is not bound by pydicom's checks
    with cache.stage(study.study_uid) as staged, pytest.raises(BadInstances, match=words):
        staged.add(study.series_uids[0], Instance(dataset=ds))
    assert cache.studies() == []


def test_not_dicom_at_all(tmp_path, files) -> None:
    cache = StudyCache(tmp_path)
    study = files["prior1"]
    with cache.stage(study.study_uid) as staged, pytest.raises(BadInstances, match="corrupt"):
        staged.add(study.series_uids[0], Instance(data=b"<html>login</html>"))


def test_manifest_records_every_file(tmp_path, files) -> None:
    cache = StudyCache(tmp_path)
    _commit(cache, files["other"])
    meta = json.loads((cache.study_folder(files["other"].study_uid) / "manifest.json").read_text())
    assert sum(len(s["files"]) for s in meta["series"]) == 4


def test_two_transfers_of_one_study_end_with_one_complete_copy(tmp_path, files) -> None:
    cache = StudyCache(tmp_path)
    study = files["prior1"]
    first, second = cache.stage(study.study_uid), cache.stage(study.study_uid)
    for staged in (first, second):
        for path in study.files:
            staged.add(study.series_uids[0], Instance(data=path.read_bytes()))
    a = first.commit()
    b = second.commit()  # finds a complete copy in place and leaves it be
    assert a.folder == b.folder and b.n_instances == 4
    assert list(cache.staging_root.iterdir()) == []
