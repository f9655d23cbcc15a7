"""Pure numpy image math: modality LUT, window/level, presets.

Kept free of Qt so the viewer, the exporter and the model preprocessing all
window a slice the same way (the exporter's tests compare pixels to these).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "AIR_HU",
    "BODY_THRESHOLD_HU",
    "BONE_WINDOW",
    "LUNG_WINDOW",
    "PRESETS",
    "SOFT_TISSUE_WINDOW",
    "Window",
    "apply_rescale",
    "rescale_in_place",
    "window_to_uint8",
    "window_to_unit",
]

# Air as CT scanners store it (and the fill value outside a resampled field).
AIR_HU = -1024
# Soft tissue, fat and even lung parenchyma at full inspiration sit above this;
# air outside the patient and most of the foam mattress sit below it. Every body
# mask, body centroid and "is this CT?" check uses this one threshold.
BODY_THRESHOLD_HU = -500


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


# The standard CT windows (center, width) in HU. The model's input channels,
# the archive's thumbnails and the viewer's presets all use these.
LUNG_WINDOW = Window(-600, 1500)  # air, parenchyma, vessels
SOFT_TISSUE_WINDOW = Window(40, 400)  # organs, fat, muscle, contrast (mediastinal)
BONE_WINDOW = Window(400, 1800)

# Conventional CT presets of the viewer.
PRESETS: dict[str, Window] = {
    "lung": LUNG_WINDOW,
    "mediastinum": SOFT_TISSUE_WINDOW,
    "abdomen": Window(50, 350),
    "bone": BONE_WINDOW,
    "brain": Window(40, 80),
}


def apply_rescale(stored: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """Modality LUT: stored values to HU, as ``int16`` when exact, else rounded.

    CT slopes are almost always 1 with an integer intercept; that case stays in
    integer arithmetic (no float copy of the whole volume).
    """
    stored = np.asarray(stored)
    if _integer_rescale(slope, intercept):
        out = stored.astype(np.int32, copy=False) + int(intercept)
    else:
        out = np.rint(stored.astype(np.float32) * np.float32(slope) + np.float32(intercept))
    return np.clip(out, -32768, 32767).astype(np.int16, copy=False)


def _integer_rescale(slope: float, intercept: float) -> bool:
    return slope == 1 and float(intercept).is_integer()


def rescale_in_place(
    target: np.ndarray, stored: np.ndarray, slope: float, intercept: float
) -> None:
    """Modality LUT in place: ``stored`` values, a view of ``target``'s memory, to HU in ``target``.

    Integer-intercept, unit-slope data (nearly all CT) is rescaled with 16-bit
    wrap-around arithmetic, which is exact whenever the true result fits int16;
    the min/max check proves that first, else :func:`apply_rescale` clips.

    Parameters
    ----------
    target
        ``int16`` array that receives the HU.
    stored
        The raw stored values: ``target`` itself (signed data) or its
        ``uint16`` view (unsigned data).
    slope, intercept
        Rescale Slope and Rescale Intercept.
    """
    if _integer_rescale(slope, intercept):
        ic = int(intercept)
        if ic == 0 and stored.dtype == np.int16:
            return
        lo, hi = int(stored.min()), int(stored.max())
        if lo + ic >= -32768 and hi + ic <= 32767:
            np.add(stored, np.array(ic).astype(stored.dtype), out=stored, casting="unsafe")
            return
    target[...] = apply_rescale(stored.copy(), slope, intercept)


def window_to_unit(hu: np.ndarray, window: Window) -> np.ndarray:
    """Linear window to float32 in [0, 1] (values outside the window clip)."""
    lo = np.float32(window.lower)
    out = (np.asarray(hu, dtype=np.float32) - lo) / np.float32(window.width)
    return np.clip(out, 0.0, 1.0, out=out)


def window_to_uint8(hu: np.ndarray, window: Window) -> np.ndarray:
    """Linear window to ``uint8`` grey levels (0 at the lower edge, 255 at the upper)."""
    return np.rint(window_to_unit(hu, window) * 255.0).astype(np.uint8)
