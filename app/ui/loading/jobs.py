"""One background job: a Python callable run in a ``QThreadPool`` that reports through Qt signals.

Shared by the :class:`~app.ui.loading.loader.Loader` (reading files) and the
:class:`~app.ui.sync.anatomical_sync.AnatomicalSync` controller (embedding and
aligning series), so both cancel, throttle progress and report failures alike.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from PySide6 import QtCore

__all__ = ["Cancelled", "Job", "JobSignals", "short_message"]

log = logging.getLogger(__name__)

# Progress signals are throttled: a scan of 5000 files must not queue 5000 events.
PROGRESS_INTERVAL_S = 0.05


class Cancelled(Exception):
    """Raised inside a job when the user cancelled it."""


class JobSignals(QtCore.QObject):
    """What a :class:`Job` reports; created in the GUI thread, so emissions are queued to it."""

    progress = QtCore.Signal(int, int)
    succeeded = QtCore.Signal(object)
    failed = QtCore.Signal(str)
    cancelled = QtCore.Signal()


class Job:
    """Runs ``fn(progress, cancel)`` in a pool thread and reports through ``signals``.

    A plain Python callable handed to ``QThreadPool.start`` rather than a
    ``QRunnable`` subclass: the pool then never owns (or deletes) a Python
    wrapper, so the job's lifetime is simply that of its owner's reference.
    ``signals`` is created in the GUI thread, which makes every emission from
    the worker a queued call into the GUI thread.

    Parameters
    ----------
    name
        What the job does, for the log (never patient data).
    fn
        ``fn(progress, cancel) -> result``; ``progress(done, total)`` raises
        :class:`Cancelled` once ``cancel`` is set.
    cancel
        The event that stops the job.
    """

    def __init__(self, name: str, fn: Callable[..., Any], cancel: threading.Event) -> None:
        self.name = name
        self.fn = fn
        self.cancel = cancel
        self.signals = JobSignals()
        self.started = False
        self._last_progress = 0.0

    def _progress(self, done: int, total: int) -> None:
        if self.cancel.is_set():
            raise Cancelled
        now = time.monotonic()
        if done >= total or now - self._last_progress >= PROGRESS_INTERVAL_S:
            self._last_progress = now
            self.signals.progress.emit(int(done), int(total))

    def run(self) -> None:
        self.started = True
        try:
            result = self.fn(self._progress, self.cancel)
        except Cancelled:
            self.signals.cancelled.emit()
            return
        except Exception as exc:  # noqa: BLE001 - reported to the user, never raised in a pool thread
            if self.cancel.is_set():
                self.signals.cancelled.emit()
                return
            # The type only: messages and tracebacks may quote paths, and folder
            # names can hold a patient's name. Details at debug level (-v).
            log.warning("%s failed: %s", self.name, type(exc).__name__)
            log.debug("%s failed", self.name, exc_info=True)
            self.signals.failed.emit(short_message(exc))
            return
        if self.cancel.is_set():
            self.signals.cancelled.emit()
        else:
            self.signals.succeeded.emit(result)


def short_message(exc: BaseException) -> str:
    """The exception's message (or type name) in at most 300 characters."""
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
