"""File names for exports: informative, sortable, and free of patient identifiers.

``priorsync_<date>_im<number>_vs_<date>_im<number>.png``: the current study's
date and image number, then each prior's. Dates follow the export's date style
(see :mod:`app.export.captions` for why dates are shown at all); names, IDs,
accession numbers and series descriptions never appear, because file names
travel further than the files (mail subjects, shared-folder listings, logs).
Image numbers are the viewer's (counted from the head, from 1, as ``Im k/N``
on screen, in captions and in ``priorsync match``), zero-padded so a batch
sorts in slice order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from app.core.volume import Volume
from app.export.captions import DateStyle, date_label, image_number

__all__ = ["numbered_variant", "suggest_file_name"]

_UNSAFE = re.compile(r"[^A-Za-z0-9+-]+")


def _date_part(study_date: str, reference: str, style: DateStyle) -> str:
    label = date_label(study_date, reference, style)
    if style == "absolute" and label != "undated":
        return label.replace("-", "")
    if label.endswith(" days"):
        return "d" + label[: -len(" days")]
    return _UNSAFE.sub("", label) or "undated"


def _index_part(index: int, n_slices: int) -> str:
    digits = max(3, len(str(max(n_slices, 0))))
    return f"im{image_number(index, n_slices):0{digits}d}"


def suggest_file_name(
    slices: Sequence[tuple[Volume, int]],
    extension: str = ".png",
    date_style: DateStyle = "absolute",
) -> str:
    """A file name for an export of ``slices`` (the current first).

    Parameters
    ----------
    slices
        ``(volume, slice index)`` per panel, the current (driver) first.
    extension
        With the dot.
    date_style
        ``"absolute"`` (``20260314``) or ``"relative"`` (``current``, ``d-412``).

    Examples
    --------
    ``priorsync_20260314_im080_vs_20250110_im056.png``
    """
    if not slices:
        raise ValueError("no slices to name")
    reference = slices[0][0].info.study_date
    parts = [
        f"{_date_part(v.info.study_date, reference, date_style)}_{_index_part(k, v.n_slices)}"
        for v, k in slices
    ]
    return "priorsync_" + "_vs_".join(parts) + extension


def numbered_variant(path: Path, number: int) -> Path:
    """``name_<number>.ext`` beside ``path`` (``number`` >= 2), for a name already taken."""
    if number < 2:
        return path
    return path.with_name(f"{path.stem}_{number}{path.suffix}")
