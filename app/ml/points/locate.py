"""Where a point of the current scan lies in a prior: slice match, then local 3-D refinement.

For one pair (current, prior) of the same patient, in any frames of reference.
Once per pair (:meth:`PointPair.prepare`, after both series are indexed):

1. **Level.** The slice engine's alignment (:class:`app.ml.anatomy.align.Alignment`,
   from the embedding model and its feature maps) maps every current level to
   the prior's, and says which levels the prior images.
2. **Shift.** One large block of the current (168 x 168 x 36 mm, at a level
   both image) is matched in the prior (masked NCC on 4 mm grids, +-100 mm
   in-plane around the matched level, from the same coordinate and from the
   prior's body centre): table height, field of view and frame of reference
   drop out (:meth:`PointPair.global_shift`).
3. **Affine.** Blocks of 68 mm at anchors on a 20 mm lattice through the body
   are matched (+-32 mm in-plane, +-20 mm through-plane around level + shift;
   the slice match bounds the search, so no block can end at a look-alike level
   far away), and a robust affine map is fitted to the matches
   (:meth:`PointPair.fit_affine`): patient rotation and tilt.
4. **Residual field.** The anchors are matched again on the fine grid around
   their affine prediction; the smoothed residuals (Gaussian, 40 mm) model
   breathing (:meth:`PointPair.fit_residuals`).

5. **Registration** (:meth:`PointPair.register`, seconds; lazily at the
   first point when nobody ran it): rigid 3-D registration on the coarse
   grids, one more rigid level on the fine grids, then a B-spline on the
   coarse grids, started from the affine (:mod:`app.ml.points.register`),
   each transform kept only when the anchors look about as alike through it
   as through their own block matches (:func:`trust_transform`). Of the two
   rigid fits the one whose anchors look more alike is kept; with a B-spline
   kept too, the one whose anchors look more alike answers (:func:`prefer_bspline`).

Per point (:meth:`PointPair.locate`, milliseconds):

6. **Checks.** A point outside the current volume or outside the body
   (:mod:`app.ml.points.grids`), or at a level the prior does not image, gets
   ``in_coverage`` False and a message, never a guess at the edge.
7. **Through the registration.** With a verified transform the answer is
   its image of the point (with both, the pair's chosen one); no block search
   follows (on validation pairs it made answers worse, not better).
8. **Local refinement** (only without a verified transform). A 34 mm block around the point (2 mm grid) is
   matched within +-8 mm of the prediction (affine + residual), with a small penalty for
   moving away from it (breathing and local deformation), peak to sub-voxel.
9. **Coverage.** An answer outside the prior's volume or body is not covered.

The settings (:class:`PointParams`) were chosen on validation pairs simulated
from the training volumes, never on the evaluation's held-out volumes.
``confidence`` is the refinement's NCC peak (0..1); ``radius_mm`` an uncertainty
radius calibrated on those validation pairs (:data:`RADIUS_CALIBRATION`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.core.cursor import contains_point
from app.core.volume import Volume
from app.ml.anatomy.align import Alignment
from app.ml.points.grids import SeriesGrid, build_grid, mask_on
from app.ml.points.ncc import ncc_at, ncc_map, peak_subvoxel
from app.ml.points.register import (
    GridRegistration,
    RegisterParams,
    map_points,
    register_grids,
)

__all__ = [
    "BSPLINE_NCC_LEAD",
    "RADIUS_CALIBRATION",
    "REGISTERED_RADIUS",
    "VERIFY_MM",
    "VERIFY_NCC_MARGIN",
    "CandidateCheck",
    "PointMatch",
    "PointPair",
    "PointParams",
    "prefer_bspline",
    "trust_transform",
]

log = logging.getLogger(__name__)

# (confidence threshold, radius mm): the first row whose threshold the
# confidence reaches gives the radius. Measured on validation pairs (training
# volumes chest-angio and upper-abdomen-dicom, standard and hard, seed 100,
# 313 answered points both scans image): the 90th percentile of the 3-D error was 8.2 mm at
# confidence >= 0.8 and 9.6-12.3 mm below (too few points to split further).
# Confidence separates the bands only weakly; the radius is honest, not tight.
RADIUS_CALIBRATION: tuple[tuple[float, float], ...] = (
    (0.8, 8.0),
    (0.0, 12.0),
)
# Radius of an answer through a verified registration, by the local NCC at
# the answer (see RADIUS_CALIBRATION for the reading of the rows): the 90th
# percentile of the answered points' 3-D error on the validation pairs of
# BSPLINE_NCC_LEAD, pairs with a verified registration: 1.1 mm standard,
# 3.9 mm hard (2.3 mm pooled). The hard preset's figure, so a prior with
# breathing and deformation is not drawn tighter than it is.
REGISTERED_RADIUS: tuple[tuple[float, float], ...] = ((0.0, 4.0),)
# Which registration to trust is decided by image evidence at the anchors the
# affine kept: the mean NCC of the fine 34 mm blocks around each anchor and
# its image (:meth:`PointPair.anchor_similarity`). Distance to the anchors'
# block matches is no judge on hard pairs: there the block matches are the
# worse evidence. Validation pairs (chest-lung2, head, chest-4dlung; standard
# and hard, seeds 0-3, one pair each): the anchors' block matches were 1.8-3.1
# mm from the truth (median) on standard pairs and 6.5-8.0 mm on hard ones,
# the rigid stage 0.1-2.9 mm on all but the hard head pair (6.4 mm), so the
# old check (within 6 mm of the block matches) rejected right registrations
# on three of four hard pairs.
#
# A transform is trusted when its anchors' mean NCC is at most this much
# below the block matches' own (which are NCC maxima, on the coarse grid).
# Validation: right transforms (both stages, seven pairs) -0.026 .. +0.069;
# the failed hard head pair's rigid -0.075 and B-spline -0.103.
VERIFY_NCC_MARGIN = 0.05
# Sanity bound (mm) on the median distance between a transform and the
# anchors' block matches: a failed registration (once 162 mm off) is
# rejected whatever its NCC says. Right transforms on validation came within
# 8.8 mm (hard chest-lung2), so the bound is about twice that.
VERIFY_MM = 20.0
# Anchor-NCC lead the B-spline needs over the rigid fit to answer a pair's
# points (:func:`prefer_bspline`). Chosen on validation (``python -m
# app.ml.evaluation.stage_two_tuning --seeds 0,1,2,3,4,5 --pairs 3``:
# chest-lung2, head, chest-4dlung, 18 pairs per preset, 100 points each) by
# the mean error of the answered points over both presets (median / p95 /
# mean, mm; 3.8 % and 4.5 % of points missed whatever the lead):
#   lead 0      standard 0.33 / 1.34 / 0.66   hard 1.29 / 8.18 / 2.48
#   lead 0.01   standard 0.34 / 1.45 / 0.70   hard 1.09 / 8.14 / 2.28
#   lead 0.03   standard 0.34 / 1.45 / 0.70   hard 1.12 / 7.29 / 2.20  (chosen)
#   never       standard 0.34 / 1.45 / 0.70   hard 1.27 / 7.29 / 2.33
BSPLINE_NCC_LEAD = 0.03


@dataclass(frozen=True)
class PointParams:
    """Search settings, in grid voxels of each level (see the module docstring).

    ``coarse_half`` / ``fine_half``: block half-size on the coarse / fine grid;
    ``coarse_search_xy`` / ``coarse_search_z``: the anchors' search half-range
    (and a point's, when no affine could be fitted); ``fine_search``: the local
    refinement's; ``coarse_penalty`` / ``fine_penalty``: NCC subtracted at the
    edge of a search (quadratic in the distance from its start), which prefers
    the prediction among near-equal peaks. ``use_affine``: fit the affine at
    anchors every ``anchor_step_mm`` (at most ``max_anchors``).
    ``local_coarse``: search the coarse grid per point too, within
    ``local_search_xy`` / ``local_search_z`` of the affine prediction (measured
    on validation pairs: it lengthens the error tail, so it is off).
    ``register``: run the 3-D registration (:meth:`PointPair.register`) and
    answer through it where :func:`trust_transform` accepts it, with
    ``verify_mm`` and ``verify_ncc_margin``, the B-spline only with an anchor
    NCC ``bspline_lead`` above the rigid fit's; ``registration``: its settings.
    """

    coarse_half: int = 8
    coarse_search_xy: int = 8
    coarse_search_z: int = 5
    coarse_penalty: float = 0.1
    fine_half: int = 8
    fine_search: int = 4
    use_fine: bool = True
    use_affine: bool = True
    anchor_step_mm: float = 20.0
    max_anchors: int = 300
    local_search_xy: int = 4
    local_search_z: int = 3
    local_coarse: bool = False
    fine_penalty: float = 0.1
    residual_sigma_mm: float = 40.0
    register: bool = True
    verify_mm: float = VERIFY_MM
    verify_ncc_margin: float = VERIFY_NCC_MARGIN
    bspline_lead: float = BSPLINE_NCC_LEAD
    registration: RegisterParams = field(default_factory=RegisterParams)


@dataclass(frozen=True)
class CandidateCheck:
    """One candidate transform of a pair's registration and the anchors' verdict on it.

    ``miss_mm``: median distance to the anchors' block matches; ``similarity``:
    the anchors' mean local NCC through it; ``trusted``: :func:`trust_transform`.
    """

    name: str
    transform: Any = field(repr=False)
    miss_mm: float
    similarity: float
    trusted: bool


@dataclass(frozen=True)
class PointMatch:
    """The answer for one current point.

    Attributes
    ----------
    current_point
        The query, LPS mm.
    prior_point
        The corresponding LPS point in the prior; ``None`` when not covered.
    confidence
        0 (no evidence) .. 1 (identical local anatomy).
    radius_mm
        Uncertainty radius (mm); NaN when not covered.
    in_coverage
        Whether the prior images the point (and the query was valid).
    message
        Why the point is not covered ("" when it is).
    prior_slice
        Prior slice index nearest ``prior_point`` (``None`` when not covered).
    """

    current_point: tuple[float, float, float]
    prior_point: tuple[float, float, float] | None
    confidence: float
    radius_mm: float
    in_coverage: bool
    message: str = ""
    prior_slice: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``priorsync locate --json``."""
        out: dict[str, Any] = {
            "current_point": list(self.current_point),
            "prior_point": None if self.prior_point is None else list(self.prior_point),
            "confidence": self.confidence,
            "radius_mm": None if not np.isfinite(self.radius_mm) else self.radius_mm,
            "in_coverage": self.in_coverage,
        }
        if self.message:
            out["message"] = self.message
        return out


def _pt(p: np.ndarray) -> tuple[float, float, float]:
    return (round(float(p[0]), 3), round(float(p[1]), 3), round(float(p[2]), 3))


def trust_transform(
    miss_mm: float,
    similarity: float,
    block_similarity: float,
    bound_mm: float = VERIFY_MM,
    margin: float = VERIFY_NCC_MARGIN,
) -> bool:
    """Whether a registration may answer points (see :data:`VERIFY_NCC_MARGIN`).

    Parameters
    ----------
    miss_mm
        Median distance (mm) between the transform and the anchors' block matches.
    similarity
        Mean local NCC of the anchors and their images through the transform.
    block_similarity
        The same through the anchors' block matches.
    bound_mm
        Sanity bound on ``miss_mm`` (:data:`VERIFY_MM`).
    margin
        How far ``similarity`` may fall below ``block_similarity``.

    Returns
    -------
    bool
        True when the transform lies within ``bound_mm`` of the anchors and
        they look at most ``margin`` less alike through it than through their
        block matches. NaN evidence is never trusted.
    """
    values = (miss_mm, similarity, block_similarity)
    if not all(np.isfinite(v) for v in values):
        return False
    return bool(miss_mm <= bound_mm and similarity >= block_similarity - margin)


def prefer_bspline(
    rigid_similarity: float, bspline_similarity: float, lead: float = BSPLINE_NCC_LEAD
) -> bool:
    """With both stages trusted, whether the B-spline answers the pair's points.

    Only when its anchors look more alike than the rigid's (mean local NCC) by
    more than ``lead`` (:data:`BSPLINE_NCC_LEAD`): where the motion is rigid
    the B-spline bends the answers (validation standard pairs: rigid
    0.08-1.1 mm median, B-spline 0.4-1.9 mm), and it helps where the anchors
    say so clearly (hard chest-lung2, seed 0: 0.87 against 2.58 mm, anchor NCC
    +0.049). Preferring it per point by the local NCC at the answer (an
    earlier rule) gave 0.69 / 3.18 mm (median / p95) on standard pairs
    against 0.45 / 1.39 mm for a choice per pair.
    """
    return bool(
        np.isfinite(bspline_similarity)
        and (not np.isfinite(rigid_similarity) or bspline_similarity > rigid_similarity + lead)
    )


def radius_for(
    confidence: float, table: tuple[tuple[float, float], ...] = RADIUS_CALIBRATION
) -> float:
    """Uncertainty radius (mm) of an answer of this confidence (:data:`RADIUS_CALIBRATION`)."""
    for threshold, radius in table:
        if confidence >= threshold:
            return radius
    return table[-1][1]


@dataclass
class PointPair:
    """Point correspondence between one current and one prior series.

    Build it with :meth:`prepare` (or from grids already made, e.g. by a viewer
    that keeps them per series); :meth:`locate` then answers in milliseconds.

    Attributes
    ----------
    current, prior
        The two volumes.
    alignment
        The slice engine's alignment of ``current`` to ``prior``.
    current_grid, prior_grid
        Both series on their matching grids.
    params
        Search settings.
    """

    current: Volume
    prior: Volume
    alignment: Alignment
    current_grid: SeriesGrid
    prior_grid: SeriesGrid
    params: PointParams = field(default_factory=PointParams)
    affine: np.ndarray | None = None
    shift: np.ndarray | None = None
    residual_at: np.ndarray | None = None
    residuals: np.ndarray | None = None
    anchor_src: np.ndarray | None = None
    anchor_dst: np.ndarray | None = None
    rigid_transform: Any = field(default=None, init=False, repr=False)
    deformable_transform: Any = field(default=None, init=False, repr=False)
    grid_registration: GridRegistration | None = field(default=None, init=False, repr=False)
    # Every candidate of grid_registration with its check, in candidates() order.
    candidate_checks: list[CandidateCheck] = field(default_factory=list, init=False, repr=False)
    registration_note: str = field(default="", init=False)
    _registered: bool = field(default=False, init=False, repr=False)
    _use_bspline: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.shift is None:
            self.shift = self.global_shift()
        if self.params.use_affine and self.affine is None:
            self.affine = self.fit_affine()
            if self.affine is not None and self.params.residual_sigma_mm > 0:
                self.residual_at, self.residuals = self.fit_residuals()

    @classmethod
    def prepare(
        cls,
        current: Volume,
        prior: Volume,
        alignment: Alignment,
        params: PointParams | None = None,
    ) -> PointPair:
        """Resample both series onto their grids (about a second each) and pair them."""
        return cls(
            current,
            prior,
            alignment,
            build_grid(current),
            build_grid(prior),
            params or PointParams(),
        )

    # -- the stages ----------------------------------------------------------------
    def _uncovered(self, p: np.ndarray, message: str) -> PointMatch:
        return PointMatch(_pt(p), None, 0.0, float("nan"), False, message)

    def _level(self, p: np.ndarray) -> tuple[float, bool]:
        """Prior level (along the prior normal, mm) of ``p`` and whether the prior images it."""
        a = self.alignment
        zc = float(p @ self.current.geometry.normal)
        zp = float(a.map_z(zc))
        nearest = int(np.argmin(np.abs(a.current_z - zc)))
        return zp, bool(a.in_coverage[nearest])

    def global_shift(self) -> np.ndarray:
        """In-plane LPS shift (x, y, 0) from current to prior: one large block match.

        An 168 x 168 x 36 mm block of the current around its body's centre, at
        the middle of the levels the prior images, is correlated with the prior
        over +-100 mm in-plane and +-20 mm through-plane around the matched
        level (coarse grid, masked NCC), from two starts: the same in-plane
        coordinate, and the prior's body centre at that level. The better peak
        wins. Table height, field of view and frame of reference differ by
        tens of mm, and across frames of reference by more than the search
        reaches (a validation chest pair: 181 mm), where the body centres
        still agree to within a cropped field of view.
        """
        a = self.alignment
        covered = np.flatnonzero(a.in_coverage)
        if len(covered) == 0:
            return np.zeros(3)
        mid = int(covered[len(covered) // 2])
        centre_lps = self.current.slice_positions[mid].copy()
        c = self.current_grid.centroid_at(float(centre_lps[2]))
        if c is None:
            return np.zeros(3)
        centre_lps[:2] = c
        zp = float(a.map_z(float(centre_lps @ self.current.geometry.normal)))
        n_prior = self.prior.geometry.normal
        same = centre_lps + (zp - float(centre_lps @ n_prior)) * n_prior
        guesses = [same]
        body = self.prior_grid.centroid_at(float(same[2]))
        if body is not None:
            guesses.append(np.array([body[0], body[1], same[2]]))
        best, found = 0.0, None
        for guess in guesses:
            at, peak = self._shift_match(centre_lps, guess)
            if at is not None and peak > best:
                best, found = peak, at
        if found is None:
            return np.zeros(3)
        shift = found - centre_lps
        shift[2] = 0.0
        return shift

    def _shift_match(
        self, centre_lps: np.ndarray, guess: np.ndarray
    ) -> tuple[np.ndarray | None, float]:
        """:meth:`global_shift`'s block match from one start: (prior LPS of the peak, its NCC)."""
        cur, pri = self.current_grid.coarse, self.prior_grid.coarse
        c0 = np.rint(cur.index_of(centre_lps)).astype(np.int64)
        half = (21, 21, 4)
        template, t_mask = cur.patch(c0, half)
        g0 = np.rint(pri.index_of(guess)).astype(np.int64)
        search = (25, 25, 5)
        reach = (half[0] + search[0], half[1] + search[1], half[2] + search[2])
        region, r_mask = pri.patch(g0, reach)
        score = ncc_map(template, region, t_mask, r_mask)
        if not np.any(score > 0):
            return None, 0.0
        at = np.unravel_index(int(np.argmax(score)), score.shape)
        off = np.array([at[2] - search[0], at[1] - search[1], 0.0]) * pri.spacing
        return pri.lps_of(g0) + off, float(score[at])

    def start(self, p: np.ndarray) -> np.ndarray:
        """Starting prior point: the matched level, shifted in-plane by :meth:`global_shift`."""
        zp, _ = self._level(p)
        n_prior = self.prior.geometry.normal
        start = np.asarray(p, dtype=np.float64) + (self.shift if self.shift is not None else 0.0)
        return start + (zp - float(start @ n_prior)) * n_prior

    def _search(
        self,
        level: str,
        p: np.ndarray,
        guess: np.ndarray,
        half: int,
        search: tuple[int, int, int],
        penalty: float,
    ) -> tuple[np.ndarray, float]:
        """Best prior LPS point for current point ``p`` within ``search`` voxels of ``guess``."""
        cur = getattr(self.current_grid, level)
        pri = getattr(self.prior_grid, level)
        ci = cur.index_of(p)
        c0 = np.rint(ci).astype(np.int64)
        delta = (ci - c0) * cur.spacing  # p relative to the template's centre voxel, mm
        template, t_mask = cur.patch(c0, (half, half, half))
        g0 = np.rint(pri.index_of(guess - delta)).astype(np.int64)
        sx, sy, sz = search
        region, r_mask = pri.patch(g0, (half + sx, half + sy, half + sz))
        score = ncc_map(template, region, t_mask, r_mask)  # (2sz+1, 2sy+1, 2sx+1)
        if penalty > 0:
            zz, yy, xx = np.meshgrid(
                np.linspace(-1, 1, 2 * sz + 1),
                np.linspace(-1, 1, 2 * sy + 1),
                np.linspace(-1, 1, 2 * sx + 1),
                indexing="ij",
            )
            ranked = score - penalty * (xx**2 + yy**2 + zz**2) / 3.0
        else:
            ranked = score
        at = np.unravel_index(int(np.argmax(ranked)), ranked.shape)
        peak = float(score[at])
        zyx = peak_subvoxel(score, tuple(int(v) for v in at))  # type: ignore[arg-type]
        offset_xyz = np.array([zyx[2] - sx, zyx[1] - sy, zyx[0] - sz])
        found = pri.lps_of(g0 + offset_xyz) + delta
        return found, peak

    def anchors(self) -> np.ndarray:
        """Current LPS points on a lattice through the body, at levels the prior images."""
        g = self.current_grid
        step = max(1, int(round(self.params.anchor_step_mm / g.fine.spacing)))
        body = g.body[::step, ::step, ::step]
        zs, ys, xs = np.nonzero(body)
        pts = g.fine.lps_of(np.column_stack([xs, ys, zs]).astype(np.float64) * step)
        keep = [
            i for i, p in enumerate(pts) if contains_point(self.current, p) and self._level(p)[1]
        ]
        pts = pts[keep]
        if len(pts) > self.params.max_anchors:
            pts = pts[np.linspace(0, len(pts) - 1, self.params.max_anchors).astype(int)]
        return pts

    def fit_affine(self) -> np.ndarray | None:
        """A robust affine map current -> prior LPS from block matches at :meth:`anchors`.

        Each anchor is matched on the coarse grid from its slice-match start;
        the affine is fitted by least squares weighted by the match's NCC, then
        refitted twice without the anchors it explains worst (residual above
        2.5 times the median and 5 mm), so a look-alike match cannot pull it.
        ``None`` with fewer than 12 usable anchors (the slice match alone is used).

        Returns
        -------
        np.ndarray or None
            ``(3, 4)``: ``prior = A @ [x, y, z, 1]``.
        """
        prm = self.params
        src, dst, wts = [], [], []
        for p in self.anchors():
            q, score = self._search(
                "coarse",
                p,
                self.start(p),
                prm.coarse_half,
                (prm.coarse_search_xy, prm.coarse_search_xy, prm.coarse_search_z),
                prm.coarse_penalty,
            )
            if score > 0.3:
                src.append(p)
                dst.append(q)
                wts.append(score)
        if len(src) < 12:
            return None
        x = np.column_stack([np.asarray(src), np.ones(len(src))])
        y = np.asarray(dst)
        w = np.asarray(wts)
        keep = np.ones(len(x), dtype=bool)
        a = None
        for _ in range(3):
            if keep.sum() < 12:
                break
            sw = np.sqrt(w[keep])[:, None]
            a, *_ = np.linalg.lstsq(x[keep] * sw, y[keep] * sw, rcond=None)
            res = np.linalg.norm(x @ a - y, axis=1)
            keep = res <= max(2.5 * float(np.median(res[keep])), 5.0)
        if a is None:
            return None
        # The anchors the affine explains: independent evidence for checking
        # the registration (:meth:`register`).
        self.anchor_src, self.anchor_dst = x[keep, :3], y[keep]
        return a.T

    def fit_residuals(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """What the affine leaves at the anchors (breathing), from fine block matches.

        Each anchor is matched on the fine grid within the refinement's range
        of its affine prediction; matches with NCC above 0.5 that move under
        15 mm are kept. :meth:`predict` adds their Gaussian-weighted mean
        (``residual_sigma_mm``) to the affine, fading to the affine alone far
        from every anchor.

        Returns
        -------
        positions, residuals
            ``(K, 3)`` current LPS anchors and ``(K, 3)`` mm, or ``None`` twice.
        """
        prm = self.params
        s = prm.fine_search
        at, res = [], []
        for p in self.anchors():
            guess = self.affine_point(p)
            q, score = self._search("fine", p, guess, prm.fine_half, (s, s, s), prm.fine_penalty)
            r = q - guess
            if score > 0.5 and np.linalg.norm(r) < 15.0:
                at.append(p)
                res.append(r)
        if len(at) < 4:
            return None, None
        return np.asarray(at), np.asarray(res)

    def affine_point(self, p: np.ndarray) -> np.ndarray:
        """``p`` through the pair's affine (the slice-match start without one)."""
        if self.affine is None:
            return self.start(p)
        return self.affine @ np.append(np.asarray(p, dtype=np.float64), 1.0)

    def predict(self, p: np.ndarray) -> np.ndarray:
        """Starting prior point: the affine plus the anchors' smoothed residual."""
        q = self.affine_point(p)
        if self.residual_at is None or self.residuals is None:
            return q
        d2 = np.sum((self.residual_at - np.asarray(p, dtype=np.float64)) ** 2, axis=1)
        w = np.exp(-0.5 * d2 / self.params.residual_sigma_mm**2)
        # The constant in the denominator fades the correction where anchors are far.
        return q + (w @ self.residuals) / (w.sum() + 0.5)

    def register(self) -> bool:
        """3-D registration of the pair, checked against the anchors; once (then cached).

        Rigid (coarse, then fine) and B-spline
        (:func:`app.ml.points.register.register_grids`), over the current's
        body at the levels the prior images, started from the anchor affine
        (else the slice match and global shift). Each stage is *used* by :meth:`locate` only when
        :func:`trust_transform` accepts it: the anchors the affine kept look
        about as alike through it as through their block matches, and it
        lies within ``verify_mm`` of those matches (median). With both
        trusted, :func:`prefer_bspline` picks the one that answers. Seconds
        per pair (the viewer runs it in the background after :meth:`prepare`);
        :meth:`locate` calls it on first use when nobody did.

        Returns
        -------
        bool
            Whether a verified transform is in use (``registration_note`` says why not).
        """
        if self._registered:
            return self.deformable_transform is not None or self.rigid_transform is not None
        self._registered = True
        if not self.params.register:
            self.registration_note = "registration off"
            return False
        a = self.alignment
        covered = np.flatnonzero(a.in_coverage)
        if len(covered) < 2:
            self.registration_note = "fewer than two current slices lie inside the prior"
            return False
        g = self.current_grid
        mid = int(covered[len(covered) // 2])
        centre = self.current.slice_positions[mid].copy()
        c = g.centroid_at(float(centre[2]))
        if c is not None:
            centre[:2] = c
        levels = self.current.slice_z[covered]
        plane_z = g.fine.origin[2] + np.arange(g.body.shape[0]) * g.fine.spacing
        inside = (plane_z >= levels.min()) & (plane_z <= levels.max())
        fine_mask = g.body & inside[:, None, None] & g.fine.valid
        fixed_mask = mask_on(fine_mask, g.fine, g.coarse)
        fixed_mask &= g.coarse.valid
        linear = None if self.affine is None else self.affine[:, :3]
        try:
            found = register_grids(
                g.coarse,
                self.prior_grid.coarse,
                fixed_mask,
                centre,
                self.affine_point(centre),
                self.params.registration,
                linear,
                (g.fine, self.prior_grid.fine, fine_mask),
            )
        except RuntimeError as exc:  # SimpleITK's failures (too few samples...)
            lines = str(exc).strip().splitlines()
            self.registration_note = f"registration failed: {(lines or ['?'])[-1][:200]}"
            return False
        self.grid_registration = found
        notes = []
        block = self.anchor_similarity(None)
        similarity: dict[str, float] = {}
        rigid_name = "rigid"
        for name, tf in found.candidates():
            miss = self._anchor_miss(tf)
            sim = self.anchor_similarity(tf)
            ok = trust_transform(
                miss, sim, block, self.params.verify_mm, self.params.verify_ncc_margin
            )
            self.candidate_checks.append(CandidateCheck(name, tf, miss, sim, ok))
            notes.append(
                f"{name} {'trusted' if ok else 'rejected'} "
                f"(anchors {miss:.1f} mm, NCC {sim:.3f} vs {block:.3f})"
            )
            if not ok:
                continue
            if name == "B-spline":
                self.deformable_transform = tf
                similarity[name] = sim
            # Of the two rigid fits, the one whose anchors look more alike: the
            # fine level sharpened real CT pairs on validation, but it can also
            # walk off on flat anatomy (a smooth phantom: 1.9 against 2.9 mm).
            elif sim > similarity.get("rigid", -np.inf):
                self.rigid_transform = tf
                similarity["rigid"] = sim
                rigid_name = name
        if len(similarity) == 2:
            self._use_bspline = prefer_bspline(
                similarity["rigid"], similarity["B-spline"], self.params.bspline_lead
            )
        else:
            self._use_bspline = "B-spline" in similarity
        if similarity:
            notes.append(f"{'B-spline' if self._use_bspline else rigid_name} in use")
        self.registration_note = "registration: " + ", ".join(notes)
        log.info("point pair: %s", self.registration_note)
        return self.deformable_transform is not None or self.rigid_transform is not None

    def _anchor_miss(self, transform: Any) -> float:
        """Median distance (mm) between ``transform`` and the anchors' block matches."""
        if self.anchor_src is None or self.anchor_dst is None or len(self.anchor_src) == 0:
            return float("inf")
        mapped = map_points(transform, self.anchor_src)
        return float(np.median(np.linalg.norm(mapped - self.anchor_dst, axis=1)))

    def anchor_similarity(self, transform: Any | None) -> float:
        """Mean local NCC (:meth:`local_similarity`) of the affine's anchors and their images.

        The images are ``transform``'s, or the anchors' own block matches when
        ``transform`` is ``None``; NaN without anchors.
        """
        if self.anchor_src is None or self.anchor_dst is None or len(self.anchor_src) == 0:
            return float("nan")
        src = self.anchor_src
        mapped = self.anchor_dst if transform is None else map_points(transform, src)
        scores = [self.local_similarity(p, q) for p, q in zip(src, mapped, strict=True)]
        return float(np.mean(scores))

    def registered_point(self, p: np.ndarray) -> np.ndarray | None:
        """``p`` through the verified registration (:meth:`register`), or ``None``.

        With both transforms verified, the pair's choice (:func:`prefer_bspline`) answers.
        """
        answer = self._registered_answer(p)
        return None if answer is None else answer[0]

    def verified_transform(self) -> Any | None:
        """The verified transform that answers points (:meth:`register`'s choice), or ``None``."""
        if self._use_bspline or self.rigid_transform is None:
            return self.deformable_transform
        return self.rigid_transform

    def _registered_answer(self, p: np.ndarray) -> tuple[np.ndarray, float, float] | None:
        """(prior point, local NCC, distance between the two transforms' answers or 0)."""
        chosen = self.verified_transform()
        if chosen is None:
            return None
        other = (
            self.rigid_transform
            if chosen is self.deformable_transform
            else self.deformable_transform
        )
        xyz = tuple(float(v) for v in p)
        q = np.asarray(chosen.TransformPoint(xyz), dtype=np.float64)
        spread = 0.0
        if other is not None:
            spread = float(np.linalg.norm(q - np.asarray(other.TransformPoint(xyz))))
        return q, self.local_similarity(p, q), spread

    def local_similarity(self, p: np.ndarray, q: np.ndarray) -> float:
        """NCC of the fine blocks around current ``p`` and prior ``q`` (no search)."""
        half = (self.params.fine_half,) * 3
        cur, pri = self.current_grid.fine, self.prior_grid.fine
        a, a_mask = cur.patch(np.rint(cur.index_of(p)).astype(np.int64), half)
        b, b_mask = pri.patch(np.rint(pri.index_of(q)).astype(np.int64), half)
        return ncc_at(a, b, a_mask, b_mask)

    # -- the answer -------------------------------------------------------------------
    def locate(self, point: np.ndarray | tuple[float, float, float]) -> PointMatch:
        """The prior point of one current LPS point (see the module docstring)."""
        p = np.asarray(point, dtype=np.float64).reshape(3)
        if not np.all(np.isfinite(p)):
            return self._uncovered(p, "the point has no finite coordinates")
        if not contains_point(self.current, p):
            return self._uncovered(p, "the point lies outside the current volume")
        if not self.current_grid.in_body(p):
            return self._uncovered(p, "the point lies outside the body")
        _, covered = self._level(p)
        if not covered:
            return self._uncovered(p, "the prior does not image this level")
        prm = self.params
        if not self._registered:
            self.register()
        registered = self._registered_answer(p)
        if registered is not None:
            # Measured on validation pairs: through a verified registration the
            # answer is sharper than any local block search from it (which
            # wanders on flat or deformed blocks), so it stands as it is.
            q, similarity, spread = registered
            return self._answer(p, q, similarity, True, spread)
        guess, confidence = self.predict(p), 0.0
        if self.affine is None or prm.local_coarse:
            if self.affine is not None:
                search = (prm.local_search_xy, prm.local_search_xy, prm.local_search_z)
            else:
                search = (prm.coarse_search_xy, prm.coarse_search_xy, prm.coarse_search_z)
            guess, confidence = self._search(
                "coarse", p, guess, prm.coarse_half, search, prm.coarse_penalty
            )
        if prm.use_fine:
            s = prm.fine_search
            guess, confidence = self._search(
                "fine", p, guess, prm.fine_half, (s, s, s), prm.fine_penalty
            )
        return self._answer(p, guess, confidence, False)

    def _answer(
        self,
        p: np.ndarray,
        guess: np.ndarray,
        confidence: float,
        registered: bool,
        spread: float = 0.0,
    ) -> PointMatch:
        """The :class:`PointMatch` for prior point ``guess``, or "not covered" when it lies outside."""
        if not contains_point(self.prior, guess):
            return self._uncovered(p, "the corresponding point lies outside the prior volume")
        if not self.prior_grid.in_body(guess):
            return self._uncovered(p, "the corresponding point lies outside the prior's body")
        confidence = float(np.clip(confidence, 0.0, 1.0))
        along = float(guess @ self.prior.geometry.normal)
        prior_slice = int(np.argmin(np.abs(self.prior.slice_z - along)))
        if registered:
            # Where the two verified transforms disagree, the radius says so.
            radius = max(radius_for(confidence, REGISTERED_RADIUS), spread)
        else:
            radius = radius_for(confidence)
        return PointMatch(
            _pt(p),
            _pt(guess),
            round(confidence, 4),
            round(radius, 2),
            True,
            "",
            prior_slice,
        )

    def locate_many(self, points: np.ndarray) -> list[PointMatch]:
        """:meth:`locate` for each row of ``(N, 3)`` LPS points."""
        return [self.locate(p) for p in np.asarray(points, dtype=np.float64).reshape(-1, 3)]
