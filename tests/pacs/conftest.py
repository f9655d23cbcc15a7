"""PACS test setup: the test PACS fixtures (pacs_fixtures.py) and per-protocol server configs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import pacs_fixtures  # noqa: E402
from pacs_data import dicomweb_config, dimse_config  # noqa: E402

# The shared fixtures, registered here by name.
_private_config = pacs_fixtures._private_config
orthanc = pacs_fixtures.orthanc
patients = pacs_fixtures.patients
private_orthanc = pacs_fixtures.private_orthanc

from app.pacs.cache import StudyCache  # noqa: E402
from app.pacs.servers import ServerConfig  # noqa: E402


@pytest.fixture(params=["dimse-get", "dimse-move", "dicomweb"])
def server_config(request, orthanc) -> ServerConfig:
    """Each protocol (and DIMSE retrieval) against the session's Orthanc."""
    if request.param == "dicomweb":
        return dicomweb_config(orthanc)
    return dimse_config(orthanc, retrieve=request.param.split("-")[1])


@pytest.fixture
def cache(tmp_path) -> StudyCache:
    return StudyCache(tmp_path / "pacs-cache")
