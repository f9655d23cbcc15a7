"""Loading series and volumes, always returned in display orientation as int16 HU."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from app.core.orientation import to_display_orientation
from app.core.volume import Volume
from app.io.errors import Cancelled, LoadError
from app.io.records import ScanResult, SeriesRef
from app.io.registry import reader_for_kind
from app.io.scan import scan_paths

__all__ = ["Cancelled", "LoadError", "load_series", "load_volume", "pick_main_series"]

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


def pick_main_series(result: ScanResult) -> SeriesRef | None:
    """The series a viewer should open: the largest CT series, else the largest series."""
    if not result.series:
        return None
    return max(result.series, key=lambda r: (r.is_ct, r.n_slices))


def _skip_summary(result: ScanResult) -> str:
    counts = Counter(s.reason for s in result.skipped)
    parts = [f"{n} × {reason}" for reason, n in counts.most_common(3)]
    more = len(counts) - 3
    return "; ".join(parts) + (f"; and {more} other reason(s)" if more > 0 else "")


def load_volume(path: Path | str, progress: Progress = None) -> Volume:
    """Load a DICOM folder/file (its largest CT series) or a NIfTI/NRRD/MetaImage file.

    Parameters
    ----------
    path
        A folder of DICOM files (searched recursively; junk is skipped), one
        DICOM file, or a volume file.
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
            raise LoadError(f"{path} contains no files")
        raise LoadError(
            f"no image series found in {path} ({result.n_files} file(s) checked: "
            f"{_skip_summary(result)})"
        )
    return load_series(ref, progress=load_progress)
