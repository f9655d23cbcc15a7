"""Issue 16: what files from other writers do to the readers, item by item.

Each test makes its input on the fly (``odd_inputs``) and checks that the
readers neither crash, blow up, nor invent data, and that the reason given is
the real one.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
from io_helpers import run_python
from odd_inputs import (
    axial_plus_coronal,
    base_volume,
    big_endian_series,
    deflated_series,
    dicomdir_folder,
    edited_slice,
    enhanced_claiming_frames,
    j2k_claiming_huge,
    nifti,
    nifti_from_base,
    nifti_header_only,
    nifti_with_pixdim,
    one_slice,
    rle_claiming_huge,
    series_folder,
    short_enhanced,
    truncated,
    truncated_gzip,
    two_reconstructions,
    with_unknown_charset,
)
from pydicom.uid import RLELossless

from app.io.load import LoadError, load_volume, pick_main_series
from app.io.scan import scan_paths


def _reasons(path: Path) -> dict[str, str]:
    return {s.path.name: s.reason for s in scan_paths([path]).skipped}


def _python(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return run_python(["-c", textwrap.dedent(code)], timeout)


# --- 1. one non-axial image beside an axial series -----------------------------------


def test_main_series_is_the_axial_stack_not_the_coronal_key_image(tmp_path):
    folder = axial_plus_coronal(tmp_path / "mixed")
    result = scan_paths([folder])
    ref = pick_main_series(result)
    assert ref is not None and ref.n_planes == 24
    assert load_volume(folder).voxels.shape == (24, 64, 64)


def test_opencv_is_never_given_an_empty_slice():
    # In a subprocess: before the guard, OpenCV died with SIGSEGV.
    proc = _python(
        """
        import numpy as np
        from app.core.volume import Geometry, SeriesInfo, Volume
        from app.ml.runtime.preprocess import body_centroids, prepare_slices
        v = Volume(voxels=np.zeros((3, 1, 256), np.int16),
                   geometry=Geometry(origin=(0, 0, 0), spacing=(0.5, 0.5, 1.0),
                                     direction=np.eye(3)),
                   info=SeriesInfo())
        print(body_centroids(v, [0, 1]).shape)
        try:
            prepare_slices(v)
        except ValueError as exc:
            print("refused:", exc)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "(2, 2)" in proc.stdout and "refused: slices of 1x256 pixels" in proc.stdout


def test_match_refuses_a_single_coronal_image_cleanly():
    from odd_inputs import volume_of

    from app.ml.anatomy.match import MatchError, check_matchable

    with pytest.raises(MatchError, match="1x256 pixels"):
        check_matchable(volume_of(np.full((256, 1, 256), 40, np.int16)), "CURRENT")


# --- 2. declared sizes far beyond the data -------------------------------------------


@pytest.mark.parametrize("maker", [rle_claiming_huge, j2k_claiming_huge])
def test_huge_declared_matrix_is_refused_before_decoding(tmp_path, maker):
    path = maker(tmp_path)
    assert path.stat().st_size < 200_000
    reasons = _reasons(path)
    assert "too large" in reasons[path.name] and "65535x65535" in reasons[path.name]


def test_rle_claiming_more_than_its_bytes_can_hold_is_corrupt(tmp_path):
    path = rle_claiming_huge(tmp_path, size=8000)
    assert "more than a" in _reasons(path)[path.name]


def test_enhanced_ct_claiming_a_million_frames_is_refused(tmp_path):
    path = enhanced_claiming_frames(tmp_path, 1_000_000, "frames.dcm")
    assert "too large" in _reasons(path)[path.name]


def test_huge_rle_costs_no_memory_in_the_loader(tmp_path):
    path = rle_claiming_huge(tmp_path)
    # The peak is read from /proc (VmHWM, this process's own memory map):
    # ru_maxrss would include the pytest parent's size, kept across fork + exec.
    proc = _python(
        f"""
        import resource
        from pathlib import Path
        from app.io.load import LoadError, load_volume
        try:
            load_volume({str(path)!r})
        except LoadError as exc:
            print("refused:", exc)
        status = Path("/proc/self/status")
        if status.exists():
            line = next(ln for ln in status.read_text().splitlines() if ln.startswith("VmHWM"))
            print("peak_kb", line.split()[1])
        else:
            print("peak_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "too large" in proc.stdout
    peak_kb = int(proc.stdout.split("peak_kb")[1])
    assert peak_kb < 1_500_000


# --- 3. big endian and deflate --------------------------------------------------------


@pytest.mark.parametrize("writer", [big_endian_series, deflated_series])
def test_big_endian_and_deflated_series_load_exactly(tmp_path, writer):
    folder = writer(tmp_path / "series")
    original = base_volume()
    loaded = load_volume(folder)
    np.testing.assert_array_equal(loaded.voxels, original.voxels)
    np.testing.assert_allclose(loaded.geometry.origin, original.geometry.origin)
    np.testing.assert_allclose(loaded.geometry.spacing, original.geometry.spacing)


# --- 4 .. 8: silently wrong data ------------------------------------------------------


@pytest.mark.parametrize("name", ["nan.nii", "nan.nii.gz", "nan.mha", "nan.nrrd"])
def test_nan_and_inf_become_air_with_a_warning_in_every_format(tmp_path, name):
    voxels = base_volume().voxels.astype(np.float32)
    voxels[3, 10, 10] = np.nan
    voxels[4, 11, 12] = np.inf
    voxels[5, 12, 13] = -np.inf
    loaded = load_volume(nifti(tmp_path, name, voxels))
    assert any("3 non-finite voxel" in w for w in loaded.warnings), loaded.warnings
    # Display orientation of an identity-direction file is the file order.
    assert loaded.voxels[3, 10, 10] == loaded.voxels[4, 11, 12] == -1024
    assert loaded.voxels[5, 12, 13] == -1024
    assert loaded.voxels[3, 10, 11] == voxels[3, 10, 11]


def test_truncated_gzip_and_header_only_nifti_are_refused(tmp_path):
    good = nifti_from_base(tmp_path, "good.nii.gz")
    cut = truncated_gzip(good, tmp_path / "cut.nii.gz", 0.5)
    plain = nifti_from_base(tmp_path, "plain.nii")
    header = nifti_header_only(plain, tmp_path / "header.nii")
    short = truncated(plain, tmp_path / "short.nii", -5000)
    for path, fragment in ((cut, "truncated"), (header, "header only"), (short, "truncated")):
        with pytest.raises(LoadError, match=fragment):
            load_volume(path)


def test_nifti_without_voxel_size_is_refused_not_given_1_mm(tmp_path):
    plain = nifti_from_base(tmp_path, "plain.nii")
    zero = nifti_with_pixdim(plain, tmp_path / "zero.nii", (5.0, 5.0, 0.0))
    with pytest.raises(LoadError, match=r"no voxel size .*pixdim\[3\]"):
        load_volume(zero)


def test_pixel_data_longer_than_the_header_says_is_refused(tmp_path):
    def eight_bits(ds):
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7

    path = edited_slice(tmp_path, eight_bits, "bits8.dcm")
    assert "does not match its header" in _reasons(path)[path.name]


def test_int32_values_beyond_int16_warn(tmp_path):
    voxels = base_volume().voxels.astype(np.int32)
    voxels[2, 5, 5] = 70_000
    loaded = load_volume(nifti(tmp_path, "wide.nii.gz", voxels))
    assert any("1 voxel(s) outside the int16 range" in w for w in loaded.warnings)


# --- 9. two reconstructions under one UID --------------------------------------------


def test_two_reconstructions_under_one_uid_are_two_series(tmp_path):
    result = scan_paths([two_reconstructions(tmp_path / "recons")])
    assert sorted(r.n_planes for r in result.series) == [20, 40]
    assert {r.info.slice_thickness for r in result.series} == {1.5, 3.0}
    for ref in result.series:
        assert not any("missing" in w for w in load_volume_ref(ref).warnings)


def load_volume_ref(ref):
    from app.io.load import load_series

    return load_series(ref)


# --- 10. too short to match -----------------------------------------------------------


def test_two_slices_are_not_matched(tmp_path):
    from app.ml.anatomy.match import MatchError, check_matchable

    volume = load_volume(short_enhanced(tmp_path, 2))
    with pytest.raises(MatchError, match="covers only 10 mm"):
        check_matchable(volume, "CURRENT")


# --- 11 .. 14: messages ---------------------------------------------------------------


def test_dicomdir_opens_what_it_references(tmp_path):
    dicomdir = dicomdir_folder(tmp_path / "cd")
    assert load_volume(dicomdir).voxels.shape == (24, 64, 64)
    reasons = _reasons(tmp_path / "cd")
    assert "the 24 file(s) it lists were read" in reasons["DICOMDIR"]


def test_dicomdir_without_its_images_says_so(tmp_path):
    dicomdir_folder(tmp_path / "cd", keep_images=False)
    with pytest.raises(LoadError, match="DICOMDIR lists 24 file"):
        load_volume(tmp_path / "cd")


def test_truncated_header_and_zero_bytes_are_named(tmp_path):
    src = one_slice(tmp_path)
    cut = truncated(src, tmp_path / "cut.dcm", 300)
    (tmp_path / "zeros.dcm").write_bytes(b"\0" * 64)
    reasons = _reasons(tmp_path)
    assert "truncated" in reasons["cut.dcm"]
    assert "zero" in reasons["zeros.dcm"] and "text" not in reasons["zeros.dcm"]
    assert cut.exists()


def test_unlistable_folder_is_named(tmp_path, monkeypatch):
    series_folder(tmp_path / "locked")
    real = os.scandir

    def scandir(path="."):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(LoadError, match=r"permission denied .*locked"):
        load_volume(tmp_path / "locked")


def test_decode_failures_name_their_cause(tmp_path):
    from app.io.dicom_load import decode_reason

    folder = tmp_path / "rle"
    paths = series_folder(folder, transfer_syntax=RLELossless)
    for p in paths:
        truncated(p, p, -200)  # cut inside the last fragment
    with pytest.raises(LoadError) as info:
        load_volume(folder)
    assert "corrupt DICOM header" not in str(info.value)
    assert "RLE Lossless" in str(info.value)
    assert decode_reason(NotImplementedError("x"), "1.2.840.10008.1.2.4.110").startswith(
        "unsupported codec"
    )


# --- 15, 16: the CLI's report ---------------------------------------------------------


def _cli_match(current: Path, prior: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_python(
        ["-m", "app.cli", "match", str(current), str(prior), "--no-cache", *extra],
        300,
        {"PYTHONWARNINGS": "default"},
    )


def test_match_reports_skipped_files_and_no_library_chatter(tmp_path):
    current = tmp_path / "current"
    series_folder(current, seed=1)
    # Unknown character set in every slice: pydicom warns once per file.
    for p in sorted(current.iterdir()):
        with_unknown_charset(p)
    (current / "empty.dcm").write_bytes(b"")
    (current / "notes.txt").write_text("scanner notes\n")
    (current / "random.bin").write_bytes(np.random.default_rng(0).bytes(5000))
    truncated(one_slice(tmp_path), current / "cut.dcm", 700)
    prior = tmp_path / "prior"
    series_folder(prior, seed=2)
    proc = _cli_match(current, prior, "--json")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "Warning" not in proc.stderr
    assert "CURRENT: 4 file(s) skipped" in proc.stderr
    assert len(proc.stderr.splitlines()) <= 8, proc.stderr
    skipped = json.loads(proc.stdout)["skipped"]
    assert {s["path"].rsplit("/", 1)[-1] for s in skipped} == {
        "empty.dcm",
        "notes.txt",
        "random.bin",
        "cut.dcm",
    }
    assert all(s["input"] == "CURRENT" and s["reason"] for s in skipped)
