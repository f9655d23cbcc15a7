"""The simulator's ground truth is right, its changes stay in bounds, and it is reproducible."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from app.core.volume import Geometry, Volume
from app.sim.followup import (
    SIM_PRESETS,
    SimParams,
    SimulatedScan,
    identity_scan,
    simulate_followup,
    true_correspondence,
)

# Everything switched off: a pure re-slice of the source.
STILL = SimParams(
    rotation_deg=(0.0, 0.0, 0.0),
    shift_mm=(0.0, 0.0),
    deformation_mm=(0.0, 0.0),
    coverage=(1.0, 1.0),
    thickness_mm=(2.5, 2.5),
    spacing_ratio=(1.0, 1.0),
    fov_margin=(1.2, 1.2),
    matrix_sizes=(64,),
    kernel_blur_mm=(0.0, 0.0),
    sharpen_probability=0.0,
    noise_hu=(0.0, 0.0),
    contrast_delta_hu=(0.0, 0.0),
    lesion_probability=0.0,
)
# "hard" geometry on small matrices, with every intensity change off, so the
# pixels can be compared with the truth.
HARD_CLEAN = replace(
    SIM_PRESETS["hard"],
    matrix_sizes=(64,),
    kernel_blur_mm=(0.0, 0.0),
    sharpen_probability=0.0,
    noise_hu=(0.0, 0.0),
    contrast_delta_hu=(0.0, 0.0),
    lesion_probability=0.0,
)


def level_from_pixels(scan: SimulatedScan, source: Volume, ramp: float = 2.0) -> np.ndarray:
    """Per slice, the level its median body HU encodes (``ramp`` HU per mm, see conftest)."""
    vox = scan.volume.voxels
    levels = np.full(len(vox), np.nan)
    for k, sl in enumerate(vox):
        # Soft tissue away from any edge (partial volume with air or lung would
        # bias the median), lungs and spine excluded.
        tissue = ((sl > -500) & (sl < 650)).astype(np.uint8)
        soft = sl[cv2.erode(tissue, np.ones((5, 5), np.uint8)).astype(bool)]
        if soft.size > 20:
            levels[k] = source.slice_z[0] + float(np.median(soft)) / ramp
    return levels


def test_phantom_ramp_matches_the_helper(phantom, ramp_hu_per_mm):
    assert ramp_hu_per_mm == 2.0  # level_from_pixels' default
    np.testing.assert_allclose(
        level_from_pixels(identity_scan(phantom), phantom), phantom.slice_z, atol=0.5
    )


def test_identity_scan_maps_each_slice_to_itself(phantom):
    scan = identity_scan(phantom)
    prior_z, inside = true_correspondence(scan, scan)
    np.testing.assert_allclose(prior_z, phantom.slice_z)
    assert inside.all()


def test_pure_shift_of_37_mm(phantom):
    source = phantom
    current = identity_scan(source)
    g = source.geometry
    shifted = Volume(source.voxels, Geometry(g.origin + [0.0, 0.0, 37.0], g.spacing, g.direction))
    # The prior's slice k shows the same anatomy as source slice k, 37 mm higher up.
    prior = SimulatedScan(shifted, source.slice_z.copy(), {}, current.source_ref)
    prior_z, inside = true_correspondence(current, prior)
    np.testing.assert_allclose(prior_z, source.slice_z + 37.0, atol=0.5)
    assert inside.all()


def test_still_simulation_is_a_reslice_with_exact_levels(phantom):
    scan = simulate_followup(phantom, STILL, np.random.default_rng(0))
    assert scan.volume.n_slices == phantom.n_slices
    np.testing.assert_allclose(scan.source_z, phantom.slice_z, atol=1e-6)
    # A new frame of reference: the table position differs, the truth does not.
    prior_z, inside = true_correspondence(identity_scan(phantom), scan)
    np.testing.assert_allclose(prior_z, scan.volume.slice_z, atol=1e-6)
    assert inside.all()
    np.testing.assert_allclose(level_from_pixels(scan, phantom), scan.source_z, atol=1.0)


def test_shifted_coverage_truth_is_a_pure_offset(phantom):
    params = replace(STILL, coverage=(0.5, 0.5), thickness_mm=(3.0, 3.0))
    prior = simulate_followup(phantom, params, np.random.default_rng(7))
    z_lo = prior.params_used["z_range"][0]
    expected = z_lo + np.arange(prior.volume.n_slices) * 3.0
    np.testing.assert_allclose(prior.source_z, expected, atol=1e-6)
    current = identity_scan(phantom)
    prior_z, inside = true_correspondence(current, prior)
    offset = prior.volume.slice_z[0] - z_lo
    np.testing.assert_allclose(prior_z, phantom.slice_z + offset, atol=1e-6)
    # Coverage: exactly the current levels within half a prior slice of its range.
    lo, hi = prior.source_z[0] - 1.5, prior.source_z[-1] + 1.5
    np.testing.assert_array_equal(inside, (phantom.slice_z >= lo) & (phantom.slice_z <= hi))
    assert not inside[0] or not inside[-1]
    assert inside.sum() >= 0.45 * phantom.n_slices


@pytest.fixture(scope="module")
def solid(phantom_factory) -> Volume:
    """A phantom without lungs: every body pixel carries the height ramp.

    (With lungs, which pixels count as "body" shifts the median level of a
    tilted slice by a few mm, which would blur what these tests check.)
    """
    return phantom_factory(lungs=False)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_truth_matches_the_pixels_under_hard_motion(solid, seed):
    phantom = solid
    scan = simulate_followup(phantom, HARD_CLEAN, np.random.default_rng(seed))
    measured = level_from_pixels(scan, phantom)
    # Away from the source's ends, where edge slices are replicated.
    z0, z1 = phantom.slice_z[0] + 20, phantom.slice_z[-1] - 20
    keep = (scan.source_z > z0) & (scan.source_z < z1) & np.isfinite(measured)
    assert keep.sum() >= 5
    err = np.abs(measured[keep] - scan.source_z[keep])
    assert np.median(err) < 1.0 and err.max() < 1.5, err


def test_truth_between_two_simulated_scans(solid):
    phantom = solid
    rng = np.random.default_rng(11)
    current = simulate_followup(phantom, HARD_CLEAN, rng)
    prior = simulate_followup(phantom, HARD_CLEAN, rng)
    prior_z, inside = true_correspondence(current, prior)
    # The prior slice nearest the true z shows (by its pixels) the current's level.
    level_prior = level_from_pixels(prior, phantom)
    level_cur = level_from_pixels(current, phantom)
    j = np.argmin(np.abs(prior.volume.slice_z[None, :] - prior_z[:, None]), axis=1)
    z0, z1 = phantom.slice_z[0] + 20, phantom.slice_z[-1] - 20
    ok = inside & (current.source_z > z0) & (current.source_z < z1)
    ok &= np.isfinite(level_cur) & np.isfinite(level_prior[j])
    assert ok.sum() >= 5
    step = prior.params_used["spacing_mm"]
    assert np.max(np.abs(level_prior[j][ok] - level_cur[ok])) < step / 2 + 2.5


def test_true_correspondence_rejects_scans_of_different_sources(phantom, phantom_factory):
    other = phantom_factory(z0=0.0)
    with pytest.raises(ValueError, match="different source"):
        true_correspondence(identity_scan(phantom), identity_scan(other))


@pytest.mark.parametrize("preset", ["standard", "hard", "demo"])
def test_deformation_stays_within_preset_bounds(phantom, preset):
    params = replace(SIM_PRESETS[preset], rotation_deg=(0.0, 0.0, 0.0), matrix_sizes=(64,))
    bound = params.deformation_mm[1]
    for seed in range(3):
        scan = simulate_followup(phantom, params, np.random.default_rng(seed))
        used = scan.params_used
        assert params.deformation_mm[0] - 1e-6 <= abs(used["deformation_mm"]) <= bound + 1e-6
        # Without rotation the level shift is the SI displacement: bounded, and present.
        z_lo, z_hi = used["z_range"]
        grid = np.linspace(z_lo, z_hi, scan.volume.n_slices)
        shift = np.abs(scan.source_z - grid)
        assert shift.max() <= bound + 0.05
        assert shift.max() >= 0.3 * abs(used["deformation_mm"])


def test_breathing_is_strongest_at_the_lung_bases(phantom):
    params = replace(STILL, deformation_mm=(10.0, 10.0))
    scan = simulate_followup(phantom, params, np.random.default_rng(4))
    shift = np.abs(scan.source_z - phantom.slice_z)
    bases = scan.params_used["diaphragm_z"]
    # The phantom's lungs start above 40 % of its height.
    assert abs(bases - phantom.slice_z[int(0.4 * phantom.n_slices) + 1]) <= 2.5
    peak = scan.source_z[np.argmax(shift)]
    assert abs(peak - bases) < 30
    assert shift[-1] < 0.5 * shift.max()  # the apex barely moves


def test_coverage_and_slices_follow_params(phantom):
    for seed in range(4):
        scan = simulate_followup(phantom, HARD_CLEAN, np.random.default_rng(seed))
        used = scan.params_used
        extent = phantom.slice_z[-1] - phantom.slice_z[0]
        covered = used["z_range"][1] - used["z_range"][0]
        assert 0.4 * extent - used["spacing_mm"] <= covered <= 0.8 * extent + 1e-6
        assert 1.0 <= used["thickness_mm"] <= 5.0
        assert used["spacing_mm"] <= used["thickness_mm"] + 1e-9
        np.testing.assert_allclose(np.diff(scan.volume.slice_z), used["spacing_mm"])
        assert scan.volume.info.slice_thickness == pytest.approx(used["thickness_mm"], abs=0.01)


def test_new_identity_and_frame_of_reference(phantom):
    scan = simulate_followup(
        phantom,
        replace(SIM_PRESETS["standard"], matrix_sizes=(64,)),
        np.random.default_rng(5),
        study_date="20250102",
        info_overrides={"patient_name": "Other^Name"},
    )
    info = scan.volume.info
    assert info.study_date == "20250102"
    assert info.patient_name == "Other^Name"
    assert info.patient_id == phantom.info.patient_id
    for uid in (info.study_uid, info.series_uid, info.frame_of_reference_uid):
        assert uid.startswith("2.25.") and len(uid) <= 64
    assert len({info.study_uid, info.series_uid, info.frame_of_reference_uid}) == 3
    assert f"{info.slice_thickness:.1f} mm" in info.series_description
    assert scan.volume.voxels.dtype == np.int16
    np.testing.assert_array_equal(scan.volume.geometry.direction, np.eye(3))


def test_same_seed_same_scan_other_seed_other_scan(phantom):
    params = replace(SIM_PRESETS["train"], matrix_sizes=(48, 64))
    a = simulate_followup(phantom, params, np.random.default_rng(42))
    b = simulate_followup(phantom, params, np.random.default_rng(42))
    c = simulate_followup(phantom, params, np.random.default_rng(43))
    np.testing.assert_array_equal(a.volume.voxels, b.volume.voxels)
    np.testing.assert_array_equal(a.source_z, b.source_z)
    assert a.volume.info.series_uid == b.volume.info.series_uid
    assert a.params_used == b.params_used
    assert a.volume.info.series_uid != c.volume.info.series_uid
    assert a.params_used != c.params_used


def _pair(phantom, **changes):
    """Two still scans identical but for ``changes`` (same random draws)."""
    base = replace(
        STILL, **{k: (0.0, 0.0) if isinstance(v, tuple) else 0.0 for k, v in changes.items()}
    )
    plain = simulate_followup(phantom, base, np.random.default_rng(9))
    changed = simulate_followup(phantom, replace(STILL, **changes), np.random.default_rng(9))
    return plain, changed


def _interior(vox: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Voxels in ``(lo, hi)`` whose 3x3 in-plane neighbours are too (no partial volume)."""
    kernel = np.ones((3, 3), np.uint8)
    return np.stack(
        [cv2.erode(((s > lo) & (s < hi)).astype(np.uint8), kernel) for s in vox]
    ).astype(bool)


def test_contrast_change_is_bounded_and_inside_the_body(phantom):
    plain, changed = _pair(phantom, contrast_delta_hu=(100.0, 100.0))
    before = plain.volume.voxels
    diff = changed.volume.voxels.astype(np.int32) - before
    assert np.abs(diff).max() <= 101
    # Enhancing tissue (100-300 HU) changes by the full amount...
    core = _interior(before, 130, 290)
    assert core.any() and np.all(np.abs(diff[core] - 100) <= 2)
    # ... fat-like tissue, bone, lung and air do not (edges may, by partial volume).
    for lo, hi in ((-2000, -500), (-100, 40), (680, 4000)):
        assert not np.any(diff[_interior(before, lo, hi)])
    for k in range(len(before)):
        near_body = cv2.dilate((before[k] > -500).astype(np.uint8), np.ones((3, 3), np.uint8))
        assert not np.any(diff[k][near_body == 0])


def test_lesion_is_inside_the_body(phantom):
    params = replace(
        STILL, lesion_probability=1.0, lesion_radius_mm=(12.0, 12.0), lesion_hu=(50.0, 50.0)
    )
    base = replace(params, lesion_probability=0.0)
    plain = simulate_followup(phantom, base, np.random.default_rng(3))
    with_lesion = simulate_followup(phantom, params, np.random.default_rng(3))
    lesion = with_lesion.params_used["lesion"]
    assert lesion is not None
    diff = with_lesion.volume.voxels.astype(np.int32) - plain.volume.voxels
    assert 40 <= diff.max() <= 51
    assert np.all(plain.volume.voxels[diff != 0] > -500)
    k = int(np.argmax(np.abs(diff).sum(axis=(1, 2))))
    assert (
        abs(
            with_lesion.volume.slice_z[k]
            - with_lesion.volume.slice_z[0]
            - (lesion["center_z"] - phantom.slice_z[0])
        )
        <= 5.0
    )


def test_fixed_lesion_center_is_honoured(phantom):
    center = tuple(phantom.geometry.index_to_lps(np.array([32.0, 30.0, 20.0])))
    params = replace(
        STILL, lesion_center=center, lesion_radius_mm=(10.0, 10.0), lesion_hu=(40.0, 40.0)
    )
    scan = simulate_followup(phantom, params, np.random.default_rng(0))
    np.testing.assert_allclose(scan.params_used["lesion"]["center_lps"], center, atol=1e-6)


def test_kernel_and_noise_change_texture(phantom):
    plain, noisy = _pair(phantom, noise_hu=(20.0, 20.0))
    diff = noisy.volume.voxels.astype(np.float64) - plain.volume.voxels
    inside = plain.volume.voxels > -500
    assert 12 < diff[inside].std() < 30


def test_rejects_a_single_slice_source(phantom):
    one = Volume(phantom.voxels[:1].copy(), phantom.geometry)
    with pytest.raises(ValueError, match="at least 2 slices"):
        simulate_followup(one, STILL, np.random.default_rng(0))


def test_uneven_source_slices_are_honoured(phantom_factory):
    source = phantom_factory(shape=(40, 48, 48), lungs=False)
    positions = source.slice_positions.copy()
    positions[20:, 2] += 2.0  # a 2 mm gap after slice 19
    uneven = Volume(source.voxels, source.geometry, source.info, positions, "uneven")
    scan = simulate_followup(uneven, STILL, np.random.default_rng(0))
    assert scan.source_z[0] == pytest.approx(uneven.slice_z[0])
    assert np.all(np.diff(scan.source_z) > 0)
    # The phantom's HU encodes the slice index; turn it into the real position.
    nominal = level_from_pixels(scan, source)
    index = (nominal - source.slice_z[0]) / source.geometry.spacing[2]
    actual = np.interp(index, np.arange(uneven.n_slices), uneven.slice_z)
    inner = (index > 1) & (index < uneven.n_slices - 2)
    np.testing.assert_allclose(scan.source_z[inner], actual[inner], atol=0.5)


def test_field_of_view_varies_but_never_shows_the_source_crop(phantom):
    # A body cut by the source's lateral edges (as arms often are).
    vox = phantom.voxels.copy()
    vox[:, 20:44, :] = np.maximum(vox[:, 20:44, :], 30)
    cropped = Volume(vox, phantom.geometry, phantom.info, None, "cropped")
    width = vox.shape[2] * phantom.geometry.spacing[0]
    fovs = [
        simulate_followup(cropped, STILL, np.random.default_rng(s)).params_used["fov_mm"]
        for s in range(6)
    ]
    assert max(fovs) <= width + 1e-6
    assert max(fovs) - min(fovs) > 0.03 * width


def test_sampling_at_the_source_resolution_keeps_truth_and_image(phantom):
    """The demo's cheap path: anatomy sampled at the source's pixels, then interpolated."""
    params = replace(HARD_CLEAN, matrix_sizes=(128,))  # 2.4 mm pixels from a 5 mm source
    direct = simulate_followup(phantom, params, np.random.default_rng(3))
    cheap = simulate_followup(
        phantom, replace(params, sample_at_source_resolution=True), np.random.default_rng(3)
    )
    assert cheap.volume.shape == direct.volume.shape
    for name in ("origin", "spacing", "direction"):
        np.testing.assert_allclose(
            getattr(cheap.volume.geometry, name), getattr(direct.volume.geometry, name)
        )
    assert cheap.point_truth is not None and direct.point_truth is not None
    np.testing.assert_array_equal(cheap.point_truth.field, direct.point_truth.field)
    np.testing.assert_allclose(cheap.source_z, direct.source_z, atol=0.1)
    a = direct.volume.voxels.astype(np.float64)
    b = cheap.volume.voxels.astype(np.float64)
    assert np.mean((a > -500) != (b > -500)) < 0.01  # the same body outline
    inside = (a > -500) & (b > -500)
    assert np.median(np.abs(a - b)[inside]) <= 2.0
    # The levels the pixels show (the phantom's HU ramp) are the same.
    np.testing.assert_allclose(
        level_from_pixels(cheap, phantom), level_from_pixels(direct, phantom), atol=1.0
    )


def test_sampling_at_the_source_resolution_leaves_coarser_output_alone(phantom):
    params = replace(HARD_CLEAN, matrix_sizes=(32,))  # output pixels coarser than the source's
    direct = simulate_followup(phantom, params, np.random.default_rng(4))
    cheap = simulate_followup(
        phantom, replace(params, sample_at_source_resolution=True), np.random.default_rng(4)
    )
    assert direct.volume.geometry.spacing[0] > phantom.geometry.spacing[0]
    np.testing.assert_array_equal(cheap.volume.voxels, direct.volume.voxels)
    np.testing.assert_array_equal(cheap.source_z, direct.source_z)
