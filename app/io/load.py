"""Loading series and volumes, always returned in display orientation as int16 HU."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.core.orientation import axis_permutation, to_display_orientation
from app.core.volume import Volume
from app.io.dicom_series import slice_normal
from app.io.errors import Cancelled, LoadError
from app.io.records import ScanResult, SeriesRef, SkippedFile
from app.io.registry import reader_for_kind
from app.io.scan import scan_paths

__all__ = [
    "Cancelled",
    "LoadError",
    "LoadReport",
    "load_series",
    "load_volume",
    "load_volume_report",
    "main_series_rank",
    "pick_main_series",
    "skip_summary_lines",
]

Progress = Callable[[int, int], None] | None


def load_series(
    ref: SeriesRef, progress: Progress = None, cancel: threading.Event | None = None
) -> Volume:
    """Load a scanned series.

    Parameters
    ----------
    ref
        From :func:`app.io.scan.scan_paths`.
    progress
        ``progress(done, total)`` from the calling thread.
    cancel
        Set it to stop; :class:`~app.io.errors.Cancelled` is raised.

    Returns
    -------
    Volume
        Display-oriented, int16 HU, with ``warnings`` for geometry problems.

    Raises
    ------
    LoadError
        With a user-facing message when the series cannot be loaded.
    """
    try:
        reader = reader_for_kind(ref.kind)
    except KeyError:
        raise LoadError(f"no reader for {ref.kind!r} series") from None
    try:
        volume = reader.load(ref, progress, cancel)
    except LoadError:
        raise
    except MemoryError:
        raise LoadError("not enough memory to load this series") from None
    except OSError as exc:
        raise LoadError(f"could not read the series ({exc.strerror or exc})") from None
    return to_display_orientation(volume)


def main_series_rank(ref: SeriesRef) -> tuple[bool, bool, bool, int, int]:
    """Sort key (largest = most likely the series a user wants): CT, a stack, axial, planes.

    A series is ranked by the image planes it really holds, not by its extent
    along the display axis: one coronal key image has 256 rows but is a single
    plane, and must never win over an 80-slice axial series.
    """
    return (ref.is_ct, ref.n_planes >= 2, _is_axial_stack(ref), ref.n_planes, ref.n_slices)


def _is_axial_stack(ref: SeriesRef) -> bool:
    if not ref.slices:
        return True  # volume files: their slice count already follows the display axis
    perm, _ = axis_permutation(
        np.column_stack(
            [
                np.asarray(ref.slices[0].orientation[:3]),
                np.asarray(ref.slices[0].orientation[3:]),
                slice_normal(ref.slices[0].orientation),
            ]
        )
    )
    return int(perm[2]) == 2


def pick_main_series(result: ScanResult) -> SeriesRef | None:
    """The series a viewer should open: see :func:`main_series_rank`."""
    if not result.series:
        return None
    return max(result.series, key=main_series_rank)


def _skip_summary(result: ScanResult) -> str:
    counts = Counter(s.reason for s in result.skipped)
    parts = [f"{n} × {reason}" for reason, n in counts.most_common(3)]
    more = len(counts) - 3
    return "; ".join(parts) + (f"; and {more} other reason(s)" if more > 0 else "")


@dataclass(frozen=True)
class LoadReport:
    """A loaded volume and what its scan left out (files and other series)."""

    volume: Volume
    skipped: tuple[SkippedFile, ...]
    other_series: int


def skip_summary_lines(skipped: Sequence[SkippedFile]) -> list[str]:
    """One line per reason: ``"3 file(s): not a DICOM file (text)"``, most frequent first."""
    counts = Counter(s.reason for s in skipped)
    return [f"{n} file(s): {reason}" for reason, n in counts.most_common()]


def load_volume(path: Path | str, progress: Progress = None) -> Volume:
    """Load a DICOM folder/file (its main CT series) or a NIfTI/NRRD/MetaImage file.

    Parameters
    ----------
    path
        A folder of DICOM files (searched recursively; junk is skipped), one
        DICOM file, a DICOMDIR, or a volume file.
    progress
        ``progress(done, 1000)``: the header scan is the first fifth.

    Returns
    -------
    Volume
        Display-oriented, int16 HU.

    Raises
    ------
    LoadError
        If the path does not exist or holds no loadable image series.
    """
    return load_volume_report(path, progress).volume


def load_volume_report(path: Path | str, progress: Progress = None) -> LoadReport:
    """:func:`load_volume`, also returning the files the scan skipped and why.

    Raises
    ------
    LoadError
        If the path does not exist or holds no loadable image series.
    """
    path = Path(path)
    if not path.exists():
        raise LoadError(f"{path} does not exist")

    def scan_progress(done: int, total: int) -> None:
        if progress is not None and total:
            progress(200 * done // total, 1000)

    def load_progress(done: int, total: int) -> None:
        if progress is not None and total:
            progress(200 + 800 * done // total, 1000)

    result = scan_paths([path], progress=scan_progress)
    ref = pick_main_series(result)
    if ref is None:
        if result.n_files == 0:
            if result.skipped:
                raise LoadError(f"no files could be read: {_skip_summary(result)}")
            raise LoadError(f"{path} contains no files")
        raise LoadError(
            f"no image series found in {path} ({result.n_files} file(s) checked: "
            f"{_skip_summary(result)})"
        )
    volume = load_series(ref, progress=load_progress)
    return LoadReport(volume, tuple(result.skipped), len(result.series) - 1)
