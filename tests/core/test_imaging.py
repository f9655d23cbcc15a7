"""Pure numpy image math."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.imaging import (
    PRESETS,
    SOFT_TISSUE_WINDOW,
    Window,
    apply_rescale,
    rescale_in_place,
    window_to_uint8,
    window_to_unit,
)


def test_rescale_integer_fast_path_and_float_path():
    stored = np.array([0, 1024, 4095], dtype=np.uint16)
    np.testing.assert_array_equal(apply_rescale(stored, 1, -1024), [-1024, 0, 3071])
    assert apply_rescale(stored, 1, -1024).dtype == np.int16
    np.testing.assert_array_equal(apply_rescale(np.array([10, 11]), 0.5, -1.0), [4, 4])


def test_rescale_clips_to_int16():
    np.testing.assert_array_equal(apply_rescale(np.array([70000], dtype=np.int32), 1, 0), [32767])


def test_window_edges():
    w = Window(40, 400)
    hu = np.array([-160, 40, 240, -2000, 3000], dtype=np.int16)
    np.testing.assert_array_equal(window_to_uint8(hu, w), [0, 128, 255, 0, 255])
    u = window_to_unit(hu, w)
    assert u.dtype == np.float32 and u.min() == 0 and u.max() == 1


def test_window_rejects_nan_and_floors_width():
    with pytest.raises(ValueError):
        Window(float("nan"), 10)
    assert Window(0, 0).width == 1


def test_presets_are_the_radiology_set():
    assert set(PRESETS) == {"lung", "mediastinum", "abdomen", "bone", "brain"}
    assert PRESETS["lung"].center < 0 < PRESETS["bone"].center


@pytest.mark.parametrize(
    ("stored", "slope", "intercept"),
    [
        (np.array([[0, 1000, 4095]], dtype=np.int16), 1.0, -1024.0),  # signed, fits: in place
        (np.array([[0, 1000, 4095]], dtype=np.int16), 1.0, 0.0),  # nothing to do
        (np.array([[-2000, 0, 32000]], dtype=np.int16), 1.0, 1000.0),  # overflows: clipped
        (np.array([[0, 1000, 4095]], dtype=np.int16), 0.5, -1024.0),  # float slope
    ],
)
def test_rescale_in_place_equals_apply_rescale(stored, slope, intercept) -> None:
    target = stored.copy()
    rescale_in_place(target, target, slope, intercept)
    np.testing.assert_array_equal(target, apply_rescale(stored, slope, intercept))


def test_rescale_in_place_reads_unsigned_data_through_a_view() -> None:
    raw = np.array([[0, 40000, 65535]], dtype=np.uint16)
    target = raw.view(np.int16).copy()
    rescale_in_place(target, target.view(np.uint16), 1.0, -32768.0)
    np.testing.assert_array_equal(target, apply_rescale(raw, 1.0, -32768.0))


def test_the_mediastinal_preset_is_the_soft_tissue_window() -> None:
    assert PRESETS["mediastinum"] is SOFT_TISSUE_WINDOW == Window(40, 400)
