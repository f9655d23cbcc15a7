"""Shared fixtures.

Caches go to one throw-away folder per test session, so tests never touch the
user's cache and expensive artefacts (demo patient, fetched sources) are built
once per run. Tests about cache corruption make their own folders.
"""

from __future__ import annotations

import os
import shutil
import subprocess

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


@pytest.fixture
def x_display():
    """A private Xvfb server for tests that start the real app on a real X server.

    ``-displayfd`` makes Xvfb pick a free display number itself, so parallel runs
    never collide.
    """
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.skip(
            "Xvfb is not installed (scripts/system-deps.sh --tests installs it, as CI does)"
        )
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [xvfb, "-displayfd", str(write_fd), "-screen", "0", "1680x1050x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as pipe:
            number = pipe.readline().strip()
        if not number:
            pytest.fail("Xvfb did not start")
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
