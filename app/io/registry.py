"""Registry of file readers: the first registered reader whose ``can_read`` accepts a file wins.

Like napari's and pyqtgraph's plugin lists, adding a format means adding a
reader to ``_readers`` below, not editing a chain of ``if suffix == ...``. Each
reader identifies files, reads one file's header, groups headers into series
and loads a series.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from app.core.volume import Volume
from app.io.dicom_header import DicomHeader, looks_like_dicom, read_dicom_header
from app.io.dicom_load import load_dicom_series
from app.io.dicom_series import build_dicom_series
from app.io.records import FileProbe, SeriesRef, SkippedFile
from app.io.volume_file import is_volume_file, load_volume_file, read_volume_header

__all__ = [
    "DicomReader",
    "Reader",
    "VolumeFileReader",
    "find_reader",
    "reader_for_kind",
    "readers",
    "describe_unknown",
]

Progress = Callable[[int, int], None] | None


class Reader(Protocol):
    """What a reader provides. ``kind`` names the :class:`SeriesRef` kind it loads."""

    name: str
    kind: str

    def can_read(self, probe: FileProbe) -> bool:
        """Cheap identification from the file name and first bytes."""
        ...

    def read_header(self, probe: FileProbe, scan_state: dict[str, Any]) -> Any:
        """Parse one file's header (thread-safe); raise SkipFile with a reason if unusable.

        ``scan_state`` is a per-scan dict the reader may use as a cache.
        """
        ...

    def build_series(self, headers: list[Any]) -> tuple[list[SeriesRef], list[SkippedFile]]:
        """Turn the headers this reader produced into series (and skipped files)."""
        ...

    def load(self, ref: SeriesRef, progress: Progress, cancel: threading.Event | None) -> Volume:
        """Load a series (display orientation is applied by the caller)."""
        ...


class VolumeFileReader:
    """NIfTI / NRRD / MetaImage files via SimpleITK; one file is one series."""

    name = "SimpleITK volume file"
    kind = "volume"

    def can_read(self, probe: FileProbe) -> bool:
        return is_volume_file(probe.path.name)

    def read_header(self, probe: FileProbe, scan_state: dict[str, Any]) -> SeriesRef:
        return read_volume_header(probe)

    def build_series(self, headers: list[SeriesRef]) -> tuple[list[SeriesRef], list[SkippedFile]]:
        return list(headers), []

    def load(self, ref: SeriesRef, progress: Progress, cancel: threading.Event | None) -> Volume:
        return load_volume_file(ref, progress, cancel)


class DicomReader:
    """DICOM files of any name (or none), recognised by content."""

    name = "DICOM"
    kind = "dicom"

    def can_read(self, probe: FileProbe) -> bool:
        return looks_like_dicom(probe.head)

    def read_header(self, probe: FileProbe, scan_state: dict[str, Any]) -> DicomHeader:
        return read_dicom_header(probe, scan_state.setdefault("dicom_series_info", {}))

    def build_series(self, headers: list[DicomHeader]) -> tuple[list[SeriesRef], list[SkippedFile]]:
        return build_dicom_series(headers)

    def load(self, ref: SeriesRef, progress: Progress, cancel: threading.Event | None) -> Volume:
        return load_dicom_series(ref, progress, cancel)


_lock = threading.Lock()
# Suffix-based readers first: they decide without looking at content.
_readers: list[Reader] = [VolumeFileReader(), DicomReader()]


def readers() -> tuple[Reader, ...]:
    """Registered readers, in the order they are asked."""
    with _lock:
        return tuple(_readers)


def find_reader(probe: FileProbe) -> Reader | None:
    """The first registered reader that accepts ``probe``, or None."""
    for reader in readers():
        if reader.can_read(probe):
            return reader
    return None


def reader_for_kind(kind: str) -> Reader:
    """The reader that loads series of ``kind``."""
    for reader in readers():
        if reader.kind == kind:
            return reader
    raise KeyError(f"no reader for series kind {kind!r}")


def describe_unknown(head: bytes) -> str:
    """Why a file no reader accepts was skipped, e.g. ``"not a DICOM file (PNG image)"``."""
    if not head:
        return "empty file (0 bytes)"
    for magic, what in (
        (b"\x89PNG", "PNG image"),
        (b"\xff\xd8\xff", "JPEG image"),
        (b"%PDF", "PDF document"),
        (b"PK\x03\x04", "ZIP archive"),
        (b"\x1f\x8b", "gzip file"),
    ):
        if head.startswith(magic):
            return f"not a DICOM file ({what})"
    sample = head[:4096]
    if not sample.strip(b"\x00"):
        return (
            f"not a DICOM file (all {len(head)} bytes are zero: an unwritten, wiped or "
            "truncated file)"
        )
    if b"\x00" in sample:
        return "not a DICOM or volume file (binary data)"
    try:
        sample.decode("utf-8")
        return "not a DICOM file (text)"
    except UnicodeDecodeError:
        return "not a DICOM or volume file"
