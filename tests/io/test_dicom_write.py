"""The DICOM/volume writer produces valid files that independent readers agree on."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLosslessSV1, RLELossless

from app.core.volume import Volume
from app.io.dicom_write import (
    CT_IMAGE_STORAGE,
    ENHANCED_CT_IMAGE_STORAGE,
    writable_transfer_syntaxes,
    write_dicom_series,
    write_enhanced_ct,
    write_volume_file,
)


def _hu_pydicom(path) -> np.ndarray:
    ds = pydicom.dcmread(path)
    return ds.pixel_array.astype(np.int32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def test_compressed_syntaxes_are_writable() -> None:
    assert {RLELossless, JPEG2000Lossless, JPEGLosslessSV1} <= set(writable_transfer_syntaxes())


@pytest.mark.parametrize("syntax", writable_transfer_syntaxes(), ids=lambda u: u.name)
def test_series_round_trips_through_pydicom_and_simpleitk(tmp_path, volume_factory, syntax):
    vol: Volume = volume_factory(shape=(3, 40, 36))
    paths = write_dicom_series(vol, tmp_path, transfer_syntax=syntax)
    assert len(paths) == 3
    ds = pydicom.dcmread(paths[0])
    assert ds.file_meta.TransferSyntaxUID == syntax
    assert ds.SOPClassUID == CT_IMAGE_STORAGE
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.PatientID == "TEST-001" and ds.StudyDate == "20240315"
    assert float(ds.SliceThickness) == pytest.approx(2.5)
    hu = np.stack([_hu_pydicom(p) for p in paths])
    np.testing.assert_array_equal(hu, vol.voxels)

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path)))
    image = reader.Execute()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), vol.voxels)
    np.testing.assert_allclose(image.GetOrigin(), vol.geometry.origin, atol=1e-4)
    np.testing.assert_allclose(image.GetSpacing(), vol.geometry.spacing, atol=1e-4)


def test_signed_storage_when_values_fall_below_the_intercept(tmp_path, volume_factory):
    vol = volume_factory(shape=(2, 16, 16))
    vol.voxels[0, 0, 0] = -3024  # outside-FOV padding: stored value would be negative
    paths = write_dicom_series(vol, tmp_path)
    ds = pydicom.dcmread(paths[0])
    assert ds.PixelRepresentation == 1
    np.testing.assert_array_equal(_hu_pydicom(paths[0]), vol.voxels[0])


def test_jpeg2000_needs_32_pixels_per_side(tmp_path, volume_factory):
    with pytest.raises(ValueError, match="32 x 32"):
        write_dicom_series(
            volume_factory(shape=(1, 16, 40)), tmp_path, transfer_syntax=JPEG2000Lossless
        )


def test_slope_must_represent_values_exactly(tmp_path, volume_factory):
    vol = volume_factory(shape=(1, 8, 8))
    vol.voxels[0, 0, 0] = 41  # odd: not representable with slope 2
    with pytest.raises(ValueError, match="not representable"):
        write_dicom_series(vol, tmp_path, rescale_slope=2.0)


@pytest.mark.parametrize("naming", ["uid", "index", "none-ext", "random"])
def test_naming_and_shuffled_instance_numbers(tmp_path, volume_factory, naming):
    vol = volume_factory(shape=(6, 8, 8))
    paths = write_dicom_series(
        vol, tmp_path, naming=naming, shuffle=True, rng=np.random.default_rng(1)
    )
    assert len({p.name for p in paths}) == 6
    if naming in ("none-ext", "random"):
        assert all(p.suffix == "" for p in paths)
    numbers = [int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber) for p in paths]
    assert sorted(numbers) == list(range(1, 7))
    assert numbers != list(range(1, 7))


def test_enhanced_ct_is_one_multiframe_file(tmp_path, volume_factory):
    vol = volume_factory(shape=(4, 16, 12))
    path = write_enhanced_ct(vol, tmp_path / "enhanced.dcm", transfer_syntax=RLELossless)
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == ENHANCED_CT_IMAGE_STORAGE
    assert ds.NumberOfFrames == 4
    positions = [
        [float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient]
        for f in ds.PerFrameFunctionalGroupsSequence
    ]
    np.testing.assert_allclose(positions, vol.slice_positions, atol=1e-4)
    np.testing.assert_array_equal(ds.pixel_array.astype(np.int32) - 1024, vol.voxels)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_volume_file_round_trip(tmp_path, volume_factory, suffix):
    vol = volume_factory(shape=(3, 10, 12))
    path = write_volume_file(vol, tmp_path / f"v{suffix}")
    image = sitk.ReadImage(str(path))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), vol.voxels)
    np.testing.assert_allclose(image.GetOrigin(), vol.geometry.origin)


def test_volume_file_rejects_unknown_suffix(tmp_path, ct_volume):
    with pytest.raises(ValueError, match="unsupported"):
        write_volume_file(ct_volume, tmp_path / "v.png")


def test_explicit_default_is_uncompressed(tmp_path, volume_factory):
    paths = write_dicom_series(volume_factory(shape=(1, 8, 8)), tmp_path)
    assert pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
