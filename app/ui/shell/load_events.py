"""What the window does with the loader's results: catalogue, hanging, messages, thumbnails."""

from __future__ import annotations

from typing import Protocol

import numpy as np
from PySide6 import QtCore

from app.core.volume import Volume
from app.io.catalog import PatientGroup
from app.io.records import SeriesRef
from app.ui.loading.loader import Loader, ScanOutcome
from app.ui.loading.volume_cache import VolumeCache
from app.ui.shell.status_bar import LoadStatus
from app.ui.viewer.hanging_controller import HangingController
from app.ui.viewer.study_browser import StudyBrowser

__all__ = ["LoadEvents", "LoadHost"]

# Thumbnails of series not on screen are read in the background up to this many.
MAX_BACKGROUND_THUMBNAILS = 16


class LoadHost(Protocol):
    """What the loader's results change in the window."""

    patients: list[PatientGroup]
    series: list[SeriesRef]

    def report(self, message: str) -> None: ...

    def status(self, message: str, timeout_ms: int = 8000) -> None: ...

    def hang_patient(self, index: int) -> None: ...

    def patient_of(self, key: str) -> int | None: ...

    def check_settled(self) -> None: ...


class LoadEvents(QtCore.QObject):
    """Connects the loader's signals to the window's parts."""

    def __init__(
        self,
        host: LoadHost,
        loader: Loader,
        hanging: HangingController,
        volumes: VolumeCache,
        browser: StudyBrowser,
        load_status: LoadStatus,
        parent: QtCore.QObject,
    ) -> None:
        super().__init__(parent)
        self.host = host
        self.loader = loader
        self.hanging = hanging
        self.volumes = volumes
        self.browser = browser
        self.load_status = load_status
        loader.busy.connect(self._on_busy)
        loader.progress.connect(load_status.set_progress)
        loader.scanned.connect(self._on_scanned)
        loader.volume_loaded.connect(self._on_volume_loaded)
        loader.thumbnail_ready.connect(browser.set_thumbnail)
        loader.failed.connect(self._on_failed)
        loader.cancelled.connect(self._on_cancelled)

    def _on_scanned(self, outcome: ScanOutcome) -> None:
        host = self.host
        if outcome.skipped:
            self.load_status.add_skipped(outcome.skipped)
        if not outcome.new_keys:
            where = ", ".join(str(p) for p in outcome.paths[:3])
            host.report(f"No CT series found in {where}")
            host.check_settled()
            return
        host.series = outcome.series
        host.patients = outcome.patients
        self.browser.set_catalogue(host.patients)
        target = host.patient_of(outcome.new_keys[0])
        host.status(
            f"Found {len(outcome.new_keys)} series"
            + (f" of {len(host.patients)} patients" if len(host.patients) > 1 else ""),
            5000,
        )
        host.hang_patient(target if target is not None else 0)
        self._queue_thumbnails()

    def _on_volume_loaded(self, key: str, volume: Volume, thumb: np.ndarray | None) -> None:
        self.browser.set_thumbnail(key, thumb)
        self.hanging.on_volume_loaded(key, volume)
        self.host.check_settled()

    def _on_failed(self, what: str, message: str) -> None:
        if what == "demo":
            self.host.report(f"Could not build the demo patient: {message}")
        elif what == "scan":
            self.host.report(f"Could not read the files: {message}")
        elif self.hanging.on_load_failed(what, message):
            self.host.report(f"Could not load a series: {message}")
        # Otherwise a series that is no longer wanted on screen failed: nothing to tell.
        self.host.check_settled()

    def _on_cancelled(self) -> None:
        self.hanging.on_cancelled()
        self.host.status("Loading cancelled", 5000)

    def _on_busy(self, busy: bool) -> None:
        self.load_status.set_busy(busy)
        if not busy:
            self.host.check_settled()

    def _queue_thumbnails(self) -> None:
        shown = self.hanging.shown_keys()
        queued = 0
        for ref in self.host.series:
            if queued >= MAX_BACKGROUND_THUMBNAILS:
                break
            if str(ref.key) not in shown and str(ref.key) not in self.volumes:
                self.loader.make_thumbnail(ref)
                queued += 1
