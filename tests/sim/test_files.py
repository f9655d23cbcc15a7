"""Simulated scans written to disk re-read through the real readers, truth included."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from app.paths import shared_data_dir
from app.sim.followup import (
    SIDECAR_NAME,
    SIM_PRESETS,
    identity_scan,
    read_scan,
    simulate_followup,
    true_correspondence,
    write_scan,
)


@pytest.fixture(scope="module")
def scan(phantom):
    params = replace(SIM_PRESETS["hard"], matrix_sizes=(64,))
    return simulate_followup(phantom, params, np.random.default_rng(21), study_date="20250505")


@pytest.mark.parametrize("fmt", ["dicom", "nifti"])
def test_round_trip_keeps_geometry_voxels_and_truth(scan, tmp_path, fmt):
    target = write_scan(scan, tmp_path / "s", fmt=fmt)
    assert target.exists()
    back = read_scan(tmp_path / "s")
    v, w = scan.volume, back.volume
    np.testing.assert_array_equal(w.voxels, v.voxels)
    np.testing.assert_allclose(w.slice_z, v.slice_z, atol=1e-3)
    np.testing.assert_allclose(w.geometry.origin, v.geometry.origin, atol=1e-3)
    np.testing.assert_allclose(w.geometry.spacing, v.geometry.spacing, atol=1e-4)
    np.testing.assert_allclose(w.geometry.direction, v.geometry.direction, atol=1e-6)
    np.testing.assert_array_equal(back.source_z, scan.source_z)
    assert back.params_used == scan.params_used
    assert back.source_ref == scan.source_ref
    if fmt == "dicom":
        assert w.info.study_date == "20250505"
        assert w.info.frame_of_reference_uid == v.info.frame_of_reference_uid
        assert w.info.slice_thickness == pytest.approx(v.info.slice_thickness)
    # The truth computed from the re-read scans equals the in-memory one.
    cur = identity_scan(scan.volume)
    cur.source_ref = scan.source_ref
    cur.source_z = scan.source_z
    a = true_correspondence(cur, scan)
    b = true_correspondence(cur, back)
    np.testing.assert_allclose(a[0], b[0], atol=1e-3)


def test_missing_or_mismatched_sidecar_is_a_clear_error(scan, tmp_path):
    write_scan(scan, tmp_path / "s", fmt="nifti")
    sidecar = tmp_path / "s" / SIDECAR_NAME
    meta = json.loads(sidecar.read_text())
    meta["source_z"] = meta["source_z"][:-1]
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="sidecar describes"):
        read_scan(tmp_path / "s")
    sidecar.unlink()
    with pytest.raises(ValueError, match="no readable simulation sidecar"):
        read_scan(tmp_path / "s")
    with pytest.raises(ValueError, match="unknown format"):
        write_scan(scan, tmp_path / "t", fmt="png")  # type: ignore[arg-type]


def _lung_profile(volume) -> np.ndarray:
    """Lung area (cm²) per slice: air enclosed by the body, a level-dependent signature."""
    px = volume.geometry.spacing[0] * volume.geometry.spacing[1] / 100.0
    vox = volume.voxels
    inner = (vox < -400) & (vox > -1000)
    # Count only the central region so field-of-view differences do not matter.
    r, c = vox.shape[1:]
    return inner[:, r // 4 : 3 * r // 4, c // 4 : 3 * c // 4].sum(axis=(1, 2)) * px


@pytest.mark.slow
@pytest.mark.skipif(shared_data_dir() is None, reason="needs the shared CT folder (CI, dev)")
def test_truth_aligns_real_anatomy_on_chest_lung2():
    from app.sim.sources import load_source

    source = load_source("chest-lung2")
    rng = np.random.default_rng(5)
    params = replace(
        SIM_PRESETS["standard"],
        rotation_deg=(0.0, 0.0, 2.0),
        shift_mm=(0.0, 0.0),
        matrix_sizes=(256,),
    )
    current = simulate_followup(source, params, rng)
    prior = simulate_followup(source, params, rng)
    prior_z, inside = true_correspondence(current, prior)
    cur_profile = _lung_profile(current.volume)
    pri_profile = _lung_profile(prior.volume)
    errors = {}
    for offset in np.arange(-30.0, 31.0, 2.0):
        z = prior_z + offset
        ok = inside & (z >= prior.volume.slice_z[0]) & (z <= prior.volume.slice_z[-1])
        resampled = np.interp(z[ok], prior.volume.slice_z, pri_profile)
        errors[offset] = float(np.mean(np.abs(resampled - cur_profile[ok])))
    best = min(errors, key=errors.get)
    assert abs(best) <= 4.0, errors
