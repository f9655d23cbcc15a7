"""Anatomical slice sync for the viewer, without Qt: indexes, pair alignments, slice mapping.

The viewer hangs several series of one patient. For each it needs the series'
index (every slice embedded, searchable with hnswlib; :mod:`app.ml.anatomy.index`),
and for each ordered pair of series the whole-series alignment
(:mod:`app.ml.anatomy.align`). Both are computed in worker threads by the UI through
:meth:`SyncEngine.build_index` and :meth:`SyncEngine.compute_alignment`, then
registered here from the GUI thread, where :class:`AnatomicalSliceMapper`
answers the sync group's question "which slice of the target shows the level
of this slice of the source?" in well under a millisecond:

* the source slice's embedding comes from its index (or, for a series not
  indexed yet, one ONNX call on that slice);
* the target's index is searched for the nearest slices (k-NN);
* when the pair's alignment is known it decides the level, so a click agrees
  with the whole-series evidence (monotonic, outliers overruled) and a level
  the target never imaged is reported as out of coverage; the k-NN hits then
  serve as next-best candidates at other levels.

"Instant, then exact": once a pair's alignment is registered (and the views
synced by it), a background job may call :meth:`SyncEngine.refine_alignment`
(rigid registration started from the engine's answer and checked against it,
:mod:`app.ml.anatomy.registration`, seconds) and register the result with
:meth:`SyncEngine.add_alignment` again; later clicks then use the refined
mapping, nothing else changes. Hook for the viewer: after the alignment job
reports, start one refinement job per pair and, when it reports, call
``add_alignment`` with its :class:`PairAlignment` (``refined`` True) if the
pair's two series are still on screen.

Threading: :meth:`SyncEngine.build_index`, :meth:`SyncEngine.compute_alignment`
and :meth:`SyncEngine.match` run in worker threads, one at a time (a lock
serialises them: they share the engine's :class:`~app.ml.anatomy.match.Matcher`);
:meth:`SyncEngine.refine_alignment` uses no model and may run beside them;
the registry and :meth:`SyncEngine.map_slice` belong to the GUI thread. The
ONNX session and hnswlib searches are safe to run concurrently with them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.core.state import MatchInfo, SliceMapper, ViewportState
from app.core.volume import Volume
from app.ml.anatomy.align import Alignment
from app.ml.anatomy.index import IndexCache, SeriesIndex
from app.ml.anatomy.match import MIN_OVERLAP, Matcher, MatchResult, check_matchable
from app.ml.anatomy.registration import RefineParams, refine_alignment
from app.ml.runtime.model import EmbeddingModel

__all__ = [
    "AnatomicalSliceMapper",
    "IndexOutcome",
    "PairAlignment",
    "SyncEngine",
    "SyncMatch",
    "distinct_candidates",
]

log = logging.getLogger(__name__)

# Candidates closer than this to a better one show the same level: one is enough.
CANDIDATE_SEPARATION_MM = 5.0
# k-NN hits fetched per query before near-duplicates are dropped.
_KNN = 32


@dataclass
class SyncMatch(MatchInfo):
    """A :class:`MatchInfo` with how the match was made.

    Attributes
    ----------
    source_index
        The driving slice.
    mapped_z
        The level (target ``slice_z``, mm) the pair's alignment maps the
        source slice to; ``None`` when only the k-NN search was available.
    """

    source_index: int = -1
    mapped_z: float | None = None

    @property
    def aligned(self) -> bool:
        """True when the whole-series alignment placed this match."""
        return self.mapped_z is not None


@dataclass(frozen=True)
class IndexOutcome:
    """A series' index and how it was obtained.

    Attributes
    ----------
    index
        The index.
    embedded
        True when the model ran over the series now; False when the index came
        from the engine's memory or the on-disk cache.
    seconds
        Wall time taken.
    """

    index: SeriesIndex
    embedded: bool
    seconds: float


@dataclass(frozen=True)
class PairAlignment:
    """Alignment of a source series to a target series, and whether they overlap at all."""

    alignment: Alignment
    overlap: float
    refined: bool = False  # True once stage two (registration) has improved the mapping

    @property
    def overlapping(self) -> bool:
        # The engine's threshold, so the viewer never syncs a pair that
        # `priorsync match` refuses as showing other anatomy.
        return self.overlap >= MIN_OVERLAP and bool(self.alignment.in_coverage.any())


def distinct_candidates(
    hits: list[tuple[int, float]],
    slice_z: np.ndarray,
    n: int,
    separation_mm: float = CANDIDATE_SEPARATION_MM,
) -> list[tuple[int, float]]:
    """Up to ``n`` hits at distinct levels, in the given order.

    A hit within ``separation_mm`` of an earlier one shows the same level and
    is dropped, so the list offers real alternatives rather than the best
    slice's neighbours.

    Parameters
    ----------
    hits
        ``(slice index, score)`` in order of preference.
    slice_z
        The target's slice positions (mm).
    n
        Most candidates returned.
    separation_mm
        Least distance between two kept candidates.
    """
    kept: list[tuple[int, float]] = []
    for j, s in hits:
        z = float(slice_z[j])
        if all(abs(z - float(slice_z[i])) >= separation_mm for i, _ in kept):
            kept.append((int(j), float(s)))
            if len(kept) >= n:
                break
    return kept


@dataclass
class _Series:
    volume: Volume
    index: SeriesIndex


class SyncEngine:
    """Indexes and alignments of the series on screen, and the slice mapping between them.

    Parameters
    ----------
    model_path
        ONNX model; the shipped one when ``None``.
    cache
        Index cache (``None``: ``cache_dir()/index``; ``False``: memory only).
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"`` (see :meth:`EmbeddingModel.load`).
    n_candidates
        Candidates offered per synced viewport (the match itself included).
    """

    def __init__(
        self,
        model_path: Path | str | None = None,
        cache: IndexCache | None | bool = None,
        device: str | None = None,
        n_candidates: int = 4,
    ) -> None:
        self.model_path = model_path
        self.device = device
        self.n_candidates = max(1, int(n_candidates))
        self._cache = cache
        self._load_lock = threading.Lock()
        self._matcher_lock = threading.Lock()
        self._model: EmbeddingModel | None = None
        self._matcher: Matcher | None = None
        self._series: dict[int, _Series] = {}
        self._pairs: dict[tuple[int, int], PairAlignment] = {}

    # -- model (any thread) --------------------------------------------------------------
    @property
    def model(self) -> EmbeddingModel | None:
        """The model once loaded (by :meth:`load_model`), else ``None``."""
        return self._model

    def load_model(self) -> EmbeddingModel:
        """Load the model once (thread-safe); raises :class:`~app.ml.runtime.model.ModelError`."""
        with self._load_lock:
            if self._model is None:
                model = EmbeddingModel.load(self.model_path, device=self.device)
                self._matcher = Matcher(model, cache=self._cache)
                self._model = model
            return self._model

    # -- worker side -----------------------------------------------------------------------
    def build_index(
        self, volume: Volume, progress: Callable[[int, int], None] | None = None
    ) -> IndexOutcome:
        """The series' index, from the cache or embedded now (worker thread).

        Raises
        ------
        app.ml.anatomy.match.MatchError
            A series that cannot be matched (not CT, a single slice, repeated positions).
        app.ml.runtime.model.ModelError
            The model cannot be loaded.
        """
        check_matchable(volume, "this series")
        self.load_model()
        assert self._matcher is not None
        embedded = False

        def report(done: int, total: int) -> None:
            # The matcher reports progress only while the model embeds slices,
            # never for an index found in memory or on disk.
            nonlocal embedded
            embedded = True
            if progress is not None:
                progress(done, total)

        start = time.perf_counter()
        with self._matcher_lock:
            index = self._matcher.index(volume, report)
        return IndexOutcome(index, embedded, time.perf_counter() - start)

    def compute_alignment(self, source: SeriesIndex, target: SeriesIndex) -> PairAlignment:
        """Whole-series alignment of ``source`` to ``target`` (worker thread)."""
        self.load_model()
        assert self._matcher is not None
        with self._matcher_lock:
            alignment = self._matcher.align(source, target)
            return PairAlignment(alignment, self._matcher.overlap_score(source, alignment))

    def refine_alignment(
        self,
        source: Volume,
        target: Volume,
        pair: PairAlignment,
        params: RefineParams | None = None,
    ) -> PairAlignment:
        """Stage two (worker thread): ``pair`` refined by registration started from it.

        Returns ``pair`` itself when the refinement is not trusted (see
        :func:`~app.ml.anatomy.registration.refine_alignment`) or the pair does
        not overlap; otherwise a new :class:`PairAlignment` with ``refined``
        True, for :meth:`add_alignment`.
        """
        if not pair.overlapping:
            return pair
        result = refine_alignment(source, target, pair.alignment, params)
        if not result.used:
            log.info("refinement not used: %s", result.reason)
            return pair
        return PairAlignment(result.alignment, pair.overlap, refined=True)

    def match(self, current: Volume, prior: Volume) -> MatchResult:
        """Every slice of ``current`` matched to ``prior`` (worker thread; indexes reused).

        Raises
        ------
        app.ml.anatomy.match.MatchError
            The series cannot be matched or show no common anatomy.
        """
        self.load_model()
        assert self._matcher is not None
        with self._matcher_lock:
            return self._matcher.match(current, prior)

    # -- registry (GUI thread) -------------------------------------------------------------
    def add_index(self, volume: Volume, index: SeriesIndex) -> None:
        """Register a series' index (as returned by :meth:`build_index`)."""
        if index.n_slices != volume.n_slices:
            raise ValueError("the index does not belong to this series")
        self._series[id(volume)] = _Series(volume, index)

    def add_alignment(self, source: Volume, target: Volume, pair: PairAlignment) -> None:
        """Register the alignment of ``source`` to ``target``."""
        self._pairs[(id(source), id(target))] = pair

    def remove(self, volume: Volume) -> None:
        """Forget a series and every alignment it takes part in."""
        key = id(volume)
        self._series.pop(key, None)
        for pair in [p for p in self._pairs if key in p]:
            del self._pairs[pair]

    def clear(self) -> None:
        self._series.clear()
        self._pairs.clear()

    def index_of(self, volume: Volume) -> SeriesIndex | None:
        entry = self._series.get(id(volume))
        return entry.index if entry is not None and entry.volume is volume else None

    def alignment_of(self, source: Volume, target: Volume) -> PairAlignment | None:
        if self.index_of(source) is None or self.index_of(target) is None:
            return None
        return self._pairs.get((id(source), id(target)))

    # -- queries (GUI thread) --------------------------------------------------------------
    def slice_embedding(self, volume: Volume, k: int) -> np.ndarray:
        """Embedding of slice ``k``: from the series' index, else one ONNX call (~ms)."""
        index = self.index_of(volume)
        if index is not None:
            return index.embeddings[k]
        model = self._model if self._model is not None else self.load_model()
        return np.asarray(model.embed_slices(volume, [k]))[0]

    def map_slice(self, source: Volume, k: int, target: Volume) -> tuple[int, SyncMatch] | None:
        """The target slice at the anatomical level of ``source`` slice ``k``.

        Returns
        -------
        (int, SyncMatch) or None
            The target slice and how it was matched (score = cosine similarity
            of the two slices' embeddings; candidates = the match first, then
            the best k-NN hits at other levels). ``None`` while the target has
            no index (or the source has none and the model is not loaded yet).
        """
        target_index = self.index_of(target)
        if target_index is None or not 0 <= k < source.n_slices:
            return None
        if self._model is None and self.index_of(source) is None:
            return None  # loading the model here would stall the GUI thread
        vec = self.slice_embedding(source, k)
        idx, score = target_index.query(vec, _KNN)
        knn = [(int(j), float(s)) for j, s in zip(idx[0], score[0], strict=True)]
        pair = self.alignment_of(source, target)
        if pair is None:
            best, best_score = knn[0]
            covered, mapped = True, None
        else:
            a = pair.alignment
            best = int(a.prior_index[k])
            best_score = float(target_index.embeddings[best] @ vec)
            covered = bool(a.in_coverage[k]) and pair.overlapping
            mapped = float(a.mapped_z[k])
        candidates = distinct_candidates(
            [(best, best_score), *knn], target_index.slice_z, self.n_candidates
        )
        return best, SyncMatch(
            score=best_score,
            in_coverage=covered,
            candidates=candidates,
            source_index=int(k),
            mapped_z=mapped,
        )


class AnatomicalSliceMapper(SliceMapper):
    """The sync group's slice mapper backed by a :class:`SyncEngine`.

    A target without an index yet stays where it is (no match shown), rather
    than jumping to a position that means nothing across frames of reference.
    """

    def __init__(self, engine: SyncEngine) -> None:
        self.engine = engine
        self.last_source: ViewportState | None = None

    def map(self, source: ViewportState, target: ViewportState) -> tuple[int, MatchInfo | None]:
        self.last_source = source
        found = self.engine.map_slice(source.volume, source.slice_index, target.volume)
        if found is None:
            return target.slice_index, target.match
        return found
