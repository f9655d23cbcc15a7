"""Sketch-search archives: building from a messy folder, verifying, replacing atomically."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from pathlib import Path

import numpy as np
import pytest

from app.io.dicom_write import write_dicom_series, write_volume_file
from app.io.errors import Cancelled
from app.ml.sketch import archive as archive_mod
from app.ml.sketch.archive import Archive, ArchiveError, build_archive, default_archive_dir

SECRET_NAME = "SECRET^PATIENTNAME"


def _with_info(vol, **info):
    return dataclasses.replace(vol, info=dataclasses.replace(vol.info, **info))


@pytest.fixture(scope="module")
def messy_folder(tmp_path_factory) -> Path:
    """Two patients (DICOM, one with two studies), a NIfTI file, and junk of every kind."""
    from engine_helpers import phantom_volume

    root = tmp_path_factory.mktemp("messy")
    a1 = _with_info(
        phantom_volume(n_slices=10, seed=1),
        patient_id="PID-A",
        patient_name=SECRET_NAME,
        study_date="20240102",
        series_uid="1.2.826.0.1.1",
    )
    a2 = _with_info(
        phantom_volume(n_slices=8, seed=2, z0=30.0),
        patient_id="PID-A",
        patient_name=SECRET_NAME,
        study_date="20220505",
        series_uid="1.2.826.0.1.2",
    )
    b = _with_info(
        phantom_volume(n_slices=6, seed=3), patient_id="PID-B", series_uid="1.2.826.0.1.3"
    )
    mr = _with_info(
        phantom_volume(n_slices=5, seed=4),
        patient_id="PID-C",
        modality="MR",
        series_uid="1.2.826.0.1.4",
    )
    single = _with_info(
        phantom_volume(n_slices=1, seed=5), patient_id="PID-D", series_uid="1.2.826.0.1.5"
    )
    write_dicom_series(a1, root / "a" / "2024")
    write_dicom_series(a2, root / "a" / "2022")
    write_dicom_series(b, root / "b")
    write_dicom_series(mr, root / "mr")
    write_dicom_series(single, root / "single")
    anon = phantom_volume(n_slices=7, seed=6)
    write_volume_file(anon, root / "vol" / "anon.nii.gz")
    label_map = dataclasses.replace(anon, voxels=(anon.voxels > 60).astype(np.int16))
    write_volume_file(label_map, root / "vol" / "anon.mask.nrrd")
    (root / "junk").mkdir()
    (root / "junk" / "notes.txt").write_text("not an image")
    (root / "junk" / "empty.dcm").write_bytes(b"")
    (root / "junk" / "broken.nii.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    return root


@pytest.fixture(scope="module")
def built(messy_folder, tmp_path_factory, toy_model, toy_sketch_models):
    out = tmp_path_factory.mktemp("arch") / "archive"
    report = build_archive(messy_folder, out, toy_model, toy_sketch_models)
    return report, out


def test_build_indexes_ct_series_and_lists_what_it_skipped(built):
    report, out = built
    assert report.out_dir == out
    assert report.n_series == 4  # a1, a2, b, the NIfTI
    assert report.n_slices == 10 + 8 + 6 + 7
    assert report.n_patients == 3  # A (two studies), B, the anonymous file
    reasons = {Path(p).name: r for p, r in report.skipped}
    assert "notes.txt" in reasons and "empty.dcm" in reasons and "broken.nii.gz" in reasons
    assert any("not CT" in r for r in reasons.values())
    assert any("single slice" in r for r in reasons.values())
    assert "label map" in reasons["anon.mask.nrrd"]
    assert all(r for r in reasons.values())


def test_open_gives_refs_vectors_and_thumbnails(built, toy_model, toy_sketch_models):
    report, out = built
    arch = Archive.open(out, toy_model, toy_sketch_models)
    assert len(arch.index) == len(arch.refs) == report.n_slices
    assert arch.counts["series"] == 4
    assert len(arch.skipped) == len(report.skipped)
    size = toy_sketch_models.spec.size
    thumb = arch.thumbnail(3)
    assert thumb.shape == (size, size) and thumb.dtype == np.uint8
    assert thumb.max() > thumb.min()  # a body, not a blank
    with pytest.raises(IndexError):
        arch.thumbnail(report.n_slices)
    # The stored codes are the models' codes of the slices.
    ref = arch.refs[0]
    from app.io.load import load_volume

    vol = load_volume(ref.source)
    assert vol.n_slices == ref.n_slices
    emb = toy_model.embed_slices(vol, [ref.slice_index])[0]
    assert float(arch.index.anatomy[0] @ emb) > 0.999
    hits = arch.index.query(arch.index.anatomy[0], arch.index.abnormality[0], 0.5, k=5)
    assert hits[0].row == 0
    labels = {r.patient_label for r in arch.refs}
    assert SECRET_NAME in labels  # kept for display


def test_patient_names_never_reach_the_log(
    messy_folder, tmp_path, toy_model, toy_sketch_models, caplog
):
    caplog.set_level(logging.DEBUG)
    build_archive(messy_folder, tmp_path / "a", toy_model, toy_sketch_models)
    Archive.open(tmp_path / "a")
    assert "SECRET" not in caplog.text and "PID-A" not in caplog.text


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "graph.bin").write_bytes(b"\0" * 10), "damaged.*graph.bin"),
        (lambda d: (d / "refs.json").unlink(), "damaged.*refs.json"),
        (lambda d: (d / "manifest.json").unlink(), "not a PriorSync archive"),
        (lambda d: (d / "manifest.json").write_text("{oops"), "not a PriorSync archive"),
        (lambda d: (d / "manifest.json").write_text('{"format": "zip"}'), "not a PriorSync"),
        (
            lambda d: (d / "thumbs.bin").write_bytes((d / "thumbs.bin").read_bytes()[:-5]),
            "damaged.*thumbs.bin",
        ),
    ],
)
def test_damaged_archives_are_archive_errors(built, tmp_path, damage, message):
    d = _copy(built[1], tmp_path / "copy")
    damage(d)
    with pytest.raises(ArchiveError, match=message) as err:
        Archive.open(d)
    assert "priorsync index" in str(err.value)


def test_other_format_version_and_other_models(built, tmp_path, toy_model, toy_sketch_models):
    d = _copy(built[1], tmp_path / "copy")
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["models"]["abnormality"]["sha256"] = "0" * 64
    (d / "manifest.json").write_text(json.dumps(manifest))
    Archive.open(d)  # no models to compare with: opens
    with pytest.raises(ArchiveError, match="another abnormality model"):
        Archive.open(d, toy_model, toy_sketch_models)
    manifest["format_version"] = 99
    (d / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArchiveError, match="format version 99"):
        Archive.open(d)
    with pytest.raises(ArchiveError, match="does not exist"):
        Archive.open(tmp_path / "missing")


def test_failed_rebuild_keeps_the_old_archive(
    messy_folder, tmp_path, toy_model, toy_sketch_models, monkeypatch
):
    out = tmp_path / "arch"
    build_archive(messy_folder, out, toy_model, toy_sketch_models)
    before = (out / "manifest.json").read_text()

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(archive_mod, "_write_archive", boom)
    with pytest.raises(OSError):
        build_archive(messy_folder, out, toy_model, toy_sketch_models)
    assert (out / "manifest.json").read_text() == before
    Archive.open(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arch"]  # no temp leftovers


def test_rebuild_replaces_the_archive(messy_folder, tmp_path, toy_model, toy_sketch_models):
    out = tmp_path / "arch"
    build_archive(messy_folder / "b", out, toy_model, toy_sketch_models)
    assert Archive.open(out).counts["slices"] == 6
    build_archive(messy_folder, out, toy_model, toy_sketch_models)
    assert Archive.open(out).counts["slices"] == 31
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arch"]


def test_refuses_to_replace_a_folder_that_is_not_an_archive(
    messy_folder, tmp_path, toy_model, toy_sketch_models
):
    precious = tmp_path / "my-documents"
    precious.mkdir()
    (precious / "thesis.txt").write_text("keep me")
    with pytest.raises(ArchiveError, match="refusing to replace"):
        build_archive(messy_folder, precious, toy_model, toy_sketch_models)
    assert (precious / "thesis.txt").read_text() == "keep me"


def test_nothing_usable_and_cancel(messy_folder, tmp_path, toy_model, toy_sketch_models):
    with pytest.raises(ArchiveError, match="no usable CT series") as err:
        build_archive(messy_folder / "junk", tmp_path / "a", toy_model, toy_sketch_models)
    assert len(err.value.skipped) == 3
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        build_archive(messy_folder, tmp_path / "b", toy_model, toy_sketch_models, cancel=cancel)
    assert not (tmp_path / "b").exists()


def test_default_location_is_in_the_cache(tmp_path):
    a = default_archive_dir(tmp_path)
    assert a.parent.name == "archives"
    assert a == default_archive_dir(tmp_path / "." / "")
