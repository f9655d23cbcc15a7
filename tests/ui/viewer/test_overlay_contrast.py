"""Overlay letters stay readable on any window: glyph vs. its surround, WCAG contrast >= 4.5.

The worst background for white text is white: soft tissue on lung window
(-600/1500) is light grey and bone is white. Without the outline the letters'
surround is as bright as the letters and the ratio falls to about 1.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from fakes import make_volume
from PySide6 import QtGui

from app.core.imaging import PRESETS
from app.core.state import ViewportState
from app.ui.viewer.viewport import ViewportView


def relative_luminance(rgb: np.ndarray) -> np.ndarray:
    """WCAG 2 relative luminance of sRGB ``uint8`` pixels."""
    c = rgb.astype(np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return lin @ np.array([0.2126, 0.7152, 0.0722])


def contrast_ratio(a: float, b: float) -> float:
    hi, lo = max(a, b), min(a, b)
    return (hi + 0.05) / (lo + 0.05)


def grab_rgb(widget) -> np.ndarray:
    image = widget.grab().toImage().convertToFormat(QtGui.QImage.Format.Format_RGB888)
    w, h, bpl = image.width(), image.height(), image.bytesPerLine()
    rgb = np.frombuffer(image.constBits(), np.uint8, h * bpl).reshape(h, bpl)[:, : 3 * w]
    return rgb.reshape(h, w, 3).copy()


def glyph_contrast(shot: np.ndarray, label) -> float:
    """Contrast of a label's glyph fill against the pixels right around the glyphs."""
    g = label.geometry()
    patch = shot[g.top() : g.bottom() + 1, g.left() : g.right() + 1]
    lum = relative_luminance(patch)
    glyph = lum >= np.percentile(lum, 97)  # the brightest: the glyphs' fill
    ring = cv2.dilate(glyph.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=2) > 0
    ring &= ~cv2.dilate(glyph.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return contrast_ratio(float(np.median(lum[glyph])), float(np.median(lum[ring])))


@pytest.mark.parametrize("preset", ["lung", "bone"])
def test_orientation_letters_on_white_tissue_have_contrast(qtbot, preset, qapp):
    from app.ui.resources import style_sheet

    qapp.setStyleSheet(style_sheet())
    vol = make_volume(shape=(10, 64, 64))
    vol.voxels[:] = 1500  # bright everywhere: white under lung and bone windows
    state = ViewportState(vol, PRESETS[preset])
    view = ViewportView(state, "contrast")
    qtbot.addWidget(view)
    view.resize(420, 420)
    view.show()
    qtbot.waitExposed(view)
    qtbot.wait(50)
    state.zoom_by(3.0)  # the image fills the whole view: letters sit on white
    qtbot.wait(50)
    shot = grab_rgb(view.graphics)
    try:
        for edge in ("left", "right", "top", "bottom"):
            label = view.orientation_labels[edge]
            assert glyph_contrast(shot, label) >= 4.5, edge
        assert glyph_contrast(shot, view.window_label) >= 4.5
    finally:
        qapp.setStyleSheet("")
        view.detach()
