"""``priorsync locate``: JSON contract, bad input and exit codes (toy model, phantoms on disk)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from engine_helpers import phantom_volume

from app.cli import main
from app.commands.locate import parse_point, read_points_file
from app.commands.match import EXIT_INPUT, EXIT_MODEL
from app.io.dicom_write import write_dicom_series, write_volume_file

# The same anatomy in two frames of reference: prior z = current z + 760 mm
# (see engine_helpers.phantom_volume); the prior images current levels up to
# 40 + 49 * 5 = 285 mm only from 0 .. 237 mm of anatomy.
CUR = {"n_slices": 50, "spacing_z": 5.0, "z0": -300.0, "level0": 40.0, "seed": 1}
PRI = {"n_slices": 80, "spacing_z": 3.0, "z0": 500.0, "level0": 0.0, "seed": 2}
OFFSET = (PRI["z0"] - PRI["level0"]) - (CUR["z0"] - CUR["level0"])


@pytest.fixture(scope="module")
def pair_paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("pair")
    write_dicom_series(phantom_volume(**CUR), root / "current")
    write_volume_file(phantom_volume(**PRI), root / "prior.nii.gz")
    return root / "current", root / "prior.nii.gz"


def run_cli(args, capsys):
    code = main(["locate", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_entries_for_covered_and_uncovered_points(pair_paths, toy_model_path, capsys):
    current, prior = pair_paths
    inside = (10.0, -20.0, -200.0)  # level 140 mm: imaged by both
    above = (10.0, -20.0, -60.0)  # level 280 mm: beyond the prior
    outside = (900.0, 0.0, -200.0)  # beyond the current's field of view
    air = (-185.0, -185.0, -200.0)  # inside the field, outside the body
    args = [current, prior, "--json", "--model", toy_model_path, "--no-cache"]
    for p in (inside, above, outside, air):
        # "--point=..." because a leading minus would read as an option.
        args.append("--point=" + ",".join(str(v) for v in p))
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert len(doc) == 4
    keys = {"current_point", "prior_point", "confidence", "radius_mm", "in_coverage"}
    for entry in doc:
        assert keys <= set(entry)
    first = doc[0]
    assert first["in_coverage"] and len(first["prior_point"]) == 3
    assert first["current_point"] == list(inside)
    # The phantom has no in-plane motion: only the level moves, by OFFSET. Its
    # 6 mm pixels and smooth anatomy (and the toy model) make this a contract
    # check, not an accuracy one (that is tested on simulated pairs).
    expected = np.array(inside) + [0.0, 0.0, OFFSET]
    assert np.linalg.norm(np.array(first["prior_point"]) - expected) < 15.0
    for entry, words in zip(
        doc[1:], ("does not image", "outside the current volume", "outside the body"), strict=True
    ):
        assert entry["in_coverage"] is False and entry["prior_point"] is None
        assert words in entry["message"]


def test_table_from_a_points_file(pair_paths, toy_model_path, capsys, tmp_path):
    current, prior = pair_paths
    text = tmp_path / "points.txt"
    text.write_text("# two points\n10,-20,-200\n\n900 0 -180  # spaces work too\n")
    code, out, err = run_cli(
        [current, prior, "--points-file", text, "--model", toy_model_path, "--no-cache"], capsys
    )
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 3 and "prior point" in lines[0]
    assert "(10.0, -20.0, -200.0)" in lines[1] and "outside the current volume" in lines[2]


def test_points_file_formats(tmp_path):
    text = tmp_path / "points.txt"
    text.write_text("# comment\n1,2,3\n\n-4 5.5 6  # spaces\n")
    assert read_points_file(text) == [(1.0, 2.0, 3.0), (-4.0, 5.5, 6.0)]
    js = tmp_path / "points.json"
    js.write_text("[[1, 2, 3], [-4.5, 0, 1e2]]")
    assert read_points_file(js) == [(1.0, 2.0, 3.0), (-4.5, 0.0, 100.0)]
    assert parse_point("1, 2, 3") == (1.0, 2.0, 3.0)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("10,20\n", "line 1"),
        ("1,2,3\nfoo,2,3\n", "line 2"),
        ("[[1, 2, 3], [1, 2]]", "entry 2"),
        ("[1, 2", "not valid JSON"),
        ("1,2,inf\n", "finite"),
    ],
)
def test_malformed_points_file(pair_paths, toy_model_path, capsys, tmp_path, content, words):
    current, prior = pair_paths
    bad = tmp_path / "bad.txt"
    bad.write_text(content)
    code, out, err = run_cli(
        [current, prior, "--points-file", bad, "--model", toy_model_path, "--no-cache"], capsys
    )
    assert code == EXIT_INPUT and out == ""
    assert words in err and "Traceback" not in err and err.count("\n") == 1


def test_bad_inputs_and_exit_codes(pair_paths, toy_model_path, capsys, tmp_path):
    current, prior = pair_paths
    code, _, err = run_cli([current, prior, "--model", toy_model_path], capsys)
    assert code == EXIT_INPUT and "at least one point" in err
    code, _, err = run_cli([current, prior, "--point", "1,2", "--model", toy_model_path], capsys)
    assert code == EXIT_INPUT and "three coordinates" in err
    code, _, err = run_cli(
        [current, tmp_path / "missing", "--point", "1,2,3", "--model", toy_model_path], capsys
    )
    assert code == EXIT_INPUT and "does not exist" in err
    code, _, err = run_cli(
        [current, prior, "--point", "1,2,3", "--model", tmp_path / "none.onnx"], capsys
    )
    assert code == EXIT_MODEL
    code, _, err = run_cli(
        [current, prior, "--points-file", tmp_path / "nofile.txt", "--model", toy_model_path],
        capsys,
    )
    assert code == EXIT_INPUT and "cannot read points file" in err
