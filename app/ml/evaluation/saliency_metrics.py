"""How faithful a saliency map is: map correlation and the deletion check.

Used by the saliency tests and ``benchmarks/bench_saliency.py``, never by the
app itself, so they live with the other evaluations rather than beside the
maps (:mod:`app.ml.saliency.gradcam`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.core.body import body_mask
from app.core.volume import Volume
from app.ml.saliency.gradcam import (
    SimilaritySaliency,
    to_slice_grid,
    upsample_to_input,
)

__all__ = ["DeletionResult", "deletion_drops", "map_correlation"]


def map_correlation(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Pearson correlation of two maps (over ``mask`` when given).

    Returns NaN when either map is constant there (correlation is undefined).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"maps differ in shape: {a.shape} vs {b.shape}")
    if mask is not None:
        a, b = a[mask], b[mask]
    a = a.ravel() - a.mean()
    b = b.ravel() - b.mean()
    den = float(np.sqrt((a @ a) * (b @ b)))
    return float(a @ b) / den if den > 0 else float("nan")


@dataclass(frozen=True)
class DeletionResult:
    """Similarity drops when regions of the matched slice are filled with soft tissue.

    Attributes
    ----------
    similarity
        Similarity of the untouched pair.
    drop_most, drop_least, drop_random
        ``similarity - similarity_after`` with the most salient, least salient,
        or a random smooth region (same size, inside the body) filled.
    n_pixels
        Pixels in each region.
    """

    similarity: float
    drop_most: float
    drop_least: float
    drop_random: float
    n_pixels: int


def deletion_drops(
    saliency: SimilaritySaliency,
    query_volume: Volume,
    q_index: int,
    match_volume: Volume,
    m_index: int,
    *,
    fraction: float = 0.1,
    fill_hu: float = 40.0,
    rng: np.random.Generator | None = None,
) -> DeletionResult:
    """Deletion check of the matched slice's map: filling what it marks should hurt most.

    Three regions of the matched (prior) slice, each ``fraction`` of the body
    (the filled outline of the largest region above -500 HU, lungs included,
    inside the field the model sees), are in turn set to ``fill_hu`` in the
    original slice, which is then re-embedded:

    * the pixels the map marks most salient,
    * the pixels it marks least salient,
    * the top of a random smooth map (a chance baseline).

    A faithful map makes the first drop in similarity the largest. The ReLU
    leaves many pixels exactly 0; their order is drawn from another random
    smooth map, so that the least salient region is a compact patch like the
    others rather than scattered pixels.

    Parameters
    ----------
    saliency
        The saliency computer (its model embeds the modified slices).
    query_volume, q_index, match_volume, m_index
        The pair; the match (prior) slice is the one modified.
    fraction
        Size of each region as a fraction of the body area.
    fill_hu
        HU written into the region (default 40: soft tissue).
    rng
        Draws the random maps.
    """
    if not 0.0 < fraction < 0.5:
        raise ValueError(f"fraction must be in (0, 0.5), got {fraction}")
    rng = rng or np.random.default_rng(0)
    spec = saliency.spec
    query = saliency.slice_features(query_volume, q_index)
    match = saliency.slice_features(match_volume, m_index)
    maps = saliency.maps_from_features(query, match)

    def on_slice(map01: np.ndarray) -> np.ndarray:
        return to_slice_grid(map01, match_volume, m_index, spec).ravel()

    def smooth_random() -> np.ndarray:
        cells = rng.random(match.features.shape[1:]).astype(np.float32)
        return on_slice(upsample_to_input(cells, saliency.grid, spec.size))

    original = match_volume.voxels[m_index]
    field = on_slice(np.ones((spec.size, spec.size), np.float32)) > 0.5
    flat = np.flatnonzero(body_mask(original).ravel() & field)
    n = round(fraction * flat.size)
    if n < 1:
        raise ValueError("the matched slice shows no body for a deletion check")

    def ranked(values: np.ndarray) -> np.ndarray:
        # Ascending by value, ties ordered by a smooth random field.
        return flat[np.lexsort((smooth_random()[flat], values[flat]))]

    order = ranked(on_slice(maps.match))
    regions = (order[-n:], order[:n], ranked(smooth_random())[-n:])
    modified = np.repeat(original[np.newaxis], len(regions), axis=0)
    for i, region in enumerate(regions):
        np.put(modified[i], region, fill_hu)
    tmp = Volume(modified, match_volume.geometry)
    emb = saliency.model.embed_slices(tmp, np.arange(len(regions)))
    after = emb @ query.embedding.astype(np.float32)
    base = maps.similarity
    return DeletionResult(
        similarity=base,
        drop_most=base - float(after[0]),
        drop_least=base - float(after[1]),
        drop_random=base - float(after[2]),
        n_pixels=int(n),
    )
