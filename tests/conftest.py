"""Shared fixtures.

Caches go to one throw-away folder per test session, so tests never touch the
user's cache and expensive artefacts (demo patient, fetched sources) are built
once per run. Tests about cache corruption make their own folders.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    old = os.environ.get("PRIORSYNC_CACHE_DIR")
    os.environ["PRIORSYNC_CACHE_DIR"] = str(tmp_path_factory.mktemp("priorsync-cache"))
    yield
    if old is None:
        os.environ.pop("PRIORSYNC_CACHE_DIR", None)
    else:
        os.environ["PRIORSYNC_CACHE_DIR"] = old
