"""app.commands.demo_start: the demo build started with the command, waited for by the loader."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from app.commands.demo_start import DemoBuild, DemoBuildStopped


class _Stepped:
    """A fake build of ``steps`` steps that waits for a go-ahead before each one."""

    def __init__(self, steps: int, result: list[Path]) -> None:
        self.steps = steps
        self.result = result
        self.go = threading.Semaphore(0)
        self.ran = 0

    def __call__(self, progress):
        for i in range(self.steps):
            assert self.go.acquire(timeout=10)
            self.ran += 1
            progress(i + 1, self.steps)
        return self.result


def test_wait_returns_the_build_and_relays_its_progress(tmp_path):
    fake = _Stepped(3, [tmp_path / "a", tmp_path / "b"])
    build = DemoBuild(fake).start()
    seen: list[tuple[int, int]] = []
    for _ in range(3):
        fake.go.release()
    assert build.wait(lambda d, t: seen.append((d, t))) == [tmp_path / "a", tmp_path / "b"]
    assert seen and seen[-1] == (3, 3)
    assert all(t == 3 and 0 < d <= 3 for d, t in seen)
    # A second wait (the window asks again) gets the same folders, built once.
    assert build.wait() == [tmp_path / "a", tmp_path / "b"]
    assert fake.ran == 3
    build.stop()


def test_the_builds_error_reaches_the_waiting_loader():
    def failing(progress):
        progress(1, 2)
        raise OSError("disk full")

    build = DemoBuild(failing).start()
    with pytest.raises(OSError, match="disk full"):
        build.wait()
    build.stop()


class _LoaderCancelled(Exception):
    pass


def test_a_cancelled_wait_leaves_the_build_running_and_stop_ends_it(tmp_path):
    fake = _Stepped(5, [tmp_path / "a"])
    build = DemoBuild(fake).start()
    fake.go.release()  # one step done: progress (1, 5) is there to relay

    def cancelled(done, total):
        raise _LoaderCancelled

    with pytest.raises(_LoaderCancelled):
        build.wait(cancelled)
    fake.go.release()  # the build goes on after the wait ended
    # stop(): the next step's progress report ends the build; the thread finishes.
    stopper = threading.Thread(target=build.stop)
    stopper.start()
    for _ in range(3):
        fake.go.release()
    stopper.join(10)
    assert not stopper.is_alive()
    assert fake.ran < 5
    with pytest.raises(DemoBuildStopped):
        build.wait()
