"""The linked cursor's engine side in the viewer: pairs prepared in the background, latest-wins queries.

:class:`LinkedCursor` is the sync group's :class:`~app.core.state.CursorMapper`.
When the driving date's cursor moves, the group asks it for every other date;
it answers with one background job that locates the point in every prepared
pair (:class:`~app.ml.points.cursor_pairs.CursorPairs`) and writes the answers
back into the target states (their slice jumps to the point, their
:class:`~app.core.cursor.CursorMark` shows it, or why not). One query runs at a
time; while it runs only the newest request waits, older ones are dropped, so
a dragging mouse never builds a queue.

Pairs are prepared once per ordered pair of dates (seconds each, in a worker
of their own so that a query never waits behind a preparation), from the
alignment the anatomical sync registered once both series were indexed:
:meth:`LinkedCursor.prepare_all` prepares every aligned pair on screen, the
newest date's first, since it usually drives. The same worker then blends
the pair's verified registration into the slice sync's mapping (stage two,
:func:`~app.ml.points.levels.refine_levels`) and registers the refined
alignment with the sync engine: later scrolls land on the sharper level.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np
from PySide6 import QtCore

from app.core.cursor import OUTSIDE_SCAN, CursorMark, contains_point
from app.core.state import CursorMapper, SyncGroup, ViewportState, newest_first
from app.ml.anatomy.registration import RefinedAlignment
from app.ml.anatomy.sync_service import PairAlignment, SyncEngine
from app.ml.points.cursor_pairs import CursorPairs, PairStatus
from app.ml.points.levels import refine_levels
from app.ml.points.locate import PointMatch, PointPair
from app.ui.loading.jobs import Job

__all__ = ["LinkedCursor", "OTHER_ANATOMY", "PREPARING"]

log = logging.getLogger(__name__)

PREPARING = "point sync: preparing this date…"
OTHER_ANATOMY = "this date shows other anatomy"


@dataclass(frozen=True)
class _Request:
    generation: int
    source: ViewportState
    point: tuple[float, float, float]
    targets: list[tuple[ViewportState, PointPair]]


def _covered_mark(match: PointMatch) -> CursorMark:
    if not match.in_coverage or match.prior_point is None:
        return CursorMark.outside(match.message or OUTSIDE_SCAN)
    return CursorMark(match.prior_point, float(match.radius_mm), True, "", match.confidence)


class LinkedCursor(QtCore.QObject, CursorMapper):
    """Places the driving date's cursor and answers it for the other dates.

    Parameters
    ----------
    sync
        The viewers' sync group (this object becomes its cursor mapper).
    engine
        The anatomical sync engine, whose registered alignments start each pair.
    pairs
        Where prepared pairs are kept (a fresh one when ``None``).

    Signals
    -------
    answered(int)
        The generation of the request whose answers were just written to the targets.
    pair_ready(object, object)
        Source and target states whose point pair can now answer.
    """

    answered = QtCore.Signal(int)
    pair_ready = QtCore.Signal(object, object)

    def __init__(
        self,
        sync: SyncGroup,
        engine: SyncEngine,
        pairs: CursorPairs | None = None,
        parent: QtCore.QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.sync = sync
        self.engine = engine
        self.pairs = pairs if pairs is not None else CursorPairs()
        sync.cursor_mapper = self
        self._prepare_pool = QtCore.QThreadPool(self)
        self._prepare_pool.setMaxThreadCount(1)
        self._locate_pool = QtCore.QThreadPool(self)
        self._locate_pool.setMaxThreadCount(1)
        self._jobs: set[Job] = set()
        self._cancel = threading.Event()
        self._preparing: set[tuple[int, int]] = set()
        self._generation = 0
        self._waiting: _Request | None = None
        self._in_flight = False
        self.driver: ViewportState | None = None
        self.dropped = 0  # requests superseded before they ran (for the benchmark)

    # -- the user's cursor -------------------------------------------------------------------
    def place(self, state: ViewportState, point: np.ndarray) -> None:
        """The user put the cursor on ``state``'s date at LPS ``point`` (mm): it drives."""
        p = np.asarray(point, dtype=np.float64).reshape(3)
        xyz = (float(p[0]), float(p[1]), float(p[2]))
        inside = contains_point(state.volume, p)
        self.driver = state
        state.set_cursor(CursorMark(xyz, 0.0, inside, "" if inside else OUTSIDE_SCAN, driving=True))

    def clear(self) -> None:
        """Take the cursor off every date."""
        self.driver = None
        self._generation += 1
        self._waiting = None
        with self.sync.held():
            for state in self.sync.viewports:
                state.set_cursor(None)

    # -- CursorMapper -------------------------------------------------------------------------
    def request(self, source: ViewportState, targets: list[ViewportState]) -> None:
        """Answer ``source``'s cursor in ``targets`` (in the background; latest wins)."""
        self._generation += 1
        self.driver = source
        mark = source.cursor_mark
        ready: list[tuple[ViewportState, PointPair]] = []
        with self.sync.held():
            for target in targets:
                if mark is None or mark.point is None:
                    target.set_cursor(None)
                    continue
                status = self.pairs.status(source.volume, target.volume)
                if status is None:
                    target.set_cursor(CursorMark.outside(PREPARING, pending=True))
                elif status.pair is None:
                    target.set_cursor(CursorMark.outside(status.message))
                else:
                    ready.append((target, status.pair))
        if mark is None or mark.point is None or not ready:
            self._waiting = None
            return
        if self._waiting is not None:
            self.dropped += 1
        self._waiting = _Request(self._generation, source, mark.point, ready)
        self._pump()

    # -- pairs ---------------------------------------------------------------------------------
    def prepare_pair(self, source: ViewportState, target: ViewportState) -> None:
        """Fit the point pair ``source`` -> ``target`` in the background (once)."""
        key = (id(source.volume), id(target.volume))
        if key in self._preparing or self.pairs.status(source.volume, target.volume) is not None:
            return
        found = self.engine.alignment_of(source.volume, target.volume)
        if found is None:
            return
        if not found.overlapping:
            self._register(source, target, PairStatus(None, OTHER_ANATOMY))
            return
        self._preparing.add(key)
        pairs, alignment = self.pairs, found.alignment
        src, dst = source.volume, target.volume

        def work(_progress, _cancel) -> tuple[PointPair, RefinedAlignment]:
            pair = pairs.prepare(src, dst, alignment)
            # Slice sync's stage two comes with the pair's registration: seconds
            # of the same worker, no second registration.
            return pair, refine_levels(pair)

        def done(result: tuple[PointPair, RefinedAlignment]) -> None:
            pair, exact = result
            self._preparing.discard(key)
            if self.engine.alignment_of(src, dst) is not found:
                return  # re-aligned meanwhile: this pair is stale
            self._register(source, target, PairStatus(pair))
            if exact.used:
                # The slice sync's mapping is replaced silently; the next scroll uses it.
                refined = PairAlignment(exact.alignment, found.overlap, refined=True)
                self.engine.add_alignment(src, dst, refined)
                log.info(
                    "slice sync refined by the pair's registration (median shift %.1f mm)",
                    exact.median_shift_mm,
                )

        def failed(message: str) -> None:
            self._preparing.discard(key)
            log.warning("point pair preparation failed; the cursor is not linked for that date")
            self._register(source, target, PairStatus(None, f"point sync failed: {message}"))

        # The newest date usually drives: its pairs come first.
        first = self._by_date()[:1] == [source]
        self._start(self._prepare_pool, "preparing a point pair", work, done, failed, int(first))

    def prepare_all(self) -> None:
        """Prepare every aligned pair of the dates on screen (those of the newest date first)."""
        states = self._by_date()
        for source in states:
            for target in states:
                if target is not source:
                    self.prepare_pair(source, target)

    @property
    def generation(self) -> int:
        """The number of the latest request (:attr:`answered` reports the ones answered)."""
        return self._generation

    def forget(self, state: ViewportState) -> None:
        """A date goes away: drop its pairs and grids."""
        self.pairs.remove(state.volume)
        if self.driver is state:
            self.driver = None

    def shutdown(self, timeout_ms: int = 10000) -> bool:
        """Cancel the pending work and wait for the workers."""
        self._cancel.set()
        self._waiting = None
        self._prepare_pool.clear()
        self._locate_pool.clear()
        done = self._prepare_pool.waitForDone(timeout_ms) and self._locate_pool.waitForDone(
            timeout_ms
        )
        if not done:
            log.error("the linked cursor's workers did not stop within %d ms", timeout_ms)
        return bool(done)

    @property
    def locating(self) -> bool:
        """True while a cursor query runs or waits (preparations aside)."""
        return self._in_flight or self._waiting is not None

    def is_idle(self) -> bool:
        """True when no preparation or query is queued or running."""
        return not self._jobs

    # -- internals -----------------------------------------------------------------------------
    def _by_date(self) -> list[ViewportState]:
        states = list(self.sync.viewports)
        order = newest_first([s.volume.info.study_date for s in states])
        return [states[i] for i in order]

    def _register(self, source: ViewportState, target: ViewportState, status: PairStatus) -> None:
        self.pairs.add_pair(source.volume, target.volume, status)
        self.pair_ready.emit(source, target)
        driver = self.driver
        if driver is source and driver.cursor_mark is not None and driver in self.sync.viewports:
            # The date that was waiting for this pair gets its answer now.
            self.request(driver, [v for v in self.sync.viewports if v is not driver])

    def _pump(self) -> None:
        if self._in_flight or self._waiting is None:
            return
        request, self._waiting = self._waiting, None
        self._in_flight = True
        pairs = [pair for _, pair in request.targets]
        point = np.asarray(request.point, dtype=np.float64)

        def work(_progress, _cancel) -> list[PointMatch]:
            return CursorPairs.locate(pairs, point)

        def done(matches: list[PointMatch]) -> None:
            self._in_flight = False
            self._apply(request, matches)
            self._pump()

        def failed(message: str) -> None:
            self._in_flight = False
            log.warning("locating the linked cursor failed")
            self._apply_failure(request, message)
            self._pump()

        self._start(self._locate_pool, "locating the linked cursor", work, done, failed, 0)

    def _current(self, request: _Request) -> bool:
        # A date that drove since, or a removed one, is not overwritten by an old answer.
        return request.source is self.driver and request.source in self.sync.viewports

    def _apply(self, request: _Request, matches: list[PointMatch]) -> None:
        if not self._current(request):
            return
        with self.sync.held():
            for (target, _), match in zip(request.targets, matches, strict=True):
                if target is self.driver or target not in self.sync.viewports:
                    continue
                if match.in_coverage and match.prior_slice is not None:
                    target.set_slice(match.prior_slice, match=target.match)
                target.set_cursor(_covered_mark(match))
        self.answered.emit(request.generation)

    def _apply_failure(self, request: _Request, message: str) -> None:
        if not self._current(request):
            return
        with self.sync.held():
            for target, _ in request.targets:
                if target in self.sync.viewports and target is not self.driver:
                    target.set_cursor(CursorMark.outside(message))
        self.answered.emit(request.generation)

    def _start(self, pool, name, fn, on_success, on_failure, priority: int) -> None:
        job = Job(name, fn, self._cancel)
        job.signals.succeeded.connect(on_success)
        job.signals.failed.connect(on_failure)
        for sig in (job.signals.succeeded, job.signals.failed, job.signals.cancelled):
            sig.connect(lambda *_, job=job: self._jobs.discard(job))
        job.signals.cancelled.connect(lambda *_: setattr(self, "_in_flight", False))
        self._jobs.add(job)
        pool.start(job.run, priority)
