"""A patient's measurements on disk, beside the studies' cache.

One JSON file per patient under ``cache_dir()/measurements``, named by a hash
of the patient's identity (no identifier appears in a file name or a log).
Written atomically through :mod:`app.io.safe_write`. A file that cannot be
read as measurements is *skipped* (a message says so) and is never
overwritten: later saves go to a new sibling file, so nothing the user made is
lost.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from app.core.measure import Finding, Measurement, MeasurementError
from app.io.safe_write import WriteError, safe_write

__all__ = [
    "FORMAT",
    "MeasurementsFile",
    "MeasurementsFileError",
    "measurements_path",
    "patient_key",
]

log = logging.getLogger(__name__)

FORMAT = "priorsync-measurements"
VERSION = 1
# A measurements file larger than this is not one (a few hundred bytes per measurement).
_MAX_BYTES = 32 * 1024 * 1024


class MeasurementsFileError(Exception):
    """Measurements could not be saved; the message is for the user."""


def patient_key(patient_id: str, patient_name: str, study_uids: Iterable[str] = ()) -> str:
    """What names a patient's measurements file (hashed into its name, never shown or logged).

    The patient ID and name, as the catalogue groups a patient; for a patient
    with neither, the studies' UIDs.
    """
    if patient_id or patient_name:
        return f"patient|{patient_id}|{patient_name}"
    return "studies|" + "|".join(sorted(study_uids))


def measurements_path(patient_key: str, root: Path | None = None) -> Path:
    """The measurements file of a patient (``patient_key``: e.g. patient ID and name).

    ``root`` defaults to ``cache_dir()/measurements``.
    """
    if root is None:
        from app.paths import cache_dir

        root = cache_dir() / "measurements"
    digest = hashlib.sha256(patient_key.encode("utf-8")).hexdigest()[:24]
    return Path(root) / f"{digest}.json"


def _parse(data: Any) -> list[Finding]:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise MeasurementError("not a PriorSync measurements file")
    if not isinstance(data.get("version"), int) or data["version"] > VERSION:
        raise MeasurementError(f"written by a newer PriorSync (version {data.get('version')!r})")
    findings = data.get("findings")
    if not isinstance(findings, list):
        raise MeasurementError("its findings are not a list")
    out = []
    for f in findings:
        if not isinstance(f, dict) or not isinstance(f.get("measurements"), list):
            raise MeasurementError("a finding is malformed")
        out.append(
            Finding(str(f.get("name", "")), [Measurement.from_dict(m) for m in f["measurements"]])
        )
    return out


class MeasurementsFile:
    """Load and save one patient's findings (see the module docstring).

    Attributes
    ----------
    path
        Where :meth:`save` writes: the patient's file, or a sibling when that
        file was found corrupt.
    message
        Why the last :meth:`load` skipped the file ("" when it did not).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.message = ""

    def _readable(self, path: Path) -> tuple[list[Finding] | None, str]:
        """``(findings, "")``, ``([], "")`` when absent, or ``(None, why)`` when unusable."""
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return [], ""
        except OSError as exc:
            return None, f"cannot read {path.name}: {exc.strerror or exc}"
        if size > _MAX_BYTES:
            return None, f"{path.name} is too large ({size} bytes) to be a measurements file"
        try:
            return _parse(json.loads(path.read_bytes())), ""
        except OSError as exc:
            return None, f"cannot read {path.name}: {exc.strerror or exc}"
        except (ValueError, MeasurementError) as exc:  # JSONDecodeError, UnicodeDecodeError
            return None, f"{path.name} is corrupt ({exc})"

    def _free_sibling(self) -> Path:
        """The first ``<stem>-N.json`` beside the file that is absent or readable."""
        n = 1
        while True:
            candidate = self.path.with_name(f"{self.path.stem}-{n}{self.path.suffix}")
            if not candidate.exists() or self._readable(candidate)[0] is not None:
                return candidate
            n += 1

    def load(self) -> list[Finding]:
        """The saved findings; ``[]`` when none, or when the file is corrupt (see ``message``)."""
        findings, why = self._readable(self.path)
        if findings is not None:
            self.message = ""
            return findings
        self.path = self._free_sibling()
        self.message = f"measurements skipped: {why}; it is left untouched"
        log.warning("%s", self.message)
        kept, _ = self._readable(self.path)
        return kept or []

    def save(self, findings: list[Finding]) -> Path:
        """Write ``findings`` atomically; returns the file written.

        A file at :attr:`path` that has become unreadable meanwhile is not
        replaced: the findings go to a sibling file instead.

        Raises
        ------
        MeasurementsFileError
            When the file cannot be written (the message says why).
        """
        if self._readable(self.path)[0] is None:
            self.path = self._free_sibling()
        doc = {
            "format": FORMAT,
            "version": VERSION,
            "findings": [
                {"name": f.name, "measurements": [m.to_dict() for m in f.measurements]}
                for f in findings
            ],
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MeasurementsFileError(
                f"cannot save the measurements: cannot create {self.path.parent}: "
                f"{exc.strerror or exc}"
            ) from None
        try:
            return safe_write(self.path, json.dumps(doc, indent=1).encode("utf-8"), overwrite=True)
        except WriteError as exc:
            raise MeasurementsFileError(f"cannot save the measurements: {exc}") from None
