"""Whole-series alignment of a current CT to a prior CT of the same patient.

Per-slice nearest neighbours alone are brittle: a slice of liver looks much
like the slice 10 mm below it, and a slice can match a look-alike level far
away. But two scans of one patient share one anatomy, so the level of every
current slice in the prior is, in millimetres, ``z_prior = z_current + d(z)``
with an offset ``d`` that is almost constant: the table and frame of reference
shift it as a whole, and breathing bends it slowly near the diaphragm. Slices
also keep their order (the mapping is monotonic).

:func:`align_series` finds ``d`` from the similarity scores of all slices
together, in two passes:

1. *Placement* (slope exactly 1): the constant offset under which the
   overlapping slices match best. Each slice votes with the *rank* of the prior
   level it would land on among all prior slices (1 = its best match, 0.5 =
   chance). A slice that lands off the prior votes 0.5 (chance), so neither
   more nor less overlap is favoured for its own sake, only overlap that
   matches; and since the slope is fixed, slices beyond the prior cannot be
   pinned to its end slice (which they resemble most). Ranks make the vote
   immune to how a given model spreads its scores.
2. *Precision* (dynamic programming, Viterbi, over a 0.25 mm offset grid within
   ``band_mm`` of the placement): the evidence of slice ``i`` for offset ``d``
   is its similarity at ``z_i + d`` (cubic interpolation between prior
   slices, so the answer is continuous, not snapped to a slice); a
   smoothness cost ``lambda * (delta d)^2 / delta z`` makes ``d`` a Brownian
   path in millimetres, independent of either series' slice spacing, and a
   bound on ``|delta d| / delta z`` keeps the mapping monotonic. Slices whose
   band reaches off the prior add no evidence, so the ends do not bias the
   offset; their levels follow from their neighbours with slope 1.
3. Optionally (``fine_weight`` > 0, off by default), the same programme within
   ``fine_band_mm`` of that path on the embedding plus local image evidence.

A level off the prior's slab (by more than half a slice plus a margin) or in a
gap of it is reported as out of coverage. Outlier slices (whose own best match
is far from the path) are overruled by their neighbours: leaving the path for
one slice costs more than it gains. Whether the prior shows the current's
anatomy at all is judged by :attr:`Alignment.overlap_score`: the placement's
rank vote must beat chance clearly, and the slices' own best matches must
progress through the prior at about the current's rate (slope about 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["AlignParams", "Alignment", "align_series", "normalise_scores"]

# Offset grid of the placement vote (mm).
_PLACEMENT_GRID_MM = 1.0
# Pseudo-count (mm of current anatomy voting chance) in the placement rank.
_RANK_PRIOR_MM = 20.0
# Overlap check: slope of own best matches vs position, from slice pairs at
# least this far apart, on at most this many slices; accepted slope range.
_SLOPE_MIN_SPAN_MM = 20.0
_SLOPE_MAX_ROWS = 200
_SLOPE_RANGE = (0.5, 2.0)


@dataclass(frozen=True)
class AlignParams:
    """Tuning of :func:`align_series` (physical units: mm).

    Parameters
    ----------
    grid_mm
        Resolution of the precision passes' offset grid (at most a quarter of
        the current's slice spacing is used, so thin slices can still bend).
    smoothness
        ``lambda`` of the Brownian smoothness cost, per mm^2 of offset change
        per mm of current z. Larger = stiffer offset curve.
    max_slope
        Hard bound on ``|d'(z)|``: how much faster or slower than 1:1 the
        anatomy may move along z locally (breathing compresses the upper
        abdomen by tens of percent at most). Below 1, so the map is monotonic.
    band_mm
        Half-width of the band around the placement searched by the precision
        pass: how far breathing and patient tilt may move a level from the
        placement's constant offset.
    fine_weight
        Weight of the local image evidence (pixel NCC of thumbnails) relative
        to the embedding evidence in the final polish; 0 turns the polish off.
        Off by default: on held-out simulations it sharpened standard pairs
        by ~0.1-0.2 mm but cost up to 4 mm on hard ones (tilt, breathing) and
        on real cropped fields of view, where body-centred pixels misalign.
    anchor
        Cost per mm^2 of deviation from the placement's offset, per mm of
        current z, in the precision pass: a bend of the mapping (breathing)
        must be paid for by evidence along its whole length, so scattered
        weak evidence cannot drag the mapping off a sound placement.
    fine_band_mm
        How far (mm) the local image evidence may move the embedding's path.
    coverage_margin_mm
        Extra tolerance beyond half a slice at each end of the prior before a
        mapped level counts as out of coverage.
    """

    grid_mm: float = 0.25
    smoothness: float = 5.0
    max_slope: float = 0.25
    band_mm: float = 15.0
    fine_weight: float = 0.0
    fine_band_mm: float = 3.0
    anchor: float = 0.0
    coverage_margin_mm: float = 1.0


@dataclass(frozen=True)
class Alignment:
    """The anatomical mapping of each current slice into the prior.

    Attributes
    ----------
    current_z
        ``(n,)`` slice_z of the current series (mm), in the current's slice order.
    mapped_z
        ``(n,)`` level in the prior's slice_z coordinates (mm) showing the same
        anatomy, continuous; may lie outside the prior for uncovered slices.
    prior_index
        ``(n,)`` nearest prior slice to ``mapped_z`` (clipped to the series).
    score
        ``(n,)`` similarity of each current slice to ``prior_index``.
    in_coverage
        ``(n,)`` whether the prior images the mapped level.
    prior_z
        ``(m,)`` slice_z of the prior.
    outlier
        ``(n,)`` slices whose own best match lies far (> ``outlier_mm``) from the path:
        the evidence the alignment overruled.
    placement_offset_mm
        The constant offset of the placement pass.
    placement_rank
        Mean rank (0..1) of the prior levels the overlapping slices land on at
        the placement: about 0.5 when the prior shows nothing of the current
        (chance), near 1 when every slice lands on its best match.
    best_z
        ``(n,)`` prior level (mm) of each current slice's own best match.
    """

    current_z: np.ndarray
    mapped_z: np.ndarray
    prior_index: np.ndarray
    score: np.ndarray
    in_coverage: np.ndarray
    prior_z: np.ndarray
    outlier: np.ndarray
    placement_offset_mm: float = float("nan")
    placement_rank: float = float("nan")
    best_z: np.ndarray | None = None

    @property
    def match_slope(self) -> float:
        """Robust slope of the slices' own best matches against their position (mm/mm).

        The Theil-Sen estimate (median of pairwise slopes) of ``best_z`` against
        ``current_z`` over covered slices at least 20 mm apart. Two scans of the
        same anatomy give about 1: each slice's best match moves through the
        prior as the slice moves through the current. Adjacent but
        non-overlapping anatomy gives about 0 (every slice's best match is the
        prior's end slice), unrelated anatomy anything. NaN when the covered
        slices span less than 20 mm.
        """
        if self.best_z is None:
            return float("nan")
        sel = np.flatnonzero(self.in_coverage)
        if len(sel) > _SLOPE_MAX_ROWS:  # pairs grow quadratically: subsample evenly
            sel = sel[np.linspace(0, len(sel) - 1, _SLOPE_MAX_ROWS).astype(int)]
        cz, bz = self.current_z[sel], self.best_z[sel]
        i, j = np.triu_indices(len(sel), 1)
        dz = cz[j] - cz[i]
        far = np.abs(dz) >= _SLOPE_MIN_SPAN_MM
        if not far.any():
            return float("nan")
        return float(np.median((bz[j] - bz[i])[far] / dz[far]))

    @property
    def overlap_score(self) -> float:
        """How convincingly the prior shows the current's anatomy: 0 (chance) .. 1.

        ``2 * placement_rank - 1`` (the placement's mean rank rescaled so that
        chance is 0 and every slice on its best match is 1), set to 0 when no
        slice is covered, when the slices' own best matches do not progress
        through the prior at about the current's rate (:attr:`match_slope`
        outside [0.5, 2]), which is what adjacent or unrelated anatomy gives,
        or when under 20 mm of a current of 40 mm or more is covered (too
        little to verify).
        Rank-based and scale-free, it needs no threshold tuned to how a
        particular model spreads its scores.
        """
        rank = self.placement_rank
        if not np.isfinite(rank) or not self.in_coverage.any():
            return 0.0
        slope = self.match_slope
        if np.isfinite(slope):
            if not _SLOPE_RANGE[0] <= slope <= _SLOPE_RANGE[1]:
                return 0.0
        elif np.ptp(self.current_z) >= 2.0 * _SLOPE_MIN_SPAN_MM:
            # The prior covers under 20 mm of a longer current: too little to
            # verify, and exactly what a neighbouring body region produces (the
            # current's end slices all resemble the prior's end slice).
            return 0.0
        return float(np.clip(2.0 * rank - 1.0, 0.0, 1.0))

    @property
    def offset_mm(self) -> float:
        """Median offset ``mapped_z - current_z`` (mm) over covered slices."""
        sel = self.in_coverage if self.in_coverage.any() else np.ones_like(self.in_coverage)
        return float(np.median(self.mapped_z[sel] - self.current_z[sel]))

    @property
    def coverage_fraction(self) -> float:
        """Fraction of current slices imaged by the prior."""
        return float(np.mean(self.in_coverage)) if len(self.in_coverage) else 0.0

    def map_z(self, z: float | np.ndarray) -> np.ndarray:
        """Prior level (mm) for arbitrary current levels, interpolating the offset curve.

        Beyond the current series the offset at its nearest end is carried on.
        """
        order = np.argsort(self.current_z)
        cz = self.current_z[order]
        off = (self.mapped_z - self.current_z)[order]
        z = np.asarray(z, dtype=np.float64)
        return z + np.interp(z, cz, off)


def normalise_scores(similarity: np.ndarray) -> np.ndarray:
    """Centre each row on its median and scale by the typical peak height.

    A row's median removes how similar a slice is to everything (uniform
    abdominal slices resemble each other more than neck slices do); one
    global scale keeps a weak row (a level the prior lacks) weaker than a
    strong one, which per-row max-scaling would hide (and, measured on
    held-out pairs, per-row scaling was less accurate).

    Parameters
    ----------
    similarity
        ``(n, m)`` similarity scores (higher = more alike).

    Returns
    -------
    np.ndarray
        ``(n, m)`` float64, about 1 at a typical row's best match, 0 at its median.
    """
    s = np.asarray(similarity, dtype=np.float64)
    centred = s - np.median(s, axis=1, keepdims=True)
    peaks = centred.max(axis=1)
    scale = float(np.median(peaks))
    if not np.isfinite(scale) or scale <= 1e-9:
        # All rows flat: no evidence anywhere; keep values finite and tiny.
        scale = max(float(np.max(np.abs(centred))), 1e-9)
    return centred / scale


def _local_spacing(z: np.ndarray) -> np.ndarray:
    """Per-slice extent (mm) along z: the mean of the gaps to its neighbours."""
    if len(z) == 1:
        return np.ones(1)
    gaps = np.abs(np.diff(z))
    left = np.concatenate([gaps[:1], gaps])
    right = np.concatenate([gaps, gaps[-1:]])
    return (left + right) / 2.0


def _prior_extent(prior_z: np.ndarray) -> tuple[float, float, float, float]:
    """Lowest and highest slice centres and half-slice extensions at each end."""
    spacing = _local_spacing(prior_z)
    return (
        float(prior_z[0]),
        float(prior_z[-1]),
        float(spacing[0] / 2.0),
        float(spacing[-1] / 2.0),
    )


def _viterbi(emission: np.ndarray, cz: np.ndarray, step: float, p: AlignParams) -> np.ndarray:
    """Best offset-state path through ``emission`` (n, G); current z ascending."""
    n, n_states = emission.shape
    score = emission[0].copy()
    back = np.zeros((n, n_states), dtype=np.int32)
    idx = np.arange(n_states)
    for i in range(1, n):
        dz = cz[i] - cz[i - 1]
        # |delta d| <= max_slope * dz < dz keeps the map strictly monotonic.
        reach = min(int(np.floor(p.max_slope * dz / step + 1e-9)), n_states - 1)
        best = np.full(n_states, -np.inf)
        arg = np.zeros(n_states, dtype=np.int32)
        for u in range(-reach, reach + 1):
            # Moving from state g - u to g; cost of an offset change of u * step.
            cost = p.smoothness * (u * step) ** 2 / dz
            cand = np.full(n_states, -np.inf)
            if u >= 0:
                cand[u:] = score[: n_states - u] - cost
            else:
                cand[:u] = score[-u:] - cost
            better = cand > best
            best[better] = cand[better]
            arg[better] = (idx - u)[better]
        back[i] = arg
        score = best + emission[i]
    path = np.empty(n, dtype=np.int64)
    path[-1] = int(np.argmax(score))
    for i in range(n - 1, 0, -1):
        path[i - 1] = back[i, path[i]]
    return path


def _row_ranks(values: np.ndarray) -> np.ndarray:
    """Each entry's rank within its row, scaled to [0, 1] (1 = the row's best)."""
    m = values.shape[1]
    order = np.argsort(values, axis=1, kind="stable")
    ranks = np.empty_like(values, dtype=np.float64)
    np.put_along_axis(ranks, order, np.arange(m, dtype=np.float64)[None, :], axis=1)
    return ranks / max(m - 1, 1)


def _interpolate(
    evidence: np.ndarray,
    cz: np.ndarray,
    offsets: np.ndarray,
    zz: np.ndarray,
    cubic: bool = True,
):
    """Evidence of each current slice at each offset; NaN where the level is off the prior.

    Cubic (Catmull-Rom) between prior slices, not linear: a piecewise-linear
    profile peaks exactly on a slice, and when both series' spacings are
    commensurate (1.25 and 5 mm) every row then votes for the same few
    offsets, snapping the whole mapping to the prior's slice grid. The cubic
    places each row's peak between slices, as a parabolic sub-pixel fit would.
    """
    # Hold the end slices' values over their outer half-slice (zz has those ends).
    values = np.concatenate([evidence[:, :1], evidence, evidence[:, -1:]], axis=1)
    last = values.shape[1] - 1
    queries = cz[:, None] + offsets[None, :]
    outside = (queries < zz[0]) | (queries > zz[-1])
    u = np.interp(queries, zz, np.arange(len(zz), dtype=np.float64))
    i = np.clip(np.floor(u).astype(np.int64), 0, max(last - 1, 0))
    t = u - i
    p1 = np.take_along_axis(values, i, axis=1)
    p2 = np.take_along_axis(values, np.clip(i + 1, 0, last), axis=1)
    if not cubic:
        out = p1 + (p2 - p1) * t
        out[outside] = np.nan
        return out
    p0 = np.take_along_axis(values, np.clip(i - 1, 0, last), axis=1)
    p3 = np.take_along_axis(values, np.clip(i + 2, 0, last), axis=1)
    out = 0.5 * (
        2.0 * p1
        + (p2 - p0) * t
        + (2.0 * p0 - 5.0 * p1 + 4.0 * p2 - p3) * t**2
        + (3.0 * (p1 - p2) + p3 - p0) * t**3
    )
    out[outside] = np.nan
    return out


def _banded_path(
    evidence: np.ndarray,
    cz: np.ndarray,
    offsets: np.ndarray,
    zz: np.ndarray,
    centre: np.ndarray,
    band: float,
    weights: np.ndarray,
    step: float,
    p: AlignParams,
) -> np.ndarray:
    """Viterbi offset path (mm, per current slice) within ``band`` of ``centre``.

    Rows whose band reaches off the prior add no evidence, so the prior's ends
    do not bias the offset; ``p.anchor`` makes a deviation from ``centre``
    (a bend: breathing) pay for itself with evidence along its length.
    """
    # Only offsets within reach of the band: a few dozen states, not thousands.
    near = (offsets >= centre.min() - band - step) & (offsets <= centre.max() + band + step)
    offsets = offsets[near]
    emission = _interpolate(evidence, cz, offsets, zz)
    in_band = np.abs(offsets[None, :] - centre[:, None]) <= band
    partial = np.any(in_band & np.isnan(emission), axis=1)
    emission[partial] = 0.0
    emission = np.where(in_band, np.nan_to_num(emission, nan=0.0), -np.inf) * weights
    # A whisper of the pull also breaks ties where no row has evidence.
    deviation = (offsets[None, :] - centre[:, None]) ** 2
    emission -= (p.anchor * weights + 1e-3 / band**2) * deviation
    return offsets[_viterbi(emission, cz, step, p)]


def align_series(
    similarity: np.ndarray,
    current_z: np.ndarray,
    prior_z: np.ndarray,
    params: AlignParams | None = None,
    fine_similarity: np.ndarray | None = None,
) -> Alignment:
    """Map every current slice to its anatomical level in the prior.

    Two passes (see the module docstring):

    1. *placement*: the constant offset (slope exactly 1) under which the
       overlapping slices' rank votes are highest; slices landing off the
       prior vote chance, so no amount of overlap is favoured for itself, and
       with the slope fixed no slice can be pinned to the prior's end slice;
    2. *precision*: Viterbi within ``band_mm`` of the placement, on the
       embedding evidence plus ``fine_weight`` times the local image evidence
       (``fine_similarity``), counting only slices whose whole band lies on
       the prior. Slices near or beyond the prior's ends add no evidence
       either way, so the offset is not biased toward more (or less) overlap;
       their levels follow from their neighbours through the smoothness
       prior, with slope 1 in mm.

    Parameters
    ----------
    similarity
        ``(n, m)`` similarity of current slice ``i`` to prior slice ``j``
        (cosine of embeddings); entries never scored may hold the row's floor.
    current_z, prior_z
        slice_z (mm) of both series along their own normals, in slice order.
        Each must be strictly monotonic; both point the same anatomical way
        (display orientation: toward the head).
    params
        Tuning; defaults when ``None``.
    fine_similarity
        Optional ``(n, m)`` local image similarity (e.g. NCC of thumbnails),
        used only in the second pass.

    Returns
    -------
    Alignment
    """
    p = params or AlignParams()
    sim = np.asarray(similarity, dtype=np.float64)
    cz_in = np.asarray(current_z, dtype=np.float64).reshape(-1)
    pz_in = np.asarray(prior_z, dtype=np.float64).reshape(-1)
    n, m = sim.shape
    if n != len(cz_in) or m != len(pz_in):
        raise ValueError(
            f"similarity {sim.shape} does not match {len(cz_in)} x {len(pz_in)} slices"
        )
    if fine_similarity is not None and np.shape(fine_similarity) != sim.shape:
        raise ValueError("fine_similarity must have the shape of similarity")
    if n == 0 or m == 0:
        raise ValueError("both series need at least one slice")
    if not (np.all(np.isfinite(sim)) and np.all(np.isfinite(cz_in)) and np.all(np.isfinite(pz_in))):
        raise ValueError("similarity and slice positions must be finite")

    # Work in ascending z for both; results go back to the callers' order.
    c_order = np.argsort(cz_in, kind="stable")
    p_order = np.argsort(pz_in, kind="stable")
    cz = cz_in[c_order]
    pz = pz_in[p_order]
    if np.any(np.diff(pz) <= 0) or np.any(np.diff(cz) <= 0):
        raise ValueError("slice positions must be distinct")
    evidence = normalise_scores(sim[c_order][:, p_order])

    p_lo, p_hi, h_lo, h_hi = _prior_extent(pz)
    zz = np.concatenate([[p_lo - h_lo], pz, [p_hi + h_hi]])

    # Offsets such that at least one current slice lands within reach of the prior.
    pad = 2.0 * max(h_lo, h_hi) + 5.0
    d_min = (p_lo - h_lo - pad) - cz[-1]
    d_max = (p_hi + h_hi + pad) - cz[0]
    # Fine enough that a typical slice step can move the offset by one state
    # (max_slope * dz >= step) - else thin-slice series could not follow breathing.
    dz_typical = float(np.median(np.diff(cz))) if n > 1 else 1.0
    step = min(p.grid_mm, p.max_slope * dz_typical)
    weights = _local_spacing(cz)[:, None]  # evidence per mm of current anatomy

    # -- pass 1: placement (constant offset, rank votes) -------------------------
    # A 1 mm grid is ample to place; the precision passes refine on `step`.
    placement_step = max(step, _PLACEMENT_GRID_MM)
    placements = d_min + placement_step * np.arange(
        int(np.ceil((d_max - d_min) / placement_step)) + 1
    )
    ranks = _row_ranks(evidence)
    votes = _interpolate(ranks, cz, placements, zz, cubic=False)
    landed = ~np.isnan(votes)
    votes = np.where(landed, votes - 0.5, 0.0) * weights
    total = votes.sum(axis=0)
    best = int(np.argmax(total))
    d1 = float(placements[best])
    # Mean vote over the landed slices, shrunk toward chance by a pseudo-count
    # of _RANK_PRIOR_MM of chance votes: the best of many offsets is picked, so
    # a short overlap can score high by luck (a few slices of unrelated anatomy
    # landing on their best matches), a long one cannot.
    w_in = (weights[:, 0] * landed[:, best]).sum()
    placement_rank = float(0.5 + total[best] / (w_in + _RANK_PRIOR_MM))
    coarse = np.full(n, d1)
    # The fine offset grid, only as wide as the precision passes can reach.
    reach = p.band_mm + 2.0 * step
    offsets = d1 + step * np.arange(-np.ceil(reach / step), np.ceil(reach / step) + 1)

    # -- pass 2: precision on the embedding, within a band around the placement -
    path = _banded_path(evidence, cz, offsets, zz, coarse, p.band_mm, weights, step, p)

    # -- pass 3: sub-slice polish with local image evidence, in a narrow band ----
    # Pixel correlation sharpens the level between neighbouring slices, but it
    # is biased by tilt, contrast and cropped fields of view: it may only move
    # the embedding's path by a few millimetres, never drag it.
    if fine_similarity is not None and p.fine_weight > 0 and p.fine_band_mm > 0:
        fine = np.asarray(fine_similarity, dtype=np.float64)[c_order][:, p_order]
        combined = evidence + p.fine_weight * normalise_scores(fine)
        path = _banded_path(combined, cz, offsets, zz, path, p.fine_band_mm, weights, step, p)
    mapped_sorted = cz + path

    # Coverage: the mapped level must fall on the prior's imaged slab.
    margin = p.coverage_margin_mm
    covered_sorted = (mapped_sorted >= p_lo - h_lo - margin) & (
        mapped_sorted <= p_hi + h_hi + margin
    )
    nearest_sorted = np.clip(np.searchsorted(pz, mapped_sorted), 1, max(m - 1, 1))
    if m == 1:
        nearest_sorted = np.zeros(n, dtype=np.int64)
    else:
        left = nearest_sorted - 1
        pick_left = np.abs(mapped_sorted - pz[left]) <= np.abs(pz[nearest_sorted] - mapped_sorted)
        nearest_sorted = np.where(pick_left, left, nearest_sorted)

    # A level in a gap of the prior (missing slices) is not imaged either: allow
    # up to one typical slice spacing to the nearest slice, as a 2-slice gap would.
    typical_gap = float(np.median(np.diff(pz))) if m > 1 else 2.0 * h_lo
    covered_sorted &= np.abs(pz[nearest_sorted] - mapped_sorted) <= typical_gap + margin

    # Outliers: own best match more than a few slices off the path.
    own_best = pz[np.argmax(evidence, axis=1)]
    best_z = np.empty(n)
    best_z[c_order] = own_best
    outlier_mm = max(10.0, 2.0 * float(np.median(_local_spacing(pz))))
    outlier_sorted = covered_sorted & (np.abs(own_best - mapped_sorted) > outlier_mm)

    # Back to the callers' slice orders.
    mapped = np.empty(n)
    mapped[c_order] = mapped_sorted
    prior_index = np.empty(n, dtype=np.int64)
    prior_index[c_order] = p_order[nearest_sorted]
    covered = np.empty(n, dtype=bool)
    covered[c_order] = covered_sorted
    outlier = np.empty(n, dtype=bool)
    outlier[c_order] = outlier_sorted
    scores = sim[np.arange(n), prior_index]
    return Alignment(
        placement_offset_mm=d1,
        placement_rank=placement_rank,
        best_z=best_z,
        current_z=cz_in.copy(),
        mapped_z=mapped,
        prior_index=prior_index,
        score=scores,
        in_coverage=covered,
        prior_z=pz_in.copy(),
        outlier=outlier,
    )
