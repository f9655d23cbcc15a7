"""Finding series in files and folders: parallel header reads, grouping, skip reasons.

Every file ends up either in a series or in ``ScanResult.skipped`` with a
reason a user can act on; nothing raises out of a scan for a bad file, and
special files (FIFOs, devices) are never opened, so a scan cannot hang on them.
"""

from __future__ import annotations

import os
import stat
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from app.io.bounded_pool import run_bounded
from app.io.dicom_header import human_reason, read_head
from app.io.dicomdir import is_dicomdir_name, referenced_files
from app.io.errors import SkipFile
from app.io.records import FileProbe, ScanResult, SeriesRef, SkippedFile
from app.io.registry import Reader, describe_unknown, find_reader, readers

__all__ = ["scan_paths", "ScanResult", "SeriesRef", "SkippedFile"]


def _walk(
    paths: Sequence[Path | str], skipped: list[SkippedFile], dicomdirs: dict[Path, tuple[int, int]]
) -> list[Path]:
    """Regular files under ``paths`` (recursively, symlinked folders not followed), sorted.

    Folders that cannot be listed are reported in ``skipped`` by name. The
    files a DICOMDIR references are added (its folder tree may name them
    differently); ``dicomdirs`` receives each DICOMDIR's references: listed and present.
    """
    files: dict[str, Path] = {}

    def unlisted(exc: OSError) -> None:
        folder = Path(exc.filename) if exc.filename else Path("?")
        reason = "permission denied" if isinstance(exc, PermissionError) else exc.strerror
        skipped.append(SkippedFile(folder, f"folder cannot be listed: {reason} ({folder})"))

    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for root, dirs, names in os.walk(p, onerror=unlisted):
                dirs.sort()
                for name in names:
                    full = Path(root, name)
                    files.setdefault(os.path.realpath(full), full)
        elif p.exists():
            files.setdefault(os.path.realpath(p), p)
        else:
            skipped.append(SkippedFile(p, "does not exist"))
    for path in [f for f in files.values() if is_dicomdir_name(f)]:
        listed, n_listed = referenced_files(path)
        dicomdirs[path] = (n_listed, len(listed))
        for ref in listed:
            files.setdefault(os.path.realpath(ref), ref)
    return sorted(files.values())


def _dicomdir_reason(path: Path, reason: str, dicomdirs: dict[Path, tuple[int, int]]) -> str:
    """A DICOMDIR's skip reason: it is an index; say whether its images were there."""
    if path not in dicomdirs or not reason.startswith("DICOMDIR"):
        return reason
    n_listed, n_present = dicomdirs[path]
    if n_listed == 0:
        return "DICOMDIR (a directory index) listing no readable image files"
    if n_present == 0:
        return (
            f"DICOMDIR lists {n_listed} file(s) but none is present (copy the whole "
            "folder it came with)"
        )
    return f"DICOMDIR (a directory index; the {n_present} file(s) it lists were read)"


def _probe(path: Path) -> FileProbe:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise SkipFile(f"could not be read ({exc.strerror or type(exc).__name__})") from None
    if not stat.S_ISREG(st.st_mode):
        raise SkipFile("not a regular file")
    try:
        head = read_head(path, st.st_size) if st.st_size else b""
    except PermissionError:
        raise SkipFile("permission denied") from None
    except OSError as exc:
        raise SkipFile(f"could not be read ({exc.strerror or type(exc).__name__})") from None
    return FileProbe(path=path, size=st.st_size, head=head)


def _read_one(path: Path, state: dict[str, Any]) -> tuple[Reader, Any]:
    probe = _probe(path)
    reader = find_reader(probe)
    if reader is None:
        raise SkipFile(describe_unknown(probe.head))
    return reader, reader.read_header(probe, state)


def _read_batch(
    files: list[Path], indices: range, state: dict[str, Any]
) -> list[tuple[Reader, Any] | SkippedFile]:
    out: list[tuple[Reader, Any] | SkippedFile] = []
    for i in indices:
        try:
            out.append(_read_one(files[i], state))
        except Exception as exc:  # any failure is a skip reason, never a crash
            out.append(SkippedFile(files[i], human_reason(exc)))
    return out


def scan_paths(
    paths: Sequence[Path | str] | Iterable[Path | str],
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> ScanResult:
    """Find loadable series in files and folders (recursively).

    Parameters
    ----------
    paths
        Files and/or folders.
    progress
        Called as ``progress(files_done, n_files)`` from the calling thread.
    cancel
        When set, the scan stops and :class:`~app.io.errors.Cancelled` is raised.

    Returns
    -------
    ScanResult
        ``series`` (largest first) and ``skipped`` files with their reasons.
    """
    result = ScanResult()
    dicomdirs: dict[Path, tuple[int, int]] = {}
    files = _walk(list(paths), result.skipped, dicomdirs)
    result.n_files = total = len(files)
    state: dict[str, Any] = {}
    headers: dict[int, tuple[Reader, Any]] = {}
    # Header parsing is CPU-bound Python (GIL): threads overlap only the file
    # reads, so few workers with batches of files beat many single-file tasks.
    workers = max(2, min(4, os.cpu_count() or 2))
    batch = max(1, min(32, total // (workers * 4)))
    done = 0
    if progress is not None:
        progress(0, total)

    def on_result(indices: range, fut: Future[list[Any]]) -> None:
        nonlocal done
        for index, outcome in zip(indices, fut.result(), strict=True):
            if isinstance(outcome, SkippedFile):
                if outcome.path in dicomdirs:
                    reason = _dicomdir_reason(outcome.path, outcome.reason, dicomdirs)
                    outcome = SkippedFile(outcome.path, reason)
                result.skipped.append(outcome)
            else:
                headers[index] = outcome
        done += len(indices)

    def jobs() -> Iterator[tuple[range, tuple[Any, ...]]]:
        for start in range(0, total, batch):
            indices = range(start, min(start + batch, total))
            yield indices, (files, indices, state)

    run_bounded(
        _read_batch,
        jobs(),
        on_result,
        workers=workers,
        window=workers * 2,
        cancel=cancel,
        after_round=None if progress is None else lambda: progress(done, total),
        cancel_message="scan was cancelled",
        thread_name_prefix="dicom-scan",
    )

    by_reader: dict[int, list[Any]] = defaultdict(list)
    reader_list = list(readers())
    for index in sorted(headers):
        reader, header = headers[index]
        by_reader[reader_list.index(reader)].append(header)
    for position, group in sorted(by_reader.items()):
        series, skipped = reader_list[position].build_series(group)
        result.series.extend(series)
        result.skipped.extend(skipped)
    result.series.sort(key=lambda r: (-r.n_planes, -r.n_slices, r.key))
    result.skipped.sort(key=lambda s: str(s.path))
    return result
