"""A searchable archive of many patients' CT slices for sketch queries.

``build_archive`` scans a folder (any number of patients, series and junk),
loads every CT series, codes every slice with the anatomy model and the
abnormality model, and writes one folder:

``manifest.json``
    Format, creation time, the models' hashes, counts, and the sha256 of every
    other file (so a damaged or tampered archive is caught before hnswlib is
    asked to parse anything: its loader trusts the bytes).
``refs.json``
    One :class:`~app.ml.sketch.search.SliceRef` per slice (patient names are
    kept here for display; they are never logged).
``vectors.npz``
    Anatomy and abnormality codes, and the thumbnails' byte offsets.
``graph.bin``
    The hnswlib graph over the concatenated codes.
``thumbs.bin``
    JPEG thumbnails (128 x 128, the model frame, soft-tissue window W400 L40),
    one after another.
``skipped.json``
    Files and series left out, with the reason.

The folder is written next to its final place and renamed into it, so an
existing archive is replaced only by a complete new one.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from app.core.imaging import BODY_THRESHOLD_HU, SOFT_TISSUE_WINDOW, window_to_uint8
from app.io.errors import Cancelled, LoadError
from app.ml.runtime.preprocess import prepare_hu_slices, window_channels
from app.ml.sketch.search import SketchIndex, SliceRef, patient_key, slice_refs
from app.paths import cache_dir

if TYPE_CHECKING:
    from app.core.volume import Volume
    from app.ml.runtime.model import EmbeddingModel
    from app.ml.sketch.encoder import SketchEncoder

__all__ = [
    "ARCHIVE_FORMAT",
    "FORMAT_VERSION",
    "THUMBNAIL_WINDOW",
    "Archive",
    "ArchiveError",
    "ArchiveReport",
    "CodedVolume",
    "build_archive",
    "code_volume",
    "default_archive_dir",
]

log = logging.getLogger(__name__)

ARCHIVE_FORMAT = "priorsync-sketch-archive"
FORMAT_VERSION = 1
THUMBNAIL_WINDOW = SOFT_TISSUE_WINDOW
_JPEG_QUALITY = 88
_BATCH = 32
_FILES = ("refs.json", "vectors.npz", "graph.bin", "thumbs.bin", "skipped.json")
_REBUILD = "rebuild it with `priorsync index FOLDER`"

Progress = Callable[[str, int, int], None]


class ArchiveError(Exception):
    """An archive cannot be built or opened; ``str(error)`` is for the user.

    Attributes
    ----------
    skipped
        Files and series left out before the failure, as ``(path, reason)``.
    """

    def __init__(self, message: str, skipped: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.skipped = list(skipped or [])


@dataclass
class ArchiveReport:
    """What :func:`build_archive` indexed and left out."""

    n_patients: int
    n_series: int
    n_slices: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    out_dir: Path = Path()
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (no patient identifiers)."""
        return {
            "n_patients": self.n_patients,
            "n_series": self.n_series,
            "n_slices": self.n_slices,
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "out_dir": str(self.out_dir),
            "seconds": round(self.seconds, 2),
        }


def default_archive_dir(folder: Path | str) -> Path:
    """``cache_dir()/archives/<sha1 of the folder's real path>``."""
    real = os.path.realpath(folder)
    return cache_dir() / "archives" / hashlib.sha1(real.encode()).hexdigest()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _same_frame(a: Any, b: Any) -> bool:
    return a.size == b.size and a.pixel_mm == b.pixel_mm and tuple(a.windows) == tuple(b.windows)


@dataclass
class CodedVolume:
    """Both codes of every slice of a series, and optionally JPEG thumbnails."""

    anatomy: np.ndarray
    abnormality: np.ndarray
    jpegs: list[bytes]


def code_volume(
    volume: Volume,
    model: EmbeddingModel,
    sketch_models: SketchEncoder,
    with_thumbnails: bool = True,
    tick: Callable[[int], None] | None = None,
) -> CodedVolume:
    """Anatomy and abnormality codes (and thumbnails) of every slice, preparing each slice once.

    Parameters
    ----------
    volume
        Display-oriented series.
    model, sketch_models
        The anatomy model and the sketch models.
    with_thumbnails
        Also encode the soft-tissue JPEG thumbnails of the archive.
    tick
        Called with the number of slices just done after each batch (may raise to cancel).
    """
    n = volume.n_slices
    anat = np.empty((n, model.embedding_dim), dtype=np.float32)
    abn = np.empty((n, sketch_models.abnormality_dim), dtype=np.float32)
    jpegs: list[bytes] = []
    # Both models normally read the same frame: prepare once, feed both.
    shared = _same_frame(model.spec, sketch_models.spec)
    for start in range(0, n, _BATCH):
        idx = np.arange(start, min(n, start + _BATCH))
        hu = prepare_hu_slices(volume, idx, sketch_models.spec)
        channels = window_channels(hu, sketch_models.spec)
        abn[idx] = sketch_models.abnormality_inputs(channels)
        if shared:
            anat[idx] = model.embed_inputs(channels)
        else:
            anat[idx] = model.embed_slices(volume, idx)
        if with_thumbnails:
            for img in window_to_uint8(hu, THUMBNAIL_WINDOW):
                ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
                if not ok:
                    raise RuntimeError("JPEG encoding failed")
                jpegs.append(buf.tobytes())
        if tick is not None:
            tick(len(idx))
    return CodedVolume(anat, abn, jpegs)


def _looks_like_ct(volume: Volume) -> bool:
    """Whether a volume holds air and tissue, as any CT does (a label map holds neither)."""
    sample = volume.voxels[:, ::8, ::8]
    return bool((sample <= BODY_THRESHOLD_HU).any() and (sample > BODY_THRESHOLD_HU).any())


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def _write_archive(
    tmp: Path,
    index: SketchIndex,
    jpegs: list[bytes],
    skipped: list[tuple[str, str]],
    manifest: dict[str, Any],
) -> None:
    _write_json(tmp / "refs.json", [r.to_dict() for r in index.refs])
    offsets = np.zeros(len(jpegs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(j) for j in jpegs])
    with open(tmp / "thumbs.bin", "wb") as fh:
        for j in jpegs:
            fh.write(j)
    np.savez(
        tmp / "vectors.npz",
        anatomy=np.asarray(index.anatomy),
        abnormality=np.asarray(index.abnormality),
        thumb_offsets=offsets,
    )
    index.save_graph(tmp / "graph.bin")
    _write_json(tmp / "skipped.json", [[p, r] for p, r in skipped])
    manifest["files"] = {name: _sha256_file(tmp / name) for name in _FILES}
    # The manifest is written last: an archive without one is never complete.
    _write_json(tmp / "manifest.json", manifest)
    for name in (*_FILES, "manifest.json"):
        with open(tmp / name, "rb") as fh:
            os.fsync(fh.fileno())


def _replace_dir(tmp: Path, out_dir: Path) -> None:
    """Move the finished ``tmp`` into ``out_dir``, replacing an older archive there."""
    old: Path | None = None
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.old-"))
        os.replace(out_dir, old / "archive")
    try:
        os.replace(tmp, out_dir)
    except OSError:
        if old is not None:  # put the previous archive back
            os.replace(old / "archive", out_dir)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _check_replaceable(out_dir: Path) -> None:
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise ArchiveError(f"{out_dir} exists and is not a folder: choose another --out")
    if any(out_dir.iterdir()) and not (out_dir / "manifest.json").is_file():
        raise ArchiveError(
            f"{out_dir} is a folder that is not a PriorSync archive: refusing to replace it "
            "(choose an empty or new --out folder)"
        )


def build_archive(
    folder: Path | str,
    out_dir: Path | str | None = None,
    model: EmbeddingModel | None = None,
    sketch_models: SketchEncoder | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> ArchiveReport:
    """Index every CT series under ``folder`` into a sketch-search archive.

    Parameters
    ----------
    folder
        Folder (searched recursively) of DICOM files and/or volume files.
    out_dir
        Where the archive goes; :func:`default_archive_dir` when ``None``.
    model, sketch_models
        The anatomy model and the sketch models; the shipped ones when ``None``.
    progress
        ``progress(stage, done, total)``; stage ``"scan"`` (files) or ``"index"`` (slices).
    cancel
        When set, stops with :class:`~app.io.errors.Cancelled`; nothing is written.

    Returns
    -------
    ArchiveReport
        Counts, the skipped ``(path, reason)`` list and the archive folder.

    Raises
    ------
    ArchiveError
        The folder is missing, holds no usable CT series, or ``out_dir`` is
        something other than an archive.
    ModelError
        A model is missing or corrupt (when loading the shipped ones).
    Cancelled
        ``cancel`` was set.
    """
    from app.io.catalog import group_series
    from app.io.load import load_series
    from app.io.scan import scan_paths

    t0 = time.perf_counter()
    folder = Path(folder)
    if not folder.exists():
        raise ArchiveError(f"{folder} does not exist")
    out = Path(out_dir) if out_dir is not None else default_archive_dir(folder)
    _check_replaceable(out)
    if model is None:
        from app.ml.runtime.model import EmbeddingModel

        model = EmbeddingModel.load()
    if sketch_models is None:
        from app.ml.sketch.models import SketchModels

        sketch_models = SketchModels.load()

    def scan_progress(done: int, total: int) -> None:
        if progress is not None:
            progress("scan", done, total)

    scan = scan_paths([folder], progress=scan_progress, cancel=cancel)
    skipped: list[tuple[str, str]] = [(str(s.path), s.reason) for s in scan.skipped]
    usable = []
    for patient in group_series(scan.series):
        for ref in patient.series:
            if not ref.is_ct:
                skipped.append((ref.source, f"not CT (modality {ref.info.modality or 'unknown'})"))
            elif ref.n_slices < 2:
                skipped.append((ref.source, "a single slice, not a series of levels"))
            else:
                usable.append(ref)
    total = sum(r.n_slices for r in usable)
    floor = getattr(sketch_models, "evidence_floor", None)
    index = SketchIndex(model.embedding_dim, sketch_models.abnormality_dim, evidence_floor=floor)
    jpegs: list[bytes] = []
    patients: set[str] = set()
    n_series = 0
    done = 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if cancel is not None and cancel.is_set():
            raise Cancelled("indexing was cancelled")
        if progress is not None:
            progress("index", done, total)

    for ref in usable:
        base = done
        try:
            volume = load_series(ref, cancel=cancel)
            if volume.n_slices < 2:
                raise LoadError("a single slice, not a series of levels")
            if not _looks_like_ct(volume):
                raise LoadError(
                    "does not look like a CT image (no air below -500 HU): a label map or mask?"
                )
            coded = code_volume(volume, model, sketch_models, tick=tick)
        except Cancelled:
            raise
        except LoadError as exc:
            skipped.append((ref.source, str(exc)))
            done = base + ref.n_slices
            continue
        except (ValueError, RuntimeError, MemoryError) as exc:
            # A series the readers accepted but the models cannot use (odd
            # geometry, out of memory): left out with a reason, never a crash.
            skipped.append((ref.source, f"could not be indexed ({type(exc).__name__}: {exc})"))
            done = base + ref.n_slices
            continue
        index.add(slice_refs(volume, ref.key), coded.anatomy, coded.abnormality)
        jpegs.extend(coded.jpegs)
        patients.add(patient_key(ref.info, ref.key))
        n_series += 1
    if len(index) == 0:
        raise ArchiveError(
            f"no usable CT series found in {folder} ({scan.n_files} file(s) checked, "
            f"{len(skipped)} left out)",
            skipped,
        )
    if cancel is not None and cancel.is_set():
        raise Cancelled("indexing was cancelled")

    manifest: dict[str, Any] = {
        "format": ARCHIVE_FORMAT,
        "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "folder": os.path.realpath(folder),
        "models": {
            "anatomy": {"name": model.name, "sha256": model.sha256},
            "abnormality": {
                "name": sketch_models.abnormality_name,
                "sha256": sketch_models.abnormality_sha256,
            },
            "sketch": {"name": sketch_models.sketch_name, "sha256": sketch_models.sketch_sha256},
        },
        "anatomy_dim": index.anatomy_dim,
        "abnormality_dim": index.abnormality_dim,
        "evidence_floor": index.evidence_floor,
        "counts": {
            "patients": len(patients),
            "series": n_series,
            "slices": len(index),
            "skipped": len(skipped),
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.building-"))
    try:
        _write_archive(tmp, index, jpegs, skipped, manifest)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("archive: %d series, %d slices, %d left out", n_series, len(index), len(skipped))
    return ArchiveReport(
        len(patients), n_series, len(index), skipped, out, time.perf_counter() - t0
    )


class Archive:
    """An opened archive (use :meth:`open`).

    Attributes
    ----------
    path
        The archive folder.
    manifest
        The parsed ``manifest.json``.
    index
        The :class:`~app.ml.sketch.search.SketchIndex` of every slice.
    skipped
        ``(path, reason)`` of what the build left out.
    """

    def __init__(
        self,
        path: Path,
        manifest: dict[str, Any],
        index: SketchIndex,
        offsets: np.ndarray,
        skipped: list[tuple[str, str]],
    ) -> None:
        self.path = path
        self.manifest = manifest
        self.index = index
        self.skipped = skipped
        self._offsets = offsets
        self._thumbs_path = path / "thumbs.bin"
        self._lock = threading.Lock()

    @property
    def refs(self) -> list[SliceRef]:
        """One :class:`SliceRef` per row."""
        return self.index.refs

    @property
    def counts(self) -> dict[str, int]:
        """``patients``, ``series``, ``slices``, ``skipped``."""
        return dict(self.manifest["counts"])

    @staticmethod
    def _damaged(path: Path, why: str) -> ArchiveError:
        return ArchiveError(f"the archive {path} is damaged ({why}) — {_REBUILD}")

    @classmethod
    def open(
        cls,
        path: Path | str,
        model: EmbeddingModel | None = None,
        sketch_models: SketchEncoder | None = None,
    ) -> Archive:
        """Open and verify an archive.

        Parameters
        ----------
        path
            The archive folder.
        model, sketch_models
            When given, the archive must have been made with these models.

        Raises
        ------
        ArchiveError
            Missing, not an archive, damaged (any file changed or truncated),
            another format version, or made with other models.
        """
        path = Path(path)
        if not path.is_dir():
            raise ArchiveError(f"{path} does not exist or is not a folder — {_REBUILD}")
        try:
            manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise ArchiveError(
                f"{path} is not a PriorSync archive (no readable manifest.json) — {_REBUILD}"
            ) from None
        if not isinstance(manifest, dict) or manifest.get("format") != ARCHIVE_FORMAT:
            raise ArchiveError(f"{path} is not a PriorSync archive — {_REBUILD}")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ArchiveError(
                f"the archive {path} has format version {manifest.get('format_version')!r}, "
                f"this PriorSync reads version {FORMAT_VERSION} — {_REBUILD}"
            )
        try:
            files = dict(manifest["files"])
            models = manifest["models"]
            anatomy_dim = int(manifest["anatomy_dim"])
            abnormality_dim = int(manifest["abnormality_dim"])
            n_slices = int(manifest["counts"]["slices"])
            raw_floor = manifest.get("evidence_floor")
            floor = None if raw_floor is None else float(raw_floor)
        except (KeyError, TypeError, ValueError):
            raise cls._damaged(path, "incomplete manifest") from None
        cls._check_models(path, models, model, sketch_models)
        for name in _FILES:
            expected = files.get(name)
            try:
                actual = _sha256_file(path / name)
            except OSError:
                raise cls._damaged(path, f"{name} is missing or unreadable") from None
            if actual != expected:
                raise cls._damaged(path, f"{name} has changed since it was written")
        try:
            raw_refs = json.loads((path / "refs.json").read_text(encoding="utf-8"))
            refs = [SliceRef.from_dict(r) for r in raw_refs]
            with np.load(io.BytesIO((path / "vectors.npz").read_bytes())) as z:
                anat = np.array(z["anatomy"], dtype=np.float32)
                abn = np.array(z["abnormality"], dtype=np.float32)
                offsets = np.array(z["thumb_offsets"], dtype=np.int64)
            skipped = [
                (str(p), str(r))
                for p, r in json.loads((path / "skipped.json").read_text(encoding="utf-8"))
            ]
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
            raise cls._damaged(path, f"unreadable content: {type(exc).__name__}") from None
        thumbs_size = (path / "thumbs.bin").stat().st_size
        if not (
            len(refs) == n_slices == len(anat) == len(abn) == len(offsets) - 1
            and anat.shape[1:] == (anatomy_dim,)
            and abn.shape[1:] == (abnormality_dim,)
            and offsets[0] == 0
            and np.all(np.diff(offsets) > 0)
            and offsets[-1] == thumbs_size
        ):
            raise cls._damaged(path, "its parts do not agree")
        index = SketchIndex(anatomy_dim, abnormality_dim, evidence_floor=floor)
        try:
            index.add(refs, anat, abn)
            index.load_graph(path / "graph.bin")
        except ValueError as exc:
            raise cls._damaged(path, str(exc)) from None
        return cls(path, manifest, index, offsets, skipped)

    @staticmethod
    def _check_models(
        path: Path,
        recorded: Any,
        model: EmbeddingModel | None,
        sketch_models: SketchEncoder | None,
    ) -> None:
        want = {}
        if model is not None:
            want["anatomy"] = model.sha256
        if sketch_models is not None:
            want["abnormality"] = sketch_models.abnormality_sha256
            want["sketch"] = sketch_models.sketch_sha256
        for role, sha in want.items():
            try:
                got = recorded[role]["sha256"]
            except (KeyError, TypeError):
                got = None
            if got != sha:
                raise ArchiveError(
                    f"the archive {path} was made with another {role} model "
                    f"({str(got)[:12]}…, this PriorSync has {sha[:12]}…) — {_REBUILD}"
                )

    def thumbnail(self, row: int) -> np.ndarray:
        """The stored 128 x 128 soft-tissue thumbnail of a row, ``uint8``.

        Raises
        ------
        IndexError
            ``row`` is not in the archive.
        ArchiveError
            The thumbnail cannot be read or decoded.
        """
        n = len(self._offsets) - 1
        if not 0 <= row < n:
            raise IndexError(f"row {row} is not in the archive ({n} slices)")
        start, end = int(self._offsets[row]), int(self._offsets[row + 1])
        try:
            with self._lock, open(self._thumbs_path, "rb") as fh:
                fh.seek(start)
                data = fh.read(end - start)
        except OSError as exc:
            raise self._damaged(self.path, f"thumbnails unreadable: {exc.strerror}") from None
        img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise self._damaged(self.path, f"thumbnail {row} cannot be decoded")
        return img
