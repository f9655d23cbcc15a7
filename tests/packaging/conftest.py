"""Fixtures for the standalone-app tests: the built folder and a private X server.

Tests marked ``frozen`` build the PyInstaller app (minutes on 2 cores), so they
run only when asked::

    PRIORSYNC_TEST_FROZEN=1 bash scripts/test.sh tests/packaging

``PRIORSYNC_FROZEN_DIR=dist/priorsync`` reuses a folder built before (e.g. by
``bash packaging/build.sh``) instead of building one.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT_S = 1800


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``frozen`` tests unless PRIORSYNC_TEST_FROZEN=1."""
    if os.environ.get("PRIORSYNC_TEST_FROZEN") == "1":
        return
    skip = pytest.mark.skip(
        reason="builds the standalone app (minutes); run with PRIORSYNC_TEST_FROZEN=1 "
        "(optionally PRIORSYNC_FROZEN_DIR=dist/priorsync to reuse a build)"
    )
    for item in items:
        if "frozen" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def frozen_app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The app folder (holding the ``priorsync`` binary): reused or freshly built."""
    given = os.environ.get("PRIORSYNC_FROZEN_DIR")
    if given:
        folder = Path(given).resolve()
        if not (folder / "priorsync").is_file():
            pytest.fail(f"PRIORSYNC_FROZEN_DIR={given} holds no priorsync binary")
        return folder
    log = tmp_path_factory.mktemp("build") / "build.log"
    with log.open("w") as out:
        proc = subprocess.run(
            ["bash", "packaging/build.sh"],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
    if proc.returncode != 0:
        pytest.fail(f"packaging/build.sh failed ({proc.returncode}):\n{log.read_text()[-4000:]}")
    return REPO / "dist" / "priorsync"
