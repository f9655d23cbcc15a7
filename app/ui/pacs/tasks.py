"""PACS work in the background: every socket is opened here, in pool threads, never in a widget.

:class:`PacsTasks` runs :mod:`app.pacs` calls as :class:`~app.ui.loading.jobs.Job`\\ s
and hands the caller the job, whose signals (``succeeded``, ``failed``,
``progress``, ``cancelled``) arrive in the GUI thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from PySide6 import QtCore

from app.pacs.backend import open_backend
from app.pacs.cache import StudyCache
from app.pacs.records import StudyQuery, StudyRecord
from app.pacs.retrieve import FetchResult, fetch_study, find_priors
from app.pacs.servers import ServerConfig
from app.ui.loading.jobs import Job

__all__ = ["PacsTasks"]


class PacsTasks(QtCore.QObject):
    """A small pool for PACS jobs, owned by a dialog or widget.

    Parameters
    ----------
    cache
        Where fetched studies go (default: the user's cache).
    """

    def __init__(self, parent: QtCore.QObject | None = None, cache: StudyCache | None = None):
        super().__init__(parent)
        self._pool = QtCore.QThreadPool(self)
        self._pool.setMaxThreadCount(2)
        self._cache = cache
        self._jobs: list[Job] = []

    @property
    def cache(self) -> StudyCache:
        if self._cache is None:
            self._cache = StudyCache()
        return self._cache

    def _start(self, name: str, fn: Callable[..., Any]) -> Job:
        job = Job(name, fn, threading.Event())
        self._jobs.append(job)
        for signal in (job.signals.succeeded, job.signals.failed, job.signals.cancelled):
            signal.connect(lambda *_a, job=job: self._forget(job))
        self._pool.start(job.run)
        return job

    def _forget(self, job: Job) -> None:
        if job in self._jobs:
            self._jobs.remove(job)

    @property
    def busy(self) -> bool:
        return bool(self._jobs)

    def echo(self, server: ServerConfig) -> Job:
        """C-ECHO or a QIDO-RS request; succeeds with None."""

        def run(_progress: Callable[[int, int], None], _cancel: threading.Event) -> None:
            with open_backend(server) as backend:
                backend.echo()

        return self._start("testing a PACS connection", run)

    def search(self, server: ServerConfig, query: StudyQuery) -> Job:
        """Succeeds with the matching studies, newest first."""

        def run(_progress: Callable[[int, int], None], _cancel: threading.Event) -> list:
            with open_backend(server) as backend:
                found = backend.find_studies(query)
            return sorted(found, key=lambda s: s.sort_key, reverse=True)

        return self._start("searching a PACS", run)

    def open_current(self, server: ServerConfig, study: StudyRecord) -> Job:
        """Fetch ``study`` and list the patient's earlier CT studies.

        Succeeds with ``(FetchResult, priors)``.
        """
        cache = self.cache

        def run(progress: Callable[[int, int], None], cancel: threading.Event) -> tuple:
            with open_backend(server) as backend:
                result = fetch_study(backend, study.study_uid, cache, progress, cancel)
                priors = find_priors(backend, study)
            return result, priors

        return self._start("fetching a study from a PACS", run)

    def fetch_priors(self, server: ServerConfig, studies: list[StudyRecord]) -> Job:
        """Fetch ``studies`` one after the other; succeeds with their :class:`FetchResult`\\ s.

        ``progress`` counts whole studies in thousandths, so one bar covers them all.
        """
        cache = self.cache

        def run(progress: Callable[[int, int], None], cancel: threading.Event) -> list:
            results: list[FetchResult] = []
            with open_backend(server) as backend:
                for i, study in enumerate(studies):

                    def step(done: int, total: int, i: int = i) -> None:
                        progress(i * 1000 + 1000 * done // max(total, 1), 1000 * len(studies))

                    results.append(fetch_study(backend, study.study_uid, cache, step, cancel))
            return results

        return self._start("fetching prior studies from a PACS", run)

    def cancel_all(self) -> None:
        for job in list(self._jobs):
            job.cancel.set()

    def shutdown(self, timeout_ms: int = 30000) -> bool:
        """Cancel every job and wait for the pool (a widget closing)."""
        self.cancel_all()
        self._pool.clear()
        return self._pool.waitForDone(timeout_ms)
