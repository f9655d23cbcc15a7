"""DICOMDIR files (a CD/DVD/USB export's index): the image files they reference.

A user often points the viewer at the DICOMDIR itself, or at a folder where
the images sit under names the index alone explains. The index's directory
records are read with pydicom and the files they reference are then scanned
like any others. (pydicom's :class:`~pydicom.fileset.FileSet` reads the same
records but warns once per missing file, and an export copied without its
images would drown the user in warnings; one count says it better.)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import cast

from pydicom import dcmread

__all__ = ["is_dicomdir_name", "referenced_files"]

log = logging.getLogger(__name__)


def is_dicomdir_name(path: Path) -> bool:
    """True for a file named ``DICOMDIR`` (the standard's fixed name, any case)."""
    return path.name.upper() == "DICOMDIR"


def referenced_files(path: Path) -> tuple[list[Path], int]:
    """The files a DICOMDIR lists that exist, and how many it lists in all.

    Parameters
    ----------
    path
        A DICOMDIR file.

    Returns
    -------
    existing, n_listed
        Paths of the referenced files present on disk; the count of references.
        An unreadable index gives ``([], 0)`` (it is then skipped as a file).
    """
    try:
        records = dcmread(path).get("DirectoryRecordSequence") or []
        listed = [
            path.parent.joinpath(*_file_id(record.ReferencedFileID))
            for record in records
            if "ReferencedFileID" in record
        ]
    except Exception as exc:  # a damaged index must not stop the scan of its folder
        log.debug("DICOMDIR %s unreadable: %s", path.name, exc)
        return [], 0
    return [p for p in listed if p.is_file()], len(listed)


def _file_id(value: object) -> list[str]:
    """ReferencedFileID components (one string or several), never climbing out of the folder."""
    parts = [value] if isinstance(value, str) else list(cast(Iterable[object], value))
    return [p for p in (str(v).strip() for v in parts) if p and p not in (".", "..")]
