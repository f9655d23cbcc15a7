"""Fuzz ``priorsync match`` with damaged and unusual inputs through the real CLI.

About 80 inputs (truncations at many offsets, random bytes, wrong lengths,
huge declared sizes, odd values, mixed series, NIfTI variants) are made here,
then ``fuzz_runner.py`` runs ``priorsync match CASE PRIOR --json`` on each in
a child process. For every input the test asserts: exit code 0 or 2, a
one-line reason when refused, no traceback or library chatter, peak resident
memory under 1.5 GB, and that it finished within the runner's time limit.
"""

from __future__ import annotations

import json
import shutil
import struct
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from io_helpers import REPO, run_python
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
    nifti_claiming,
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
from pydicom.uid import JPEG2000Lossless, JPEGLosslessSV1, RLELossless

from app.io.dicom_write import write_enhanced_ct, write_volume_file

RUNNER = Path(__file__).with_name("fuzz_runner.py")
PEAK_RSS_LIMIT_KB = 1_500_000  # 1.5 GB
HARNESS_TIMEOUT_S = 900  # the whole batch; each case has the runner's own limit


def _edits() -> dict[str, object]:
    """Header edits of one slice: wrong lengths and odd values."""

    def setter(**values):
        def edit(ds):
            for key, value in values.items():
                setattr(ds, key, value)

        return edit

    def short_pixels(ds):
        ds.PixelData = ds.PixelData[:-100]

    def raw(tag, vr, value: bytes):
        # Bytes patched into the written file (pydicom refuses to write such values).
        return ("raw", tag, vr, value)

    return {
        "rows_1": setter(Rows=1),
        "rows_65535": setter(Rows=65535),
        "columns_0": setter(Columns=0),
        "bits_allocated_8": setter(BitsAllocated=8, BitsStored=8, HighBit=7),
        "bits_allocated_32": setter(BitsAllocated=32, BitsStored=32, HighBit=31),
        "bits_stored_20": setter(BitsStored=20, HighBit=19),
        "frames_1000": setter(NumberOfFrames=1000),
        "samples_3": setter(SamplesPerPixel=3),
        "pixels_short": short_pixels,
        "ipp_text": raw(0x00200032, "DS", b"abc\\def\\ghi "),
        "pixel_spacing_zero": raw(0x00280030, "DS", b"0\\0 "),
        "pixel_spacing_nan": raw(0x00280030, "DS", b"nan\\1 "),
        "slope_inf": raw(0x00281053, "DS", b"inf "),
        "iop_zero": raw(0x00200037, "DS", b"0\\0\\0\\0\\0\\0 "),
        "iop_parallel": raw(0x00200037, "DS", b"1\\0\\0\\1\\0\\0 "),
        "instance_number_text": raw(0x00200013, "IS", b"x "),
        "thickness_negative": raw(0x00180050, "DS", b"-5 "),
        "rows_wrong_vr": raw(0x00280010, "UN", b"\x00\x02\x00"),
    }


def patch_element(path: Path, tag: int, vr: str, value: bytes) -> Path:
    """Replace one element of an explicit-VR little-endian file by raw bytes."""
    data = path.read_bytes()
    elem = pydicom.dcmread(path, force=True).get_item(tag)
    long_form = elem.VR in ("OB", "OW", "UN", "SQ", "UT", "UC", "UR", "OF", "OD", "OL", "OV")
    start = elem.value_tell - (12 if long_form else 8)
    end = elem.value_tell + elem.length
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr.encode()
    if vr in ("UN", "OB", "OW"):
        head += b"\0\0" + struct.pack("<I", len(value))
    else:
        head += struct.pack("<H", len(value))
    path.write_bytes(data[:start] + head + value + data[end:])
    return path


def _build_cases(root: Path) -> tuple[list[tuple[str, Path, int | None]], Path]:
    """``(name, current, expected exit code or None)`` for every case, and the prior."""
    src = root / "src"
    src.mkdir()
    prior = write_volume_file(base_volume(seed=2), root / "prior.nii.gz")
    base = one_slice(src, name="base.dcm")
    rle = one_slice(src, RLELossless, name="rle.dcm")
    j2k = one_slice(src, JPEG2000Lossless, name="j2k.dcm")
    cases: list[tuple[str, Path, int | None]] = []

    def add(name: str, path: Path, expected: int | None = None) -> None:
        cases.append((name, path, expected))

    def fresh(name: str) -> Path:
        folder = root / name
        folder.mkdir()
        return folder

    size = base.stat().st_size
    for keep in (0, 1, 64, 128, 130, 132, 200, 400, 800, 1200, size // 2, size - 1000, size - 2):
        add(f"trunc_base_{keep}", truncated(base, fresh(f"tb{keep}") / "x.dcm", keep), 2)
    for keep in (200, 600, rle.stat().st_size // 2, rle.stat().st_size - 10):
        add(f"trunc_rle_{keep}", truncated(rle, fresh(f"tr{keep}") / "x.dcm", keep), 2)
    for keep in (400, j2k.stat().st_size // 2, j2k.stat().st_size - 10):
        add(f"trunc_j2k_{keep}", truncated(j2k, fresh(f"tj{keep}") / "x.dcm", keep), 2)

    rng = np.random.default_rng(16)
    for n in (1, 17, 131, 4096, 100_000):
        path = fresh(f"rand{n}") / "x.dcm"
        path.write_bytes(rng.bytes(n))
        add(f"random_{n}", path, 2)
    path = fresh("rand_dicm") / "x.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM" + rng.bytes(2000))
    add("random_after_preamble", path, 2)
    path = fresh("rand_tail") / "x.dcm"
    path.write_bytes(base.read_bytes()[:1200] + rng.bytes(9000))
    add("random_after_header", path, 2)
    for n in (64, 10_000):
        path = fresh(f"zeros{n}") / "x.dcm"
        path.write_bytes(b"\0" * n)
        add(f"zeros_{n}", path, 2)
    path = fresh("text") / "notes.txt"
    path.write_text("not an image\n" * 50)
    add("text_file", path, 2)
    path = fresh("png") / "x.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + rng.bytes(500))
    add("png_magic", path, 2)
    path = fresh("gzrand") / "x.nii.gz"
    path.write_bytes(b"\x1f\x8b" + rng.bytes(3000))
    add("random_nii_gz", path, 2)
    path = fresh("emptynii") / "x.nii"
    path.write_bytes(b"")
    add("empty_nii", path, 2)
    path = fresh("emptydcm") / "x.dcm"
    path.write_bytes(b"")
    add("empty_dcm", path, 2)

    # Header edits: half alone (a single odd slice is refused), half beside a series.
    for i, (name, edit) in enumerate(_edits().items()):
        folder = fresh(f"edit_{name}")
        if i % 2 == 0:
            series_folder(folder)
        if isinstance(edit, tuple):
            _, tag, vr, value = edit
            patch_element(edited_slice(folder, lambda ds: None, "odd.dcm"), tag, vr, value)
        else:
            edited_slice(folder, edit, "odd.dcm")
        add(f"edit_{'in_series' if i % 2 == 0 else 'alone'}_{name}", folder, 2 if i % 2 else 0)

    add("huge_rle", rle_claiming_huge(fresh("huge_rle")), 2)
    add("huge_j2k", j2k_claiming_huge(fresh("huge_j2k")), 2)
    add("rle_8000", rle_claiming_huge(fresh("rle8000"), size=8000), 2)
    add("enhanced_1e6_frames", enhanced_claiming_frames(fresh("enh1e6"), 1_000_000, "x.dcm"), 2)
    plain = nifti_from_base(src, "plain.nii")
    add("nifti_65535_cubed", nifti_claiming(plain, fresh("n65535") / "x.nii", (32767,) * 3), 2)
    add("nifti_2000_cubed", nifti_claiming(plain, fresh("n2000") / "x.nii", (2000,) * 3), 2)
    add("nifti_negative_dim", nifti_claiming(plain, fresh("nneg") / "x.nii", (64, -64, 24)), 2)

    folder = fresh("charset")
    for p in series_folder(folder):
        with_unknown_charset(p)
    add("unknown_charset_series", folder, 0)

    add("axial_plus_coronal", axial_plus_coronal(fresh("mixed")), 0)
    add("two_reconstructions", two_reconstructions(fresh("recons")), 0)
    add("two_slices_enhanced", short_enhanced(fresh("short")), 2)
    add("single_slice", one_slice(fresh("single")), 2)
    folder = fresh("duplicates")
    for p in series_folder(folder):
        shutil.copy(p, p.with_name("copy_" + p.name))
    add("duplicate_files", folder, 0)
    folder = fresh("gaps")
    for p in sorted(series_folder(folder, naming="index"))[5:8]:
        p.unlink()
    add("missing_slices", folder, 0)
    add("deflated_series", deflated_series(fresh("deflate")), 0)
    add("big_endian_series", big_endian_series(fresh("bigendian")), 0)
    folder = fresh("rle_series")
    series_folder(folder, transfer_syntax=RLELossless)
    add("rle_series", folder, 0)
    folder = fresh("j2k_series")
    series_folder(folder, transfer_syntax=JPEG2000Lossless)
    add("j2k_series", folder, 0)
    folder = fresh("jpegll_series")
    series_folder(folder, transfer_syntax=JPEGLosslessSV1)
    add("jpeg_lossless_series", folder, 0)
    folder = fresh("rle_series_cut")
    for p in series_folder(folder, transfer_syntax=RLELossless):
        truncated(p, p, -300)
    add("rle_series_all_cut", folder, 2)
    add("enhanced_ct", write_enhanced_ct(base_volume(), fresh("enh") / "x.dcm"), 0)
    add("dicomdir", dicomdir_folder(fresh("cd")), 0)
    add("dicomdir_without_images", dicomdir_folder(fresh("cd_empty"), keep_images=False), 2)

    voxels = base_volume().voxels
    floats = voxels.astype(np.float32)
    floats[2:4, 10:20, 10:20] = np.nan
    floats[5, 5, 5] = np.inf
    add("nifti_base", nifti_from_base(fresh("nbase"), "x.nii.gz"), 0)
    add("nifti_nan", nifti(fresh("nnan"), "x.nii.gz", floats), 0)
    add("mha_nan", nifti(fresh("mnan"), "x.mha", floats), 0)
    good = nifti_from_base(src, "good.nii.gz")
    add("nifti_truncated_gz", truncated_gzip(good, fresh("ncut") / "x.nii.gz"), 2)
    add("nifti_header_only", nifti_header_only(plain, fresh("nhdr") / "x.nii"), 2)
    add("nifti_pixdim_0", nifti_with_pixdim(plain, fresh("npix") / "x.nii", (5.0, 0.0, 5.0)), 2)
    wide = voxels.astype(np.int32)
    wide[3, 3, 3] = 100_000
    add("nifti_int32_wide", nifti(fresh("nwide"), "x.nii.gz", wide), 0)
    add("nifti_2d", nifti(fresh("n2d"), "x.nii", voxels[0]), 2)
    image = sitk.JoinSeries([sitk.GetImageFromArray(voxels)] * 2)
    image.SetSpacing((5.0, 5.0, 5.0, 1.0))
    path = fresh("n4d") / "x.nii.gz"
    sitk.WriteImage(image, str(path))
    add("nifti_4d_two_volumes", path, 2)
    return cases, prior


@pytest.fixture(scope="module")
def fuzz_results(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    with warnings.catch_warnings():
        # pydicom warns about the odd values written on purpose.
        warnings.simplefilter("ignore")
        cases, prior = _build_cases(root)
    manifest = root / "manifest.json"
    manifest.write_text(
        json.dumps([{"name": n, "current": str(p), "prior": str(prior)} for n, p, _ in cases])
    )
    results = root / "results.jsonl"
    proc = run_python(
        [str(RUNNER), str(manifest), str(results)],
        HARNESS_TIMEOUT_S,
        {"PYTHONPATH": str(REPO), "PYTHONWARNINGS": "default"},
    )
    records = (
        {r["name"]: r for r in map(json.loads, results.read_text().splitlines())}
        if results.exists()
        else {}
    )
    return cases, records, proc


def test_there_are_at_least_60_inputs_and_all_ran(fuzz_results):
    cases, records, proc = fuzz_results
    assert len(cases) >= 60
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert set(records) == {name for name, _, _ in cases}


def _allowed_line(line: str) -> bool:
    return line.startswith(("priorsync match", "INFO app."))


def test_every_input_exits_cleanly_with_one_reason_and_bounded_memory(fuzz_results):
    cases, records, _ = fuzz_results
    problems = []
    for name, _, expected in cases:
        r = records.get(name)
        if r is None:
            problems.append(f"{name}: no result (the runner died on it)")
            continue
        lines = [ln for ln in r["stderr"].splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("priorsync match: error:")]
        if r["timed_out"]:
            problems.append(f"{name}: ran past the time limit")
        if r["rc"] not in (0, 2):
            problems.append(f"{name}: exit {r['rc']}: {r['stderr'][-500:]}")
        if expected is not None and r["rc"] != expected:
            problems.append(f"{name}: exit {r['rc']}, expected {expected}: {errors or lines[-3:]}")
        if "Traceback" in r["stderr"]:
            problems.append(f"{name}: traceback")
        if [ln for ln in lines if not _allowed_line(ln)]:
            problems.append(f"{name}: stray output {[ln for ln in lines if not _allowed_line(ln)]}")
        if r["rc"] == 2 and len(errors) != 1:
            problems.append(f"{name}: {len(errors)} error lines")
        if r["rc"] == 0:
            doc = json.loads(r["stdout"])
            if not doc["matches"] or "skipped" not in doc:
                problems.append(f"{name}: incomplete JSON")
        if r["peak_rss_kb"] >= PEAK_RSS_LIMIT_KB:
            problems.append(f"{name}: peak RSS {r['peak_rss_kb'] / 1e6:.2f} GB")
    assert not problems, "\n".join(problems)
