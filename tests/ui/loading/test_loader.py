"""The loader with the real readers (app.io) on small series written to a temp folder."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest
from fakes import FakeBackend, make_volume, three_dates

from app.io.dicom_write import write_dicom_series
from app.ui.loading.loader import Loader, default_backend
from app.ui.shell.main_window import MainWindow


@pytest.fixture
def two_dates(tmp_path):
    """Two DICOM studies of one patient plus a junk file, in one folder tree."""
    old = make_volume(shape=(8, 32, 40), date="20210505", seed=1)
    new = make_volume(shape=(10, 32, 40), date="20230707", seed=2)
    # Same patient for the catalogue; distinct study identities per date.
    new = replace(new, info=replace(new.info, study_uid="1.2.826.0.1.9.2"))
    old = replace(old, info=replace(old.info, study_uid="1.2.826.0.1.9.1"))
    write_dicom_series(old, tmp_path / "a" / "old")
    write_dicom_series(new, tmp_path / "b" / "new")
    (tmp_path / "b" / "README.txt").write_text("not an image")
    return tmp_path, old, new


def test_real_readers_hang_two_dates_newest_first(qtbot, two_dates):
    root, old, new = two_dates
    win = MainWindow(Loader(default_backend()))
    qtbot.addWidget(win)
    win.show()
    with qtbot.waitSignal(win.settled, timeout=20000):
        win.open_paths([root])
    qtbot.waitUntil(lambda: len(win.views) == 2, timeout=20000)
    states = win.viewport_states()
    assert [s.volume.info.study_date for s in states] == ["20230707", "20210505"]
    np.testing.assert_array_equal(states[0].volume.voxels, new.voxels)
    np.testing.assert_array_equal(states[1].volume.voxels, old.voxels)
    paths = [p for p, _ in win.skipped_dock.entries()]
    assert any(p.endswith("README.txt") for p in paths)
    assert win.skipped_label.isVisible()
    win.shutdown()


def test_jobs_run_in_pool_threads_and_report_progress(qtbot):
    backend = FakeBackend(three_dates())
    loader = Loader(backend)
    progress: list[tuple[str, int, int]] = []
    loader.progress.connect(lambda label, d, t: progress.append((label, d, t)))
    with qtbot.waitSignal(loader.scanned, timeout=5000) as sig:
        loader.scan(list(backend.files))
    outcome = sig.args[0]
    assert sorted(outcome.new_keys) == ["mid-thick", "mid-thin", "new", "old"]
    assert threading.get_ident() not in backend.idents
    assert progress and progress[-1][0] == "Scanning" and progress[-1][1] == progress[-1][2]
    qtbot.waitUntil(lambda: not loader.is_busy, timeout=2000)
    loader.shutdown()


def test_demo_build_hands_over_to_a_scan(qtbot):
    backend = FakeBackend(three_dates(), demo_paths=["/data/old", "/data/new"])
    loader = Loader(backend)
    with qtbot.waitSignal(loader.scanned, timeout=5000) as sig:
        loader.build_demo()
    assert sorted(sig.args[0].new_keys) == ["new", "old"]
    loader.shutdown()


def test_failure_is_reported_with_a_short_message(qtbot):
    class Broken(FakeBackend):
        def scan(self, paths, progress=None, cancel=None):
            raise PermissionError("permission denied: /secret")

    loader = Loader(Broken({}))
    with qtbot.waitSignal(loader.failed, timeout=5000) as sig:
        loader.scan(["/secret"])
    assert sig.args == ["scan", "permission denied: /secret"]
    loader.shutdown()


def test_cancel_raised_from_progress_stops_work_without_a_progress_api(qtbot):
    # build_demo takes no cancel event: cancelling works through its progress callback.
    started = threading.Event()
    release = threading.Event()

    class SlowDemo(FakeBackend):
        def build_demo(self, progress=None):
            started.set()
            release.wait(5)
            progress(1, 10)  # raises Cancelled once the user cancelled
            raise AssertionError("not reached")

    loader = Loader(SlowDemo({}))
    failures: list = []
    loader.failed.connect(lambda *a: failures.append(a))
    loader.build_demo()
    assert started.wait(5)
    with qtbot.waitSignal(loader.busy, timeout=5000, check_params_cb=lambda busy: not busy):
        loader.cancel()
        release.set()
    assert failures == []
    assert loader.shutdown(timeout_ms=5000)
