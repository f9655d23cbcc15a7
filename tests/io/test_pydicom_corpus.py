"""Real files of other writers: pydicom's bundled test files and the ``pydicom-data`` package.

Every file pydicom itself decodes must load through our scanner and loader
with the same pixels (after the modality LUT) and the same geometry, or be
refused for a reason that its header confirms (colour, localizer, no
position, non-image object, ...). Files pydicom cannot decode must still be
skipped cleanly, with a reason.

The files come from installed packages (``pydicom`` and ``pydicom-data``, in
the ``test`` extra); nothing is downloaded at test time: the folders are
globbed directly instead of through ``get_testdata_file``, which would fetch
missing files from the network.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest

from app.core.imaging import apply_rescale
from app.io.dicom_header import NON_IMAGE_MODALITIES
from app.io.limits import MAX_MATRIX
from app.io.registry import reader_for_kind
from app.io.scan import scan_paths

_SKIP_SUFFIXES = {".json", ".py", ".txt", ".md", ".gz", ".bz2", ".xml", ".pyc", ".zip", ".png"}


def _corpus() -> list[Path]:
    roots = [Path(pydicom.data.DATA_ROOT) / "test_files"]
    spec = importlib.util.find_spec("data_store")  # the pydicom-data package
    if spec is not None and spec.origin is not None:
        roots.append(Path(spec.origin).parent / "data")
    files = []
    for root in roots:
        files += [
            p
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix.lower() not in _SKIP_SUFFIXES and p.name != "DICOMDIR"
        ]
    return files


CORPUS = _corpus()


def _id(path: Path) -> str:
    return ("pydicom-data/" if "data_store" in path.parts else "pydicom/") + path.name


def test_pydicom_data_is_installed():
    """The larger corpus comes from the ``pydicom-data`` test dependency."""
    assert importlib.util.find_spec("data_store") is not None, (
        "pip install pydicom-data (in the test extra)"
    )
    assert len(CORPUS) > 200


def _reference(path: Path):
    """pydicom's own reading: (dataset, pixels) or None when pydicom cannot decode it."""
    try:
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array
    except Exception:
        return None
    return ds, pixels


def _justified_refusal(ds: pydicom.Dataset, pixels: np.ndarray, reason: str) -> bool:
    """Whether the file's own header confirms the reason we gave for refusing it."""
    checks = [
        (ds.get("SamplesPerPixel", 1) != 1, "colour"),
        (
            str(ds.get("PhotometricInterpretation", "")).upper()
            not in ("", "MONOCHROME1", "MONOCHROME2"),
            "colour",
        ),
        ("LOCALIZER" in [str(v).upper() for v in ds.get("ImageType", [])], "localizer"),
        (str(ds.get("Modality", "")).upper() in NON_IMAGE_MODALITIES, "not an image"),
        (
            "ImagePositionPatient" not in ds and "PerFrameFunctionalGroupsSequence" not in ds,
            "ImagePosition",
        ),
        (
            "ImageOrientationPatient" not in ds and "SharedFunctionalGroupsSequence" not in ds,
            "ImageOrientation",
        ),
        (
            int(ds.get("NumberOfFrames", 1) or 1) > 1
            and "PerFrameFunctionalGroupsSequence" not in ds,
            "multi-frame image without per-frame positions",
        ),
        (max(ds.get("Rows", 0), ds.get("Columns", 0)) > MAX_MATRIX, "too large"),
        ("FloatPixelData" in ds or "DoubleFloatPixelData" in ds, "float pixel data"),
    ]
    return any(condition and fragment.lower() in reason.lower() for condition, fragment in checks)


@pytest.mark.filterwarnings("ignore")  # the corpus is full of non-conformant values
@pytest.mark.parametrize("path", CORPUS, ids=_id)
def test_file_loads_like_pydicom_or_is_refused_with_its_reason(path):
    result = scan_paths([path])
    reasons = [s.reason for s in result.skipped]
    assert result.series or reasons, "a file must be used or skipped with a reason"
    reference = _reference(path)
    if reference is None:
        return  # pydicom cannot decode it either: a clean skip (checked above) is all we owe
    ds, pixels = reference
    if not result.series:
        assert len(reasons) == 1
        assert _justified_refusal(ds, pixels, reasons[0]), f"refused: {reasons[0]}"
        return
    if pixels.ndim == 2 or int(ds.get("NumberOfFrames", 1) or 1) == 1 and pixels.ndim == 2:
        pixels = pixels[np.newaxis]
    for ref in result.series:
        volume = reader_for_kind(ref.kind).load(ref, None, None)
        normal = np.cross(ref.slices[0].orientation[:3], ref.slices[0].orientation[3:])
        ordered = sorted(ref.slices, key=lambda s: float(np.dot(s.position, normal)))
        assert volume.voxels.shape == (len(ordered), *pixels.shape[1:3])
        for i, s in enumerate(ordered):
            frame = pixels[s.frame]
            if "PerFrameFunctionalGroupsSequence" not in ds:
                slope = float(ds.get("RescaleSlope", 1) or 1)
                intercept = float(ds.get("RescaleIntercept", 0) or 0)
                assert (s.slope, s.intercept) == (slope, intercept)
                assert s.position == pytest.approx([float(v) for v in ds.ImagePositionPatient])
                assert s.orientation == pytest.approx(
                    [float(v) for v in ds.ImageOrientationPatient]
                )
                if "PixelSpacing" in ds:
                    assert s.pixel_spacing == pytest.approx([float(v) for v in ds.PixelSpacing])
            expected = apply_rescale(frame, s.slope, s.intercept)
            np.testing.assert_array_equal(volume.voxels[i], expected, err_msg=f"frame {s.frame}")
        np.testing.assert_allclose(volume.geometry.origin, ordered[0].position)
        row_dir = np.asarray(ordered[0].orientation[:3])
        np.testing.assert_allclose(
            volume.geometry.direction[:, 0], row_dir / np.linalg.norm(row_dir), atol=1e-9
        )
        np.testing.assert_allclose(
            volume.geometry.spacing[:2], ordered[0].pixel_spacing[::-1], rtol=1e-9
        )
