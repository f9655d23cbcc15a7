"""UI tests of the PACS features: the real Orthanc of tests/pacs (its fixtures, imported)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "pacs"))

from pacs_fixtures import _private_config, orthanc, patients, private_orthanc  # noqa: E402, F401
