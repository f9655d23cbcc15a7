"""UI tests of the PACS features: the real Orthanc of tests/pacs (its fixtures, imported)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "pacs"))

import pacs_fixtures  # noqa: E402

# The shared fixtures, registered here by name.
_private_config = pacs_fixtures._private_config
orthanc = pacs_fixtures.orthanc
patients = pacs_fixtures.patients
private_orthanc = pacs_fixtures.private_orthanc
