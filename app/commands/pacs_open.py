"""Fetching a patient from a PACS for the viewer: shared by ``view --pacs`` and ``demo --pacs``."""

from __future__ import annotations

import sys
from pathlib import Path

from app.pacs.servers import ServerConfig

__all__ = ["fetch_patient_folders"]


def fetch_patient_folders(server: ServerConfig, patient_id: str, n_priors: int) -> list[Path]:
    """The patient's newest CT study and ``n_priors`` priors, fetched into the cache.

    Returns the studies' series folders, current study first (progress goes to stderr).

    Raises
    ------
    app.pacs.errors.PacsError
        Any server or cache fault.
    """
    from app.pacs.backend import open_backend
    from app.pacs.cache import StudyCache
    from app.pacs.retrieve import fetch_patient

    shown = [-1]

    def progress(done: int, total: int) -> None:
        percent = 100 * done // max(total, 1)
        if percent >= shown[0] + 5 or done == total:
            shown[0] = percent
            print(f"\rfetching from {server.name}: {percent:3d} %", end="", file=sys.stderr)

    with open_backend(server) as backend:
        got = fetch_patient(backend, patient_id, StudyCache(), n_priors, progress)
    print(file=sys.stderr)
    cached = sum(r.from_cache for r in got.results)
    print(
        f"{len(got.results)} CT studies ({len(got.priors)} priors, {cached} from the local cache)",
        file=sys.stderr,
    )
    return [folder for r in got.results for folder in r.study.series_folders]
