"""The demo patient: three dated DICOM studies, cached, rebuilt when damaged."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from app.commands.demo_start import DemoBuild
from app.io.load import load_volume
from app.sim.demo import DEMO_PATIENT_ID, DEMO_PATIENT_NAME, build_demo_patient


@pytest.fixture(scope="module")
def small_source(phantom_factory):
    return phantom_factory(shape=(40, 48, 48), spacing=(6.0, 6.0, 4.0))


@pytest.fixture(scope="module")
def demo(tmp_path_factory, small_source):
    root = tmp_path_factory.mktemp("demo") / "v1"
    steps: list[tuple[int, int]] = []
    folders = build_demo_patient(
        root, lambda d, t: steps.append((d, t)), source=small_source, matrix=64
    )
    return root, folders, steps


def test_three_dated_studies_of_one_fictitious_patient(demo):
    root, folders, steps = demo
    assert len(folders) == 3
    assert steps[-1][0] == steps[-1][1] and len(steps) == steps[-1][1]
    volumes = [load_volume(f) for f in folders]
    dates = [v.info.study_date for v in volumes]
    assert dates == sorted(dates, reverse=True) and len(set(dates)) == 3
    assert dates[0] == "20261014"
    for v in volumes:
        assert v.info.patient_name == DEMO_PATIENT_NAME
        assert v.info.patient_id == DEMO_PATIENT_ID
    # Every study is its own acquisition: frame of reference, table position, slices.
    assert len({v.info.frame_of_reference_uid for v in volumes}) == 3
    assert len({v.info.study_uid for v in volumes}) == 3
    assert len({round(float(v.slice_z[0]), 1) for v in volumes}) == 3
    assert volumes[0].geometry.spacing[2] == pytest.approx(2.0, abs=1e-3)
    assert {v.info.slice_thickness for v in volumes[1:]} != {2.0}


def test_second_call_reuses_the_build(demo, small_source):
    root, folders, _ = demo
    stamp = [f.stat().st_mtime_ns for f in folders]
    again = build_demo_patient(root, source=small_source, matrix=64)
    assert again == folders
    assert [f.stat().st_mtime_ns for f in again] == stamp


def test_damaged_or_half_built_demo_is_rebuilt(tmp_path, small_source):
    root = tmp_path / "v1"
    folders = build_demo_patient(root, source=small_source, matrix=64)
    victim = sorted(folders[1].iterdir())[3]
    victim.unlink()  # a lost slice
    rebuilt = build_demo_patient(root, source=small_source, matrix=64)
    assert victim.exists()
    assert [len(list(f.iterdir())) for f in rebuilt] == [load_volume(f).n_slices for f in rebuilt]
    # No marker: a build interrupted before its end.
    (root / "complete.json").unlink()
    shutil.rmtree(rebuilt[2])
    again = build_demo_patient(root, source=small_source, matrix=64)
    assert all(f.is_dir() for f in again)
    meta = json.loads((root / "complete.json").read_text())
    assert meta["series"] == [f.name for f in again]
    # Garbage marker.
    (root / "complete.json").write_text("{not json")
    assert build_demo_patient(root, source=small_source, matrix=64) == again
    assert not list(tmp_path.glob(".v1-*"))  # no temporary folders left behind


def test_demo_shows_one_lesion_growing(demo):
    root, _, _ = demo
    lesions = json.loads((root / "complete.json").read_text())["lesions"]
    now, last_year, before = lesions
    assert before is None
    assert now["radius_mm"] > last_year["radius_mm"] > 0
    np.testing.assert_allclose(now["center_lps"], last_year["center_lps"])


def test_the_background_build_is_the_loaders_build(tmp_path, small_source):
    """The started build gives exactly the folders and files the loader's own call gives."""
    root = tmp_path / "v2"
    build = DemoBuild(
        lambda progress: build_demo_patient(root, progress, source=small_source, matrix=64)
    )
    folders = build.start().wait()
    build.stop()
    assert folders == build_demo_patient(
        root, source=small_source, matrix=64
    )  # reused, not rebuilt
    assert all(len(list(f.iterdir())) > 0 for f in folders)


def test_the_studies_made_side_by_side_are_the_same_every_time(tmp_path, small_source):
    """Each study has its own generator: thread timing never changes the demo."""
    first = build_demo_patient(tmp_path / "a" / "v2", source=small_source, matrix=64)
    second = build_demo_patient(tmp_path / "b" / "v2", source=small_source, matrix=64)
    for a, b in zip(first, second, strict=True):
        va, vb = load_volume(a), load_volume(b)
        np.testing.assert_array_equal(va.voxels, vb.voxels)
        assert va.info.series_uid == vb.info.series_uid
        np.testing.assert_allclose(va.slice_z, vb.slice_z)
