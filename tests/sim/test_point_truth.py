"""The simulator's point truth: a bright marker lands where the truth says it does."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from app.core.volume import Volume
from app.sim.followup import (
    SIM_PRESETS,
    identity_scan,
    read_scan,
    simulate_followup,
    write_scan,
)
from app.sim.point_truth import from_source, to_source, true_points

# "hard" motion and breathing on small matrices, intensity changes off.
HARD_CLEAN = replace(
    SIM_PRESETS["hard"],
    matrix_sizes=(64,),
    coverage=(0.8, 0.9),
    kernel_blur_mm=(0.0, 0.0),
    sharpen_probability=0.0,
    noise_hu=(0.0, 0.0),
    contrast_delta_hu=(0.0, 0.0),
    lesion_probability=0.0,
)
MARKER_HU = 2500
MARKER_RADIUS_MM = 7.0


@pytest.fixture(scope="module")
def marked(phantom_factory) -> tuple[Volume, np.ndarray]:
    """A phantom with one bright sphere off-centre, and the sphere's LPS centre."""
    vol = phantom_factory(shape=(80, 96, 96), spacing=(2.5, 2.5, 2.5), lungs=False)
    n, rows, cols = vol.shape
    centre_idx = np.array([cols * 0.62, rows * 0.42, n * 0.55])  # (col, row, slice)
    kk, rr, cc = np.mgrid[0:n, 0:rows, 0:cols]
    d2 = (
        ((cc - centre_idx[0]) * 2.5) ** 2
        + ((rr - centre_idx[1]) * 2.5) ** 2
        + ((kk - centre_idx[2]) * 2.5) ** 2
    )
    vox = vol.voxels.copy()
    vox[d2 <= MARKER_RADIUS_MM**2] = MARKER_HU
    return vol.with_voxels(vox, vol.geometry), vol.geometry.index_to_lps(centre_idx)


def marker_lps(volume: Volume) -> np.ndarray:
    """Intensity-weighted centre (LPS) of the marker's bright voxels."""
    v = volume.voxels.astype(np.float64)
    w = np.clip(v - 1000.0, 0.0, None)  # body <= 400 HU, spine 700 HU
    assert w.sum() > 0, "the marker is not in this scan"
    k, r, c = np.nonzero(w)
    wt = w[k, r, c]
    idx = np.array([np.sum(c * wt), np.sum(r * wt), np.sum(k * wt)]) / wt.sum()
    return volume.geometry.index_to_lps(idx)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_marker_in_the_prior_is_where_the_truth_maps_it(marked, seed):
    source, centre = marked
    current = identity_scan(source)
    prior = simulate_followup(source, HARD_CLEAN, np.random.default_rng(seed))
    mapped, covered = true_points(current, prior, centre[None, :])
    if not covered[0]:
        pytest.skip("this draw does not image the marker")
    measured = marker_lps(prior.volume)
    err = np.linalg.norm(mapped[0] - measured)
    # The motion is large (up to 8 degrees, 40 mm, 12 mm breathing): a wrong map
    # would miss by centimetres; a right one lands well within a voxel (the
    # centroid of a resampled sphere is exact to a fraction of a voxel).
    assert err < 0.5 * min(prior.volume.geometry.spacing), (err, mapped[0], measured)


@pytest.mark.parametrize("seed", [5, 6])
def test_marker_between_two_simulated_scans(marked, seed):
    source, _ = marked
    rng = np.random.default_rng(seed)
    current = simulate_followup(source, HARD_CLEAN, rng)
    prior = simulate_followup(source, HARD_CLEAN, rng)
    seen = marker_lps(current.volume)
    mapped, covered = true_points(current, prior, seen[None, :])
    assert covered[0]
    err = np.linalg.norm(mapped[0] - marker_lps(prior.volume))
    tol = 0.5 * (min(prior.volume.geometry.spacing) + min(current.volume.geometry.spacing))
    assert err < tol, err
    # The motion is big enough that the same LPS point would be far off.
    assert np.linalg.norm(seen - marker_lps(prior.volume)) > 10.0


def test_inverse_undoes_the_forward_map(marked):
    source, _ = marked
    scan = simulate_followup(source, HARD_CLEAN, np.random.default_rng(9))
    g = scan.volume.geometry
    n, rows, cols = scan.volume.shape
    idx = np.array([[cols / 2, rows / 2, n / 2], [cols * 0.3, rows * 0.6, n * 0.2]])
    lps = g.index_to_lps(idx)
    p, ok = to_source(scan, lps)
    back, ok_back = from_source(scan, p)
    assert ok.all() and ok_back.all()
    np.testing.assert_allclose(back, lps, atol=1e-3)


def test_points_outside_either_scan_are_not_covered(marked):
    source, centre = marked
    current = identity_scan(source)
    prior = simulate_followup(source, HARD_CLEAN, np.random.default_rng(2))
    z = current.volume.slice_z
    far_below = centre + np.array([0.0, 0.0, z[0] - centre[2] - 50.0])  # below the source
    outside_circle = centre + np.array([400.0, 0.0, 0.0])
    _, covered = true_points(current, prior, np.stack([far_below, outside_circle]))
    assert not covered.any()
    # A level the source images but the prior (80-90 % coverage) does not.
    levels = np.linspace(z[0] + 1, z[-1] - 1, 60)
    pts = np.column_stack([np.full(60, centre[0]), np.full(60, centre[1]), levels])
    _, covered = true_points(current, prior, pts)
    assert covered.any() and not covered.all()


def test_truth_survives_writing_and_reading(marked, tmp_path):
    source, centre = marked
    rng = np.random.default_rng(3)
    current = simulate_followup(source, HARD_CLEAN, rng)
    prior = simulate_followup(source, HARD_CLEAN, rng)
    write_scan(current, tmp_path / "c", fmt="nifti")
    write_scan(prior, tmp_path / "p", fmt="dicom")
    cur_back, pri_back = read_scan(tmp_path / "c"), read_scan(tmp_path / "p")
    pts = marker_lps(current.volume)[None, :]
    a, ca = true_points(current, prior, pts)
    b, cb = true_points(cur_back, pri_back, pts)
    assert ca[0] and cb[0]
    np.testing.assert_allclose(a, b, atol=0.01)


def test_a_scan_without_point_truth_is_refused(marked):
    source, centre = marked
    scan = simulate_followup(source, HARD_CLEAN, np.random.default_rng(1))
    bare = replace(scan, point_truth=None)
    with pytest.raises(ValueError, match="no point ground truth"):
        to_source(bare, centre[None, :])
