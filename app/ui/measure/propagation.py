"""Propagate to priors: the selected measurement placed in every other date, in the background.

For each other date on screen a job (one worker, the machine's cores are
few) pairs the two series for the point engine (:class:`~app.ml.points.locate.PointPair`,
from the sync engine's alignment when it has one, else by matching them) and
maps the measurement's control points (:func:`~app.ml.points.propagate.propagate_measurement`).
Pairs are kept, so a second propagation between the same dates takes
milliseconds. When every job has answered, the copies are put on one slice
each (:func:`~app.core.measure_slice.snap_to_slice`) and added to the store
as one undo step, in the measurement's finding; each prior then shows the
slice of its copy, for the reader to adjust. A date that already holds a
measurement of the finding keeps it (the reader's adjustment is never
replaced); a date that does not image the place gets none, and the message
says so.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from PySide6 import QtCore

from app.core.measure import Measurement
from app.core.measure_slice import series_key, snap_to_slice
from app.core.measure_store import MeasurementStore
from app.core.state import ViewportState
from app.core.volume import Volume
from app.ml.anatomy.align import Alignment
from app.ml.anatomy.sync_service import SyncEngine
from app.ml.points.locate import PointPair
from app.ml.points.propagate import Propagated, propagate_measurement
from app.ui.loading.jobs import Job

__all__ = ["PropagationRun", "Propagator"]

log = logging.getLogger(__name__)

_PAIRS_KEPT = 6  # point pairs in memory (their grids are tens of MB)


@dataclass
class PropagationRun:
    """One "propagate to priors": the measurement and what each prior answered."""

    measurement: Measurement
    targets: list[ViewportState]
    answers: dict[int, Propagated | str]  # index into targets -> result or failure message

    @property
    def done(self) -> bool:
        return len(self.answers) == len(self.targets)


class Propagator(QtCore.QObject):
    """Runs propagations and adds their copies to the store.

    Parameters
    ----------
    store
        The measurements.
    engine
        The sync engine (alignments it has computed are reused).
    states
        Returns the viewport states on screen.
    hold_sync
        A context in which slice changes do not propagate to other dates.

    Signals
    -------
    finished(str)
        A one-line summary once a propagation has answered for every prior.
    """

    finished = QtCore.Signal(str)

    def __init__(
        self,
        store: MeasurementStore,
        engine: SyncEngine,
        states: Callable[[], list[ViewportState]],
        hold_sync: Callable[[], AbstractContextManager[None]],
        parent: QtCore.QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.store = store
        self.engine = engine
        self.states = states
        self.hold_sync = hold_sync
        self._pool = QtCore.QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._pairs: OrderedDict[tuple[int, int], PointPair] = OrderedDict()
        self._lock = threading.Lock()
        self._jobs: set[Job] = set()
        self._cancel = threading.Event()

    def is_busy(self) -> bool:
        return bool(self._jobs)

    def shutdown(self, timeout_ms: int = 10000) -> bool:
        """Cancel and wait for the jobs (idempotent)."""
        self._cancel.set()
        return bool(self._pool.waitForDone(timeout_ms))

    def propagate(self, mid: str) -> str:
        """Start propagating measurement ``mid``; returns what the status bar should say."""
        m = self.store.get(mid)
        if m is None:
            return "select a measurement to propagate first"
        states = self.states()
        source = next((s for s in states if series_key(s.volume) == m.series_uid), None)
        if source is None:
            return "the measurement's series is not on screen"
        measured = {
            other.series_uid
            for other_id, other in self.store.items()
            if other.finding == m.finding and other_id != mid
        } | {m.series_uid}
        targets = [
            s
            for s in states
            if s is not source
            and series_key(s.volume) not in measured
            and s.volume.info.study_date != source.volume.info.study_date
        ]
        if not targets:
            return f"{m.finding}: every other date on screen already holds it"
        run = PropagationRun(m, targets, {})
        for i, target in enumerate(targets):
            self._start(run, i, source.volume, target.volume)
        return f"propagating {m.finding} to {len(targets)} prior(s)…"

    # -- jobs ----------------------------------------------------------------------------
    def _pair(self, current: Volume, prior: Volume, known: Alignment | None) -> PointPair:
        """The point pair of two series (worker thread): kept, else built now.

        ``known`` is the sync engine's alignment of the two (read in the GUI
        thread); without one the series are matched here.
        """
        key = (id(current), id(prior))
        with self._lock:
            hit = self._pairs.get(key)
            if hit is not None and hit.current is current and hit.prior is prior:
                self._pairs.move_to_end(key)
                return hit
        alignment = known if known is not None else self.engine.match(current, prior).alignment
        pair = PointPair.prepare(current, prior, alignment)
        with self._lock:
            self._pairs[key] = pair
            while len(self._pairs) > _PAIRS_KEPT:
                self._pairs.popitem(last=False)
        return pair

    def _start(self, run: PropagationRun, i: int, current: Volume, prior: Volume) -> None:
        m = run.measurement
        pair = self.engine.alignment_of(current, prior)  # the engine's registry: GUI thread
        known = pair.alignment if pair is not None else None

        def work(_progress: object, _cancel: object) -> Propagated:
            return propagate_measurement(m, self._pair(current, prior, known))

        job = Job("propagating a measurement", work, self._cancel)
        job.signals.succeeded.connect(lambda result, job=job: self._answer(job, run, i, result))
        job.signals.failed.connect(lambda message, job=job: self._answer(job, run, i, message))
        job.signals.cancelled.connect(lambda job=job: self._jobs.discard(job))
        self._jobs.add(job)
        self._pool.start(job.run)

    def _answer(self, job: Job, run: PropagationRun, i: int, result: Propagated | str) -> None:
        self._jobs.discard(job)
        run.answers[i] = result
        if run.done:
            self.finished.emit(self._apply(run))

    def _apply(self, run: PropagationRun) -> str:
        """Add the copies (one undo step), show each prior's slice; returns the summary."""
        on_screen = {id(s) for s in self.states()}
        copies: list[Measurement] = []
        jumps: list[tuple[ViewportState, int]] = []
        notes: list[str] = []
        for i, target in enumerate(run.targets):
            answer = run.answers[i]
            date = target.volume.info.display_date()
            if id(target) not in on_screen:
                notes.append(f"{date}: closed meanwhile")
            elif isinstance(answer, str):
                notes.append(f"{date}: {answer}")
            elif answer.measurement is None:
                notes.append(f"{date}: {answer.message}")
            else:
                moved = answer.measurement.moved(
                    list(answer.measurement.points),
                    series_key(target.volume),
                    target.volume.info.study_date,
                )
                copy, k = snap_to_slice(target.volume, moved)
                copies.append(copy)
                jumps.append((target, k))
        if self.store.ids_of_finding(run.measurement.finding):
            ids = self.store.add_many(copies) if copies else []
        else:
            ids = []
            notes.append("the measurement was deleted meanwhile")
            jumps = []
        with self.hold_sync():
            for target, k in jumps:
                target.set_slice(k)
        placed = f"{run.measurement.finding}: placed on {len(ids)} of {len(run.targets)} prior(s)"
        if ids:
            placed += ", adjust them there"
        return "; ".join([placed, *notes])
