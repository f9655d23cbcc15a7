"""``priorsync search-sketch``: ranked hits as JSON, plain similar-slice search, clear errors."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from engine_helpers import phantom_volume

from app.cli import main
from app.commands.search_sketch import EXIT_INPUT
from app.core.volume import SeriesInfo
from app.io.dicom_write import write_dicom_series


def _patient(seed: int, name: str, lesion: bool):
    vol = phantom_volume(n_slices=8, seed=seed, level0=125.0)
    if lesion:  # a ~30 mm soft-tissue nodule in the right lung of slices 3-5
        y, x = np.mgrid[0:64, 0:64]
        nodule = (x - 20) ** 2 + (y - 31) ** 2 <= 6
        for k in (3, 4, 5):
            vol.voxels[k][nodule] = 40
    vol.info = SeriesInfo(patient_id=name, patient_name=name, study_date="20240101")
    return vol


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("search-folder")
    write_dicom_series(_patient(1, "P-TEMPLATE", False), root / "template")
    write_dicom_series(_patient(2, "P-LESION", True), root / "lesion")
    write_dicom_series(_patient(3, "P-CLEAN", False), root / "clean")
    return root


def _sketch(path, centre=(20, 31), radius=2.5):
    img = np.zeros((64, 64), np.uint8)
    cv2.circle(img, centre, int(radius), 255, -1)
    cv2.imwrite(str(path), img)
    return path


def _image(path, img):
    cv2.imwrite(str(path), img)
    return path


def _run(capsys, *args):
    rc = main(["search-sketch", *map(str, args), "--representation", "evidence"])
    return rc, capsys.readouterr()


def test_a_sketched_nodule_finds_the_slice_that_has_one(folder, tmp_path, toy_model_path, capsys):
    sketch = _sketch(tmp_path / "s.png")
    rc, out = _run(
        capsys,
        folder,
        "--template",
        folder / "template",
        "--slice",
        5,
        "--sketch",
        sketch,
        "--json",
        "--model",
        toy_model_path,
    )
    assert rc == 0, out.err
    result = json.loads(out.out)
    hits = result["hits"]
    assert hits and hits[0]["patient"] == "P-LESION"
    assert hits[0]["slice_index"] in (3, 4, 5)
    assert hits[0]["slice_number"] == hits[0]["slice_index"] + 1
    assert len(hits[0]["position_lps_mm"]) == 3 and hits[0]["abnormality_score"] > 0
    # The template's own lesion-free slice never comes first (it shows no lesion there).
    assert hits[0]["patient"] != "P-TEMPLATE"
    evidence = [h["abnormality_score"] > 0 for h in hits]
    assert evidence == sorted(evidence, reverse=True)


def test_without_a_sketch_it_finds_this_level_in_other_patients(folder, toy_model_path, capsys):
    rc, out = _run(
        capsys,
        folder,
        "--template",
        folder / "template",
        "--slice",
        4,
        "--json",
        "--model",
        toy_model_path,
        "--top",
        3,
    )
    assert rc == 0, out.err
    result = json.loads(out.out)
    assert result["weight"] == 0.0
    assert {h["patient"] for h in result["hits"]} <= {"P-LESION", "P-CLEAN"}
    assert result["hits"]


def test_table_output(folder, tmp_path, toy_model_path, capsys):
    rc, out = _run(
        capsys,
        folder,
        "--template",
        folder / "template",
        "--slice",
        5,
        "--sketch",
        _sketch(tmp_path / "t.png"),
        "--model",
        toy_model_path,
    )
    assert rc == 0
    assert "slice" in out.out and "LPS" in out.out


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: _image(p, np.zeros((64, 64), np.uint8)), "empty"),
        (lambda p: _sketch(p, centre=(1, 1), radius=1), "outside the body"),
        (lambda p: (p.write_bytes(b"not a png"), p)[1], "not a readable image"),
        (lambda p: _image(p, np.zeros((10, 10), np.uint8)), "10x10 pixels"),
    ],
)
def test_bad_sketches_are_one_line_messages(
    folder, tmp_path, toy_model_path, capsys, make, message
):
    sketch = make(tmp_path / "bad.png")
    rc, out = _run(
        capsys,
        folder,
        "--template",
        folder / "template",
        "--slice",
        5,
        "--sketch",
        sketch,
        "--model",
        toy_model_path,
    )
    assert rc == EXIT_INPUT
    assert message in out.err and "Traceback" not in out.err
    assert out.err.count("\n") == 1


def test_the_learned_pair_answers_the_same_query(folder, tmp_path, toy_model_path, capsys):
    rc = main(
        [
            "search-sketch",
            str(folder),
            "--template",
            str(folder / "template"),
            "--slice",
            "5",
            "--sketch",
            str(_sketch(tmp_path / "l.png")),
            "--json",
            "--model",
            str(toy_model_path),
        ]
    )
    out = capsys.readouterr()
    assert rc == 0, out.err
    result = json.loads(out.out)
    from app.ml.sketch.models import SketchModels

    # Without --weight the query uses the shipped pair's own default (chosen on validation).
    shipped = SketchModels.load(device="cpu").default_weight
    assert "priorsync-abnormality" in result["representation"]
    assert result["weight"] == pytest.approx(shipped)
    assert 1 <= len(result["hits"]) <= 10


def test_unreadable_archive_and_bad_slice(folder, tmp_path, toy_model_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    rc, out = _run(
        capsys,
        broken,
        "--template",
        folder / "template",
        "--slice",
        5,
        "--model",
        toy_model_path,
    )
    assert rc == EXIT_INPUT and "not a PriorSync archive" in out.err
    rc, out = _run(
        capsys,
        folder,
        "--template",
        folder / "template",
        "--slice",
        99,
        "--model",
        toy_model_path,
    )
    assert rc == EXIT_INPUT and "slices 1 to 8" in out.err
    rc, out = _run(
        capsys,
        tmp_path / "nowhere",
        "--template",
        folder / "template",
        "--slice",
        1,
    )
    assert rc == EXIT_INPUT and "does not exist" in out.err
