"""Saving the measurements of the patient on screen, and reloading them when it is opened again.

One file per patient (:func:`app.io.measurements_file.measurements_path`:
``cache_dir()/measurements``, beside the index and study caches, named by a
hash of the patient's identity); inside, each measurement names its series by
UID (:func:`app.core.measure_slice.series_key`), so it shows on the same
series whenever they are opened. Every change is saved at once, atomically. A
corrupt file is skipped with a message and never overwritten
(:class:`~app.io.measurements_file.MeasurementsFile` saves beside it).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6 import QtCore

from app.core.measure_store import MeasurementStore
from app.io.catalog import PatientGroup
from app.io.measurements_file import (
    MeasurementsFile,
    MeasurementsFileError,
    measurements_path,
)
from app.io.measurements_file import patient_key as measurements_key

__all__ = ["MeasurementPersistence", "patient_key"]


def patient_key(patient: PatientGroup) -> str:
    """The key of ``patient``'s measurements file (:func:`app.io.measurements_file.patient_key`).

    Read from the series' headers, as ``priorsync export --measurements``
    reads it from the loaded series, so both find the same file.
    """
    infos = [ref.info for study in patient.studies for ref in study.series]
    if not infos:
        return measurements_key("", "", ())
    return measurements_key(
        infos[0].patient_id, infos[0].patient_name, {info.study_uid for info in infos}
    )


class MeasurementPersistence(QtCore.QObject):
    """Loads a patient's measurements into the store and saves every change.

    Parameters
    ----------
    store
        The measurements on screen.
    root
        The folder of measurement files (``cache_dir()/measurements`` when ``None``).

    Signals
    -------
    message(str)
        A file skipped as corrupt, or a save that failed (for the status bar).
    """

    message = QtCore.Signal(str)

    def __init__(
        self,
        store: MeasurementStore,
        root: Path | None = None,
        parent: QtCore.QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.store = store
        self.root = root
        self.file: MeasurementsFile | None = None
        self._loading = False
        store.changed.connect(self._on_store)

    def open_patient(self, patient: PatientGroup) -> None:
        """Show ``patient``'s saved measurements (the store's others and its history go)."""
        self.file = MeasurementsFile(measurements_path(patient_key(patient), self.root))
        findings = self.file.load()
        if self.file.message:
            self.message.emit(self.file.message)
        measurements = [
            m if m.finding else replace(m, finding=f.name) for f in findings for m in f.measurements
        ]
        self._loading = True
        try:
            self.store.replace_all(measurements)
        finally:
            self._loading = False

    def _on_store(self, what: str) -> None:
        if what != "measurements" or self._loading or self.file is None:
            return
        try:
            self.file.save(self.store.findings())
        except MeasurementsFileError as exc:
            self.message.emit(str(exc))
