"""Similarity-saliency overlays for exported panels (via :mod:`app.ml.saliency.gradcam`).

Each slice is coloured by where the model sees its match: the current slice
by its match to the first (newest) prior, each prior slice by its match to the
current slice. The captions say which pair a colouring belongs to, since with
several priors the current slice's map depends on the partner.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from app.core.imaging import Window, window_to_uint8
from app.core.volume import Volume
from app.export.render import SlicePanel
from app.ml.saliency.gradcam import SimilaritySaliency, blend_overlay, to_slice_grid

__all__ = ["add_saliency_overlays", "overlay_rgb"]


def overlay_rgb(
    saliency: SimilaritySaliency,
    volume: Volume,
    index: int,
    map_on_input: np.ndarray,
    window: Window,
    colormap: str,
    opacity: float,
) -> np.ndarray:
    """The windowed slice with a map on the model's input grid carried onto it, in colour.

    Returns
    -------
    np.ndarray
        ``(rows, cols, 3)`` uint8 RGB.
    """
    grey = window_to_uint8(volume.slice(index), window)
    on_slice = to_slice_grid(map_on_input, volume, index, saliency.spec)
    return blend_overlay(grey, on_slice, colormap=colormap, opacity=opacity)


def add_saliency_overlays(
    panels: Sequence[SlicePanel],
    saliency: SimilaritySaliency,
    *,
    colormap: str = "inferno",
    opacity: float = 0.5,
) -> list[SlicePanel]:
    """``panels`` (driver first, then its matches) with similarity-saliency overlays.

    Parameters
    ----------
    panels
        The driver panel first, then one panel per matched slice.
    saliency
        Built on the model that produced the matches.
    colormap, opacity
        See :func:`app.ml.saliency.gradcam.blend_overlay`.

    Raises
    ------
    ValueError
        Fewer than two panels, or an unknown colormap / opacity out of range.
    """
    if len(panels) < 2:
        raise ValueError("a saliency overlay needs a slice and at least one match")
    driver, others = panels[0], list(panels[1:])
    out_others = []
    driver_overlay = None
    for i, p in enumerate(others):
        maps = saliency.pair_maps(driver.volume, driver.index, p.volume, p.index)
        if i == 0:
            driver_overlay = overlay_rgb(
                saliency, driver.volume, driver.index, maps.query, driver.window, colormap, opacity
            )
        rgb = overlay_rgb(saliency, p.volume, p.index, maps.match, p.window, colormap, opacity)
        out_others.append(
            replace(p, overlay=rgb, overlay_label=f"similarity to {driver.role or 'current'}")
        )
    # With several matches the driver's map depends on its partner: name it by position
    # (a date here could contradict the caption's date style).
    partner = others[0].role or "prior"
    if len(others) > 1:
        partner = f"the {partner} beside it"
    driver_out = replace(driver, overlay=driver_overlay, overlay_label=f"similarity to {partner}")
    return [driver_out, *out_others]
