"""Loading DICOM series: order, modality LUT, syntaxes, multi-frame, geometry warnings."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.uid import ImplicitVRLittleEndian, JPEG2000Lossless, JPEGLosslessSV1, RLELossless

from app.core.volume import Geometry, Volume
from app.io.dicom_write import write_dicom_series, write_enhanced_ct
from app.io.errors import Cancelled, LoadError
from app.io.load import load_series, load_volume
from app.io.scan import scan_paths


def _load_folder(folder) -> Volume:
    result = scan_paths([folder])
    assert len(result.series) == 1, result.skipped
    return load_series(result.series[0])


def test_slices_sorted_by_position_not_instance_number_or_name(tmp_path, ct_volume):
    write_dicom_series(
        ct_volume, tmp_path, naming="random", shuffle=True, rng=np.random.default_rng(3)
    )
    loaded = _load_folder(tmp_path)
    np.testing.assert_array_equal(loaded.voxels, ct_volume.voxels)
    np.testing.assert_allclose(loaded.slice_positions, ct_volume.slice_positions, atol=1e-4)
    np.testing.assert_allclose(loaded.geometry.spacing, ct_volume.geometry.spacing, atol=1e-5)
    np.testing.assert_allclose(loaded.geometry.direction, np.eye(3), atol=1e-6)
    assert loaded.warnings == []


def test_series_info_is_filled(tmp_path, ct_volume):
    write_dicom_series(ct_volume, tmp_path, study_uid="1.2.3", series_uid="1.2.3.4")
    info = _load_folder(tmp_path).info
    expected = ct_volume.info
    assert (info.patient_id, info.patient_name, info.study_date) == (
        expected.patient_id,
        expected.patient_name,
        expected.study_date,
    )
    assert (info.study_uid, info.series_uid, info.series_number) == ("1.2.3", "1.2.3.4", 3)
    assert (info.modality, info.body_part, info.convolution_kernel) == ("CT", "CHEST", "B30f")
    assert info.slice_thickness == pytest.approx(2.5)
    assert info.frame_of_reference_uid


@pytest.mark.parametrize(
    ("slope", "intercept", "signed"),
    [(1.0, -1024.0, False), (1.0, -1024.0, True), (0.5, -2048.0, False), (1.0, 0.0, True)],
)
def test_rescale_slope_and_intercept(tmp_path, volume_factory, slope, intercept, signed):
    vol = volume_factory(shape=(3, 16, 20))
    write_dicom_series(
        vol, tmp_path, rescale_slope=slope, rescale_intercept=intercept, signed=signed
    )
    np.testing.assert_array_equal(_load_folder(tmp_path).voxels, vol.voxels)


def test_12_bit_stored_values_with_junk_high_bits(tmp_path, volume_factory):
    import pydicom

    vol = volume_factory(shape=(2, 16, 16))
    for p in write_dicom_series(vol, tmp_path, signed=False):
        ds = pydicom.dcmread(p)
        ds.BitsStored, ds.HighBit = 12, 11
        raw = np.frombuffer(ds.PixelData, "<u2") | np.uint16(0xF000)  # overlay bits set
        ds.PixelData = raw.tobytes()
        ds.save_as(p, enforce_file_format=True)
    np.testing.assert_array_equal(_load_folder(tmp_path).voxels, vol.voxels)


@pytest.mark.parametrize(
    "syntax", [ImplicitVRLittleEndian, RLELossless, JPEGLosslessSV1, JPEG2000Lossless]
)
def test_transfer_syntaxes_round_trip(tmp_path, volume_factory, syntax):
    vol = volume_factory(shape=(3, 40, 36))
    write_dicom_series(vol, tmp_path, transfer_syntax=syntax, shuffle=True)
    np.testing.assert_array_equal(_load_folder(tmp_path).voxels, vol.voxels)


@pytest.mark.parametrize("syntax", [None, RLELossless])
def test_enhanced_multiframe_ct(tmp_path, volume_factory, syntax):
    vol = volume_factory(shape=(6, 20, 24))
    kwargs = {"transfer_syntax": syntax} if syntax else {}
    write_enhanced_ct(vol, tmp_path / "mf.dcm", frame_order=[3, 0, 5, 1, 4, 2], **kwargs)
    loaded = _load_folder(tmp_path)
    np.testing.assert_array_equal(loaded.voxels, vol.voxels)
    np.testing.assert_allclose(loaded.slice_positions, vol.slice_positions, atol=1e-4)


def test_missing_slice_warning(tmp_path, volume_factory):
    vol = volume_factory(shape=(10, 16, 16))
    paths = write_dicom_series(vol, tmp_path)
    paths[4].unlink()
    loaded = _load_folder(tmp_path)
    assert loaded.n_slices == 9
    assert any("1 missing slice" in w for w in loaded.warnings), loaded.warnings
    # The measured positions are kept, so slice 4 of the result is the original slice 5.
    np.testing.assert_allclose(loaded.slice_positions[4], vol.slice_positions[5], atol=1e-4)


def test_uneven_spacing_warning(tmp_path, volume_factory, same_hu_check):
    vol = volume_factory(shape=(6, 16, 16))
    z = np.array([0.0, 2.5, 5.0, 8.0, 10.5, 13.0])  # one 3 mm step among 2.5 mm ones
    positions = np.column_stack([np.full(6, -19.0), np.full(6, -16.0), z])
    uneven = Volume(vol.voxels, vol.geometry, vol.info, slice_positions=positions)
    write_dicom_series(uneven, tmp_path)
    loaded = _load_folder(tmp_path)
    assert any("uneven slice spacing" in w for w in loaded.warnings), loaded.warnings
    assert not any("missing" in w for w in loaded.warnings)
    same_hu_check(uneven, loaded)


def test_gantry_tilt_keeps_true_geometry(tmp_path, volume_factory, same_hu_check):
    vol = volume_factory(shape=(8, 20, 20))
    step = np.array([0.0, 0.3, 2.5])  # each slice shifted 0.3 mm posterior: ~6.8° tilt
    positions = np.array([-19.0, -16.0, -50.0]) + np.arange(8)[:, None] * step
    tilted = Volume(vol.voxels, vol.geometry, vol.info, slice_positions=positions)
    write_dicom_series(tilted, tmp_path)
    loaded = _load_folder(tmp_path)
    assert any("gantry tilt of 6.8°" in w for w in loaded.warnings), loaded.warnings
    np.testing.assert_allclose(loaded.geometry.normal, step / np.linalg.norm(step), atol=1e-6)
    same_hu_check(tilted, loaded)


def test_oblique_permuted_dicom_reads_back_in_display_orientation(
    tmp_path, volume_factory, same_hu_check
):
    # Coronal acquisition: columns run to the patient's right, rows to the feet.
    direction = np.column_stack([[-1.0, 0, 0], [0, 0, -1.0], [0, -1.0, 0]])
    vol = volume_factory(shape=(10, 14, 12), spacing=(0.9, 1.1, 2.0), direction=direction)
    write_dicom_series(vol, tmp_path)
    loaded = _load_folder(tmp_path)
    np.testing.assert_allclose(loaded.geometry.direction, np.eye(3), atol=1e-6)
    assert loaded.shape == (14, 10, 12)  # (S-I rows became slices, A-P slices became rows)
    same_hu_check(vol, loaded)


def test_load_progress_and_cancel(tmp_path, ct_volume):
    write_dicom_series(ct_volume, tmp_path)
    ref = scan_paths([tmp_path]).series[0]
    calls = []
    load_series(ref, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (12, 12)
    cancel = __import__("threading").Event()
    cancel.set()
    with pytest.raises(Cancelled):
        load_series(ref, cancel=cancel)


def test_slice_that_fails_to_decode_is_left_out(tmp_path, volume_factory):
    vol = volume_factory(shape=(5, 40, 36))
    paths = write_dicom_series(vol, tmp_path, transfer_syntax=RLELossless)
    ref = scan_paths([tmp_path]).series[0]
    data = bytearray(paths[2].read_bytes())
    data[-300:] = b"\x00" * 300  # corrupt the RLE stream after the scan
    paths[2].write_bytes(bytes(data))
    loaded = load_series(ref)
    assert loaded.n_slices in (4, 5)  # RLE may decode garbage without noticing
    if loaded.n_slices == 4:
        assert any("could not be decoded" in w for w in loaded.warnings)


def test_load_volume_errors_are_clear(tmp_path):
    with pytest.raises(LoadError, match="does not exist"):
        load_volume(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LoadError, match="contains no files"):
        load_volume(tmp_path / "empty")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.txt").write_text("hello")
    (tmp_path / "junk" / "b.bin").write_bytes(b"")
    with pytest.raises(LoadError, match=r"no image series found.*2 file\(s\) checked"):
        load_volume(tmp_path / "junk")


def test_load_volume_picks_the_largest_ct_series(tmp_path, volume_factory):
    write_dicom_series(volume_factory(shape=(3, 16, 16)), tmp_path / "small")
    big = volume_factory(shape=(7, 16, 16), seed=4)
    write_dicom_series(big, tmp_path / "big")
    progress = []
    loaded = load_volume(tmp_path, progress=lambda d, t: progress.append((d, t)))
    np.testing.assert_array_equal(loaded.voxels, big.voxels)
    assert progress[-1] == (1000, 1000)


def test_single_dicom_file(tmp_path, volume_factory):
    vol = volume_factory(shape=(2, 16, 16))
    paths = write_dicom_series(vol, tmp_path)
    loaded = load_volume(paths[1])
    assert loaded.n_slices == 1 and "single slice: not a volume" in loaded.warnings
    np.testing.assert_array_equal(loaded.voxels[0], vol.voxels[1])


def test_geometry_of_display_volume_is_consistent(tmp_path, ct_volume):
    write_dicom_series(ct_volume, tmp_path)
    g: Geometry = _load_folder(tmp_path).geometry
    np.testing.assert_allclose(g.origin, ct_volume.geometry.origin, atol=1e-4)
