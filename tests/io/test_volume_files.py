"""NIfTI / NRRD / MetaImage reading, value conversion and display orientation."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from app.io.dicom_write import write_volume_file
from app.io.errors import LoadError
from app.io.load import load_volume
from app.io.scan import scan_paths

SUFFIXES = [".nii", ".nii.gz", ".nrrd", ".mha", ".mhd"]

# Direction matrices (columns = index axes in LPS): flipped, permuted and both.
DIRECTIONS = {
    "identity": np.eye(3),
    "ras-flipped": np.diag([-1.0, -1.0, 1.0]),  # what NIfTI files from RAS tools look like
    "coronal": np.column_stack([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]]),
    "sagittal-flipped": np.column_stack([[0, 1.0, 0], [0, 0, -1.0], [-1.0, 0, 0]]),
}


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_volume_file_formats(tmp_path, volume_factory, suffix):
    vol = volume_factory(shape=(5, 12, 14))
    path = write_volume_file(vol, tmp_path / f"ct{suffix}")
    result = scan_paths([tmp_path])
    assert [r.kind for r in result.series] == ["volume"]
    assert result.series[0].n_slices == 5
    assert result.skipped == [] or all(s.path.suffix == ".raw" for s in result.skipped)
    loaded = load_volume(path)
    np.testing.assert_array_equal(loaded.voxels, vol.voxels)
    np.testing.assert_allclose(loaded.geometry.origin, vol.geometry.origin, atol=1e-4)


@pytest.mark.parametrize("name", list(DIRECTIONS))
@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_any_axis_order_reads_back_in_display_orientation(
    tmp_path, volume_factory, same_hu_check, name, suffix
):
    vol = volume_factory(shape=(6, 10, 8), spacing=(0.7, 0.9, 2.0), direction=DIRECTIONS[name])
    path = write_volume_file(vol, tmp_path / f"v{suffix}")
    ref = scan_paths([path]).series[0]
    loaded = load_volume(path)
    np.testing.assert_allclose(loaded.geometry.direction, np.eye(3), atol=1e-6)
    assert ref.n_slices == loaded.n_slices
    same_hu_check(vol, loaded)


@pytest.mark.parametrize(
    ("dtype", "values", "expected"),
    [
        (np.float64, [-1000.4, 39.6, 40000.0], [-1000, 40, 32767]),
        (np.int32, [-70000, 12, 70000], [-32768, 12, 32767]),
        (np.uint8, [0, 200, 255], [0, 200, 255]),
    ],
)
def test_voxel_types_become_int16_hu(tmp_path, dtype, values, expected):
    image = sitk.GetImageFromArray(np.array(values, dtype=dtype).reshape(1, 1, 3))
    sitk.WriteImage(image, str(tmp_path / "v.nrrd"))
    loaded = load_volume(tmp_path / "v.nrrd")
    assert loaded.voxels.dtype == np.int16
    assert loaded.voxels.ravel().tolist() == expected


def test_bad_volume_files_are_skipped(tmp_path):
    (tmp_path / "broken.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    (tmp_path / "empty.nrrd").write_bytes(b"")
    sitk.WriteImage(sitk.Image(4, 5, sitk.sitkInt16), str(tmp_path / "flat.mha"))
    result = scan_paths([tmp_path])
    assert result.series == []
    reasons = {s.path.name: s.reason for s in result.skipped}
    assert reasons["broken.nii.gz"].startswith("unreadable volume file")
    assert reasons["empty.nrrd"] == "empty file (0 bytes)"
    assert reasons["flat.mha"] == "2-D image (a 3-D volume is needed)"
    with pytest.raises(LoadError, match="no image series found"):
        load_volume(tmp_path / "broken.nii.gz")
