"""Slice sync's stage two: levels through the point engine's verified registration."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk
from engine_helpers import phantom_volume
from point_helpers import moved_pair

from app.ml.points.levels import BLEND_WEIGHT, refine_levels, registered_levels
from app.ml.points.locate import PointParams
from app.sim.followup import true_correspondence


def test_a_known_transform_gives_each_slice_its_moved_level():
    volume = phantom_volume(n_slices=30, spacing_z=3.0, matrix=64, pixel_mm=5.0, seed=2)
    # A shift of 7.5 mm along the prior's (here the same) normal moves every level by it,
    # whatever in-plane shift comes with it.
    shift = 7.5 * volume.geometry.normal + np.array([20.0, -11.0, 0.0])
    tf = sitk.TranslationTransform(3, tuple(float(v) for v in shift))
    levels = registered_levels(volume, volume, tf)
    assert levels == pytest.approx(volume.slice_z + 7.5, abs=1e-6)


def test_a_tilted_slice_is_judged_by_its_body_not_its_corner():
    volume = phantom_volume(n_slices=20, spacing_z=3.0, matrix=64, pixel_mm=5.0, seed=4)
    # Rotation about the slice's own in-plane centre axis: the body's median
    # level stays at the slice's level, however far the corners tilt.
    k = 10
    rows, cols = volume.voxels.shape[1:]
    g = volume.geometry
    centre = (
        volume.slice_positions[k]
        + (np.array([(cols - 1) / 2.0, (rows - 1) / 2.0, 0.0]) * g.spacing) @ g.direction.T
    )
    tf = sitk.Euler3DTransform()
    tf.SetCenter(tuple(float(v) for v in centre))
    tf.SetRotation(np.deg2rad(8.0), 0.0, 0.0)
    level = registered_levels(volume, volume, tf)[k]
    assert abs(level - volume.slice_z[k]) < 2.0


@pytest.fixture(scope="module")
def moved():
    return moved_pair()


def test_the_blend_lies_between_the_engine_and_the_registration(moved):
    current, prior, engine = moved
    out = refine_levels(engine)
    assert out.used and out.reason == ""
    start = engine.alignment
    covered = np.asarray(start.in_coverage, dtype=bool)
    registered = np.asarray(out.registered_z)
    expected = BLEND_WEIGHT * registered + (1 - BLEND_WEIGHT) * start.mapped_z
    assert out.alignment.mapped_z[covered] == pytest.approx(expected[covered])
    # The coverage decision and the levels the prior does not image stay the engine's.
    assert np.array_equal(out.alignment.in_coverage, start.in_coverage)
    assert np.array_equal(out.alignment.prior_index[~covered], start.prior_index[~covered])
    # Indices follow the blended levels.
    prior_z = np.asarray(start.prior_z)
    nearest = np.abs(prior_z[None, :] - out.alignment.mapped_z[covered][:, None]).argmin(axis=1)
    assert np.array_equal(out.alignment.prior_index[covered], nearest)
    # On this pair the registration is sound: the blend is as close to the truth as the engine.
    truth, in_prior = true_correspondence(current, prior)
    sel = covered & in_prior
    before = np.abs(start.mapped_z - truth)[sel].mean()
    after = np.abs(out.alignment.mapped_z - truth)[sel].mean()
    assert after <= before + 0.5, (before, after)


def test_without_a_verified_registration_the_engine_answer_stands():
    # verify_mm 0: no transform can pass.
    _, _, engine = moved_pair(replace(PointParams(), verify_mm=0.0))
    out = refine_levels(engine)
    assert not out.used and out.alignment is engine.alignment
    assert "rejected" in out.reason and not out.refined.any()
