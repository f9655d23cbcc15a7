"""Exporting every matched pair over a range of current slices into a folder.

Each pair is one complete file written with :func:`~app.export.safe_write.safe_write`,
so a cancel or a failure between files leaves only whole, valid files behind.
Names come from :func:`~app.export.names.suggest_file_name`; a name already
taken (an earlier export, a file another program put there) gets ``_2``,
``_3``, ... rather than being overwritten.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.core.imaging import Window
from app.core.volume import Volume
from app.export.captions import DateStyle
from app.export.errors import ExportError, ExportExistsError
from app.export.formats import Exporter, exporter_for
from app.export.names import numbered_variant, suggest_file_name
from app.export.pairs import build_panels, encode_panels, prior_slice
from app.export.safe_write import describe_os_error, safe_write
from app.ml.anatomy.match import MatchResult

__all__ = ["BatchExportError", "BatchResult", "OverlayFn", "export_matched_pairs", "write_unique"]

# (current index, prior index) -> RGB overlays for the current and the prior slice.
OverlayFn = Callable[[int, int], tuple[np.ndarray | None, np.ndarray | None]]

_MAX_VARIANTS = 1000


@dataclass
class BatchResult:
    """What a batch export did.

    Attributes
    ----------
    written
        Files written, in slice order.
    uncovered
        Current slices skipped because the prior does not image their level.
    cancelled
        The cancel event stopped the batch before its end.
    """

    written: list[Path] = field(default_factory=list)
    uncovered: list[int] = field(default_factory=list)
    cancelled: bool = False


class BatchExportError(ExportError):
    """A batch stopped by a write failure; ``result`` holds what was written before it."""

    def __init__(self, message: str, result: BatchResult) -> None:
        super().__init__(message)
        self.result = result


def write_unique(folder: Path, name: str, data: bytes) -> Path:
    """Write ``data`` as ``folder/name``, or ``name_2``, ``name_3``... if taken.

    Raises
    ------
    ExportError
        Writing failed, or a thousand variants of the name are taken.
    """
    base = folder / name
    for number in range(1, _MAX_VARIANTS + 1):
        try:
            return safe_write(numbered_variant(base, number), data, overwrite=False)
        except ExportExistsError:
            continue
    raise ExportError(f"{_MAX_VARIANTS} files named like {base.name} already exist in {folder}")


def export_matched_pairs(
    current: Volume,
    prior: Volume,
    result: MatchResult,
    folder: Path | str,
    *,
    window: Window,
    slices: Iterable[int] | None = None,
    include_identifiers: bool = False,
    include_uncovered: bool = False,
    date_style: DateStyle = "absolute",
    exporter: Exporter | None = None,
    overlays: OverlayFn | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> BatchResult:
    """Export the pair (current slice, matched prior slice) for each slice in ``slices``.

    Parameters
    ----------
    current, prior
        The matched series.
    result
        ``Matcher.match(current, prior)``.
    folder
        Output folder (created if needed).
    window
        Window for both slices.
    slices
        Current slice indices (default: all).
    include_identifiers
        Patient identifiers in captions and file metadata.
    include_uncovered
        Also export slices whose level the prior does not image (the prior's
        nearest slice, captioned "OUTSIDE COVERAGE"); skipped by default.
    date_style
        See :mod:`app.export.captions`.
    exporter
        File format (default PNG).
    overlays
        Optional ``(current index, prior index) -> (current overlay, prior overlay)``.
    progress
        ``progress(done, total)`` after each slice, from the calling thread.
    cancel
        Set it to stop after the file being written.

    Returns
    -------
    BatchResult

    Raises
    ------
    ExportError
        A slice index is out of range or the folder cannot be created.
    BatchExportError
        A file could not be written; its ``result`` lists the files written
        before, which stay valid.
    """
    folder = Path(folder)
    exporter = exporter or exporter_for("png")
    indices = list(range(current.n_slices) if slices is None else slices)
    for k in indices:
        if not 0 <= k < current.n_slices:
            raise ExportError(
                f"slice {k} is outside the current series (0..{current.n_slices - 1})"
            )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create the folder {folder}: {describe_os_error(exc)}") from None
    out = BatchResult()
    total = len(indices)
    for done, k in enumerate(indices, 1):
        if cancel is not None and cancel.is_set():
            out.cancelled = True
            break
        match = prior_slice(prior, result, k)
        if not match.in_coverage and not include_uncovered:
            out.uncovered.append(k)
        else:
            pair_overlays = overlays(k, match.index) if overlays is not None else None
            panels = build_panels(current, k, [match], window, pair_overlays)
            data, _ = encode_panels(
                panels, exporter, include_identifiers=include_identifiers, date_style=date_style
            )
            name = suggest_file_name(
                [(current, k), (prior, match.index)], exporter.extensions[0], date_style
            )
            try:
                out.written.append(write_unique(folder, name, data))
            except ExportError as exc:
                raise BatchExportError(str(exc), out) from None
        if progress is not None:
            progress(done, total)
    return out
