"""Side-view reformats of the shown series, computed off the GUI thread and kept per series.

Keyed by series identity (the catalogue's series key), like the volume cache,
so that a reformat is dropped together with its volume and never handed to
another series.
"""

from __future__ import annotations

import logging
import threading

from PySide6 import QtCore

from app.core.reformat import Reformat, sagittal_reformat
from app.core.volume import Volume
from app.ui.loading.jobs import Job
from app.ui.viewer.seams import ViewportSet

__all__ = ["SideViews"]

log = logging.getLogger(__name__)


class SideViews(QtCore.QObject):
    """Computes each series' sagittal reformat once, in one worker, and shows it in its views.

    Signals
    -------
    finished()
        A reformat job ended (done or failed): the window may have settled.
    """

    finished = QtCore.Signal()

    def __init__(self, viewports: ViewportSet, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.viewports = viewports
        self._pool = QtCore.QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._jobs: dict[str, Job] = {}
        self._reformats: dict[str, tuple[Volume, Reformat]] = {}

    def is_busy(self) -> bool:
        """True while a reformat is being computed."""
        return bool(self._jobs)

    def reformat_of(self, key: str, volume: Volume) -> Reformat | None:
        """The reformat of series ``key`` if it is known and made from this ``volume``."""
        cached = self._reformats.get(key)
        return cached[1] if cached is not None and cached[0] is volume else None

    def request(self, key: str, volume: Volume) -> None:
        """Give every view of ``volume`` its reformat: cached, or computed in the worker."""
        cached = self.reformat_of(key, volume)
        if cached is not None:
            self._hand_out(volume, cached)
            return
        if key in self._jobs:
            return  # already being computed; it goes to every view of this series

        def done(reformat: Reformat) -> None:
            self._jobs.pop(key, None)
            self._reformats[key] = (volume, reformat)
            self._hand_out(volume, reformat)
            self.finished.emit()

        def failed(message: str) -> None:
            self._jobs.pop(key, None)
            log.warning("side view failed: %s", message)
            self.finished.emit()

        job = Job("side view", lambda _p, _c: sagittal_reformat(volume), threading.Event())
        job.signals.succeeded.connect(done)
        job.signals.failed.connect(failed)
        job.signals.cancelled.connect(lambda: self._jobs.pop(key, None))
        self._jobs[key] = job
        self._pool.start(job.run)

    def keep_only(self, keys: set[str]) -> None:
        """Forget the reformats of series not in ``keys`` (their volumes were dropped)."""
        self._reformats = {k: r for k, r in self._reformats.items() if k in keys}

    def shutdown(self) -> None:
        """Drop queued jobs, wait for the running one and forget every reformat."""
        self._pool.clear()
        self._pool.waitForDone(10000)
        self._reformats.clear()

    def _hand_out(self, volume: Volume, reformat: Reformat) -> None:
        for view in self.viewports.views.values():
            if view.state.volume is volume:
                view.scout.set_reformat(reformat)
