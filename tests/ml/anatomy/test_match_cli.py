"""``priorsync match``: the engine end to end, its JSON contract and its error handling.

Fast tests use the toy model and phantoms written through the real writers;
the accuracy of the shipped model is checked on a simulated pair of a real CT
(when the shared data is present).
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from engine_helpers import head_volume, phantom_volume

from app.cli import main
from app.commands.exit_codes import EXIT_INPUT, EXIT_MODEL
from app.io.dicom_write import write_dicom_series, write_volume_file
from app.ml.anatomy.align import AlignParams
from app.ml.anatomy.index import IndexCache
from app.ml.anatomy.match import Matcher, MatchError

# Phantom pair: current shows levels 40 .. 285 mm, prior levels 0 .. 237 mm,
# in unrelated frames of reference (z0) and slice spacings.
CUR = {"n_slices": 50, "spacing_z": 5.0, "z0": -300.0, "level0": 40.0, "seed": 1}
PRI = {"n_slices": 80, "spacing_z": 3.0, "z0": 500.0, "level0": 0.0, "seed": 2}


def phantom_truth(current_z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prior z of each current slice's level, and whether the prior covers it."""
    level = CUR["level0"] + (current_z - CUR["z0"])
    prior_z = PRI["z0"] + (level - PRI["level0"])
    top = PRI["z0"] + (PRI["n_slices"] - 1) * PRI["spacing_z"]
    half = PRI["spacing_z"] / 2
    return prior_z, (prior_z >= PRI["z0"] - half) & (prior_z <= top + half)


@pytest.fixture(scope="module")
def pair_paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("pair")
    current = phantom_volume(**CUR)
    prior = phantom_volume(**PRI)
    write_dicom_series(current, root / "current")
    write_volume_file(prior, root / "prior.nii.gz")
    return root / "current", root / "prior.nii.gz"


def run_cli(args, capsys):
    code = main(["match", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_contract_and_accuracy(pair_paths, toy_model_path, capsys):
    current_dir, prior_file = pair_paths
    code, out, err = run_cli(
        [current_dir, prior_file, "--json", "--model", toy_model_path, "--no-cache"], capsys
    )
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc) == {"model", "matches", "skipped"}
    assert doc["model"].startswith("toy-test sha256:") and len(doc["model"].split(":")[1]) == 64
    matches = doc["matches"]
    assert [m["current_index"] for m in matches] == list(range(CUR["n_slices"]))
    keys = {
        "current_index",
        "current_number",
        "current_position",
        "prior_index",
        "prior_number",
        "prior_position",
        "score",
        "in_coverage",
    }
    for m in matches:
        assert set(m) == keys
        assert len(m["current_position"]) == 3 and isinstance(m["score"], float)
        # The viewer's image number sits beside the 0-based index: from the head, from 1.
        assert m["current_number"] == CUR["n_slices"] - m["current_index"]
        assert list(m)[:2] == ["current_index", "current_number"]
        if m["in_coverage"]:
            assert isinstance(m["prior_index"], int) and len(m["prior_position"]) == 3
            assert m["prior_number"] >= 1 and isinstance(m["prior_number"], int)
        else:
            assert m["prior_index"] is None and m["prior_position"] is None
            assert m["prior_number"] is None
    current_z = np.array([m["current_position"][2] for m in matches])
    np.testing.assert_allclose(current_z, CUR["z0"] + 5.0 * np.arange(50), atol=1e-3)
    truth, covered = phantom_truth(current_z)
    decided = np.array([m["in_coverage"] for m in matches])
    assert np.mean(decided == covered) >= 0.95
    got = np.array([m["prior_position"][2] for m in matches if m["in_coverage"]])
    err_mm = np.abs(got - truth[decided])
    # Prior slices are 3 mm apart: the nearest one is at most 1.5 mm off.
    assert np.mean(err_mm) <= 2.0
    assert np.max(err_mm) <= 6.0


def test_table_output(pair_paths, toy_model_path, capsys):
    code, out, _ = run_cli([*pair_paths, "--model", toy_model_path, "--no-cache"], capsys)
    assert code == 0
    assert "toy-test" in out and "offset" in out
    assert "CPUExecutionProvider" in out
    assert "not in prior" in out  # the current extends beyond the prior
    assert len(out.splitlines()) >= CUR["n_slices"]


def test_junk_beside_the_series_does_not_matter(pair_paths, toy_model_path, tmp_path, capsys):
    import shutil

    folder = tmp_path / "current"
    shutil.copytree(pair_paths[0], folder)
    (folder / "notes.txt").write_text("not an image")
    (folder / "DICOMDIR").write_bytes(b"\x00" * 300)
    (folder / "broken.dcm").write_bytes(b"DICM" + b"\x01" * 100)
    (folder / ".DS_Store").write_bytes(b"\x00\x01")
    code, out, err = run_cli([folder, pair_paths[1], "--json", "--model", toy_model_path], capsys)
    assert code == 0, err
    assert len(json.loads(out)["matches"]) == CUR["n_slices"]


def test_index_cache_is_used_on_the_second_run(pair_paths, toy_model_path, capsys, monkeypatch):
    from app.ml.runtime.model import EmbeddingModel

    code, first, _ = run_cli([*pair_paths, "--json", "--model", toy_model_path], capsys)
    assert code == 0
    calls = []
    # Every model pass of the engine goes through embed_slices.
    original = EmbeddingModel.embed_slices
    monkeypatch.setattr(
        EmbeddingModel,
        "embed_slices",
        lambda self, *a, **k: calls.append(1) or original(self, *a, **k),
    )
    code, second, _ = run_cli([*pair_paths, "--json", "--model", toy_model_path], capsys)
    assert code == 0 and calls == []
    assert json.loads(first) == json.loads(second)


def test_missing_model_file(pair_paths, tmp_path, capsys):
    code, out, err = run_cli([*pair_paths, "--model", tmp_path / "none.onnx"], capsys)
    assert code == EXIT_MODEL
    assert "model file not found" in err and "Traceback" not in err and out == ""


def test_corrupt_model_file(pair_paths, tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage" * 100)
    code, _, err = run_cli([*pair_paths, "--model", bad], capsys)
    assert code == EXIT_MODEL
    assert "not a valid ONNX model" in err and "Traceback" not in err


def test_missing_input(pair_paths, tmp_path, toy_model_path, capsys):
    code, _, err = run_cli([tmp_path / "nothing", pair_paths[1], "--model", toy_model_path], capsys)
    assert code == EXIT_INPUT
    assert "does not exist" in err


def test_unreadable_input(pair_paths, tmp_path, toy_model_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    code, _, err = run_cli([empty, pair_paths[1], "--model", toy_model_path], capsys)
    assert code == EXIT_INPUT
    assert "cannot read CURRENT" in err and "Traceback" not in err


def test_single_slice_series_is_refused(pair_paths, tmp_path, toy_model_path, capsys):
    single = phantom_volume(n_slices=1)
    write_volume_file(single, tmp_path / "one.nii.gz")
    code, _, err = run_cli(
        [tmp_path / "one.nii.gz", pair_paths[1], "--model", toy_model_path], capsys
    )
    assert code == EXIT_INPUT
    assert "CURRENT has 1 slice" in err


def test_non_ct_series_is_refused(pair_paths, tmp_path, toy_model_path, capsys):
    mr = phantom_volume(n_slices=10, modality="MR")
    write_dicom_series(mr, tmp_path / "mr")
    code, _, err = run_cli([pair_paths[0], tmp_path / "mr", "--model", toy_model_path], capsys)
    assert code == EXIT_INPUT
    assert "CT" in err and "Traceback" not in err


def test_label_map_is_refused(pair_paths, tmp_path, toy_model_path, capsys):
    mask = phantom_volume(n_slices=10)
    mask.voxels[:] = (mask.voxels > 0).astype(np.int16)
    write_volume_file(mask, tmp_path / "mask.nii.gz")
    code, _, err = run_cli(
        [pair_paths[0], tmp_path / "mask.nii.gz", "--model", toy_model_path], capsys
    )
    assert code == EXIT_INPUT
    assert "label map" in err


def test_prior_without_overlap_is_refused(pair_paths, tmp_path, toy_model_path, capsys):
    write_volume_file(head_volume(), tmp_path / "head.nii.gz")
    code, out, err = run_cli(
        [pair_paths[0], tmp_path / "head.nii.gz", "--model", toy_model_path], capsys
    )
    assert code == EXIT_INPUT
    assert "does not appear to show" in err and out == ""


def test_matcher_refuses_repeated_positions(toy_model):
    volume = phantom_volume(n_slices=4)
    positions = volume.slice_positions.copy()
    positions[2] = positions[1]
    broken = replace(volume, slice_positions=positions)
    with pytest.raises(MatchError, match="repeated"):
        Matcher(toy_model, cache=False).match(broken, phantom_volume(n_slices=10))


def test_query_slice_for_the_viewer(toy_model):
    matcher = Matcher(toy_model, cache=False)
    current, prior = phantom_volume(**CUR), phantom_volume(**PRI)
    result = matcher.match(current, prior)
    prior_index = matcher.index(prior)
    k = 20
    truth, _ = phantom_truth(current.slice_z)
    free = matcher.query_slice(current, k, prior_index, n_candidates=5)
    assert len(free) == 5 and free[0][1] >= free[-1][1]
    aligned = matcher.query_slice(current, k, prior_index, alignment=result.alignment)
    assert aligned[0][0] == result.alignment.prior_index[k]
    assert abs(prior.slice_z[aligned[0][0]] - truth[k]) <= 3.0
    # A slice the prior does not show yields no candidate once the alignment is known.
    outside = int(np.flatnonzero(~result.alignment.in_coverage)[0])
    assert matcher.query_slice(current, outside, prior_index, alignment=result.alignment) == []
    with pytest.raises(IndexError):
        matcher.query_slice(current, 999, prior_index)


def test_pixel_polish_option_uses_and_caches_thumbnails(toy_model, tmp_path):
    current, prior = phantom_volume(**CUR), phantom_volume(**PRI)
    cache = IndexCache(tmp_path)
    # A default matcher caches the series without thumbnails ...
    Matcher(toy_model, cache=cache).match(current, prior)
    matcher = Matcher(toy_model, cache=cache, params=AlignParams(fine_weight=1.0))
    result = matcher.match(current, prior)
    # ... a polishing one adds them to the cached entries once.
    assert matcher.index(current).thumbnails is not None
    reloaded = Matcher(toy_model, cache=IndexCache(tmp_path)).index(prior)
    assert reloaded.thumbnails is not None
    truth, covered = phantom_truth(current.slice_z)
    a = result.alignment
    err = np.abs(prior.slice_z[a.prior_index] - truth)[covered & a.in_coverage]
    assert np.mean(err) <= 2.0
