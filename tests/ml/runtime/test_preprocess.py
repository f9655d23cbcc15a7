"""prepare_slices: fixed physical scale, body-centred, HU windows as channels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.core.imaging import Window
from app.core.volume import Geometry, Volume
from app.ml.runtime.preprocess import DEFAULT_WINDOWS, InputSpec, body_centroids, prepare_slices


def phantom(
    *,
    pixel_mm: float = 0.8,
    matrix: int = 512,
    centre_mm: tuple[float, float] = (0.0, 0.0),
    semi_axes_mm: tuple[float, float] = (160.0, 110.0),
    n_slices: int = 3,
) -> Volume:
    """An elliptic water body with a bony disc and a lung hole, in air.

    The body sits ``centre_mm`` (x, y) away from the middle of the field, as a
    different table height or patient position would place it.
    """
    c = (np.arange(matrix) - (matrix - 1) / 2.0) * pixel_mm
    x, y = np.meshgrid(c, c)  # mm, x along columns, y along rows
    bx, by = x - centre_mm[0], y - centre_mm[1]
    img = np.full((matrix, matrix), -1000, dtype=np.int16)
    body = (bx / semi_axes_mm[0]) ** 2 + (by / semi_axes_mm[1]) ** 2 <= 1.0
    img[body] = 40
    img[(bx - 60) ** 2 + by**2 <= 35**2] = -850  # lung
    img[bx**2 + (by - 60) ** 2 <= 15**2] = 1000  # vertebra
    voxels = np.repeat(img[np.newaxis], n_slices, axis=0)
    geom = Geometry(origin=(0.0, 0.0, 0.0), spacing=(pixel_mm, pixel_mm, 2.5), direction=np.eye(3))
    return Volume(voxels, geom)


def test_shape_dtype_and_range() -> None:
    spec = InputSpec()
    out = prepare_slices(phantom(), spec=spec)
    assert out.shape == (3, 3, spec.size, spec.size)
    assert out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_channels_are_the_windows() -> None:
    spec = InputSpec()
    # A field wider than the model's, so the corner shows scanned air.
    out = prepare_slices(phantom(matrix=640), [0], spec)[0]
    mid = spec.size // 2
    # Centre of the body is water at 40 HU.
    # The corner is outside the body: air (-1000 HU) in each window.
    for c, w in enumerate(spec.windows):
        expected = np.clip((-1000 - w.lower) / w.width, 0, 1)
        assert out[c, 0, 0] == pytest.approx(expected, abs=1e-3)
    for c, w in enumerate(spec.windows):
        assert out[c, mid, mid] == pytest.approx(np.clip((40 - w.lower) / w.width, 0, 1), abs=1e-3)
    # The vertebra (1000 HU) is the brightest thing in the bone channel.
    bone = DEFAULT_WINDOWS[2]
    assert out[2].max() == pytest.approx((1000 - bone.lower) / bone.width, abs=0.02)


def test_table_position_does_not_matter() -> None:
    """Body centring: the same body 60 mm off-centre gives the same image."""
    a = prepare_slices(phantom(centre_mm=(0.0, 0.0)), [1])
    b = prepare_slices(phantom(centre_mm=(45.0, -60.0)), [1])
    assert np.abs(a - b).mean() < 0.01


def test_matrix_and_pixel_size_do_not_matter() -> None:
    """Fixed physical scale: a 0.7 mm and a 1.4 mm reconstruction look alike."""
    fine = prepare_slices(phantom(pixel_mm=0.7, matrix=600), [0])
    coarse = prepare_slices(phantom(pixel_mm=1.4, matrix=300), [0])
    assert np.abs(fine - coarse).mean() < 0.01


def test_body_size_is_kept() -> None:
    """Unlike a resize-to-fit, a bigger patient fills more of the image."""
    spec = InputSpec()
    small = prepare_slices(phantom(semi_axes_mm=(120.0, 80.0)), [0], spec)[0, 0]
    large = prepare_slices(phantom(semi_axes_mm=(180.0, 120.0)), [0], spec)[0, 0]

    def soft_tissue_area_mm2(image: np.ndarray) -> float:
        # Lung channel: air 0.23, lung 0.33, water 0.93. Counting pixels above
        # half way is unbiased at the edges, whatever the sub-pixel position.
        return float(np.count_nonzero(image > 0.58)) * spec.pixel_mm**2

    lung = np.pi * 35.0**2
    assert soft_tissue_area_mm2(small) == pytest.approx(np.pi * 120 * 80 - lung, rel=0.03)
    assert soft_tissue_area_mm2(large) == pytest.approx(np.pi * 180 * 120 - lung, rel=0.03)


def test_body_centroid_ignores_small_objects() -> None:
    vol = phantom(centre_mm=(30.0, 0.0))
    # A cable far from the body must not pull the centre.
    vol.voxels[:, 10:14, 10:40] = 200
    cx, cy = body_centroids(vol, [0])[0]
    pixel = vol.geometry.spacing[0]
    assert cx == pytest.approx((vol.shape[2] - 1) / 2 + 30.0 / pixel, abs=6.0 / pixel)
    assert cy == pytest.approx((vol.shape[1] - 1) / 2, abs=6.0 / pixel)


def test_all_air_slice_is_centred_air() -> None:
    vol = phantom()
    vol.voxels[1] = -1000
    out = prepare_slices(vol, [1])
    lung = DEFAULT_WINDOWS[0]
    assert np.allclose(out[0, 0], (-1000 - lung.lower) / lung.width, atol=1e-3)
    assert np.allclose(out[0, 1:], 0.0)


def test_indices_select_and_validate() -> None:
    vol = phantom(n_slices=4)
    vol.voxels[2, 250:260, 250:260] = 500
    full = prepare_slices(vol)
    assert np.array_equal(prepare_slices(vol, [2, 0]), full[[2, 0]])
    assert prepare_slices(vol, []).shape == (0, 3, 128, 128)
    with pytest.raises(IndexError):
        prepare_slices(vol, [4])
    with pytest.raises(ValueError):
        prepare_slices(vol, [[0, 1]])


def test_non_square_pixels_and_small_matrix() -> None:
    vol = phantom(pixel_mm=2.0, matrix=200)
    vol.geometry = Geometry(origin=(0, 0, 0), spacing=(2.0, 3.0, 5.0), direction=np.eye(3))
    out = prepare_slices(vol, [0])
    assert out.shape == (1, 3, 128, 128)
    assert np.isfinite(out).all()


def test_invalid_spacing_is_a_clear_error() -> None:
    vol = phantom(matrix=64)
    vol.geometry = Geometry(origin=(0, 0, 0), spacing=(0.0, 1.0, 1.0), direction=np.eye(3))
    with pytest.raises(ValueError, match="pixel spacing"):
        prepare_slices(vol, [0])


def test_spec_metadata_round_trip() -> None:
    spec = InputSpec(size=96, pixel_mm=4.0, windows=(Window(-600, 1500), Window(40, 400)))
    meta = spec.to_metadata()
    assert json.loads(meta["priorsync.windows"]) == [[-600, 1500], [40, 400]]
    assert InputSpec.from_metadata(meta) == spec
    assert InputSpec.from_metadata(meta).channels == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"priorsync.input_size": None}, "lacks 'priorsync.input_size'"),
        ({"priorsync.pixel_mm": "wide"}, "malformed"),
        ({"priorsync.windows": "[1, 2]"}, "list of \\[center, width\\]"),
        ({"priorsync.windows": "not json"}, "malformed"),
        ({"priorsync.input_size": "2"}, "at least 8"),
        ({"priorsync.pixel_mm": "-1"}, "positive"),
        ({"priorsync.windows": "[]"}, "at least one"),
    ],
)
def test_bad_metadata_is_a_clear_error(change: dict, message: str) -> None:
    meta = InputSpec().to_metadata()
    for key, value in change.items():
        if value is None:
            del meta[key]
        else:
            meta[key] = value
    with pytest.raises(ValueError, match=message):
        InputSpec.from_metadata(meta)
