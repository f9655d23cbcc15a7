"""Scanning: bad files are skipped with a reason and never spoil the valid series."""

from __future__ import annotations

import os
import struct
import threading

import numpy as np
import pytest
from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from app.core.volume import Volume
from app.io.dicom_write import ct_slice_dataset, write_dicom_series
from app.io.errors import Cancelled
from app.io.load import load_series
from app.io.scan import scan_paths

PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def _uids() -> dict[str, str]:
    return {"study": generate_uid(), "series": generate_uid(), "for": generate_uid()}


def _write(ds: Dataset, path) -> None:
    dcmwrite(path, ds, enforce_file_format=True)


def _sr_object(path) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "SR"
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "TEST-001"
    _write(ds, path)


@pytest.fixture
def messy_folder(tmp_path, volume_factory):
    """A valid 12-slice series plus one file of every kind of junk, in one folder."""
    vol = volume_factory()
    uids = _uids()
    good = write_dicom_series(
        vol,
        tmp_path,
        naming="random",
        study_uid=uids["study"],
        series_uid=uids["series"],
        frame_of_reference_uid=uids["for"],
    )
    junk = {}

    def put(name, data: bytes):
        (tmp_path / name).write_bytes(data)
        junk[name] = tmp_path / name

    put("empty.dcm", b"")
    put("notes.txt", b"patient notes, not an image\n" * 10)
    put("picture.png", PNG_BYTES)
    put("corrupt.dcm", b"\x00" * 128 + b"DICM" + os.urandom(600))
    whole = good[0].read_bytes()
    put("truncated_pixels.dcm", whole[: len(whole) - 500])
    put("truncated_header.dcm", whole[:300])

    # Same series, other matrix size: one stray slice must not split or spoil the series.
    other = volume_factory(shape=(1, 20, 24), origin=(-19.0, -16.0, 200.0))
    _write(ct_slice_dataset(other, 0, uids=uids), tmp_path / "other_matrix.dcm")
    # Same series, a slice without PixelData.
    ds = ct_slice_dataset(vol, 0, uids=uids)
    del ds.PixelData
    _write(ds, tmp_path / "no_pixels.dcm")
    # A localizer (ImageType LOCALIZER) and an untagged scout (other orientation).
    # Columns run posterior, rows inferior: a sagittal plane, as scouts often are.
    sagittal = np.column_stack([[0.0, 1, 0], [0, 0, -1], [1, 0, 0]])
    scout_vol = volume_factory(shape=(1, 40, 48), direction=sagittal)
    ds = ct_slice_dataset(scout_vol, 0, uids=uids)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    _write(ds, tmp_path / "localizer.dcm")
    _write(ct_slice_dataset(scout_vol, 0, uids=uids), tmp_path / "scout.dcm")
    _sr_object(tmp_path / "report.dcm")
    return vol, good, junk, tmp_path


EXPECTED_REASONS = {
    "empty.dcm": "empty",
    "notes.txt": "text",
    "picture.png": "PNG",
    "corrupt.dcm": "corrupt",
    "truncated_pixels.dcm": "truncated",
    "truncated_header.dcm": "truncated",
    "other_matrix.dcm": "matrix size 20x24",
    "no_pixels.dcm": "no pixel data",
    "localizer.dcm": "localizer",
    "scout.dcm": "orientation differs",
    "report.dcm": "structured report",
}


def test_junk_is_skipped_with_reasons_and_the_series_still_loads(messy_folder):
    vol, good, _, folder = messy_folder
    result = scan_paths([folder])
    assert len(result.series) == 1
    ref = result.series[0]
    assert ref.kind == "dicom" and ref.n_slices == 12
    reasons = {s.path.name: s.reason for s in result.skipped}
    assert set(reasons) == set(EXPECTED_REASONS)
    for name, fragment in EXPECTED_REASONS.items():
        assert fragment.lower() in reasons[name].lower(), (name, reasons[name])
        assert "Test^Patient" not in reasons[name] and "TEST-001" not in reasons[name]
    loaded = load_series(ref)
    np.testing.assert_array_equal(loaded.voxels, vol.voxels)
    assert any("left out" in w for w in loaded.warnings)


def test_series_key_is_stable_and_location_independent(tmp_path, volume_factory):
    vol = volume_factory(shape=(4, 16, 16))
    write_dicom_series(vol, tmp_path / "a", series_uid="1.2.3.4", naming="index")
    first = scan_paths([tmp_path / "a"]).series[0].key
    (tmp_path / "a").rename(tmp_path / "b")
    assert scan_paths([tmp_path / "b"]).series[0].key == first
    assert first.startswith("dicom:1.2.3.4:")


def test_files_and_folders_mixed_and_missing_paths(tmp_path, volume_factory):
    paths = write_dicom_series(volume_factory(shape=(3, 16, 16)), tmp_path / "s", naming="none-ext")
    result = scan_paths([paths[0], tmp_path / "s", tmp_path / "nope"])
    assert result.series[0].n_slices == 3  # the file given twice counts once
    assert [(s.path.name, s.reason) for s in result.skipped] == [("nope", "does not exist")]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need POSIX")
def test_a_named_pipe_is_skipped_not_opened(tmp_path, volume_factory):
    write_dicom_series(volume_factory(shape=(2, 16, 16)), tmp_path)
    os.mkfifo(tmp_path / "pipe")
    result = scan_paths([tmp_path])
    assert {s.path.name: s.reason for s in result.skipped} == {"pipe": "not a regular file"}


def test_bare_dataset_without_preamble_is_read(tmp_path, volume_factory):
    vol = volume_factory(shape=(3, 16, 16))
    paths = write_dicom_series(vol, tmp_path)
    for p in paths:
        data = p.read_bytes()
        # Drop preamble and file meta group: what old archives store.
        (meta_len,) = struct.unpack_from("<I", data, 132 + 8)
        p.write_bytes(data[132 + 12 + meta_len :])
    result = scan_paths([tmp_path])
    assert not result.skipped
    np.testing.assert_array_equal(load_series(result.series[0]).voxels, vol.voxels)


def test_non_ct_modality_is_a_flagged_series(tmp_path, volume_factory):
    from dataclasses import replace

    vol = volume_factory(shape=(3, 16, 16))
    vol = Volume(vol.voxels, vol.geometry, replace(vol.info, modality="MR"))
    write_dicom_series(vol, tmp_path)
    ref = scan_paths([tmp_path]).series[0]
    assert not ref.is_ct
    assert any("not CT" in w for w in ref.warnings)


def test_progress_and_cancel(tmp_path, volume_factory):
    write_dicom_series(volume_factory(shape=(5, 16, 16)), tmp_path)
    calls = []
    scan_paths([tmp_path], progress=lambda d, t: calls.append((d, t)))
    assert calls[0] == (0, 5) and calls[-1] == (5, 5)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        scan_paths([tmp_path], cancel=cancel)


def test_repeated_positions_split_by_acquisition(tmp_path, volume_factory):
    vol = volume_factory(shape=(4, 16, 16))
    uids = _uids()
    for acq in (1, 2):
        for k in range(4):
            ds = ct_slice_dataset(vol, k, uids=uids)
            ds.AcquisitionNumber = acq
            _write(ds, tmp_path / f"a{acq}_{k}.dcm")
    result = scan_paths([tmp_path])
    assert [r.n_slices for r in result.series] == [4, 4]
    assert not result.skipped


def test_a_large_enough_subgroup_becomes_its_own_series(tmp_path, volume_factory):
    uids = _uids()
    for name, vol in (
        ("a", volume_factory(shape=(5, 16, 16))),
        ("b", volume_factory(shape=(3, 20, 20))),
    ):
        for k in range(vol.n_slices):
            _write(ct_slice_dataset(vol, k, uids=uids), tmp_path / f"{name}{k}.dcm")
    result = scan_paths([tmp_path])
    assert [r.n_slices for r in result.series] == [5, 3]
    assert len({r.key for r in result.series}) == 2
    assert not result.skipped
