"""Matching every slice of a current CT series to the same anatomical level in a prior.

The pipeline, for a pair (current, prior):

1. embed every slice of both series with the ONNX model and index each series
   in hnswlib (both cached on disk per series and model: :mod:`app.ml.anatomy.index`);
2. score each current slice against the prior by k-NN search of the prior's
   index (the whole series when it is small, else the ``k`` best and a floor),
   and by the cosine of the model's feature maps (:mod:`app.ml.anatomy.features`);
3. align the two series as a whole in physical millimetres (:mod:`app.ml.anatomy.align`):
   placed by the embedding, then a smooth offset curve (breathing) refined on
   both signals; monotonic, outliers overruled, uncovered levels detected;
4. report, per current slice, the prior slice nearest its mapped level.

:class:`Matcher` also answers the viewer's single-slice queries
(:meth:`Matcher.query_slice`) from the same indexes in a few milliseconds.
"""

from __future__ import annotations

import logging
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.core.volume import Volume
from app.ml.anatomy.align import Alignment, AlignParams, align_series
from app.ml.anatomy.features import embed_with_features, feature_similarity
from app.ml.anatomy.index import IndexCache, SeriesIndex, build_index, series_identity
from app.ml.anatomy.refine import ncc_matrix, thumbnails
from app.ml.runtime.model import EmbeddingModel
from app.ml.runtime.preprocess import MIN_PLANE_PIXELS

__all__ = [
    "MIN_OVERLAP",
    "MIN_SHORT_SIMILARITY",
    "MIN_SLICES",
    "SHORT_SERIES_MM",
    "MatchError",
    "MatchResult",
    "Matcher",
    "SliceMatch",
    "check_matchable",
    "matched_similarity",
    "series_extent_mm",
    "short_series_doubt",
]

log = logging.getLogger(__name__)

MIN_SLICES = 2
# Least head-foot extent (slice count x spacing) matched at all, so that two
# slices of a head are not "matched" onto a chest; 30 mm keeps short but real
# series (a 30-slice 1.25 mm reconstruction) matchable. Series under
# SHORT_SERIES_MM get a further check (short_series_doubt).
MIN_EXTENT_MM = 30.0
# Least HU range (max - min) of a series taken for a CT image.
_MIN_HU_RANGE = 300
# Full similarity rows up to this many prior slices (exact k-NN over the whole
# series costs well under a millisecond per query at that size); beyond it the
# k best plus a floor, which keeps the alignment's cost bounded.
_KNN_FULL = 512
# Below this overlap score (Alignment.overlap_score: 0 = chance, 1 = every
# slice on its best match) the prior is taken to show none of the current's
# anatomy. With the shipped 10000-step model, on the 12 held-out evaluation
# pairs (standard and hard, seed 0) the scores were 0.49-0.89; on 16 pairs of
# different body regions (head, neck, chest, abdomen-pelvis, both roles) 0
# (slope test) or at most 0.37, except the 38 mm upper-abdomen series against
# head (0.48 in one role) and head-neck (0.46 and 0.61): too short for the
# slope test, so a series that short is not reliably refused.
MIN_OVERLAP = 0.4
# A series shorter than this head to foot leaves the overlap score unverified:
# its slope test needs covered slices 20 mm apart on a series of 40 mm or more,
# and the rank vote of a few slices can beat chance by luck. Pairs of clearly
# different anatomy can score overlaps as high as truly overlapping same-body
# pairs, so the matched slices must also look alike: their mean cosine must
# reach MIN_SHORT_SIMILARITY. It is a property of the model's embedding, chosen
# for each shipped model by ``python -m app.ml.evaluation.short_series`` on
# validation and training bodies (never test ones): 25 and 36 mm slabs of
# chest-lung2, chest-4dlung, head, OpenKBP 7 and 47 and abdomen-pancreas against
# a simulated follow-up of their own body (72 pairs, both ways) and against
# bodies of regions that share no anatomy with them (40 pairs). With the shipped
# model (priorsync-embed 0bc989e5): same anatomy at least 0.848 (median 0.98),
# different anatomy at most 0.518 (a pelvis slab against a neck; median 0.03);
# the threshold is the gap's midpoint. (The previous model's lists overlapped:
# 0.59 against 0.72, for the same pelvis slab.)
SHORT_SERIES_MM = 40.0
MIN_SHORT_SIMILARITY = 0.68


class MatchError(Exception):
    """The two series cannot be matched; the message says why, for a user."""


@dataclass(frozen=True)
class SliceMatch:
    """The match of one current slice.

    ``prior_index`` and ``prior_position`` are ``None`` when the prior does not
    image the slice's level (``in_coverage`` False); ``score`` is then the
    similarity to the prior slice nearest that level (an edge slice).
    """

    current_index: int
    current_position: tuple[float, float, float]
    prior_index: int | None
    prior_position: tuple[float, float, float] | None
    score: float
    in_coverage: bool

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``priorsync match --json``."""
        return {
            "current_index": self.current_index,
            "current_position": list(self.current_position),
            "prior_index": self.prior_index,
            "prior_position": None if self.prior_position is None else list(self.prior_position),
            "score": self.score,
            "in_coverage": self.in_coverage,
        }


@dataclass
class MatchResult:
    """All slice matches of a pair, plus the alignment they came from."""

    model: str
    matches: list[SliceMatch]
    alignment: Alignment
    overlap: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        """The exact ``priorsync match --json`` document: ``{"model", "matches"}``."""
        return {"model": self.model, "matches": [m.to_dict() for m in self.matches]}


def check_matchable(volume: Volume, role: str) -> None:
    """Refuse series the engine cannot match meaningfully.

    Raises
    ------
    MatchError
        Not CT (the model reads Hounsfield units), fewer than :data:`MIN_SLICES`
        slices, repeated slice positions, slices smaller than
        :data:`MIN_PLANE_PIXELS`, less than :data:`MIN_EXTENT_MM` of extent, or values that are not CT numbers
        (a mask or label map).
    """
    modality = (volume.info.modality or "CT").upper()
    if modality != "CT":
        raise MatchError(
            f"{role} is a {modality} series, not CT; anatomical matching works on CT only "
            "(the model reads Hounsfield units)"
        )
    if volume.n_slices < MIN_SLICES:
        raise MatchError(
            f"{role} has {volume.n_slices} slice(s); matching needs a series of at least "
            f"{MIN_SLICES} slices (a single image has no anatomical context)"
        )
    z = volume.slice_z
    if not np.all(np.isfinite(z)) or np.any(np.diff(np.sort(z)) <= 1e-6):
        raise MatchError(f"{role} has slices at repeated or invalid positions")
    rows, cols = volume.voxels.shape[1:]
    if min(rows, cols) < MIN_PLANE_PIXELS:
        raise MatchError(
            f"{role}'s slices are {rows}x{cols} pixels; matching needs axial slices of at "
            f"least {MIN_PLANE_PIXELS}x{MIN_PLANE_PIXELS} (is it a single non-axial image?)"
        )
    extent = volume.n_slices * abs(float(volume.geometry.spacing[2]))
    if extent < MIN_EXTENT_MM:
        raise MatchError(
            f"{role} covers only {extent:.0f} mm head to foot ({volume.n_slices} slices); "
            f"matching needs at least {MIN_EXTENT_MM:.0f} mm to tell body regions apart"
        )
    # Any CT image spans hundreds of HU (air, fat, soft tissue, bone); a mask,
    # a label map or a blank series does not.
    sample = volume.voxels[:, ::8, ::8]
    lo, hi = int(sample.min()), int(sample.max())
    if hi - lo < _MIN_HU_RANGE:
        raise MatchError(
            f"{role} does not look like a CT image in Hounsfield units (values {lo} .. {hi}); "
            "is it a segmentation mask or a label map?"
        )


def series_extent_mm(slice_z: np.ndarray) -> float:
    """Head-to-foot extent (mm) of a series: first to last slice plus one slice spacing."""
    z = np.sort(np.asarray(slice_z, dtype=np.float64))
    if len(z) < 2:
        return 0.0
    return float(z[-1] - z[0] + np.median(np.diff(z)))


def matched_similarity(alignment: Alignment) -> float:
    """Mean similarity (cosine) of the covered current slices to their matched prior slices.

    0 when no current slice lies inside the prior; what
    :func:`short_series_doubt` compares with :data:`MIN_SHORT_SIMILARITY`.
    """
    covered = alignment.in_coverage
    return float(np.mean(alignment.score[covered])) if covered.any() else 0.0


def short_series_doubt(alignment: Alignment) -> str | None:
    """Why a pair with a series under :data:`SHORT_SERIES_MM` is taken not to overlap, or ``None``.

    For such a pair the overlap score cannot be verified (see
    :data:`SHORT_SERIES_MM`), so the matched slices must also look alike: the
    mean similarity (cosine of the embeddings) of the covered current slices to
    their prior slices must reach :data:`MIN_SHORT_SIMILARITY`. Pairs of two
    longer series are left to the overlap score alone (``None``).
    """
    extents = {
        "CURRENT": series_extent_mm(alignment.current_z),
        "PRIOR": series_extent_mm(alignment.prior_z),
    }
    role, extent = min(extents.items(), key=lambda kv: kv[1])
    if extent >= SHORT_SERIES_MM:
        return None
    similarity = matched_similarity(alignment)
    if similarity >= MIN_SHORT_SIMILARITY:
        return None
    return (
        f"the {role} series covers only {extent:.0f} mm head to foot, too short to check the "
        f"anatomy by its course, and its slices do not resemble the other series' (similarity "
        f"{similarity:.2f} of the matched slices, at least {MIN_SHORT_SIMILARITY:.2f} needed)"
    )


def _pos(p: np.ndarray) -> tuple[float, float, float]:
    return (round(float(p[0]), 4), round(float(p[1]), 4), round(float(p[2]), 4))


class Matcher:
    """The matching engine: model + index cache + alignment.

    Parameters
    ----------
    model
        Loaded embedding model.
    cache
        On-disk index cache; ``IndexCache()`` (``cache_dir()/index``) when ``None``;
        ``False`` to keep indexes in memory only.
    params
        Alignment tuning.
    memory_entries
        Series indexes kept in memory (the viewer matches a few series repeatedly).
    """

    def __init__(
        self,
        model: EmbeddingModel,
        cache: IndexCache | None | bool = None,
        params: AlignParams | None = None,
        memory_entries: int = 8,
    ) -> None:
        self.model = model
        self.cache: IndexCache | None
        if cache is False:
            self.cache = None
        elif cache is None or cache is True:
            self.cache = IndexCache()
        else:
            self.cache = cache
        self.params = params or AlignParams()
        self._memory: OrderedDict[str, SeriesIndex] = OrderedDict()
        self._memory_entries = memory_entries
        # id(volume) -> (weak reference, identity): hashing voxels costs milliseconds,
        # too much to repeat on every viewer query.
        self._identities: dict[int, tuple[weakref.ref, str]] = {}

    def identity(self, volume: Volume) -> str:
        """:func:`~app.ml.anatomy.index.series_identity` of ``volume``, remembered per volume object."""
        entry = self._identities.get(id(volume))
        if entry is not None and entry[0]() is volume:
            return entry[1]
        identity = series_identity(volume)
        self._identities = {k: v for k, v in self._identities.items() if v[0]() is not None}
        self._identities[id(volume)] = (weakref.ref(volume), identity)
        return identity

    # -- indexing --------------------------------------------------------------
    def index(
        self, volume: Volume, progress: Callable[[int, int], None] | None = None
    ) -> SeriesIndex:
        """The series' index: from memory, the disk cache, or embedded now."""
        identity = self.identity(volume)
        hit = self._memory.get(identity)
        if hit is not None:
            self._memory.move_to_end(identity)
            return hit

        # Thumbnails feed the optional pixel-correlation polish only.
        use_thumbs = self.params.fine_weight > 0

        def describe(v: Volume) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
            # Embeddings and feature maps come from one model pass.
            emb, feats = embed_with_features(self.model, v, progress=progress)
            return emb, (thumbnails(v) if use_thumbs else None), feats

        if self.cache is not None:
            index = self.cache.get_or_build(volume, self.model.sha256, describe, identity)
            changed = False
            if index.features is None:
                # Cached before feature maps were kept: one model pass adds them.
                index.features = embed_with_features(self.model, volume, progress=progress)[1]
                changed = True
            if use_thumbs and index.thumbnails is None:
                # Cached by a matcher that did not need them: add them once.
                index.thumbnails = thumbnails(volume)
                changed = True
            if changed:
                try:
                    self.cache.save(index)
                except OSError as exc:
                    log.warning("could not update the index cache: %s", exc.strerror or exc)
        else:
            emb, thumbs, feats = describe(volume)
            index = build_index(emb, volume.slice_z, identity, self.model.sha256, thumbs, feats)
        self._memory[identity] = index
        while len(self._memory) > self._memory_entries:
            self._memory.popitem(last=False)
        return index

    # -- whole-series matching ---------------------------------------------------
    def similarity(self, current: SeriesIndex, prior: SeriesIndex) -> np.ndarray:
        """``(n, m)`` k-NN similarity of current slices to prior slices."""
        k = min(prior.n_slices, _KNN_FULL)
        return prior.similarity(current.embeddings, k=k)

    def align(self, current: SeriesIndex, prior: SeriesIndex) -> Alignment:
        """Align two indexed series (see :func:`app.ml.anatomy.align.align_series`)."""
        sim = self.similarity(current, prior)
        fine = None
        if (
            self.params.fine_weight > 0
            and current.thumbnails is not None
            and prior.thumbnails is not None
        ):
            fine = ncc_matrix(current.thumbnails, prior.thumbnails)
        feats = None
        if (
            self.params.feature_weight > 0
            and current.features is not None
            and prior.features is not None
            and current.features.shape[1] == prior.features.shape[1]
        ):
            feats = feature_similarity(current.features, prior.features)
        return align_series(sim, current.slice_z, prior.slice_z, self.params, fine, feats)

    def overlap_score(self, current: SeriesIndex, alignment: Alignment) -> float:
        """How convincingly the prior shows the current's anatomy: 0 (chance) .. 1.

        See :attr:`Alignment.overlap_score`; pairs below :data:`MIN_OVERLAP`
        are taken not to overlap. A pair with a series shorter than
        :data:`SHORT_SERIES_MM` whose matched slices do not look alike
        (:func:`short_series_doubt`) scores 0. ``current`` is accepted for
        interface stability (the alignment already holds what is needed).
        """
        del current
        if short_series_doubt(alignment) is not None:
            return 0.0
        return alignment.overlap_score

    def match(
        self,
        current: Volume,
        prior: Volume,
        progress: Callable[[str, int, int], None] | None = None,
        min_overlap: float = MIN_OVERLAP,
    ) -> MatchResult:
        """Match every slice of ``current`` to ``prior``.

        Parameters
        ----------
        current, prior
            Display-oriented CT volumes of the same patient.
        progress
            Called with ``(stage, done, total)``; stage is ``"current"`` or ``"prior"``.
        min_overlap
            Below this :meth:`overlap_score` the pair is refused as not overlapping.

        Raises
        ------
        MatchError
            Non-CT or too short series, or a prior that shows none of the current's anatomy.
        """
        check_matchable(current, "CURRENT")
        check_matchable(prior, "PRIOR")

        def stage(name: str) -> Callable[[int, int], None] | None:
            if progress is None:
                return None
            return lambda done, total: progress(name, done, total)

        cur_index = self.index(current, stage("current"))
        pri_index = self.index(prior, stage("prior"))
        alignment = self.align(cur_index, pri_index)
        overlap = self.overlap_score(cur_index, alignment)
        doubt = short_series_doubt(alignment)
        if doubt is not None:
            raise MatchError(
                f"the prior does not appear to show the current's anatomy: {doubt}; check that "
                "both series are of the same patient and body region"
            )
        if not alignment.in_coverage.any() or not overlap >= min_overlap:
            raise MatchError(
                "the prior does not appear to show the current's anatomy (no overlapping "
                f"body region found: overlap score {overlap:.2f}, 0 = chance); check that "
                "both series are of the same patient and body region"
            )
        matches = []
        cur_pos = current.slice_positions
        pri_pos = prior.slice_positions
        for i in range(current.n_slices):
            j = int(alignment.prior_index[i])
            covered = bool(alignment.in_coverage[i])
            matches.append(
                SliceMatch(
                    current_index=i,
                    current_position=_pos(cur_pos[i]),
                    prior_index=j if covered else None,
                    prior_position=_pos(pri_pos[j]) if covered else None,
                    score=round(float(alignment.score[i]), 4),
                    in_coverage=covered,
                )
            )
        return MatchResult(self.model.identity, matches, alignment, overlap)

    # -- viewer queries -----------------------------------------------------------
    def slice_embedding(self, volume: Volume, k: int) -> np.ndarray:
        """Embedding of slice ``k``: from an index already in memory, else computed now."""
        index = self._memory.get(self.identity(volume))
        if index is not None and index.n_slices == volume.n_slices:
            return index.embeddings[k]
        return self.model.embed_slices(volume, [k])[0]

    def query_slice(
        self,
        current_volume: Volume,
        k: int,
        prior_index: SeriesIndex,
        alignment: Alignment | None = None,
        n_candidates: int = 5,
        embedding: np.ndarray | None = None,
    ) -> list[tuple[int, float]]:
        """Prior slices matching current slice ``k``, best first.

        Parameters
        ----------
        current_volume
            The series the slice belongs to.
        k
            Slice index in ``current_volume``.
        prior_index
            The prior series' index (:meth:`index`).
        alignment
            The pair's alignment, when known: candidates are then ordered by
            closeness to the aligned level (the whole-series evidence), and an
            uncovered slice yields no candidate.
        n_candidates
            How many candidates to return (at most).
        embedding
            The slice's embedding if the caller has it (skips the model).

        Returns
        -------
        list of (int, float)
            ``(prior slice index, cosine similarity)``, best first.
        """
        if not 0 <= k < current_volume.n_slices:
            raise IndexError(f"slice {k} is outside a series of {current_volume.n_slices}")
        vec = self.slice_embedding(current_volume, k) if embedding is None else embedding
        idx, score = prior_index.query(vec, n_candidates)
        cands = [(int(j), float(s)) for j, s in zip(idx[0], score[0], strict=True)]
        if alignment is None:
            return cands
        if not alignment.in_coverage[k]:
            return []
        target = float(alignment.mapped_z[k])
        aligned = int(alignment.prior_index[k])
        pz = prior_index.slice_z
        # The aligned slice and its neighbours lead; k-NN hits follow by distance to it.
        pool = dict(cands)
        for j in (aligned - 1, aligned, aligned + 1):
            if 0 <= j < prior_index.n_slices and j not in pool:
                pool[j] = float(prior_index.embeddings[j] @ vec)
        ranked = sorted(pool.items(), key=lambda js: abs(pz[js[0]] - target))
        return ranked[:n_candidates]
