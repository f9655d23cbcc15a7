"""``priorsync export`` end to end on a small DICOM pair, with the shipped model."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from app.cli import main
from app.commands.exit_codes import EXIT_INPUT, EXIT_MODEL, EXIT_OUTPUT
from app.commands.export import parse_window
from app.core.imaging import PRESETS, Window, window_to_uint8
from app.core.volume import Volume
from app.export.png_text import read_text_chunks
from app.export.render import GAP
from app.io.dicom_write import write_dicom_series
from app.io.load import load_volume
from app.ml.runtime.model import default_model_path

pytestmark = pytest.mark.skipif(
    not default_model_path().is_file(),
    reason="the shipped embedding model models/priorsync-embed.onnx is missing from this checkout",
)

SHIFT = 3  # the prior starts 3 slices higher: current slice k shows prior slice k - 3


def shifted_copy(volume: Volume, study_date: str, first: int, z_shift: float, uid: str) -> Volume:
    """The same anatomy from slice ``first`` on, on another date, table position and frame."""
    info = replace(
        volume.info,
        study_date=study_date,
        study_uid=f"{uid}.1",
        series_uid=f"{uid}.2",
        frame_of_reference_uid=f"{uid}.3",
    )
    origin = volume.geometry.origin + np.array(
        [0.0, 0.0, first * volume.geometry.spacing[2] + z_shift]
    )
    return Volume(
        volume.voxels[first:].copy(), replace(volume.geometry, origin=origin), info, source=uid
    )


@pytest.fixture(scope="module")
def dicom_pair(tmp_path_factory, ct_factory):
    root = tmp_path_factory.mktemp("export-cli")
    current = ct_factory(shape=(24, 64, 64), spacing=(3.0, 3.0, 5.0), z0=-60.0, seed=1)
    # Same anatomy, other noise: identical slices would give the saliency nothing to show
    # (the similarity's gradient vanishes at its maximum).
    same_anatomy = ct_factory(shape=(24, 64, 64), spacing=(3.0, 3.0, 5.0), z0=-60.0, seed=2)
    prior = shifted_copy(same_anatomy, "20250110", SHIFT, 40.0, "1.2.826.0.1.3680043.8.498.77")
    older = shifted_copy(same_anatomy, "20230505", 0, -25.0, "1.2.826.0.1.3680043.8.498.78")
    paths = {}
    for name, vol in (("current", current), ("prior", prior), ("older", older)):
        write_dicom_series(vol, root / name)
        paths[name] = root / name
    return paths


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(["export", *map(str, args)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


def test_export_pair_end_to_end(dicom_pair, tmp_path, capsys, identifiers) -> None:
    out_png = tmp_path / "pair.png"
    rc, out, err = run_cli(
        capsys,
        dicom_pair["current"],
        dicom_pair["prior"],
        "--slice",
        12,
        "--out",
        out_png,
        "--window",
        "lung",
    )
    assert rc == 0, err
    assert f"wrote {out_png} (" in out
    assert "PRIOR 2025-01-10 Im 12/21, match score" in out

    current = load_volume(dicom_pair["current"])
    prior = load_volume(dicom_pair["prior"])
    image = cv2.cvtColor(cv2.imread(str(out_png)), cv2.COLOR_BGR2RGB)
    assert image.shape[1] == 64 + GAP + 64
    assert image.shape[0] > 64
    window = PRESETS["lung"]
    assert np.array_equal(image[:64, :64, 0], window_to_uint8(current.slice(12), window))
    assert np.array_equal(
        image[:64, 64 + GAP :, 1], window_to_uint8(prior.slice(12 - SHIFT), window)
    )

    data = out_png.read_bytes().lower()
    for value in identifiers.values():
        assert value.lower().encode() not in data
    assert sorted(dict(read_text_chunks(out_png.read_bytes()))) == ["Description", "Software"]


def test_existing_output_is_refused_without_overwrite(dicom_pair, tmp_path, capsys) -> None:
    out_png = tmp_path / "pair.png"
    out_png.write_bytes(b"precious")
    args = [dicom_pair["current"], dicom_pair["prior"], "--slice", 5, "--out", out_png]
    rc, _, err = run_cli(capsys, *args)
    assert rc == EXIT_OUTPUT
    assert f"{out_png} already exists (use --overwrite to replace it)" in err
    assert out_png.read_bytes() == b"precious"
    rc, _, err = run_cli(capsys, *args, "--overwrite")
    assert rc == 0, err
    assert out_png.read_bytes().startswith(b"\x89PNG")


def test_uncovered_slice_image_numbers_and_identifier_opt_in(dicom_pair, tmp_path, capsys) -> None:
    out_png = tmp_path / "edge.png"
    # Image 23 of 24 = slice index 1, below the prior's first slice.
    rc, out, err = run_cli(
        capsys,
        dicom_pair["current"],
        dicom_pair["prior"],
        "--image",
        23,
        "--out",
        out_png,
        "--include-identifiers",
    )
    assert rc == 0, err
    assert "CURRENT 2026-03-14 Im 23/24" in out
    assert "outside coverage (nearest slice)" in out
    assert dict(read_text_chunks(out_png.read_bytes()))["PatientID"] == "PID-58301947"


def test_several_priors_hang_newest_first(dicom_pair, tmp_path, capsys) -> None:
    out_png = tmp_path / "three.png"
    rc, out, err = run_cli(
        capsys,
        dicom_pair["current"],
        dicom_pair["older"],
        dicom_pair["prior"],
        "--slice",
        10,
        "--out",
        out_png,
        "--relative-dates",
    )
    assert rc == 0, err
    lines = [line.strip() for line in out.splitlines()[1:]]
    assert lines[0].startswith("CURRENT current Im 14/24")
    assert lines[1].startswith("PRIOR -428 days Im 14/21")
    assert lines[2].startswith("PRIOR -1044 days Im 14/24")
    assert cv2.imread(str(out_png)).shape[1] == 3 * 64 + 2 * GAP
    assert b"2025" not in out_png.read_bytes()


def test_overlay_colours_the_slices(dicom_pair, tmp_path, capsys) -> None:
    out_png = tmp_path / "overlay.png"
    rc, out, err = run_cli(
        capsys,
        dicom_pair["current"],
        dicom_pair["prior"],
        "--slice",
        12,
        "--out",
        out_png,
        "--overlay",
    )
    assert rc == 0, err
    image = cv2.imread(str(out_png))
    for x0 in (0, 64 + GAP):
        tile = image[:64, x0 : x0 + 64].astype(int)
        colourful = (np.abs(tile[..., 0] - tile[..., 2]) > 10).mean()
        assert colourful > 0.02  # not R = G = B any more


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (
            ["--slice", "24"],
            EXIT_INPUT,
            "--slice 24 is outside CURRENT, which has 24 slices (0..23)",
        ),
        (["--image", "0"], EXIT_INPUT, "--image 0 is outside CURRENT's images 1..24"),
        (["--slice", "1", "--window", "soft"], EXIT_INPUT, "unknown window 'soft'"),
        (["--slice", "1", "--window=10,0"], EXIT_INPUT, "the width must be positive"),
        (
            ["--slice", "1", "--model", "/nonexistent/model.onnx"],
            EXIT_MODEL,
            "model file not found",
        ),
    ],
)
def test_bad_arguments_get_a_message(dicom_pair, tmp_path, capsys, extra, code, message) -> None:
    out_png = tmp_path / "x.png"
    rc, _, err = run_cli(
        capsys, dicom_pair["current"], dicom_pair["prior"], "--out", out_png, *extra
    )
    assert rc == code
    assert message in err
    assert not out_png.exists()


def test_bad_paths_get_a_message(dicom_pair, tmp_path, capsys) -> None:
    cur, pri = dicom_pair["current"], dicom_pair["prior"]
    cases = [
        (
            [cur, tmp_path / "nope", "--slice", 1, "--out", tmp_path / "a.png"],
            "PRIOR",
            "does not exist",
        ),
        ([cur, pri, "--slice", 1, "--out", tmp_path / "a.jpg"], "", "supported formats are .png"),
        ([cur, pri, "--slice", 1, "--out", tmp_path / "no" / "a.png"], "", "does not exist"),
        ([cur, pri, "--slice", 1, "--out", tmp_path], "", "is a folder"),
    ]
    empty = tmp_path / "empty"
    empty.mkdir()
    cases.append(
        ([cur, empty, "--slice", 1, "--out", tmp_path / "b.png"], "cannot read PRIOR", "no files")
    )
    for args, first, second in cases:
        rc, _, err = run_cli(capsys, *args)
        assert rc == EXIT_INPUT, err
        assert first in err and second in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_parse_window() -> None:
    assert parse_window("Lung") == PRESETS["lung"]
    assert parse_window("-600,1500") == Window(-600, 1500)
    with pytest.raises(ValueError, match="unknown window"):
        parse_window("1,2,3")
