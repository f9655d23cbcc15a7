"""Searching slices by a sketch: weighted anatomy + abnormality similarity.

Each stored slice has the reference vector ``[a ; b]``: its anatomy code ``a``
(the slice-embedding model, unit length) and its abnormality code ``b`` (unit
length). A query is a template slice's anatomy code ``a_q`` and a sketch's code
``b_q``; with the weight ``w`` of the abnormality,

    score = (1 - w) * a_q . a + w * b_q . b = [(1 - w) a_q ; w b_q] . [a ; b],

so ONE inner-product index over the concatenated vectors answers every ``w``
chosen at query time. Small sets are scored exactly (a matrix product is
faster than a graph below a few thousand slices, and exact); larger ones go
through an hnswlib graph, whose search breadth is fixed when it is built.

Neighbouring slices of one series look alike, so a raw ranking often shows one
lesion five times. :func:`dedupe_hits` keeps one hit per patient and level.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hnswlib
import numpy as np

from app.core.volume import SeriesInfo, Volume
from app.io.errors import Cancelled

if TYPE_CHECKING:
    from app.ml.sketch.encoder import SketchEncoder

__all__ = [
    "EXACT_BELOW",
    "SAME_LEVEL_COSINE",
    "SAME_SERIES_MM",
    "SketchHit",
    "SketchIndex",
    "SliceRef",
    "build_sketch_index",
    "dedupe_hits",
    "patient_key",
    "similar_slices",
    "slice_refs",
]

# Below this many slices every query is scored exactly (numpy matrix product).
EXACT_BELOW = 5000
# Two hits of one series this close (mm along the slice normal) show one level.
SAME_SERIES_MM = 10.0
# Two hits of one patient whose anatomy codes are this similar show one level.
SAME_LEVEL_COSINE = 0.9
# hnswlib graph parameters. The search breadth is fixed once (a per-query
# set_ef is a shared-state write, unsafe if two threads query one graph).
# benchmarks/bench_sketch.py, 10^5 clustered real codes, k=20 deduplicated:
# ef 400 -> p50 1.5 ms, recall 0.93 of the exact hits; ef 800 -> p50 2.0 ms,
# recall 0.96 (misses are mostly near-tied duplicates of one level).
_M = 16
_EF_CONSTRUCTION = 200
EF_SEARCH = 800


def patient_key(info: SeriesInfo, fallback: str) -> str:
    """A hashed patient key for grouping (never the identifiers themselves).

    Parameters
    ----------
    info
        Series metadata.
    fallback
        Used when the series names no patient (e.g. a NIfTI file): its own key,
        so anonymous files never merge into one "patient".
    """
    if info.patient_id:
        raw = f"id:{info.patient_id}"
    elif info.patient_name:
        raw = f"name:{info.patient_name}"
    else:
        raw = f"series:{fallback}"
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class SliceRef:
    """Where a stored slice comes from.

    Attributes
    ----------
    patient_key
        Hashed patient identity (:func:`patient_key`): for grouping.
    patient_label
        The patient's name or ID for display only: never log it.
    study_date
        ``YYYYMMDD`` or ``""``.
    series_key
        Stable identity of the series.
    series_label
        Short description of the series for display.
    source
        The series' folder or file.
    slice_index
        Index of the slice in the display-oriented series.
    n_slices
        Slices in the series.
    z_mm
        The slice's position along the slice normal (``Volume.slice_z``).
    position
        LPS position (mm) of the slice's first voxel (``Volume.slice_positions``),
        or ``None`` in archives written before it was recorded.
    """

    patient_key: str
    patient_label: str
    study_date: str
    series_key: str
    series_label: str
    source: str
    slice_index: int
    n_slices: int
    z_mm: float
    position: tuple[float, float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (:meth:`from_dict` reads it back)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SliceRef:
        """Inverse of :meth:`to_dict`; raises ``KeyError``/``TypeError``/``ValueError`` if malformed."""
        return cls(
            patient_key=str(data["patient_key"]),
            patient_label=str(data["patient_label"]),
            study_date=str(data["study_date"]),
            series_key=str(data["series_key"]),
            series_label=str(data["series_label"]),
            source=str(data["source"]),
            slice_index=int(data["slice_index"]),
            n_slices=int(data["n_slices"]),
            z_mm=float(data["z_mm"]),
            position=_position(data.get("position")),
        )


def _position(raw: Any) -> tuple[float, float, float] | None:
    if raw is None:
        return None
    x, y, z = (float(v) for v in raw)
    return (x, y, z)


@dataclass(frozen=True)
class SketchHit:
    """One search result: the slice, its combined score and both parts, and its row."""

    ref: SliceRef
    score: float
    anatomy_score: float
    abnormality_score: float
    row: int


def _series_label(info: SeriesInfo) -> str:
    parts = [info.modality or "CT"]
    if info.series_number is not None:
        parts.append(f"#{info.series_number}")
    if info.series_description:
        parts.append(info.series_description)
    return " ".join(parts)


def slice_refs(volume: Volume, series_key: str | None = None) -> list[SliceRef]:
    """One :class:`SliceRef` per slice of a loaded series.

    Parameters
    ----------
    volume
        Display-oriented series.
    series_key
        Its stable key; the SeriesInstanceUID, else the source path, when ``None``.
    """
    info = volume.info
    key = series_key or info.series_uid or volume.source or f"volume-{id(volume)}"
    pkey = patient_key(info, key)
    label = info.patient_name or info.patient_id
    z = volume.slice_z
    n = volume.n_slices
    positions = np.asarray(volume.slice_positions, dtype=np.float64)
    return [
        SliceRef(
            patient_key=pkey,
            patient_label=label,
            study_date=info.study_date,
            series_key=key,
            series_label=_series_label(info),
            source=str(volume.source),
            slice_index=k,
            n_slices=n,
            z_mm=float(z[k]),
            position=(
                round(float(positions[k, 0]), 3),
                round(float(positions[k, 1]), 3),
                round(float(positions[k, 2]), 3),
            ),
        )
        for k in range(n)
    ]


def _unit_rows(x: np.ndarray, name: str, dim: int) -> np.ndarray:
    arr = np.ascontiguousarray(np.atleast_2d(np.asarray(x, dtype=np.float32)))
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"{name} vectors must be (n, {dim}), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} vectors hold NaN or infinite values")
    return arr / np.maximum(np.linalg.norm(arr, axis=1, keepdims=True), 1e-12)


def dedupe_hits(
    hits: Iterable[SketchHit],
    anatomy: np.ndarray | None = None,
    k: int | None = None,
    same_series_mm: float = SAME_SERIES_MM,
    same_level_cosine: float = SAME_LEVEL_COSINE,
) -> list[SketchHit]:
    """Keep the best hit of each patient and level, in the given (best-first) order.

    A hit repeats a kept one of the same patient when both are of one series
    within ``same_series_mm``, or (with ``anatomy`` given) when their anatomy
    codes have a cosine of at least ``same_level_cosine`` (another series or
    study of the patient at the same level).

    Parameters
    ----------
    hits
        Best first.
    anatomy
        ``(n_rows, Da)`` unit anatomy codes indexed by :attr:`SketchHit.row`, or ``None``.
    k
        Stop after this many kept hits (all when ``None``).
    same_series_mm, same_level_cosine
        The two "same level" tests.
    """
    kept: list[SketchHit] = []
    by_patient: dict[str, list[SketchHit]] = {}
    for hit in hits:
        mine = by_patient.setdefault(hit.ref.patient_key, [])
        duplicate = False
        for other in mine:
            if (
                other.ref.series_key == hit.ref.series_key
                and abs(other.ref.z_mm - hit.ref.z_mm) <= same_series_mm
            ):
                duplicate = True
                break
            if (
                anatomy is not None
                and float(anatomy[hit.row] @ anatomy[other.row]) >= same_level_cosine
            ):
                duplicate = True
                break
        if duplicate:
            continue
        mine.append(hit)
        kept.append(hit)
        if k is not None and len(kept) >= k:
            break
    return kept


class SketchIndex:
    """Reference vectors of many slices, searchable by template anatomy + sketch.

    Parameters
    ----------
    anatomy_dim, abnormality_dim
        Lengths of the two codes.
    exact_below
        Sets smaller than this are always scored exactly.
    evidence_floor
        With a representation whose abnormality score is 0 where a slice shows no
        evidence of the sketched lesion (:class:`~app.ml.sketch.evidence.LesionEvidence`):
        at every weight above 0, slices scoring at most this ranks below every
        slice scoring more, whatever their anatomy (a query never ranks a slice
        for showing no lesion). ``None`` (a learned code, whose cosines carry no
        such zero): plain combined-score order.
    """

    def __init__(
        self,
        anatomy_dim: int,
        abnormality_dim: int,
        exact_below: int = EXACT_BELOW,
        evidence_floor: float | None = None,
    ) -> None:
        if anatomy_dim < 1 or abnormality_dim < 1:
            raise ValueError("code lengths must be positive")
        self.anatomy_dim = int(anatomy_dim)
        self.abnormality_dim = int(abnormality_dim)
        self.exact_below = int(exact_below)
        self.evidence_floor = None if evidence_floor is None else float(evidence_floor)
        self.refs: list[SliceRef] = []
        self._anat = np.zeros((0, self.anatomy_dim), dtype=np.float32)
        self._abn = np.zeros((0, self.abnormality_dim), dtype=np.float32)
        self._graph: hnswlib.Index | None = None
        self._graph_count = 0
        self._lock = threading.Lock()

    # -- content -----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.refs)

    @property
    def anatomy(self) -> np.ndarray:
        """``(n, Da)`` unit anatomy codes, one row per stored slice (read-only view)."""
        view = self._anat.view()
        view.flags.writeable = False
        return view

    @property
    def abnormality(self) -> np.ndarray:
        """``(n, Db)`` unit abnormality codes (read-only view)."""
        view = self._abn.view()
        view.flags.writeable = False
        return view

    def add(self, refs: Sequence[SliceRef], anatomy: np.ndarray, abnormality: np.ndarray) -> None:
        """Add slices (their refs and codes; codes are re-normalised to unit length).

        Raises
        ------
        ValueError
            Mismatched lengths, wrong code lengths, or non-finite values.
        """
        a = _unit_rows(anatomy, "anatomy", self.anatomy_dim)
        b = _unit_rows(abnormality, "abnormality", self.abnormality_dim)
        refs = list(refs)
        if not (len(refs) == len(a) == len(b)):
            raise ValueError(
                f"need one ref and one code of each kind per slice: "
                f"{len(refs)} refs, {len(a)} anatomy, {len(b)} abnormality"
            )
        if not refs:
            return
        with self._lock:
            self.refs.extend(refs)
            self._anat = np.concatenate([self._anat, a])
            self._abn = np.concatenate([self._abn, b])
            # The graph is (re)built lazily on the first approximate query.

    def _ensure_graph(self) -> hnswlib.Index:
        with self._lock:
            n = len(self.refs)
            if self._graph is None:
                graph = hnswlib.Index(space="ip", dim=self.anatomy_dim + self.abnormality_dim)
                graph.init_index(max_elements=max(n, 1), ef_construction=_EF_CONSTRUCTION, M=_M)
                graph.set_ef(EF_SEARCH)
                self._graph, self._graph_count = graph, 0
            graph = self._graph
            if self._graph_count < n:
                if graph.get_max_elements() < n:
                    graph.resize_index(n)
                rows = np.arange(self._graph_count, n)
                graph.add_items(self._stacked(rows), rows)
                self._graph_count = n
            return graph

    def _stacked(self, rows: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.hstack([self._anat[rows], self._abn[rows]]))

    def build_graph(self) -> None:
        """Build the hnswlib graph now (else it is built on the first large query)."""
        self._ensure_graph()

    def save_graph(self, path: Path) -> None:
        """Write the hnswlib graph (built if needed) to ``path``."""
        self._ensure_graph().save_index(str(path))

    def load_graph(self, path: Path) -> None:
        """Use a graph saved by :meth:`save_graph` for the current content.

        Raises
        ------
        ValueError
            The file holds another number of items or cannot be parsed.
        """
        graph = hnswlib.Index(space="ip", dim=self.anatomy_dim + self.abnormality_dim)
        try:
            graph.load_index(str(path), max_elements=max(len(self.refs), 1))
        except RuntimeError as exc:
            raise ValueError(f"unreadable search graph: {exc}") from None
        if graph.get_current_count() != len(self.refs):
            raise ValueError("the search graph does not hold every slice")
        graph.set_ef(EF_SEARCH)
        with self._lock:
            self._graph, self._graph_count = graph, len(self.refs)

    # -- queries -----------------------------------------------------------------
    def _query_vector(self, anatomy_q: np.ndarray, sketch_q: np.ndarray, weight: float):
        w = float(weight)
        if not 0.0 <= w <= 1.0:
            raise ValueError(f"weight must be in [0, 1], got {weight}")
        a = _unit_rows(anatomy_q, "anatomy", self.anatomy_dim)[0]
        b = _unit_rows(sketch_q, "abnormality", self.abnormality_dim)[0]
        return a, b, w

    def scores(
        self, anatomy_q: np.ndarray, sketch_q: np.ndarray, weight: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Exact ``(combined, anatomy, abnormality)`` scores of every stored slice."""
        a, b, w = self._query_vector(anatomy_q, sketch_q, weight)
        sa = self._anat @ a
        sb = self._abn @ b
        return (1.0 - w) * sa + w * sb, sa, sb

    def _tiered(self, weight: float) -> bool:
        return self.evidence_floor is not None and float(weight) > 0.0

    def _order(self, combined: np.ndarray, sb: np.ndarray, weight: float) -> np.ndarray:
        """Best first: by combined score, slices with evidence ahead when tiered (stable)."""
        if not self._tiered(weight):
            return np.argsort(-combined, kind="stable")
        assert self.evidence_floor is not None
        no_evidence = sb <= self.evidence_floor
        # lexsort: last key first; stable for ties (e.g. identical slices).
        return np.lexsort((-combined, no_evidence))

    def ranking(
        self, anatomy_q: np.ndarray, sketch_q: np.ndarray, weight: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every stored row, best first, with its exact combined score (for evaluation)."""
        combined, _, sb = self.scores(anatomy_q, sketch_q, weight)
        order = self._order(combined, sb, weight)
        return order, combined[order]

    def _candidates(
        self, a: np.ndarray, b: np.ndarray, w: float, k_fetch: int, exact: bool, k_wanted: int
    ) -> np.ndarray:
        n = len(self.refs)
        if exact:
            sb = self._abn @ b
            combined = (1.0 - w) * (self._anat @ a) + w * sb
            if k_fetch >= n:
                return self._order(combined, sb, w)
            if self._tiered(w):
                assert self.evidence_floor is not None
                # Evidence first: push the slices without it below every other.
                combined = np.where(sb > self.evidence_floor, combined, combined - 4.0)
            top = np.argpartition(-combined, k_fetch - 1)[:k_fetch]
            return top[np.argsort(-combined[top], kind="stable")]
        graph = self._ensure_graph()
        q = np.concatenate([(1.0 - w) * a, w * b]).astype(np.float32)[np.newaxis]
        labels, _ = graph.knn_query(q, k=k_fetch, num_threads=1)
        rows = labels[0].astype(np.int64)
        if self._tiered(w) and int(np.sum(self._abn[rows] @ b > self.evidence_floor)) < k_wanted:
            # Too few slices with evidence under the sketch among the combined
            # query's: add those with the most, whatever their anatomy.
            qb = np.concatenate([np.zeros_like(a), b]).astype(np.float32)[np.newaxis]
            extra, _ = graph.knn_query(qb, k=k_fetch, num_threads=1)
            rows = np.unique(np.concatenate([rows, extra[0].astype(np.int64)]))
        return rows

    def query(
        self,
        anatomy_q: np.ndarray,
        sketch_q: np.ndarray,
        weight: float,
        k: int = 20,
        one_per_patient_level: bool = True,
        exact: bool | None = None,
    ) -> list[SketchHit]:
        """The ``k`` best slices for a template anatomy code and a sketch code.

        Parameters
        ----------
        anatomy_q
            ``(Da,)`` anatomy code of the template slice.
        sketch_q
            ``(Db,)`` code of the sketch.
        weight
            ``w`` in [0, 1]: 0 ranks by anatomy alone, 1 by the sketch alone.
        k
            Hits wanted.
        one_per_patient_level
            Keep only the best hit of each patient and level (:func:`dedupe_hits`).
        exact
            Force (``True``) or forbid (``False``) exact scoring; by set size when ``None``.

        Returns
        -------
        list of SketchHit
            Best first, at most ``k``.
        """
        n = len(self.refs)
        if n == 0 or k < 1:
            return []
        a, b, w = self._query_vector(anatomy_q, sketch_q, weight)
        exact = n < self.exact_below if exact is None else exact
        # Fetch many more than k: duplicates of one lesion crowd the raw ranking.
        k_fetch = min(n, max(10 * k, 100) if one_per_patient_level else k)
        while True:
            rows = self._candidates(a, b, w, k_fetch, exact, k)
            sa = self._anat[rows] @ a
            sb = self._abn[rows] @ b
            combined = (1.0 - w) * sa + w * sb
            # The graph's order is approximate: re-sort by the exact score.
            order = self._order(combined, sb, w)
            hits = [
                SketchHit(
                    self.refs[int(rows[i])],
                    float(combined[i]),
                    float(sa[i]),
                    float(sb[i]),
                    int(rows[i]),
                )
                for i in order
            ]
            if one_per_patient_level:
                hits = dedupe_hits(hits, self._anat, k=k)
            if len(hits) >= k or k_fetch >= n:
                return hits[:k]
            k_fetch = min(n, 4 * k_fetch)


def similar_slices(
    index: SketchIndex, anatomy_q: np.ndarray, exclude_patient: str | None, k: int = 20
) -> list[SketchHit]:
    """ "Find similar slices": this level in other patients, by anatomy alone (no sketch).

    Parameters
    ----------
    index
        The slices searched (an archive's, or the loaded series').
    anatomy_q
        ``(Da,)`` anatomy code of the slice shown.
    exclude_patient
        :func:`patient_key` of the slice's own patient (left out), or ``None``.
    k
        Hits wanted, one per patient and level.
    """
    if k < 1 or len(index) == 0:
        return []
    nothing = np.zeros(index.abnormality_dim, dtype=np.float32)
    fetch = k
    while True:
        hits = index.query(anatomy_q, nothing, 0.0, k=fetch)
        kept = [h for h in hits if h.ref.patient_key != exclude_patient]
        if len(kept) >= k or len(hits) < fetch:
            return kept[:k]
        fetch *= 4


def build_sketch_index(
    volumes: Sequence[Volume],
    anatomy: Sequence[np.ndarray],
    models: SketchEncoder,
    series_keys: Sequence[str | None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> SketchIndex:
    """Index loaded series for sketch search (the viewer's "loaded series" scope).

    Parameters
    ----------
    volumes
        Display-oriented series.
    anatomy
        Each series' anatomy codes ``(n_slices, Da)``, e.g.
        ``SeriesIndex.embeddings`` from :meth:`app.ml.anatomy.match.Matcher.index`.
    models
        The sketch models (their abnormality model codes the slices).
    series_keys
        Stable key per series (see :func:`slice_refs`); ``None`` entries use the default.
    progress
        ``progress(slices_done, n_slices_total)`` after each batch.
    cancel
        When set, stops with :class:`~app.io.errors.Cancelled` between batches.

    Raises
    ------
    ValueError
        A series whose anatomy codes do not have one row per slice.
    Cancelled
        ``cancel`` was set.
    """
    if len(anatomy) != len(volumes):
        raise ValueError("need the anatomy codes of every series")
    keys = list(series_keys) if series_keys is not None else [None] * len(volumes)
    total = sum(v.n_slices for v in volumes)
    dims = {np.asarray(a).shape[-1] for a in anatomy}
    if len(dims) > 1:
        raise ValueError("the series' anatomy codes have different lengths")
    index = SketchIndex(
        dims.pop() if dims else 1,
        models.abnormality_dim,
        evidence_floor=getattr(models, "evidence_floor", None),
    )
    done = 0
    for volume, anat, key in zip(volumes, anatomy, keys, strict=True):
        if np.asarray(anat).shape[0] != volume.n_slices:
            raise ValueError("anatomy codes must have one row per slice of their series")

        def step(d: int, _n: int, base: int = done) -> None:
            if cancel is not None and cancel.is_set():
                raise Cancelled("indexing was cancelled")
            if progress is not None:
                progress(base + d, total)

        abn = models.abnormality_vectors(volume, progress=step)
        index.add(slice_refs(volume, key), anat, abn)
        done += volume.n_slices
    return index
