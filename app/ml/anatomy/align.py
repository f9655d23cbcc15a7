"""Whole-series alignment of a current CT to a prior CT of the same patient.

Per-slice nearest neighbours alone are brittle: a slice of liver looks much
like the slice 10 mm below it, and a slice can match a look-alike level far
away. But two scans of one patient share one anatomy, so the level of every
current slice in the prior is, in millimetres, ``z_prior = z_current + d(z)``
with an offset ``d`` that is almost constant: the table and frame of reference
shift it as a whole, and breathing bends it slowly near the diaphragm. Slices
also keep their order (the mapping is monotonic).

:func:`align_series` finds ``d`` from the similarity scores of all slices
together, in three passes:

1. *Placement* (slope exactly 1): the constant offset under which the
   overlapping slices match best. Each slice votes with the *rank* of the prior
   level it would land on among all prior slices (1 = its best match, 0.5 =
   chance). A slice that lands off the prior votes 0.5 (chance), so neither
   more nor less overlap is favoured for its own sake, only overlap that
   matches; and since the slope is fixed, slices beyond the prior cannot be
   pinned to its end slice (which they resemble most). Ranks make the vote
   immune to how a given model spreads its scores.
2. *Shape*: breathing bends ``d(z)`` smoothly over the whole scan (a bell
   some 100 mm wide at the lung bases), and two scans at opposite phases
   give slopes of 0.9-1.1 along much of the overlap. A curve
   ``d1 + a + s (z - mid) + k x^2`` (``x`` = -1..1 over the trusted slices,
   continued linearly beyond them) is fitted to all trusted slices at once
   by grid search, with a penalty on ``s`` and ``k`` so that ambiguous
   evidence leaves it straight. On simulated hard pairs a quadratic fits the
   true offset curve to ~0.2 mm; a constant offset misses it by ~1 mm on
   average and by up to 5 mm at the ends.
3. *Precision* (dynamic programming, Viterbi, over a 0.25 mm grid within
   ``residual_band_mm`` of that curve): the evidence of slice ``i`` for
   residual ``r`` is its similarity at ``z_i + d(z_i) + r`` (cubic
   interpolation between prior slices, so the answer is continuous, not
   snapped to a slice); a smoothness cost ``lambda * (delta r)^2 / delta z``
   makes ``r`` a Brownian path in millimetres, independent of either series'
   slice spacing, and a bound on ``|delta r| / delta z`` keeps the mapping
   monotonic. The cost is on the residual, not on ``d`` itself: a Brownian
   prior on ``d`` straightens any sustained slope (its cost grows with the
   slope's length), which left errors growing toward the ends of the overlap.
   Slices whose band reaches off the prior add no evidence, so the ends do
   not bias the offset; their levels follow the curve.

Passes 2 and 3 also weigh the similarity of the model's feature maps
(:mod:`app.ml.anatomy.features`), which keeps where in the slice each pattern lies
and so separates neighbouring levels the pooled embedding confuses.
Optionally (``fine_weight`` > 0, off by default), a last Viterbi within
``fine_band_mm`` of the path adds local image evidence (pixel NCC).

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

__all__ = ["AlignParams", "Alignment", "align_series", "levels_in_coverage", "normalise_scores"]

# Offset grid of the placement vote (mm).
_PLACEMENT_GRID_MM = 1.0
# Offset grid (mm) of the smooth-shape search's lookup tables.
_SHAPE_GRID_MM = 0.25
# Largest slope (mm/mm) of the smooth offset curve anywhere.
_SHAPE_MAX_SLOPE = 0.5
# Work-array cells (candidate shapes x trusted slices) per block of the shape search.
_SHAPE_BLOCK_CELLS = 1 << 20
# Most trusted slices the shape search reads (more are subsampled evenly).
_SHAPE_MAX_ROWS = 128
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
        How far (mm) the smooth offset curve may move from the placement's
        constant offset: how far breathing and patient tilt may move a level.
    fine_weight
        Weight of the local image evidence (pixel NCC of thumbnails) relative
        to the embedding evidence in the final polish; 0 turns the polish off.
        Off by default: on held-out simulations it sharpened standard pairs
        by ~0.1-0.2 mm but cost up to 4 mm on hard ones (tilt, breathing) and
        on real cropped fields of view, where body-centred pixels misalign.
    anchor
        Cost per mm^2 of deviation from the smooth offset curve, per mm of
        current z, in the Viterbi passes: a local bend must be paid for by
        evidence along its whole length.
    fine_band_mm
        How far (mm) the local image evidence may move the embedding's path.
    coverage_margin_mm
        Extra tolerance beyond half a slice at each end of the prior before a
        mapped level counts as out of coverage.
    shape_slope
        Largest slope of the smooth offset curve (mm of offset per mm of
        current z): breathing bends one scan against the other by up to
        about 0.15 (two scans at opposite phases).
    shape_bend_mm
        Largest quadratic bend of the curve (mm at the ends of the overlap
        relative to a straight line through its middle).
    shape_cost
        Evidence (per mm of trusted anatomy) the curve must gain to afford a
        slope of 0.1 or a bend of 6 mm: weak or ambiguous evidence then
        leaves the curve straight, as the placement found it.
    shape_min_span_mm
        Overlaps shorter than this fit no slope (twice this: no bend); too
        short to tell a slope from noise.
    residual_band_mm
        How far (mm) the Viterbi pass may move each slice's level from the
        smooth curve (local deformation, and noise the curve cannot show).
    feature_weight
        Weight of the model's feature-map similarity (``feature_similarity``)
        relative to the embedding's in the precision passes; 0 ignores it.
    placement_features
        Also weigh the feature maps (with ``feature_weight``) in the placement
        pass's rank votes. On 18 held-out hard pairs of three simulation seeds
        the 10000-step model placed two abdomen-pelvis pairs 22 and 34 mm off
        on the embedding alone (its nearest neighbours there scatter by tens
        of mm); with the feature maps both landed within 3 mm and no other
        pair moved by more than 0.4 mm. The feature maps keep where things
        lie in the slice, which the pooled embedding averages away.
    """

    grid_mm: float = 0.25
    smoothness: float = 5.0
    max_slope: float = 0.25
    band_mm: float = 15.0
    fine_weight: float = 0.0
    fine_band_mm: float = 3.0
    anchor: float = 0.0
    coverage_margin_mm: float = 1.0
    shape_slope: float = 0.2
    shape_bend_mm: float = 12.0
    shape_cost: float = 0.1
    shape_min_span_mm: float = 40.0
    residual_band_mm: float = 6.0
    feature_weight: float = 2.0
    placement_features: bool = True


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


def levels_in_coverage(
    prior_z: np.ndarray, levels: np.ndarray, margin_mm: float
) -> tuple[np.ndarray, np.ndarray]:
    """Which levels the prior images, and the prior slice nearest each.

    Parameters
    ----------
    prior_z
        ``(m,)`` the prior's slice levels (mm), ascending.
    levels
        ``(n,)`` levels mapped into the prior (mm along its normal).
    margin_mm
        Tolerance beyond the imaged slab and a gap (:attr:`AlignParams.coverage_margin_mm`).

    Returns
    -------
    covered, nearest
        ``(n,)`` bool: on the prior's imaged slab (first/last slice +- half a
        slice, + margin) and not in a gap of it; ``(n,)`` index into ``prior_z``.
    """
    pz = np.asarray(prior_z, dtype=np.float64)
    z = np.asarray(levels, dtype=np.float64)
    m = len(pz)
    p_lo, p_hi, h_lo, h_hi = _prior_extent(pz)
    # The mapped level must fall on the prior's imaged slab.
    covered = (z >= p_lo - h_lo - margin_mm) & (z <= p_hi + h_hi + margin_mm)
    nearest = np.clip(np.searchsorted(pz, z), 1, max(m - 1, 1))
    if m == 1:
        nearest = np.zeros(len(z), dtype=np.int64)
    else:
        left = nearest - 1
        pick_left = np.abs(z - pz[left]) <= np.abs(pz[nearest] - z)
        nearest = np.where(pick_left, left, nearest)
    # A level in a gap of the prior (missing slices) is not imaged either: allow
    # up to one typical slice spacing to the nearest slice, as a 2-slice gap would.
    typical_gap = float(np.median(np.diff(pz))) if m > 1 else 2.0 * h_lo
    covered &= np.abs(pz[nearest] - z) <= typical_gap + margin_mm
    return covered, nearest


def _viterbi(emission: np.ndarray, cz: np.ndarray, step: float, p: AlignParams) -> np.ndarray:
    """Best offset-state path through ``emission`` (n, G); current z ascending."""
    n, n_states = emission.shape
    score = emission[0].copy()
    back = np.zeros((n, n_states), dtype=np.int32)
    idx = np.arange(n_states)
    for i in range(1, n):
        dz = cz[i] - cz[i - 1]
        # |delta r| <= max_slope * dz, on a curve of slope <= _SHAPE_MAX_SLOPE (sum < 1),
        # keeps the map strictly monotonic.
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


def _shape_basis(cz: np.ndarray, trusted: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Linear and quadratic terms of the smooth offset curve, in mm of current z.

    The quadratic is centred on the trusted slices and continued linearly
    (with its end slopes) beyond them, so it cannot run away where no
    evidence constrains it.
    """
    zt = cz[trusted] if trusted.any() else cz
    mid = 0.5 * (float(zt[0]) + float(zt[-1]))
    half = max(0.5 * (float(zt[-1]) - float(zt[0])), 1e-6)
    x = (cz - mid) / half
    inside = np.abs(x) <= 1.0
    quad = np.where(inside, x**2, 2.0 * np.abs(x) - 1.0)
    return cz - mid, quad, half


def _search_shape(
    evidence: np.ndarray,
    cz: np.ndarray,
    zz: np.ndarray,
    base: np.ndarray,
    trusted: np.ndarray,
    weights: np.ndarray,
    reach: float,
    slope: float,
    bend: float,
    p: AlignParams,
) -> np.ndarray:
    """``base + a + s (z - mid) + k x^2`` maximising the trusted slices' evidence.

    ``|a| <= reach``, ``|s| <= slope``, ``|k| <= bend``; a penalty of
    ``shape_cost`` per mm of trusted anatomy per (0.1 of slope)^2 and per
    (6 mm of bend)^2 keeps an implausible shape from winning on weak evidence.
    Coarse grid search, then a finer one around the best.
    """
    lin, quad, half = _shape_basis(cz, trusted)
    # The curve's slope, the base's plus |s| + 2|k| / half at most, stays
    # within _SHAPE_MAX_SLOPE, so the mapping (with the Viterbi pass's
    # residual slope of at most max_slope on top) remains monotonic.
    base_slope = float(np.max(np.abs(np.diff(base) / np.diff(cz)))) if len(cz) > 1 else 0.0
    room = max(_SHAPE_MAX_SLOPE - base_slope, 0.0)
    rows = np.flatnonzero(trusted)
    # Neighbouring slices carry nearly the same evidence about a smooth curve:
    # every stride-th of them (weighted up) is enough and bounds the cost.
    stride = max(1, int(np.ceil(len(rows) / _SHAPE_MAX_ROWS)))
    rows = rows[::stride]
    lin_t, quad_t, w_t = lin[rows], quad[rows], weights[rows, 0] * stride
    # Each trusted row's evidence on a fine offset grid around its base offset:
    # every candidate shape is then a gather, not an interpolation.
    grid = _SHAPE_GRID_MM
    g_max = reach + slope * float(np.max(np.abs(lin_t))) + bend + grid
    g = grid * np.arange(-np.ceil(g_max / grid), np.ceil(g_max / grid) + 1)
    table = np.nan_to_num(_interpolate(evidence[rows], cz[rows] + base[rows], g, zz), nan=0.0)
    mid_col = (len(g) - 1) // 2
    row_idx = np.arange(len(rows))[None, :]
    w_sum = float(w_t.sum())

    # Candidate shapes per block: bounds the (shapes x rows) work arrays.
    block = max(1, _SHAPE_BLOCK_CELLS // len(rows))

    def best_of(
        a_vals: np.ndarray, s_vals: np.ndarray, k_vals: np.ndarray
    ) -> tuple[float, float, float]:
        a_, s_, k_ = (v.ravel() for v in np.meshgrid(a_vals, s_vals, k_vals, indexing="ij"))
        vals = np.empty(len(a_))
        for lo in range(0, len(a_), block):
            sl = slice(lo, lo + block)
            off = a_[sl, None] + s_[sl, None] * lin_t[None, :] + k_[sl, None] * quad_t[None, :]
            col = np.clip(np.rint(off / grid).astype(np.int64) + mid_col, 0, len(g) - 1)
            vals[sl] = table[row_idx, col] @ w_t
        vals -= p.shape_cost * w_sum * ((s_ / 0.1) ** 2 + (k_ / 6.0) ** 2)
        vals[np.abs(s_) + 2.0 * np.abs(k_) / half > room + 1e-9] = -np.inf
        b = int(np.argmax(vals))
        return float(a_[b]), float(s_[b]), float(k_[b])

    def around(c: float, lim: float, st: float, num: int) -> np.ndarray:
        if lim <= 0:
            return np.zeros(1)
        return np.unique(np.clip(c + st * np.arange(-num, num + 1), -lim, lim))

    # Coarse to fine: each level searches +-4 (then +-2) steps of a quarter of
    # the previous level's steps around its best.
    a_step, s_step, k_step = max(reach / 15.0, grid), slope / 5.0, bend / 3.0
    a, s, k = best_of(
        np.arange(-reach, reach + 1e-9, a_step),
        around(0.0, slope, s_step, 5),
        around(0.0, bend, k_step, 3),
    )
    for num in (4, 2):
        a_step, s_step, k_step = max(a_step / 4.0, grid), s_step / 4.0, k_step / 4.0
        a, s, k = best_of(
            around(a, reach, a_step, num),
            around(s, slope, s_step, num),
            around(k, bend, k_step, num),
        )
    return base + a + s * lin + k * quad


def _fit_shape(
    evidence: np.ndarray,
    cz: np.ndarray,
    zz: np.ndarray,
    d1: float,
    weights: np.ndarray,
    p: AlignParams,
) -> np.ndarray:
    """Smooth offset curve (per current slice, mm) best supported by the evidence.

    Breathing bends the offset curve smoothly over the whole scan (it is a
    bell some 100 mm wide at the lung bases), and the two scans may be bent
    in opposite directions, so slopes of 0.9 to 1.1 along a whole series are
    common; the Brownian prior of the Viterbi pass would straighten them
    toward slope 1 (its cost grows with the length of a slope), leaving
    errors that grow toward the ends of the overlap. An offset, slope and
    quadratic bend fitted to all trusted slices at once follows such a curve
    without following the slices' noise.

    Two stages: within ``band_mm`` of the placement, on the slices whose
    whole band lies on the prior; then within ``residual_band_mm`` of that
    curve, on the (more) slices whose narrower band lies on the prior.
    """
    n = len(cz)
    base = np.full(n, d1)
    for reach, scale in ((p.band_mm, 1.0), (p.residual_band_mm, 0.25)):
        trusted = (cz + base - reach >= zz[0]) & (cz + base + reach <= zz[-1])
        if trusted.sum() < 3:
            break
        span = float(np.ptp(cz[trusted]))
        slope = scale * p.shape_slope if span >= p.shape_min_span_mm else 0.0
        bend = scale * p.shape_bend_mm if span >= 2.0 * p.shape_min_span_mm else 0.0
        base = _search_shape(evidence, cz, zz, base, trusted, weights, reach, slope, bend, p)
    return base


def _residual_path(
    evidence: np.ndarray,
    cz: np.ndarray,
    zz: np.ndarray,
    centre: np.ndarray,
    band: float,
    weights: np.ndarray,
    step: float,
    p: AlignParams,
) -> np.ndarray:
    """Viterbi path of offsets within ``band`` of a smooth ``centre`` curve.

    The smoothness cost is on changes of the *residual* from ``centre``, so a
    slope or bend of the centre costs nothing by itself.
    """
    res = step * np.arange(-np.ceil(band / step), np.ceil(band / step) + 1)
    emission = _interpolate(evidence, cz + centre, res, zz)
    partial = np.any(np.isnan(emission), axis=1)
    emission[partial] = 0.0
    emission = emission * weights
    emission -= (p.anchor * weights + 1e-3 / band**2) * res[None, :] ** 2
    return centre + res[_viterbi(emission, cz, step, p)]


def align_series(
    similarity: np.ndarray,
    current_z: np.ndarray,
    prior_z: np.ndarray,
    params: AlignParams | None = None,
    fine_similarity: np.ndarray | None = None,
    feature_similarity: np.ndarray | None = None,
) -> Alignment:
    """Map every current slice to its anatomical level in the prior.

    Passes (see the module docstring):

    1. *placement*: the constant offset (slope exactly 1) under which the
       overlapping slices' rank votes on the embedding are highest; slices
       landing off the prior vote chance, so no amount of overlap is favoured
       for itself, and with the slope fixed no slice can be pinned to the
       prior's end slice;
    2. *shape*: a smooth offset curve (offset, slope and quadratic bend)
       within ``band_mm`` of the placement, fitted to the embedding evidence
       plus ``feature_weight`` times the feature maps' (``feature_similarity``);
    3. *precision*: Viterbi within ``residual_band_mm`` of that curve, its
       smoothness cost on the deviation from the curve;
    4. optionally, the same within ``fine_band_mm`` of that path with
       ``fine_weight`` times the local image evidence (``fine_similarity``).

    Passes 2-4 count only slices whose whole band lies on the prior: slices
    near or beyond the prior's ends add no evidence either way, so the offset
    is not biased toward more (or less) overlap; their levels follow the
    curve (continued linearly beyond the trusted slices).

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
        used only in the last pass.
    feature_similarity
        Optional ``(n, m)`` similarity of the model's feature maps
        (:func:`app.ml.anatomy.features.feature_similarity`), used in passes 2-4.

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
    if feature_similarity is not None and np.shape(feature_similarity) != sim.shape:
        raise ValueError("feature_similarity must have the shape of similarity")
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
    # The precision passes also weigh the feature maps' similarity; the sum is
    # rescaled like the embedding's alone, so every cost keeps its meaning.
    precise = evidence
    if feature_similarity is not None and p.feature_weight > 0:
        feat = np.asarray(feature_similarity, dtype=np.float64)[c_order][:, p_order]
        precise = normalise_scores(evidence + p.feature_weight * normalise_scores(feat))

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
    # The placement and the overlap test below (own best matches) judge one signal.
    placing = precise if p.placement_features else evidence
    ranks = _row_ranks(placing)
    votes = _interpolate(ranks, cz, placements, zz, cubic=False)
    landed = ~np.isnan(votes)
    votes = np.where(landed, votes - 0.5, 0.0)
    total = (votes * weights).sum(axis=0)
    # The offset is chosen on the votes' cubes (sign kept): a slice landing on
    # one of its best matches counts far more than one landing on a merely
    # similar level. With plain votes, a long overlap of look-alike levels
    # (chest slices 35 mm apart still rank ~0.75) outvoted a short true one
    # (22 mm of a 148 mm series at the end of the prior, ranks ~0.95); on 75
    # simulated pairs the cubes fixed that pair (mean |dz| 23.3 -> 3.5 mm) and
    # changed no other by more than 0.25 mm. The placement's rank (the overlap
    # score) is still the plain mean at the chosen offset.
    confident = (np.sign(votes) * np.abs(2.0 * votes) ** 3 * weights).sum(axis=0)
    best = int(np.argmax(confident))
    d1 = float(placements[best])
    # Mean vote over the landed slices, shrunk toward chance by a pseudo-count
    # of _RANK_PRIOR_MM of chance votes: the best of many offsets is picked, so
    # a short overlap can score high by luck (a few slices of unrelated anatomy
    # landing on their best matches), a long one cannot.
    w_in = (weights[:, 0] * landed[:, best]).sum()
    placement_rank = float(0.5 + total[best] / (w_in + _RANK_PRIOR_MM))

    # -- pass 2: a smooth offset curve (offset, slope, bend) around the placement -
    centre = _fit_shape(precise, cz, zz, d1, weights, p)

    # -- pass 3: Viterbi within a narrow band of that curve -------------------------
    path = _residual_path(precise, cz, zz, centre, p.residual_band_mm, weights, step, p)

    # -- pass 4: sub-slice polish with local image evidence, in a narrow band ----
    # Pixel correlation sharpens the level between neighbouring slices, but it
    # is biased by tilt, contrast and cropped fields of view: it may only move
    # the path by a few millimetres, never drag it.
    if fine_similarity is not None and p.fine_weight > 0 and p.fine_band_mm > 0:
        fine = np.asarray(fine_similarity, dtype=np.float64)[c_order][:, p_order]
        combined = precise + p.fine_weight * normalise_scores(fine)
        path = _residual_path(combined, cz, zz, path, p.fine_band_mm, weights, step, p)
    mapped_sorted = cz + path

    covered_sorted, nearest_sorted = levels_in_coverage(pz, mapped_sorted, p.coverage_margin_mm)

    # Outliers: own best match more than a few slices off the path.
    # On the evidence the placement used (match_slope, the overlap test, reads these).
    own_best = pz[np.argmax(placing, axis=1)]
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
