"""``priorsync index``: end to end through the CLI, its JSON report and its errors."""

from __future__ import annotations

import json

import pytest
from engine_helpers import phantom_volume

from app.cli import main
from app.commands.exit_codes import EXIT_INPUT, EXIT_MODEL
from app.io.dicom_write import write_dicom_series
from app.ml.sketch.archive import Archive


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-folder")
    write_dicom_series(phantom_volume(n_slices=6, seed=1), root / "p1")
    write_dicom_series(phantom_volume(n_slices=5, seed=2, z0=20.0), root / "p2")
    (root / "readme.txt").write_text("hello")
    return root


def _models(toy_model_path, toy_sketch_paths):
    abn, sk = toy_sketch_paths
    return [
        "--model",
        str(toy_model_path),
        "--abnormality-model",
        str(abn),
        "--sketch-model",
        str(sk),
    ]


def test_index_json_report(folder, tmp_path, toy_model_path, toy_sketch_paths, capsys):
    out = tmp_path / "arch"
    rc = main(
        [
            "index",
            str(folder),
            "--out",
            str(out),
            "--json",
            *_models(toy_model_path, toy_sketch_paths),
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    report = json.loads(captured.out)
    assert report["n_slices"] == 11 and report["n_series"] == 2
    assert report["out_dir"] == str(out)
    assert [s["path"].endswith("readme.txt") for s in report["skipped"]] == [True]
    assert Archive.open(out).counts["slices"] == 11


def test_index_table_lists_skipped_files(
    folder, tmp_path, toy_model_path, toy_sketch_paths, capsys
):
    rc = main(
        [
            "index",
            str(folder),
            "--out",
            str(tmp_path / "a"),
            *_models(toy_model_path, toy_sketch_paths),
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0
    assert "indexed 11 slices of 2 series" in captured.out
    assert "skipped" in captured.err and "readme.txt" in captured.err


def test_index_errors_are_messages_not_tracebacks(
    folder, tmp_path, toy_model_path, toy_sketch_paths, capsys
):
    models = _models(toy_model_path, toy_sketch_paths)
    assert main(["index", str(tmp_path / "nowhere"), *models]) == EXIT_INPUT
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "x.txt").write_text("x")
    assert main(["index", str(empty), "--out", str(tmp_path / "o"), *models]) == EXIT_INPUT
    bad = models.copy()
    bad[bad.index("--sketch-model") + 1] = str(tmp_path / "missing.onnx")
    assert main(["index", str(folder), *bad]) == EXIT_MODEL
    err = capsys.readouterr().err
    assert "does not exist" in err
    assert "no usable CT series" in err and "x.txt" in err
    assert "model file not found" in err
    assert "Traceback" not in err
