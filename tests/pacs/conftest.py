"""PACS test setup: one real Orthanc for the session, filled with the test patients.

Tests that stop, pause or reconfigure a server start their own (``private_orthanc``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import keyring
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from pacs_data import (  # noqa: E402
    MemoryKeyring,
    dicomweb_config,
    dimse_config,
    start_orthanc,
    write_patients,
)

from app.pacs.cache import StudyCache  # noqa: E402
from app.pacs.servers import ServerConfig  # noqa: E402


@pytest.fixture(autouse=True)
def _private_config(tmp_path, monkeypatch):
    """Server lists go to a fresh folder; secrets to a keyring in memory."""
    monkeypatch.setenv("PRIORSYNC_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("PRIORSYNC_PACS_SECRET", raising=False)
    old = keyring.get_keyring()
    keyring.set_keyring(MemoryKeyring())
    yield
    keyring.set_keyring(old)


@pytest.fixture(scope="session")
def patients(tmp_path_factory):
    return write_patients(tmp_path_factory.mktemp("pacs-patients"))


@pytest.fixture(scope="session")
def orthanc(patients):
    server = start_orthanc()
    try:
        for study in patients.values():
            server.upload(study.files)
        yield server
    finally:
        server.stop()


@pytest.fixture
def private_orthanc(patients):
    """An Orthanc for one test (to stop, pause or reconfigure), with the test patients."""
    servers = []

    def start(**kwargs):
        server = start_orthanc(**kwargs)
        servers.append(server)
        for study in patients.values():
            server.upload(study.files)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(params=["dimse-get", "dimse-move", "dicomweb"])
def server_config(request, orthanc) -> ServerConfig:
    """Each protocol (and DIMSE retrieval) against the session's Orthanc."""
    if request.param == "dicomweb":
        return dicomweb_config(orthanc)
    return dimse_config(orthanc, retrieve=request.param.split("-")[1])


@pytest.fixture
def cache(tmp_path) -> StudyCache:
    return StudyCache(tmp_path / "pacs-cache")
