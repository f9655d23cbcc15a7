"""Synthetic lesions: shapes, sites, HU rules, and the 3-D insertion used by the evaluation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from app.core.volume import Geometry, SeriesInfo, Volume
from app.sim.lesions import (
    LESION_CLASSES,
    LesionShape,
    choose_lesion_site,
    insert_lesion_2d,
    insert_lesion_3d,
    lesion_label,
    random_lesion_mask_2d,
)

ORGAN_HU = 60
LUNG_HU = -850


def chest_slice(size: int = 128, pixel_mm: float = 2.0, seed: int = 0) -> np.ndarray:
    """A body with a fat rim, an organ block (60 HU) around two lungs, noise of 10 HU."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    c = (size - 1) / 2
    hu = np.full((size, size), -1000.0, dtype=np.float32)
    body = ((x - c) / (0.47 * size)) ** 2 + ((y - c) / (0.42 * size)) ** 2 <= 1
    hu[body] = -100.0  # fat, a rim wide enough to hold a 20 mm mass
    inner = ((x - c) / (0.36 * size)) ** 2 + ((y - c) / (0.30 * size)) ** 2 <= 1
    hu[inner] = ORGAN_HU
    for side in (-1, 1):
        lung = ((x - c - side * 0.18 * size) / (0.14 * size)) ** 2 + (
            (y - c + 0.08 * size) / (0.18 * size)
        ) ** 2 <= 1
        hu[lung] = LUNG_HU
    return hu + rng.normal(0, 10, hu.shape).astype(np.float32) * (hu > -900)


def chest_volume(n: int = 24, size: int = 96, pixel_mm: float = 3.0) -> Volume:
    vox = np.stack([chest_slice(size, pixel_mm, seed=k) for k in range(n)])
    return Volume(
        voxels=np.rint(vox).astype(np.int16),
        geometry=Geometry(
            origin=(0.0, 0.0, 0.0), spacing=(pixel_mm, pixel_mm, 2.5), direction=np.eye(3)
        ),
        info=SeriesInfo(patient_id="LESION-TEST"),
        source="phantom",
    )


def test_labels_follow_the_class_order() -> None:
    assert [lesion_label(k) for k in LESION_CLASSES] == [1, 2, 3]
    with pytest.raises(ValueError, match="unknown lesion class"):
        lesion_label("tumour")


def test_random_mask_is_soft_sized_and_seeded() -> None:
    a = random_lesion_mask_2d((100, 100), (50, 40), 30, np.random.default_rng(1))
    b = random_lesion_mask_2d((100, 100), (50, 40), 30, np.random.default_rng(1))
    c = random_lesion_mask_2d((100, 100), (50, 40), 30, np.random.default_rng(2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.dtype == np.float32 and a.min() >= 0 and a.max() == pytest.approx(1.0)
    assert ((a > 0.05) & (a < 0.95)).any()  # a soft edge
    area = (a >= 0.5).sum()
    circle = np.pi * 15**2
    assert 0.3 * circle < area < 1.6 * circle  # ellipse (aspect >= 0.55) with a wobble
    rows, cols = np.nonzero(a >= 0.5)
    assert abs(rows.mean() - 50) < 5 and abs(cols.mean() - 40) < 5


def test_irregular_outline_differs_from_its_ellipse() -> None:
    shape = LesionShape.random(np.random.default_rng(3), irregularity=0.3)
    theta = np.linspace(0, 2 * np.pi, 360)
    assert np.ptp(shape.profile(theta)) > 0.05
    plain = LesionShape(shape.aspect, shape.angle, np.zeros((4, 2)))
    assert np.ptp(plain.profile(theta)) == 0


@pytest.mark.parametrize("kind", ["hypodense", "hyperdense"])
def test_organ_lesions_sit_in_soft_tissue_organs(kind: str) -> None:
    hu = chest_slice()
    rng = np.random.default_rng(0)
    for _ in range(20):
        site = choose_lesion_site(hu, kind, rng, pixel_mm=2.0, diameter_mm=16)
        assert site is not None
        assert 0 <= hu[site] <= 150  # the organ block, never lung, fat or air


def test_masses_go_to_lung_or_fat_and_stay_inside_the_body() -> None:
    hu = chest_slice()
    rng = np.random.default_rng(0)
    in_lung = 0
    for _ in range(40):
        r, c = choose_lesion_site(hu, "mass", rng, pixel_mm=2.0, diameter_mm=20)
        # Never in the 60 HU organ, where a 20-60 HU mass would not show.
        assert hu[r, c] < -400 or -190 <= hu[r, c] <= -40
        in_lung += hu[r, c] < -400
        # The whole lesion (a disc of radius 5 px) lies inside the body.
        yy, xx = np.mgrid[-5:6, -5:6]
        disc = yy**2 + xx**2 <= 25
        assert (hu[r - 5 : r + 6, c - 5 : c + 6][disc] > -900).all()
    assert 5 < in_lung < 35  # both kinds of site are used


def test_no_mass_site_in_a_body_of_muscle_alone() -> None:
    hu = np.full((64, 64), -1000.0, dtype=np.float32)
    hu[8:56, 8:56] = 50.0  # muscle density throughout: a mass there is invisible
    rng = np.random.default_rng(0)
    assert choose_lesion_site(hu, "mass", rng, pixel_mm=2.0, diameter_mm=10) is None
    assert choose_lesion_site(hu, "hyperdense", rng, pixel_mm=2.0, diameter_mm=10) is not None


def test_no_nodule_in_a_gas_pocket_of_the_gut() -> None:
    hu = np.full((96, 96), -1000.0, dtype=np.float32)
    hu[8:88, 8:88] = 40.0  # bowel wall and organs
    hu[36:56, 36:56] = -1000.0  # a 40 x 40 mm gas pocket: a mass there would look like stool
    rng = np.random.default_rng(0)
    assert choose_lesion_site(hu, "mass", rng, pixel_mm=2.0, diameter_mm=10) is None
    hu[16:80, 16:80] = -850.0  # the same place as aerated lung, 128 x 128 mm
    assert choose_lesion_site(hu, "mass", rng, pixel_mm=2.0, diameter_mm=10) is not None


def test_no_site_in_air_or_for_a_lesion_bigger_than_the_body() -> None:
    rng = np.random.default_rng(0)
    air = np.full((64, 64), -1000.0, dtype=np.float32)
    assert choose_lesion_site(air, "mass", rng, pixel_mm=2.0, diameter_mm=10) is None
    assert (
        choose_lesion_site(chest_slice(), "hypodense", rng, pixel_mm=2.0, diameter_mm=400) is None
    )


def test_insert_2d_follows_each_class_hu_rule() -> None:
    hu = chest_slice()
    before = hu.copy()
    rng = np.random.default_rng(5)
    organ_mask = random_lesion_mask_2d(hu.shape, (95, 64), 20, rng)
    inside = organ_mask >= 0.99
    hypo = insert_lesion_2d(hu, organ_mask, "hypodense", rng)
    hyper = insert_lesion_2d(hu, organ_mask, "hyperdense", rng)
    assert np.array_equal(hu, before)  # the input is untouched
    assert -100 < (hypo - hu)[inside].mean() < -15
    assert 40 < (hyper - hu)[inside].mean() < 240
    outside = organ_mask == 0
    assert np.array_equal(hypo[outside], hu[outside])
    # A mass replaces lung by soft tissue, with texture rather than a flat paste.
    lung_mask = random_lesion_mask_2d(hu.shape, (50, 41), 14, rng)
    mass = insert_lesion_2d(hu, lung_mask, "mass", rng)
    core = lung_mask >= 0.99
    assert 0 < mass[core].mean() < 80
    assert mass[core].std() > 3


def test_insert_2d_rejects_a_mask_of_another_shape() -> None:
    with pytest.raises(ValueError, match="shape"):
        insert_lesion_2d(np.zeros((8, 8)), np.zeros((4, 4)), "mass", np.random.default_rng(0))


@pytest.mark.parametrize("kind", LESION_CLASSES)
def test_insert_3d_spans_slices_and_leaves_the_source_alone(kind: str) -> None:
    vol = chest_volume()
    original = vol.voxels.copy()
    new, labels = insert_lesion_3d(vol, kind, np.random.default_rng(7), diameter_mm=20)
    assert np.array_equal(vol.voxels, original)
    assert new.voxels.dtype == np.int16 and new.voxels.shape == vol.voxels.shape
    assert new.geometry == vol.geometry and new.info == vol.info
    assert labels.dtype == np.uint8 and labels.shape == vol.voxels.shape
    assert set(np.unique(labels)) == {0, lesion_label(kind)}
    slices = np.nonzero(labels.reshape(len(labels), -1).any(axis=1))[0]
    assert 3 <= len(slices) <= 12  # ~20 mm deep at 2.5 mm spacing, give or take
    assert np.all(np.diff(slices) == 1)  # one connected lesion
    # The largest cross-section is about 20 mm across.
    k = slices[np.argmax([(labels[s] > 0).sum() for s in slices])]
    rows, cols = np.nonzero(labels[k])
    assert 8 <= max(np.ptp(rows), np.ptp(cols)) * 3.0 <= 34
    changed = new.voxels.astype(int) - original
    inside = labels > 0
    if kind == "hypodense":
        assert changed[inside].mean() < -10
    elif kind == "hyperdense":
        assert changed[inside].mean() > 30
    else:
        # Edge pixels blend with the surroundings (lung, fat); the bulk is soft tissue.
        assert 0 < np.median(new.voxels[inside]) < 80
    # Nothing changes away from the lesion (its soft edge reaches ~2 px out).
    near = np.zeros(labels.shape, dtype=bool)
    kernel = np.ones((7, 7), np.uint8)
    for s in range(max(slices[0] - 1, 0), min(slices[-1] + 2, len(labels))):
        near[s] = (
            cv2.dilate((labels[min(max(s, slices[0]), slices[-1])] > 0).astype(np.uint8), kernel)
            > 0
        )
    assert not changed[~near].any()


def test_insert_3d_honours_the_centre_slice_and_reports_impossible_requests() -> None:
    vol = chest_volume()
    _, labels = insert_lesion_3d(vol, "hypodense", np.random.default_rng(1), 12, center_index=5)
    per_slice = (labels > 0).sum(axis=(1, 2))
    assert per_slice[5] == per_slice.max() > 0
    with pytest.raises(ValueError, match="unknown lesion class"):
        insert_lesion_3d(vol, "cyst", np.random.default_rng(0))
    air = Volume(np.full((4, 32, 32), -1000, np.int16), vol.geometry)
    with pytest.raises(ValueError, match="no place"):
        insert_lesion_3d(air, "mass", np.random.default_rng(0))
    with pytest.raises(IndexError):
        insert_lesion_3d(vol, "mass", np.random.default_rng(0), center_index=99)
