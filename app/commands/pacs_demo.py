"""``priorsync demo --pacs``: the demo patient served by a local Orthanc, opened through the PACS path.

Orthanc (if installed) is started privately on loopback with a throw-away
storage, the demo patient's three studies are uploaded to it, and the viewer
opens what a DICOMweb search and retrieve of that patient brings back, as it
would from a hospital's archive. Orthanc stops when the viewer closes.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from app.commands.exit_codes import EXIT_INPUT

__all__ = ["run_pacs_demo"]

log = logging.getLogger(__name__)


def run_pacs_demo(args: argparse.Namespace, on_start: Callable[[Any], None] | None = None) -> int:
    """Serve the demo patient from a local Orthanc and open it through the PACS path.

    ``on_start`` is handed to :func:`app.ui.shell.application.run_viewer`
    (the tests that drive the real app use it).
    """
    from app.commands.pacs_open import fetch_patient_folders
    from app.pacs.credentials import ENV_SECRET
    from app.pacs.errors import PacsError
    from app.pacs.local_orthanc import LocalOrthanc, OrthancUnavailable
    from app.pacs.servers import ServerConfig
    from app.sim.demo import DEMO_PATIENT_ID, build_demo_patient
    from app.sim.sources import SourceError

    try:
        orthanc = LocalOrthanc().start()
    except OrthancUnavailable as exc:
        print(f"priorsync demo: {exc}", file=sys.stderr)
        return EXIT_INPUT
    try:
        print("building the demo patient (once)...", file=sys.stderr)
        try:
            folders = build_demo_patient()
        except (SourceError, OSError) as exc:
            print(f"priorsync demo: {exc}", file=sys.stderr)
            return EXIT_INPUT
        n = sum(orthanc.upload_folder(folder) for folder in folders)
        print(f"local Orthanc at {orthanc.dicomweb_url} holds {n} demo images", file=sys.stderr)
        server = ServerConfig(
            name="demo PACS (local Orthanc)",
            protocol="dicomweb",
            base_url=orthanc.dicomweb_url,
            auth="basic",
            username=orthanc.username,
        )
        # This Orthanc's password lives as long as this process: no keyring entry for it.
        os.environ[ENV_SECRET] = orthanc.password
        try:
            paths = fetch_patient_folders(server, DEMO_PATIENT_ID, n_priors=2)
        except PacsError as exc:
            print(f"priorsync demo: {exc}", file=sys.stderr)
            return EXIT_INPUT
        from app.ui.shell.application import run_viewer

        return run_viewer(
            paths, screenshot=args.screenshot, quit_after_s=args.quit_after, on_start=on_start
        )
    finally:
        os.environ.pop(ENV_SECRET, None)
        orthanc.stop()
