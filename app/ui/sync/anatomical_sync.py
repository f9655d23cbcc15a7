"""Background indexing and alignment of the hung series, for anatomical slice sync.

:class:`AnatomicalSync` runs the Qt-free :class:`~app.ml.anatomy.sync_service.SyncEngine`
in one worker thread: for every viewport state added it embeds and indexes the
series (or reads the index from the user's cache), and as soon as two series
are indexed it aligns them, in both directions. Results are registered with
the engine in the GUI thread, where the sync group's mapper reads them. One
thread, because the model already uses every core for one batch and the
engine's matcher is not meant to be shared between threads.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from PySide6 import QtCore

from app.core.state import ViewportState
from app.ml.anatomy.sync_service import IndexOutcome, PairAlignment, SyncEngine
from app.ui.loading.jobs import Job

__all__ = ["AnatomicalSync", "ModelInfo", "IndexState"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelInfo:
    """What the About box and the status bar show about the model."""

    name: str
    sha256: str
    provider: str

    @property
    def device(self) -> str:
        """``"CUDA"`` or ``"CPU"``: the execution provider in one word."""
        return "CUDA" if self.provider.startswith("CUDA") else "CPU"


@dataclass
class IndexState:
    """Indexing status of one viewport's series.

    ``status`` is ``"queued"``, ``"indexing"``, ``"ready"`` or ``"failed"``;
    ``message`` says why it failed; ``from_cache`` whether the index was reused.
    """

    status: str = "queued"
    done: int = 0
    total: int = 0
    message: str = ""
    from_cache: bool = False
    seconds: float = 0.0


class AnatomicalSync(QtCore.QObject):
    """Indexes and aligns the series of the viewport states it is given.

    Signals
    -------
    index_progress(object, int, int)
        State, slices embedded, slices in the series.
    index_changed(object)
        State whose :class:`IndexState` changed (ready, failed).
    alignment_ready(object, object)
        Source and target states whose alignment is now known.
    ready_changed(bool)
        Whether every added (indexable) series is indexed.
    idle_changed(bool)
        Whether no job is queued or running.
    model_loaded(object)
        :class:`ModelInfo`, once the model is loaded.
    unavailable(str)
        The model could not be loaded: anatomical sync is off, and why.
    """

    index_progress = QtCore.Signal(object, int, int)
    index_changed = QtCore.Signal(object)
    alignment_ready = QtCore.Signal(object, object)
    ready_changed = QtCore.Signal(bool)
    idle_changed = QtCore.Signal(bool)
    model_loaded = QtCore.Signal(object)
    unavailable = QtCore.Signal(str)

    def __init__(self, engine: SyncEngine | None = None, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.engine = engine if engine is not None else SyncEngine()
        self._pool = QtCore.QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._states: dict[int, tuple[ViewportState, IndexState, threading.Event]] = {}
        self._jobs: set[Job] = set()
        self._model_info: ModelInfo | None = None
        self._unavailable: str | None = None
        self._ready = False
        self._model_requested = False

    # -- queries ---------------------------------------------------------------------------
    @property
    def model_info(self) -> ModelInfo | None:
        return self._model_info

    @property
    def unavailable_reason(self) -> str | None:
        """Why anatomical sync cannot work (the model failed to load), else ``None``."""
        return self._unavailable

    def index_state(self, state: ViewportState) -> IndexState | None:
        entry = self._states.get(id(state))
        return entry[1] if entry is not None and entry[0] is state else None

    def is_idle(self) -> bool:
        """True when no indexing or alignment job is queued or running."""
        return not self._jobs

    def is_ready(self) -> bool:
        """True when at least two series are indexed and no other is still being indexed."""
        statuses = [s.status for _, s, _ in self._states.values()]
        return statuses.count("ready") >= 2 and all(s in ("ready", "failed") for s in statuses)

    # -- requests --------------------------------------------------------------------------
    def add(self, state: ViewportState) -> None:
        """Index ``state``'s series in the background, then align it with the others."""
        if id(state) in self._states:
            return
        info = IndexState()
        cancel = threading.Event()
        self._states[id(state)] = (state, info, cancel)
        if self._unavailable is not None:
            info.status, info.message = "failed", self._unavailable
            self.index_changed.emit(state)
            return
        self._load_model_once()
        engine = self.engine
        volume = state.volume

        def work(progress, _cancel) -> IndexOutcome:
            return engine.build_index(volume, progress)

        def on_progress(done: int, total: int) -> None:
            if self.index_state(state) is info:
                info.status, info.done, info.total = "indexing", done, total
                self.index_progress.emit(state, done, total)

        self._start(
            "indexing a series",
            work,
            lambda outcome: self._on_indexed(state, info, outcome),
            lambda message: self._on_index_failed(state, info, message),
            cancel,
            on_progress,
        )
        self._update_ready()

    def remove(self, state: ViewportState) -> None:
        """Stop working on ``state`` and forget its index and alignments."""
        entry = self._states.pop(id(state), None)
        if entry is None:
            return
        entry[2].set()
        self.engine.remove(state.volume)
        self._update_ready()

    def shutdown(self, timeout_ms: int = 10000) -> bool:
        """Cancel everything and wait for the worker (before the window goes away)."""
        for _, _, cancel in self._states.values():
            cancel.set()
        self._pool.clear()
        done = self._pool.waitForDone(timeout_ms)
        if not done:
            log.error("indexing did not stop within %d ms", timeout_ms)
        return done

    # -- results ---------------------------------------------------------------------------
    def _load_model_once(self) -> None:
        """Queue the model's loading ahead of the first indexing job."""
        if self._model_requested:
            return
        self._model_requested = True
        engine = self.engine

        def work(_progress, _cancel) -> ModelInfo:
            model = engine.load_model()
            return ModelInfo(model.name, model.sha256, model.provider)

        self._start("loading the model", work, self._on_model, self._on_model_failed, None, None, 1)

    def _on_model(self, info: ModelInfo) -> None:
        self._model_info = info
        self.model_loaded.emit(info)

    def _on_model_failed(self, message: str) -> None:
        # No model: nothing can be indexed; say so once and stop trying.
        self._unavailable = message
        for state, info, cancel in list(self._states.values()):
            cancel.set()
            info.status, info.message = "failed", message
            self.index_changed.emit(state)
        self.unavailable.emit(message)
        self._update_ready()

    def _on_indexed(self, state: ViewportState, info: IndexState, outcome: IndexOutcome) -> None:
        if self.index_state(state) is not info:
            return  # removed meanwhile
        self.engine.add_index(state.volume, outcome.index)
        info.status = "ready"
        info.done = info.total = outcome.index.n_slices
        info.from_cache = not outcome.embedded
        info.seconds = outcome.seconds
        log.info(
            "series indexed in %.2f s (%s)",
            outcome.seconds,
            "embedded" if outcome.embedded else "cached",
        )
        self.index_changed.emit(state)
        for other, other_info, _ in list(self._states.values()):
            if other is not state and other_info.status == "ready":
                self._queue_alignment(state, other)
                self._queue_alignment(other, state)
        self._update_ready()

    def _on_index_failed(self, state: ViewportState, info: IndexState, message: str) -> None:
        if self.index_state(state) is info:
            info.status, info.message = "failed", message
            self.index_changed.emit(state)
        self._update_ready()

    def _queue_alignment(self, source: ViewportState, target: ViewportState) -> None:
        s_index = self.engine.index_of(source.volume)
        t_index = self.engine.index_of(target.volume)
        if s_index is None or t_index is None:
            return
        engine = self.engine
        cancel = threading.Event()

        def work(_progress, _cancel) -> PairAlignment:
            return engine.compute_alignment(s_index, t_index)

        def done(pair: PairAlignment) -> None:
            # Both may have been replaced while the worker aligned them.
            if engine.index_of(source.volume) is s_index and engine.index_of(target.volume) is (
                t_index
            ):
                engine.add_alignment(source.volume, target.volume, pair)
                self.alignment_ready.emit(source, target)

        def failed(message: str) -> None:
            log.warning("series alignment failed; clicks use the slice search alone")

        self._start("aligning two series", work, done, failed, cancel, None, priority=-1)

    # -- jobs ------------------------------------------------------------------------------
    def _start(self, name, fn, on_success, on_failure, cancel, on_progress, priority=0) -> None:
        job = Job(name, fn, cancel if cancel is not None else threading.Event())
        if on_progress is not None:
            job.signals.progress.connect(on_progress)
        job.signals.succeeded.connect(on_success)
        job.signals.failed.connect(on_failure)
        for sig in (job.signals.succeeded, job.signals.failed, job.signals.cancelled):
            sig.connect(lambda *_, job=job: self._finished(job))
        was_idle = not self._jobs
        self._jobs.add(job)
        if was_idle:
            self.idle_changed.emit(False)
        self._pool.start(job.run, priority)

    def _finished(self, job: Job) -> None:
        self._jobs.discard(job)
        if not self._jobs:
            self.idle_changed.emit(True)

    def _update_ready(self) -> None:
        ready = self.is_ready()
        if ready != self._ready:
            self._ready = ready
            self.ready_changed.emit(ready)
