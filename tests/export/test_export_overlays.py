"""Saliency overlays on export panels (with the shipped model)."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.imaging import PRESETS, window_to_uint8
from app.export.overlays import add_saliency_overlays
from app.export.pairs import PriorSlice, build_panels
from app.export.render import render_panels
from app.ml.runtime.model import EmbeddingModel, default_model_path
from app.ml.saliency.gradcam import SimilaritySaliency

pytestmark = pytest.mark.skipif(
    not default_model_path().is_file(),
    reason="the shipped embedding model models/priorsync-embed.onnx is missing from this checkout",
)


@pytest.fixture(scope="module")
def saliency() -> SimilaritySaliency:
    return SimilaritySaliency(EmbeddingModel.load(device="cpu"))


def test_every_panel_is_coloured_and_labelled(saliency, ct_factory) -> None:
    shape, spacing = (12, 64, 300), (1.5, 1.5, 5.0)
    current = ct_factory(shape=shape, spacing=spacing, seed=1)
    prior = ct_factory(shape=shape, spacing=spacing, seed=2, study_date="20250110")
    older = ct_factory(shape=shape, spacing=spacing, seed=3, study_date="20230110")
    window = PRESETS["mediastinum"]
    panels = build_panels(
        current, 6, [PriorSlice(prior, 6, 0.9), PriorSlice(older, 5, 0.8)], window
    )
    coloured = add_saliency_overlays(panels, saliency)
    assert [p.index for p in coloured] == [6, 6, 5]
    for before, after in zip(panels, coloured, strict=True):
        assert after.overlay.shape == (64, 300, 3) and after.overlay.dtype == np.uint8
        grey = window_to_uint8(before.volume.slice(before.index), window)
        # Blended over the same windowed slice, and visibly coloured somewhere.
        assert np.abs(after.overlay.astype(int) - grey[..., None]).max() > 20
    assert [p.overlay_label for p in coloured] == [
        "similarity to the prior beside it",
        "similarity to current",
        "similarity to current",
    ]
    captions = render_panels(coloured).captions
    assert captions[0][5] == "colour: similarity to the prior beside it"


def test_an_overlay_needs_a_partner(saliency, ct_factory) -> None:
    vol = ct_factory()
    with pytest.raises(ValueError, match="at least one match"):
        add_saliency_overlays(build_panels(vol, 0, [], PRESETS["lung"]), saliency)
