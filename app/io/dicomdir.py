"""DICOMDIR files (a CD/DVD/USB export's index): the image files they reference.

A user often points the viewer at the DICOMDIR itself, or at a folder where
the images sit under names the index alone explains. pydicom's
:class:`~pydicom.fileset.FileSet` reads the index; the files it lists are then
scanned like any others.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pydicom import dcmread
from pydicom.fileset import FileSet

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
        fileset = FileSet(dcmread(path))
    except Exception as exc:  # a damaged index must not stop the scan of its folder
        log.debug("DICOMDIR %s unreadable: %s", path.name, exc)
        return [], 0
    listed = [Path(instance.path) for instance in fileset]
    return [p for p in listed if p.is_file()], len(listed)
