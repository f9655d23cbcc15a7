"""What a viewport writes over its image, and where its camera looks: pure functions.

The viewport widget only sets these strings on its labels and this range on its
view box; computing them needs no Qt, so they are tested without a window.
"""

from __future__ import annotations

import numpy as np

from app.core.imaging import Window
from app.core.planes import Plane
from app.core.state import Camera, ViewportState
from app.export.captions import image_number

__all__ = [
    "OUTSIDE_TEXT",
    "camera_ranges",
    "legend_html",
    "plane_letters",
    "slice_text",
    "window_text",
    "zoom_text",
]

OUTSIDE_TEXT = "level outside this scan"


def slice_text(state: ViewportState, plane: Plane, caption: str, outside: bool) -> str:
    """The top-left block: image number, table position, plane, match score, overlay caption.

    Parameters
    ----------
    state
        The viewport's state (level, volume, match).
    plane
        The plane shown; coronal and sagittal name it and their level line.
    caption
        The overlay's caption ("" without an overlay), put on top of the block.
    outside
        Whether the level is outside this scan: then no match score is shown.
    """
    n = state.volume.n_slices
    # One numbering everywhere: images counted from the head, from 1.
    number = image_number(state.slice_index, n)
    lines = [f"Im {number}/{n}", f"z {state.slice_position_mm:.1f} mm"]
    if plane is not Plane.AXIAL:
        lines.insert(0, f"{plane.value} · level line")
    match = state.match
    if match is not None and not outside:
        # Set by the sync group's slice mapper: how this slice was reached.
        lines.append(f"match {match.score:.2f}")
    if caption:
        # On top of the block: the bottom line shares its row with the "P" label.
        lines.insert(0, caption)
    return "\n".join(lines)


def window_text(window: Window) -> str:
    """``"W 400  L 40"``: the window shown in the top-right corner."""
    return f"W {window.width:.0f}  L {window.center:.0f}"


def zoom_text(camera: Camera) -> str:
    """``"×1.50"``: the zoom factor shown under the window."""
    return f"×{camera.zoom:.2f}"


def plane_letters(axial: dict[str, str], plane: Plane) -> dict[str, str]:
    """Edge letters of ``plane`` from the axial ones (``left``/``right``/``top``/``bottom``)."""
    if plane is Plane.CORONAL:
        return {**axial, "top": "S", "bottom": "I"}
    if plane is Plane.SAGITTAL:
        return {"left": axial["top"], "right": axial["bottom"], "top": "S", "bottom": "I"}
    return dict(axial)


def legend_html(colours: np.ndarray) -> str:
    """The saliency colour key: up to 8 swatches of ``colours`` (``(n, 3)`` RGB, low to high)."""
    swatches = "".join(
        f"<span style='background:#{r:02x}{g:02x}{b:02x}'>&nbsp;&nbsp;</span>"
        for r, g, b in np.asarray(colours, dtype=np.uint8)[:: max(1, len(colours) // 8)][:8]
    )
    return f"match evidence: low {swatches} high"


def camera_ranges(
    extent_mm: tuple[float, float], camera: Camera
) -> tuple[tuple[float, float], tuple[float, float]]:
    """``(x_range, y_range)`` in image mm that ``camera`` shows of a plane ``extent_mm`` wide/high.

    At zoom 1 the ranges are the image's; pan moves the centre in mm.
    """
    width_mm, height_mm = extent_mm
    cx = width_mm / 2.0 + camera.pan[0]
    cy = height_mm / 2.0 + camera.pan[1]
    half_w = width_mm / (2.0 * camera.zoom)
    half_h = height_mm / (2.0 * camera.zoom)
    return (cx - half_w, cx + half_w), (cy - half_h, cy + half_h)
