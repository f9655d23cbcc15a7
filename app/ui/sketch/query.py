"""Running sketch searches off the GUI thread: models, cached abnormality codes, the query.

:class:`SketchQuery` owns one worker thread (a single-thread ``QThreadPool``)
that loads the sketch models once, computes the abnormality codes of loaded
series (kept in memory per series, so a second search costs only the query)
and runs searches, over the loaded series or over an archive made by
``priorsync index``. Everything a worker needs from GUI-thread state (which
series are on screen, their anatomy codes from anatomical sync) is collected
into a :class:`SearchRequest` before the job starts; results come back as a
:class:`SearchOutcome` with thumbnails ready to paint.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from PySide6 import QtCore

from app.core.imaging import SOFT_TISSUE_WINDOW
from app.core.volume import Volume
from app.io.catalog import slice_thumbnail
from app.ml.anatomy.sync_service import SyncEngine
from app.ml.sketch.models import SketchError, SketchModels
from app.ml.sketch.search import SketchHit, SketchIndex, patient_key, similar_slices, slice_refs
from app.ui.loading.jobs import Job

if TYPE_CHECKING:  # imported when first used: opening an archive is rare
    from app.ml.runtime.model import EmbeddingModel
    from app.ml.sketch.archive import Archive

__all__ = [
    "LoadedSeries",
    "SCOPE_ARCHIVE",
    "SCOPE_LOADED",
    "SearchOutcome",
    "SearchRequest",
    "SketchQuery",
    "THUMB_SIZE",
    "soft_tissue_thumbnail",
]

log = logging.getLogger(__name__)

SCOPE_LOADED = "loaded"
SCOPE_ARCHIVE = "archive"
THUMB_SIZE = 128  # results grid thumbnails (the archive stores 128 x 128)
N_RESULTS = 24


@dataclass(frozen=True)
class LoadedSeries:
    """A series on screen, as the search sees it.

    Attributes
    ----------
    volume
        The series.
    key
        Its stable key (the catalogue's), so a hit can be traced back to it.
    anatomy
        Its anatomy codes from anatomical sync, ``(n_slices, Da)``; ``None``
        while it is still being indexed.
    """

    volume: Volume
    key: str
    anatomy: np.ndarray | None


@dataclass(frozen=True)
class SearchRequest:
    """Everything one search needs, collected in the GUI thread."""

    @property
    def similar(self) -> bool:
        """A plain similar-slice search (no sketch)."""
        return self.labels is None

    template: Volume
    slice_index: int
    # The sketch's labels; ``None`` asks for similar slices: the template's
    # level in *other* patients, by anatomy alone ("Find similar slices").
    labels: np.ndarray | None
    weight: float
    one_per_patient_level: bool
    scope: str
    template_anatomy: np.ndarray | None = None  # (Da,), when the template is indexed
    loaded: tuple[LoadedSeries, ...] = ()
    archive_dir: Path | None = None
    n_results: int = N_RESULTS


@dataclass
class SearchOutcome:
    """A search's results, best first, with a thumbnail for each.

    ``note`` tells the user something about the search that is not an error
    (series left out because they are still being indexed); ``volumes`` maps a
    loaded-series hit's ``series_key`` to its volume.
    """

    request: SearchRequest
    hits: list[SketchHit]
    thumbnails: list[np.ndarray]
    searched_slices: int
    note: str = ""
    volumes: dict[str, Volume] = field(default_factory=dict)


def soft_tissue_thumbnail(volume: Volume, k: int, size: int = THUMB_SIZE) -> np.ndarray:
    """A ``size`` x ``size`` uint8 thumbnail of slice ``k`` in the soft-tissue window.

    The slice keeps its physical aspect (non-square pixels, non-square FOV) and
    is centred on black, as the viewer paints it.
    """
    return slice_thumbnail(volume, k, size, SOFT_TISSUE_WINDOW, square=True)


def _manifest_stamp(folder: Path) -> int | None:
    try:
        return (Path(folder) / "manifest.json").stat().st_mtime_ns
    except OSError:
        return None


class _AbnormalityCache:
    """Abnormality codes per loaded series, shared between the GUI thread and the worker."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._codes: dict[int, tuple[Volume, np.ndarray]] = {}

    def get(self, volume: Volume) -> np.ndarray | None:
        with self._lock:
            entry = self._codes.get(id(volume))
        return entry[1] if entry is not None and entry[0] is volume else None

    def put(self, volume: Volume, codes: np.ndarray) -> None:
        with self._lock:
            self._codes[id(volume)] = (volume, codes)

    def forget(self, volume: Volume) -> None:
        with self._lock:
            entry = self._codes.get(id(volume))
            if entry is not None and entry[0] is volume:
                del self._codes[id(volume)]

    def keep_only(self, volumes: list[Volume]) -> None:
        keep = {id(v) for v in volumes}
        with self._lock:
            for key in [k for k in self._codes if k not in keep]:
                del self._codes[key]


class ArchiveOpener(Protocol):
    """Opens and verifies an archive folder (``Archive.open``; tests pass fakes)."""

    def __call__(
        self, path: Path, model: EmbeddingModel | None, sketch_models: SketchModels | None
    ) -> Archive: ...


class SketchQuery(QtCore.QObject):
    """Loads the sketch models and runs searches in one worker thread.

    Signals
    -------
    models_loaded(object)
        The :class:`~app.ml.sketch.models.SketchModels`, once loaded.
    models_unavailable(str)
        Why the models could not be loaded (searching is impossible).
    progress(str, int, int)
        What the worker does now, and how far it is.
    finished(object)
        A :class:`SearchOutcome`.
    failed(str)
        Why a search could not run (an empty sketch, a broken archive, ...).
    busy_changed(bool)
        Whether a search is queued or running.

    Parameters
    ----------
    engine
        The anatomical sync engine (its model gives a template's anatomy code).
    models_loader
        Loads the models; :meth:`SketchModels.load` by default (tests pass others).
    archive_opener
        Opens an archive folder, ``opener(folder, model=..., sketch_models=...)``;
        ``app.ml.sketch.archive.Archive.open`` by default.
    """

    models_loaded = QtCore.Signal(object)
    models_unavailable = QtCore.Signal(str)
    progress = QtCore.Signal(str, int, int)
    finished = QtCore.Signal(object)
    failed = QtCore.Signal(str)
    busy_changed = QtCore.Signal(bool)

    def __init__(
        self,
        engine: SyncEngine,
        parent: QtCore.QObject | None = None,
        models_loader: Callable[[], SketchModels] | None = None,
        archive_opener: ArchiveOpener | None = None,
    ) -> None:
        super().__init__(parent)
        self.engine = engine
        self._models_loader = models_loader or SketchModels.load
        self._archive_opener = archive_opener
        self._pool = QtCore.QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._models: SketchModels | None = None
        self._models_lock = threading.Lock()
        self._models_error: str | None = None
        self._models_requested = False
        self._cache = _AbnormalityCache()
        self._archives: dict[Path, tuple[int | None, Archive]] = {}
        self._archives_lock = threading.Lock()
        self._jobs: set[Job] = set()
        self._search: Job | None = None
        self._prefetch_cancel = threading.Event()

    # -- state ------------------------------------------------------------------------------
    @property
    def models(self) -> SketchModels | None:
        return self._models

    @property
    def unavailable_reason(self) -> str | None:
        return self._models_error

    def is_busy(self) -> bool:
        """True while a search is queued or running."""
        return self._search is not None

    def is_idle(self) -> bool:
        """True when no job at all (models, codes, search) is queued or running."""
        return not self._jobs

    def cached_codes(self, volume: Volume) -> np.ndarray | None:
        """The abnormality codes of ``volume`` if already computed."""
        return self._cache.get(volume)

    # -- requests ---------------------------------------------------------------------------
    def load_models(self) -> None:
        """Load the models in the background, once (``models_loaded`` / ``models_unavailable``)."""
        if self._models_requested:
            return
        self._models_requested = True

        def work(_progress, _cancel) -> SketchModels:
            return self._get_models()

        self._start("loading the sketch models", work, self._on_models, self._on_models_failed)

    def prefetch(self, volumes: list[Volume]) -> None:
        """Compute the abnormality codes of ``volumes`` in the background, those not cached yet.

        Codes of series no longer listed are dropped from memory.
        """
        self._cache.keep_only(volumes)
        todo = [v for v in volumes if self._cache.get(v) is None]
        if not todo or self._models_error is not None:
            return
        self.load_models()
        cancel = self._prefetch_cancel

        def work(progress, _cancel) -> None:
            models = self._get_models()
            for volume in todo:
                if cancel.is_set():
                    return
                self._codes_of(models, volume, progress)

        self._start("coding loaded series for sketch search", work, None, None, cancel)

    def search(self, request: SearchRequest) -> None:
        """Run ``request`` in the background; a search already waiting is replaced."""
        if self._search is not None:
            self._search.cancel.set()
        cancel = threading.Event()

        def work(progress, _cancel) -> SearchOutcome:
            return self._run_search(request, progress, cancel)

        was_busy = self._search is not None
        job = self._start("sketch search", work, self._on_finished, self._on_failed, cancel)
        job.signals.progress.connect(lambda done, total: self.progress.emit("", done, total))
        self._search = job
        if not was_busy:
            self.busy_changed.emit(True)

    def cancel(self) -> None:
        """Stop the running search (its results are dropped)."""
        if self._search is not None:
            self._search.cancel.set()

    def forget(self, volume: Volume) -> None:
        """Drop the cached codes of a series that was closed."""
        self._cache.forget(volume)

    def shutdown(self, timeout_ms: int = 10000) -> bool:
        """Cancel everything and wait for the worker."""
        self._prefetch_cancel.set()
        for job in list(self._jobs):
            job.cancel.set()
        self._pool.clear()
        return self._pool.waitForDone(timeout_ms)

    # -- worker side ------------------------------------------------------------------------
    def _get_models(self) -> SketchModels:
        with self._models_lock:
            if self._models is None:
                self._models = self._models_loader()
            return self._models

    def _codes_of(self, models: SketchModels, volume: Volume, progress) -> np.ndarray:
        codes = self._cache.get(volume)
        if codes is None:
            codes = models.abnormality_vectors(volume, progress=progress)
            self._cache.put(volume, codes)
        return codes

    def _open_archive(self, folder: Path, models: SketchModels) -> Archive:
        # Kept open between searches, but reopened when `priorsync index` rebuilt
        # it meanwhile (a new manifest), so stale offsets never read new thumbnails.
        stamp = _manifest_stamp(folder)
        with self._archives_lock:
            cached = self._archives.get(folder)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        opener = self._archive_opener
        if opener is None:
            from app.ml.sketch.archive import Archive

            opener = Archive.open
        # Checked against the models in use: codes of other models are not comparable.
        archive = opener(folder, model=self.engine.load_model(), sketch_models=models)
        with self._archives_lock:
            self._archives[folder] = (stamp, archive)
        return archive

    def _run_search(
        self, request: SearchRequest, progress, cancel: threading.Event
    ) -> SearchOutcome:
        models = self._get_models()
        # The sketch is checked first: an empty or misplaced one needs no other work.
        sketch_q = (
            None
            if request.labels is None
            else models.sketch_vector(request.template, request.slice_index, request.labels)
        )
        anat_q = request.template_anatomy
        if anat_q is None:
            model = self.engine.load_model()
            anat_q = np.asarray(model.embed_slices(request.template, [request.slice_index]))[0]

        def rank(index: SketchIndex) -> list[SketchHit]:
            if sketch_q is None:  # other patients only: the template's own is left out
                own = self._own_patient(request)
                return similar_slices(index, anat_q, own, k=request.n_results)
            return index.query(
                anat_q,
                sketch_q,
                request.weight,
                k=request.n_results,
                one_per_patient_level=request.one_per_patient_level,
            )

        if request.scope == SCOPE_ARCHIVE:
            return self._search_archive(request, models, anat_q, rank)
        return self._search_loaded(request, models, anat_q, rank, progress, cancel)

    @staticmethod
    def _own_patient(request: SearchRequest) -> str:
        """The template's patient key, as the searched index knows it."""
        t = request.template
        key = next((s.key for s in request.loaded if s.volume is t), None)
        return patient_key(t.info, key or t.info.series_uid or t.source)

    def _search_loaded(self, request, models, anat_q, rank, progress, cancel) -> SearchOutcome:
        ready = [s for s in request.loaded if s.anatomy is not None]
        waiting = len(request.loaded) - len(ready)
        if not ready:
            raise SketchError(
                "The loaded series are still being indexed for anatomical sync: "
                "search again in a moment"
            )
        index = SketchIndex(len(anat_q), models.abnormality_dim)
        total = sum(s.volume.n_slices for s in ready)
        done = 0
        for series in ready:
            base = done

            def step(d: int, _n: int, base: int = base) -> None:
                progress(base + d, total)

            if request.similar:  # anatomy alone: the abnormality codes are not needed
                codes = np.zeros((series.volume.n_slices, models.abnormality_dim), np.float32)
            else:
                codes = self._codes_of(models, series.volume, step)
            if cancel.is_set():
                break
            index.add(slice_refs(series.volume, series.key), series.anatomy, codes)
            done += series.volume.n_slices
        hits = rank(index)
        volumes = {s.key: s.volume for s in ready}
        thumbs = [soft_tissue_thumbnail(volumes[h.ref.series_key], h.ref.slice_index) for h in hits]
        note = ""
        if waiting:
            note = (
                f"{waiting} series still being indexed "
                f"{'was' if waiting == 1 else 'were'} not searched"
            )
        return SearchOutcome(request, hits, thumbs, len(index), note, volumes)

    def _search_archive(self, request, models, anat_q, rank) -> SearchOutcome:
        if request.archive_dir is None:
            raise SketchError("Choose an archive folder first (Scope: Archive…)")
        archive = self._open_archive(Path(request.archive_dir), models)
        index: SketchIndex = archive.index
        if len(anat_q) != index.anatomy_dim:
            raise SketchError(
                "This archive was indexed with another anatomy model: "
                "index it again with `priorsync index`"
            )
        hits = rank(index)
        thumbs = [np.asarray(archive.thumbnail(h.row), dtype=np.uint8) for h in hits]
        return SearchOutcome(request, hits, thumbs, len(index))

    # -- results ----------------------------------------------------------------------------
    def _on_models(self, models: SketchModels) -> None:
        self.models_loaded.emit(models)

    def _on_models_failed(self, message: str) -> None:
        self._models_error = message
        self.models_unavailable.emit(message)

    def _on_finished(self, outcome: SearchOutcome) -> None:
        self.finished.emit(outcome)

    def _on_failed(self, message: str) -> None:
        self.failed.emit(message)

    def _start(self, name, fn, on_success, on_failure, cancel=None) -> Job:
        job = Job(name, fn, cancel if cancel is not None else threading.Event())
        if on_success is not None:
            job.signals.succeeded.connect(on_success)
        if on_failure is not None:
            job.signals.failed.connect(on_failure)
        else:
            job.signals.failed.connect(lambda m, n=name: log.warning("%s failed", n))
        for sig in (job.signals.succeeded, job.signals.failed, job.signals.cancelled):
            sig.connect(lambda *_, job=job: self._finished_job(job))
        self._jobs.add(job)
        self._pool.start(job.run)
        return job

    def _finished_job(self, job: Job) -> None:
        self._jobs.discard(job)
        if job is self._search:
            self._search = None
            self.busy_changed.emit(False)
