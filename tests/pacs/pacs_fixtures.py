"""Fixtures of the test PACS, shared by tests/pacs and tests/ui/pacs (their conftests import them).

``orthanc`` is one real Orthanc for the session, filled with the test
patients; tests that stop, pause or reconfigure a server start their own
with ``private_orthanc``.
"""

from __future__ import annotations

import keyring
import pytest
from pacs_data import MemoryKeyring, start_orthanc, write_patients

__all__ = ["_private_config", "orthanc", "patients", "private_orthanc"]


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
