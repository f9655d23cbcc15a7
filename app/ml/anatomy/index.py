"""One hnswlib index of slice embeddings per series, cached on disk.

An index answers "which slices of this series look most like this slice?" in
well under a millisecond. It is stored with the embeddings themselves (so the
series alignment needs no recomputation) under ``cache_dir()/index/``, named
by the series identity *and* the model's sha256: a new model or a changed
series never reuses stale vectors.

Both files are written atomically (temp file in the same folder, then
``os.replace``). The ``.npz`` is written last and records the sha256 of the
``.bin`` graph, so a crash between the two, a truncated or tampered file, or a
cache from another format version is detected and rebuilt; hnswlib is never
asked to parse an unverified file (its C++ loader trusts the bytes).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import hnswlib
import numpy as np

from app.core.volume import Volume
from app.io.safe_write import replacing
from app.paths import cache_dir

__all__ = ["CacheMiss", "IndexCache", "SeriesIndex", "build_index", "series_identity"]

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
# hnswlib graph parameters: small series (tens to a few thousand slices) make
# these cheap, and they keep recall ~1 at that size.
_M = 16
_EF_CONSTRUCTION = 200


def series_identity(volume: Volume) -> str:
    """A stable fingerprint of a series' content and geometry.

    Combines the SeriesInstanceUID (if any), the source path and (for a file)
    its size and mtime, the voxel grid, the first and last slice positions
    and a hash of a sparse voxel sample, so an edited or re-exported series
    with the same UID still gets a new identity, while reading the same
    series twice gives the same one.
    """
    h = hashlib.sha256()
    h.update(f"v{FORMAT_VERSION}|{volume.info.series_uid}|{volume.source}|".encode())
    src = Path(volume.source) if volume.source else None
    if src is not None and src.is_file():
        st = src.stat()
        h.update(f"{st.st_size}|{st.st_mtime_ns}|".encode())
    h.update(repr(volume.shape).encode())
    g = volume.geometry
    for arr in (g.spacing, g.direction, volume.slice_positions[[0, -1]]):
        h.update(np.round(np.asarray(arr, dtype=np.float64), 4).tobytes())
    # Every 8th row/column of every slice: ~1/64 of the voxels, milliseconds to hash.
    h.update(np.ascontiguousarray(volume.voxels[:, ::8, ::8]).tobytes())
    return h.hexdigest()


@dataclass
class SeriesIndex:
    """Embeddings of one series and their hnswlib graph.

    Attributes
    ----------
    embeddings
        ``(m, D)`` float32, L2-normalised, one row per slice in display order.
    slice_z
        ``(m,)`` slice positions along the normal (mm).
    identity
        :func:`series_identity` of the series.
    model_sha256
        The model that made the embeddings.
    graph
        The hnswlib index (space ``"ip"``; label = slice index).
    thumbnails
        ``(m, t, t)`` uint8 body-centred thumbnails (:mod:`app.ml.anatomy.refine`) for
        the alignment's local image evidence, or ``None``.
    features
        ``(m, F)`` float16 L2-normalised feature-map vectors of the model
        (:mod:`app.ml.anatomy.features`) for the alignment's precision passes, or ``None``.
    """

    embeddings: np.ndarray
    slice_z: np.ndarray
    identity: str
    model_sha256: str
    graph: hnswlib.Index
    thumbnails: np.ndarray | None = None
    features: np.ndarray | None = None

    def __post_init__(self) -> None:
        # ef is fixed once, here: hnswlib's set_ef mutates the shared graph, and a
        # worker aligning a pair may query it while the GUI thread maps a click.
        # ef >= the series length lets any k up to the whole series come back,
        # and a few hundred items cost microseconds even searched exhaustively.
        self.graph.set_ef(max(64, self.n_slices))

    @property
    def n_slices(self) -> int:
        return int(self.embeddings.shape[0])

    def query(self, vectors: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar slices for each query embedding.

        Parameters
        ----------
        vectors
            ``(q, D)`` or ``(D,)`` L2-normalised embeddings.
        k
            Neighbours wanted (capped at the series length).

        Returns
        -------
        indices, scores
            ``(q, k)`` slice indices and cosine similarities, best first.
        """
        v = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        k = max(1, min(int(k), self.n_slices))
        labels, dist = self.graph.knn_query(v, k=k)
        # hnswlib's "ip" distance is 1 - inner product.
        return labels.astype(np.int64), (1.0 - dist).astype(np.float32)

    def similarity(self, vectors: np.ndarray, k: int | None = None) -> np.ndarray:
        """Similarity of each query to the series' slices, from k-NN search.

        Slices outside a query's ``k`` nearest get that query's k-th score
        (the floor of what the search saw). With ``k`` of at least the series
        length the matrix is complete.

        Returns
        -------
        np.ndarray
            ``(q, m)`` float32.
        """
        k = self.n_slices if k is None else k
        try:
            idx, score = self.query(vectors, k)
        except RuntimeError:
            # hnswlib found fewer than k neighbours (a sparse graph on a tiny
            # series): score every slice exactly instead.
            v = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
            return (v @ self.embeddings.T).astype(np.float32)
        out = np.repeat(score[:, -1:], self.n_slices, axis=1)
        np.put_along_axis(out, idx, score, axis=1)
        return out


def build_index(
    embeddings: np.ndarray,
    slice_z: np.ndarray,
    identity: str = "",
    model_sha256: str = "",
    thumbnails: np.ndarray | None = None,
    features: np.ndarray | None = None,
) -> SeriesIndex:
    """Build the hnswlib graph over a series' embeddings (thumbnails and features ride along)."""
    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] == 0:
        raise ValueError(f"need a non-empty (m, D) embedding array, got shape {emb.shape}")
    if thumbnails is not None and len(thumbnails) != emb.shape[0]:
        raise ValueError("need one thumbnail per embedding")
    if features is not None and (np.ndim(features) != 2 or len(features) != emb.shape[0]):
        raise ValueError("need one feature vector per embedding")
    graph = hnswlib.Index(space="ip", dim=int(emb.shape[1]))
    graph.init_index(max_elements=emb.shape[0], ef_construction=_EF_CONSTRUCTION, M=_M)
    graph.set_num_threads(1)  # a few hundred items: threads cost more than they save
    graph.add_items(emb, np.arange(emb.shape[0]))
    return SeriesIndex(
        embeddings=emb,
        slice_z=np.asarray(slice_z, dtype=np.float64).reshape(-1),
        identity=identity,
        model_sha256=model_sha256,
        graph=graph,
        thumbnails=None if thumbnails is None else np.ascontiguousarray(thumbnails, np.uint8),
        features=None if features is None else np.ascontiguousarray(features, np.float16),
    )


class CacheMiss(Exception):
    """A cache entry is absent, corrupt, stale or for another model/series."""


# What a cache miss computes: embeddings, thumbnails or None[, features or None].
_Described = (
    tuple[np.ndarray, np.ndarray | None] | tuple[np.ndarray, np.ndarray | None, np.ndarray | None]
)


class IndexCache:
    """On-disk cache of :class:`SeriesIndex` objects.

    Parameters
    ----------
    root
        Cache folder; ``cache_dir()/index`` when ``None``.
    max_entries
        Oldest entries beyond this count are deleted after each write.
    """

    def __init__(self, root: Path | None = None, max_entries: int = 100) -> None:
        self.root = Path(root) if root is not None else cache_dir() / "index"
        self.max_entries = max_entries

    def paths(self, identity: str, model_sha256: str) -> tuple[Path, Path]:
        """``(.npz, .bin)`` file paths of an entry."""
        key = hashlib.sha256(f"{identity}|{model_sha256}".encode()).hexdigest()[:40]
        return self.root / f"{key}.npz", self.root / f"{key}.bin"

    def load(self, identity: str, model_sha256: str) -> SeriesIndex:
        """Read and verify an entry.

        Raises
        ------
        CacheMiss
            Absent, unreadable, corrupt, or recorded for another series/model/format.
        """
        npz_path, bin_path = self.paths(identity, model_sha256)
        if not npz_path.is_file():
            raise CacheMiss("absent")
        try:
            # Read the bytes first: np.load on a path leaks the handle when the zip is corrupt.
            with np.load(io.BytesIO(npz_path.read_bytes()), allow_pickle=False) as z:
                meta = {k: str(z[k]) for k in ("identity", "model_sha256", "bin_sha256")}
                version = int(z["format_version"])
                emb = np.array(z["embeddings"], dtype=np.float32)
                slice_z = np.array(z["slice_z"], dtype=np.float64)
                thumbs = np.array(z["thumbnails"], dtype=np.uint8) if "thumbnails" in z else None
                feats = np.array(z["features"], dtype=np.float16) if "features" in z else None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise CacheMiss(f"unreadable ({type(exc).__name__})") from None
        if version != FORMAT_VERSION:
            raise CacheMiss(f"format version {version}")
        if meta["identity"] != identity or meta["model_sha256"] != model_sha256:
            raise CacheMiss("made for another series or model")
        if emb.ndim != 2 or emb.shape[0] != slice_z.shape[0] or not np.all(np.isfinite(emb)):
            raise CacheMiss("inconsistent arrays")
        if thumbs is not None and (thumbs.ndim != 3 or len(thumbs) != len(emb)):
            raise CacheMiss("inconsistent thumbnails")
        if feats is not None and (
            feats.ndim != 2 or len(feats) != len(emb) or not np.all(np.isfinite(feats))
        ):
            raise CacheMiss("inconsistent features")
        index: SeriesIndex | None = None
        try:
            blob = bin_path.read_bytes()
        except OSError:
            blob = b""
        if blob and hashlib.sha256(blob).hexdigest() == meta["bin_sha256"]:
            graph = hnswlib.Index(space="ip", dim=int(emb.shape[1]))
            try:
                graph.load_index(str(bin_path), max_elements=emb.shape[0])
                if graph.get_current_count() == emb.shape[0]:
                    graph.set_num_threads(1)
                    index = SeriesIndex(emb, slice_z, identity, model_sha256, graph, thumbs, feats)
            except RuntimeError:
                index = None
        if index is None:
            # Embeddings are sound but the graph is not: rebuilding it is cheap.
            log.info("index graph missing or corrupt; rebuilding it from cached embeddings")
            index = build_index(emb, slice_z, identity, model_sha256, thumbs, feats)
            self._write_bin_and_npz(index)
        return index

    def save(self, index: SeriesIndex) -> None:
        """Write an entry atomically and prune old entries."""
        self._write_bin_and_npz(index)
        self._prune()

    def _write_bin_and_npz(self, index: SeriesIndex) -> None:
        npz_path, bin_path = self.paths(index.identity, index.model_sha256)
        # hnswlib writes to a path, not a stream: save next to the target, then rename
        # (replacing() also creates the cache folder).
        with replacing(bin_path) as tmp:
            index.graph.save_index(str(tmp))
            blob = tmp.read_bytes()

        arrays = {
            "format_version": np.int64(FORMAT_VERSION),
            "identity": np.str_(index.identity),
            "model_sha256": np.str_(index.model_sha256),
            "bin_sha256": np.str_(hashlib.sha256(blob).hexdigest()),
            "embeddings": index.embeddings,
            "slice_z": index.slice_z,
        }
        if index.thumbnails is not None:
            arrays["thumbnails"] = index.thumbnails
        if index.features is not None:
            arrays["features"] = index.features
        # Synced before the rename: after a crash the entry is the old one or the whole new
        # one, and the graph hash it records catches a graph that did not reach the disk.
        with replacing(npz_path) as tmp, open(tmp, "wb") as fh:
            # Compressed: thumbnails are mostly smooth, and shrink several-fold.
            # numpy's stub types **arrays as if it could fill allow_pickle (a bool).
            np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
            fh.flush()
            os.fsync(fh.fileno())

    def _prune(self) -> None:
        entries = sorted(self.root.glob("*.npz"), key=lambda p: p.stat().st_mtime)
        for old in entries[: max(0, len(entries) - self.max_entries)]:
            old.unlink(missing_ok=True)
            old.with_suffix(".bin").unlink(missing_ok=True)

    def get_or_build(
        self,
        volume: Volume,
        model_sha256: str,
        describe: Callable[[Volume], _Described],
        identity: str | None = None,
    ) -> SeriesIndex:
        """The cached index of a series, or embed and index it now (and cache it).

        Parameters
        ----------
        volume
            The series.
        model_sha256
            Identity of the model ``describe`` runs.
        describe
            ``volume -> (embeddings (n_slices, D), thumbnails or None[, features or None])``,
            called on a miss.
        identity
            :func:`series_identity` of ``volume`` if the caller has it already.
        """
        identity = identity or series_identity(volume)
        try:
            index = self.load(identity, model_sha256)
            if index.n_slices == volume.n_slices and np.allclose(
                index.slice_z, volume.slice_z, atol=1e-3
            ):
                return index
            log.info("index cache entry does not fit the series; rebuilding")
        except CacheMiss as miss:
            if str(miss) != "absent":
                log.info("index cache entry rejected (%s); rebuilding", miss)
        described = describe(volume)
        embeddings, thumbs = described[0], described[1]
        feats = described[2] if len(described) > 2 else None
        index = build_index(embeddings, volume.slice_z, identity, model_sha256, thumbs, feats)
        try:
            self.save(index)
        except OSError as exc:
            # A read-only or full cache must not stop matching.
            log.warning("could not write the index cache: %s", exc.strerror or exc)
        return index
