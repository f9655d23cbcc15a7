"""What a reader would draw for a lesion: a rough, displaced outline, filled.

A sketch query is drawn by hand on a *template* slice of another patient, so
it never matches the true lesion: the outline is simplified (a few brush
strokes, not the lesion's wobbles), the blob is placed a little off and drawn
a little too big or too small. :func:`sketch_from_mask` imitates this from a
true lesion mask; the sketch models train on its output and the sketch
evaluation queries with it, so both see the same kind of drawing.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["sketch_from_mask"]


def sketch_from_mask(
    mask: np.ndarray,
    rng: np.random.Generator,
    *,
    pixel_mm: float,
    jitter_mm: float = 8.0,
    scale_jitter: float = 0.2,
    simplify_mm: float = 3.0,
) -> np.ndarray:
    """A hand-drawn-looking filled sketch of a lesion mask.

    Parameters
    ----------
    mask
        ``(rows, cols)`` lesion mask (bool, or numbers where ``> 0.5`` is lesion).
    rng
        Random stream for the displacement and size error.
    pixel_mm
        Pixel size of ``mask`` (mm), so the errors are physical whatever the
        resolution (full-resolution slices or the 3.2 mm model frame).
    jitter_mm
        Largest displacement of the sketch (uniform over a disc of this radius).
    scale_jitter
        The sketch is scaled by a factor uniform in ``1 +/- scale_jitter``
        about the lesion's centroid.
    simplify_mm
        Outline simplification tolerance (``cv2.approxPolyDP`` epsilon).

    Returns
    -------
    np.ndarray
        ``bool`` ``(rows, cols)``; empty when ``mask`` is.

    Raises
    ------
    ValueError
        For a mask that is not 2-D or a non-positive ``pixel_mm``.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a lesion mask must be 2-D, got shape {mask.shape}")
    if not (np.isfinite(pixel_mm) and pixel_mm > 0):
        raise ValueError(f"pixel_mm must be a positive number, got {pixel_mm}")
    binary = (mask > 0.5).astype(np.uint8)
    if not binary.any():
        return np.zeros(mask.shape, dtype=bool)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    epsilon = simplify_mm / pixel_mm
    drawn = np.zeros_like(binary)
    for contour in contours:
        poly = cv2.approxPolyDP(contour, epsilon, True)
        if len(poly) >= 3:
            cv2.fillPoly(drawn, [poly], 1)
        else:
            # A lesion a few pixels across simplifies to a point or a line: a
            # reader would dab a round blob of about its area.
            area = max(cv2.contourArea(contour), float(len(contour)))
            centre = contour.reshape(-1, 2).mean(axis=0)
            radius = max(1, round(math.sqrt(area / math.pi)))
            cv2.circle(drawn, (round(centre[0]), round(centre[1])), radius, 1, -1)
    rows, cols = np.nonzero(binary)
    cy, cx = float(rows.mean()), float(cols.mean())
    scale = 1.0 + float(rng.uniform(-scale_jitter, scale_jitter))
    # Uniform over a disc: sqrt of a uniform radius.
    r = jitter_mm * math.sqrt(float(rng.uniform())) / pixel_mm
    phi = float(rng.uniform(0.0, 2 * math.pi))
    tx, ty = r * math.cos(phi), r * math.sin(phi)
    matrix = np.array(
        [[scale, 0.0, cx - scale * cx + tx], [0.0, scale, cy - scale * cy + ty]], dtype=np.float64
    )
    moved = cv2.warpAffine(
        drawn.astype(np.float32),
        matrix,
        (mask.shape[1], mask.shape[0]),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )
    out = moved >= 0.5
    if not out.any():
        # A tiny sketch can vanish in the resampling; keep at least its centre.
        r_c = int(np.clip(round(cy + ty), 0, mask.shape[0] - 1))
        c_c = int(np.clip(round(cx + tx), 0, mask.shape[1] - 1))
        out[r_c, c_c] = True
    return out
