"""Source volumes: names, lookup, fetching from a PyPI sdist, clear errors offline."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from app.paths import shared_data_dir
from app.sim import sources
from app.sim.sources import (
    SOURCE_NAMES,
    SourceError,
    available_sources,
    load_source,
    source_path,
)


@pytest.fixture
def no_shared(monkeypatch, tmp_path):
    """No shared folder and an empty cache: only a fetch can provide sources."""
    monkeypatch.setattr(sources, "shared_data_dir", lambda: None)
    monkeypatch.setenv("PRIORSYNC_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def test_unknown_name_is_a_clear_error():
    with pytest.raises(SourceError, match="unknown CT source 'lungs'"):
        load_source("lungs")
    with pytest.raises(SourceError, match="unknown"):
        available_sources(["nope"])


def test_nothing_available_without_shared_or_cache(no_shared):
    assert available_sources() == []
    with pytest.raises(SourceError, match="only available in the shared data folder"):
        source_path("chest-lung2")


def _fake_sdist(folder: Path) -> Path:
    """A tiny stand-in for the totalsegmentator sdist, with the members we extract."""
    archive = folder / "totalsegmentator-2.18.0.tar.gz"
    members = {
        "totalsegmentator-2.18.0/tests/reference_files/example_ct.nii.gz": b"abdomen",
        "totalsegmentator-2.18.0/tests/reference_files/aorta_report/example_ct.nii.gz": b"angio",
        "totalsegmentator-2.18.0/tests/reference_files/example_ct_dicom/a.dcm": b"d1",
        "totalsegmentator-2.18.0/tests/reference_files/example_ct_dicom/b.dcm": b"d2",
        "totalsegmentator-2.18.0/setup.py": b"ignored",
    }
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive


def test_fetch_extracts_only_the_needed_members(no_shared, monkeypatch):
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        dest = Path(cmd[cmd.index("-d") + 1])
        _fake_sdist(dest)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(sources.subprocess, "run", fake_run)
    path = source_path("chest-angio")
    assert path.read_bytes() == b"angio"
    assert "totalsegmentator==2.18.0" in calls[0] and "--no-deps" in calls[0]
    # The same download provided its siblings: no second fetch.
    assert source_path("abdomen-pelvis").read_bytes() == b"abdomen"
    dicom = source_path("upper-abdomen-dicom")
    assert sorted(p.name for p in dicom.iterdir()) == ["a.dcm", "b.dcm"]
    assert len(calls) == 1
    cached = path.parent
    assert sorted(p.name for p in cached.iterdir()) == [
        "abdomen-pelvis.nii.gz",
        "chest-angio.nii.gz",
        "upper-abdomen-dicom",
    ]  # nothing else left behind (no temporary download)
    assert available_sources() == ["abdomen-pelvis", "chest-angio", "upper-abdomen-dicom"]


def test_offline_fetch_is_a_clear_error(no_shared, monkeypatch):
    def offline(cmd, **kwargs):
        return subprocess.CompletedProcess(
            cmd, 1, "", "ERROR: Could not find a version that satisfies the requirement"
        )

    monkeypatch.setattr(sources.subprocess, "run", offline)
    with pytest.raises(SourceError, match=r"could not download dicom2stl==0.5.0 .*offline"):
        load_source("head")
    assert available_sources() == []


def test_unreadable_source_is_a_clear_error(no_shared, monkeypatch):
    def fake_run(cmd, **kwargs):
        _fake_sdist(Path(cmd[cmd.index("-d") + 1]))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(sources.subprocess, "run", fake_run)
    with pytest.raises(SourceError, match="could not read CT source 'chest-angio'"):
        load_source("chest-angio")  # the fake member is not a NIfTI file


@pytest.mark.skipif(shared_data_dir() is None, reason="needs the shared CT folder (CI, dev)")
def test_shared_sources_load_display_oriented():
    assert available_sources() == list(SOURCE_NAMES)
    for name in ("abdomen-pelvis", "head"):
        volume = load_source(name)
        assert volume.voxels.dtype == np.int16
        assert np.all(np.diff(volume.slice_z) > 0)
        # Display convention: the slice axis runs toward the head (superior, +z LPS).
        assert volume.geometry.normal[2] > 0.99


@pytest.mark.skipif(shared_data_dir() is None, reason="needs the shared CT folder (CI, dev)")
@pytest.mark.parametrize(
    "name", ["chest-4dlung", "chest-nsclc", "abdomen-pancreas", "head-neck-chus", "openkbp-007"]
)
def test_added_sources_load_display_oriented_in_hu(name):
    volume = load_source(name)
    assert volume.voxels.dtype == np.int16
    assert np.all(np.diff(volume.slice_z) > 0)
    assert volume.geometry.normal[2] > 0.99
    # HU, not stored values: air near -1000, and a soft-tissue body in the middle slice.
    assert -1100 <= int(volume.voxels.min()) <= -990
    middle = volume.voxels[volume.n_slices // 2]
    assert np.mean((middle > -100) & (middle < 100)) > 0.02


@pytest.mark.skipif(shared_data_dir() is None, reason="needs the shared CT folder (CI, dev)")
def test_openkbp_anatomy_lands_where_it_belongs():
    """Parotids above the oesophagus, right parotid on the patient's right (LPS x smaller),
    mandible in front of the cord (LPS y smaller)."""
    from app.io.load import load_volume

    volume = load_source("openkbp-007")
    labels = load_volume(shared_data_dir() / "openkbp" / "pt_007.labels.nii.gz")
    assert labels.shape == volume.shape
    assert np.allclose(labels.slice_positions, volume.slice_positions)

    def centre_lps(value: int) -> np.ndarray:
        idx = np.argwhere(labels.voxels == value)[:, ::-1].astype(np.float64)  # (col, row, slice)
        return labels.geometry.index_to_lps(idx).mean(axis=0)

    cord, right, left = centre_lps(2), centre_lps(3), centre_lps(4)
    oesophagus, mandible = centre_lps(5), centre_lps(7)
    assert min(right[2], left[2]) > oesophagus[2] + 20
    assert right[0] < left[0] - 40
    assert mandible[1] < cord[1] - 30
