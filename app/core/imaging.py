"""Pure numpy image math: modality LUT, window/level, presets.

Kept free of Qt so the viewer, the exporter and the model preprocessing all
window a slice the same way (the exporter's tests compare pixels to these).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Window", "PRESETS", "apply_rescale", "window_to_uint8", "window_to_unit"]


@dataclass(frozen=True)
class Window:
    """A VOI window in HU: ``center`` (level) and ``width``."""

    center: float
    width: float

    def __post_init__(self) -> None:
        if not np.isfinite(self.center) or not np.isfinite(self.width):
            raise ValueError("window center and width must be finite")
        if self.width < 1:
            object.__setattr__(self, "width", 1.0)

    @property
    def lower(self) -> float:
        return self.center - self.width / 2.0

    @property
    def upper(self) -> float:
        return self.center + self.width / 2.0


# Conventional CT presets (center, width) in HU.
PRESETS: dict[str, Window] = {
    "lung": Window(-600, 1500),
    "mediastinum": Window(40, 400),
    "abdomen": Window(50, 350),
    "bone": Window(400, 1800),
    "brain": Window(40, 80),
}


def apply_rescale(stored: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """Modality LUT: stored values to HU, as ``int16`` when exact, else rounded.

    CT slopes are almost always 1 with an integer intercept; that case stays in
    integer arithmetic (no float copy of the whole volume).
    """
    stored = np.asarray(stored)
    if slope == 1 and float(intercept).is_integer():
        out = stored.astype(np.int32, copy=False) + int(intercept)
    else:
        out = np.rint(stored.astype(np.float32) * np.float32(slope) + np.float32(intercept))
    return np.clip(out, -32768, 32767).astype(np.int16, copy=False)


def window_to_unit(hu: np.ndarray, window: Window) -> np.ndarray:
    """Linear window to float32 in [0, 1] (values outside the window clip)."""
    lo = np.float32(window.lower)
    out = (np.asarray(hu, dtype=np.float32) - lo) / np.float32(window.width)
    return np.clip(out, 0.0, 1.0, out=out)


def window_to_uint8(hu: np.ndarray, window: Window) -> np.ndarray:
    """Linear window to ``uint8`` grey levels (0 at the lower edge, 255 at the upper)."""
    return np.rint(window_to_unit(hu, window) * 255.0).astype(np.uint8)
