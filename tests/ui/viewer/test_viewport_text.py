"""What a viewport writes over its image and where its camera looks (no widget needed)."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import make_volume

from app.core.imaging import SOFT_TISSUE_WINDOW
from app.core.planes import Plane
from app.core.state import Camera, ViewportState
from app.ui.viewer.viewport_text import (
    camera_ranges,
    legend_html,
    plane_letters,
    slice_text,
    window_text,
    zoom_text,
)

AXIAL = {"left": "R", "right": "L", "top": "A", "bottom": "P"}


def test_plane_letters_per_plane():
    assert plane_letters(AXIAL, Plane.AXIAL) == AXIAL
    assert plane_letters(AXIAL, Plane.CORONAL) == {
        "left": "R",
        "right": "L",
        "top": "S",
        "bottom": "I",
    }
    assert plane_letters(AXIAL, Plane.SAGITTAL) == {
        "left": "A",
        "right": "P",
        "top": "S",
        "bottom": "I",
    }


def test_camera_ranges_fit_at_zoom_one_and_follow_pan_and_zoom():
    assert camera_ranges((200.0, 100.0), Camera()) == ((0.0, 200.0), (0.0, 100.0))
    x, y = camera_ranges((200.0, 100.0), Camera(zoom=2.0, pan=(10.0, -5.0)))
    assert x == pytest.approx((60.0, 160.0))
    assert y == pytest.approx((20.0, 70.0))


def test_window_and_zoom_text():
    assert window_text(SOFT_TISSUE_WINDOW) == "W 400  L 40"
    assert zoom_text(Camera(zoom=1.5)) == "×1.50"


def test_legend_has_at_most_eight_swatches_low_to_high():
    colours = np.stack([np.arange(256)] * 3, axis=1)
    html = legend_html(colours)
    assert html.count("<span") == 8
    assert html.index("#000000") < html.index("#e0e0e0")


def test_slice_text_names_the_plane_and_puts_the_caption_first():
    state = ViewportState(make_volume(shape=(30, 48, 64)))
    axial = slice_text(state, Plane.AXIAL, "", outside=False).split("\n")
    assert axial[0].startswith("Im ") and axial[0].endswith("/30")
    coronal = slice_text(state, Plane.CORONAL, "saliency", outside=False).split("\n")
    assert coronal[:2] == ["saliency", "coronal · level line"]
