"""Background loading: scanning, reading series and building the demo, off the GUI thread.

Widgets never open files. They ask the :class:`Loader`, which runs the
:mod:`app.io` (and :mod:`app.sim`) functions in a ``QThreadPool`` and posts the
results back as Qt signals; because the loader lives in the GUI thread, Qt
queues those signals and the slots run in the GUI thread.

Cancelling sets a ``threading.Event`` that the readers poll; progress
callbacks also raise :class:`Cancelled` once it is set, so work that takes no
``cancel`` argument (the demo builder) still stops at its next progress report.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6 import QtCore

from app.ui.loading.jobs import Cancelled, Job

if TYPE_CHECKING:  # the readers are imported when first used (default_backend)
    from app.io.catalog import PatientGroup
    from app.io.records import SeriesRef, SkippedFile

__all__ = ["Backend", "Cancelled", "Loader", "ScanOutcome", "default_backend"]

log = logging.getLogger(__name__)


@dataclass
class Backend:
    """The non-Qt functions the loader runs; tests swap in fakes.

    Attributes mirror ``app.io`` / ``app.sim`` (see :func:`default_backend`): ``scan(paths,
    progress, cancel) -> ScanResult``, ``group(series) -> list[PatientGroup]``,
    ``load(ref, progress, cancel) -> Volume``, ``thumbnail(volume, size) -> uint8``,
    ``build_demo(progress) -> list[Path]``.
    """

    scan: Callable[..., Any]
    group: Callable[..., Any]
    load: Callable[..., Any]
    thumbnail: Callable[..., Any]
    build_demo: Callable[..., Any]


def default_backend() -> Backend:
    """The real readers (imported here so that importing the UI stays cheap)."""
    from app.io.catalog import group_series, thumbnail
    from app.io.load import load_series
    from app.io.scan import scan_paths
    from app.sim.demo import build_demo_patient

    return Backend(
        scan=scan_paths,
        group=group_series,
        load=load_series,
        thumbnail=thumbnail,
        build_demo=build_demo_patient,
    )


@dataclass
class ScanOutcome:
    """What a scan found: the grouped catalogue and the files that were skipped."""

    patients: list[PatientGroup]
    skipped: list[SkippedFile]
    series: list[SeriesRef]  # every series in the catalogue (earlier scans included)
    new_keys: list[str]  # keys of the series this scan found
    paths: list[Path] = field(default_factory=list)


class Loader(QtCore.QObject):
    """Runs scans, series loads and the demo build in worker threads.

    Signals
    -------
    busy(bool)
        True while any job runs.
    progress(str, int, int)
        Label, done, total of the most recent job that reported.
    scanned(ScanOutcome)
        A scan finished.
    volume_loaded(str, object, object)
        Series key, its :class:`~app.core.volume.Volume`, its thumbnail (uint8 or None).
    thumbnail_ready(str, object)
        Series key, thumbnail for a series that was read only to draw it.
    failed(str, str)
        What failed (a series key, ``"scan"`` or ``"demo"``) and a short message.
    cancelled()
        The jobs were cancelled.
    """

    busy = QtCore.Signal(bool)
    progress = QtCore.Signal(str, int, int)
    scanned = QtCore.Signal(object)
    volume_loaded = QtCore.Signal(str, object, object)
    thumbnail_ready = QtCore.Signal(str, object)
    failed = QtCore.Signal(str, str)
    cancelled = QtCore.Signal()

    THUMBNAIL_SIZE = 64

    def __init__(
        self, backend: Backend | None = None, parent: QtCore.QObject | None = None
    ) -> None:
        super().__init__(parent)
        self._backend = backend
        self._pool = QtCore.QThreadPool(self)
        # Two threads: one long scan/demo build plus one series read; more would
        # only fight over the disk and the GIL.
        self._pool.setMaxThreadCount(2)
        self._cancel = threading.Event()
        self._jobs: set[Job] = set()
        self._shut_down = False

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = default_backend()
        return self._backend

    @property
    def is_busy(self) -> bool:
        return bool(self._jobs)

    # -- public requests ---------------------------------------------------------------
    def scan(self, paths: Sequence[Path | str], known: Sequence[SeriesRef] = ()) -> None:
        """Scan files/folders (recursively) and group what was found with ``known`` series.

        Parameters
        ----------
        paths
            Files and folders to scan.
        known
            ``SeriesRef`` already in the catalogue; the new catalogue groups them
            together with the new ones (a series found again replaces its old ref).
        """
        wanted = [Path(p) for p in paths]
        known = list(known)
        backend = self.backend

        def work(progress, cancel):
            result = backend.scan(wanted, progress=progress, cancel=cancel)
            new = list(result.series)
            new_keys = [str(r.key) for r in new]
            merged = {str(r.key): r for r in known}
            merged.update(zip(new_keys, new, strict=True))
            series = list(merged.values())
            return ScanOutcome(
                patients=list(backend.group(series)),
                skipped=list(result.skipped),
                series=series,
                new_keys=new_keys,
                paths=wanted,
            )

        self._start("Scanning", "scan", work, self.scanned.emit)

    def build_demo(self) -> None:
        """Build (or reuse from the cache) the demo patient, then scan it."""
        backend = self.backend

        def work(progress, cancel):
            return [Path(p) for p in backend.build_demo(progress=progress)]

        self._start("Building demo patient", "demo", work, self.scan)

    def load(self, ref: SeriesRef) -> None:
        """Read one series (``SeriesRef``) and make its thumbnail."""
        backend = self.backend
        key = str(ref.key)

        def work(progress, cancel):
            volume = backend.load(ref, progress=progress, cancel=cancel)
            return volume, self._thumbnail(volume)

        self._start(
            "Loading series", key, work, lambda result: self.volume_loaded.emit(key, *result)
        )

    def make_thumbnail(self, ref: SeriesRef) -> None:
        """Read a series only to draw its thumbnail; the volume is dropped afterwards."""
        backend = self.backend
        key = str(ref.key)

        def work(progress, cancel):
            return self._thumbnail(backend.load(ref, progress=None, cancel=cancel))

        # Thumbnails are a nicety: a failure just leaves the generic icon.
        self._start(
            "Thumbnails",
            key,
            work,
            lambda thumb: self.thumbnail_ready.emit(key, thumb),
            quiet=True,
            priority=-1,
        )

    def cancel(self) -> None:
        """Ask every running job to stop and drop the queued ones."""
        if not self._jobs:
            return
        self._cancel.set()
        self._pool.clear()
        # Jobs that never started will not report; forget them now.
        self._jobs = {j for j in self._jobs if j.started}
        # A fresh event for later requests; the running jobs keep the set one.
        self._cancel = threading.Event()
        self.cancelled.emit()
        if not self._jobs:
            self.busy.emit(False)

    def shutdown(self, timeout_ms: int = 10000) -> bool:
        """Cancel everything and wait for the worker threads; True if they all ended.

        Called before the window and the QApplication go away, so no worker
        thread is still running Python (or emitting to a deleted QObject) while
        the interpreter finalises.
        """
        self._shut_down = True
        self._cancel.set()
        self._pool.clear()
        done = self._pool.waitForDone(timeout_ms)
        if not done:
            log.error("background jobs did not stop within %d ms", timeout_ms)
        return done

    # -- internals ---------------------------------------------------------------------
    def _when_live(self, slot: Callable[..., object]) -> Callable[..., None]:
        """``slot`` as a relay that does nothing once this loader is shut down."""

        def relay(*args: object) -> None:
            if self._live():
                slot(*args)

        return relay

    def _thumbnail(self, volume):
        try:
            return self.backend.thumbnail(volume, self.THUMBNAIL_SIZE)
        except Exception:  # noqa: BLE001 - a missing thumbnail must not fail the load
            log.warning("thumbnail failed", exc_info=True)
            return None

    def _start(
        self,
        label: str,
        what: str,
        fn: Callable[..., Any],
        on_success: Callable[[Any], None],
        *,
        quiet: bool = False,
        priority: int = 0,
    ) -> None:
        job = Job(label, fn, self._cancel)
        # Every relay checks the shutdown flag: a job's results queued before
        # shutdown() may be delivered after this loader's Qt object is gone.
        if not quiet:
            job.signals.progress.connect(
                self._when_live(lambda d, t: self.progress.emit(label, d, t))
            )
        job.signals.succeeded.connect(self._when_live(on_success))
        if quiet:
            job.signals.failed.connect(lambda msg: log.info("%s: %s", label, msg))
        else:
            job.signals.failed.connect(self._when_live(lambda msg: self.failed.emit(what, msg)))
        for sig in (job.signals.succeeded, job.signals.failed, job.signals.cancelled):
            sig.connect(self._when_live(lambda *_: self._finished(job)))
        was_busy = bool(self._jobs)
        self._jobs.add(job)
        if not was_busy:
            self.busy.emit(True)
        self._pool.start(job.run, priority)

    def _live(self) -> bool:
        """False once :meth:`shutdown` ran: late job results are dropped."""
        return not self._shut_down

    def _finished(self, job: Job) -> None:
        self._jobs.discard(job)
        if not self._jobs:
            self.busy.emit(False)
