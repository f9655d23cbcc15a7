"""What a scan finds: series references, skipped files, and per-slice DICOM records.

Scanning reads headers only; a :class:`SeriesRef` holds everything needed to
load the series later without parsing any header again (for uncompressed
DICOM even the byte offset of each slice's pixels).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from app.core.volume import SeriesInfo

__all__ = ["DicomSlice", "FileProbe", "PixelFormat", "ScanResult", "SeriesRef", "SkippedFile"]

SeriesKind = Literal["dicom", "volume"]


@dataclass(frozen=True, slots=True)
class PixelFormat:
    """How one file stores its pixels (shared by the frames of a multi-frame file)."""

    transfer_syntax: str
    rows: int
    cols: int
    n_frames: int
    bits_allocated: int
    bits_stored: int
    signed: bool
    samples_per_pixel: int
    photometric: str
    # Byte offset and length of the PixelData value when it is native
    # (uncompressed little-endian) so the loader can read it straight into
    # the volume; None for encapsulated or otherwise unusual data.
    offset: int | None = None
    length: int | None = None


@dataclass(frozen=True, slots=True)
class DicomSlice:
    """One image plane: a single-frame file or one frame of a multi-frame file."""

    path: str
    frame: int
    position: tuple[float, float, float]
    orientation: tuple[float, float, float, float, float, float]
    pixel_spacing: tuple[float, float]  # (row spacing, column spacing) in mm
    slope: float
    intercept: float
    sop_instance_uid: str
    instance_number: int | None
    pixel: PixelFormat
    # Reconstruction parameters that tell two reconstructions stored under one
    # SeriesInstanceUID apart (None/"" when the file does not say).
    thickness: float | None = None
    kernel: str = ""


@dataclass(frozen=True)
class SeriesRef:
    """A loadable series found by :func:`app.io.scan.scan_paths`.

    Parameters
    ----------
    kind
        ``"dicom"`` or ``"volume"`` (a NIfTI/NRRD/MetaImage file).
    key
        Stable identity: the same files give the same key wherever they lie.
    info
        Series metadata (holds patient identifiers: never log it).
    n_slices
        Number of axial slices once loaded in display orientation.
    source
        Folder (DICOM) or file (volume) the series was found in.
    warnings
        Issues known from the headers (e.g. not CT, skipped slices).
    slices
        DICOM image planes (empty for volume files).
    path
        The volume file (``None`` for DICOM).
    """

    kind: SeriesKind
    key: str
    info: SeriesInfo
    n_slices: int
    source: str
    warnings: tuple[str, ...] = ()
    slices: tuple[DicomSlice, ...] = ()
    path: Path | None = None

    @property
    def is_ct(self) -> bool:
        """True when the modality is CT (other modalities load but are flagged)."""
        return self.info.modality.upper() == "CT"

    @property
    def n_planes(self) -> int:
        """Image planes actually stacked: DICOM slices/frames, else the file's slice count.

        Unlike :attr:`n_slices`, one coronal image counts as one plane, not as
        its number of rows.
        """
        return len(self.slices) if self.kind == "dicom" else self.n_slices

    @property
    def files(self) -> list[Path]:
        """Files holding the series' data, in no particular order, without repeats."""
        if self.path is not None:
            return [self.path]
        return [Path(p) for p in dict.fromkeys(s.path for s in self.slices)]


@dataclass(frozen=True)
class SkippedFile:
    """A file that was not used, and why (``reason`` never holds patient data)."""

    path: Path
    reason: str


@dataclass
class ScanResult:
    """Series found and files skipped by a scan."""

    series: list[SeriesRef] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    n_files: int = 0


@dataclass(frozen=True, slots=True)
class FileProbe:
    """A file about to be identified: its path, size and first bytes (read once)."""

    path: Path
    size: int
    head: bytes
