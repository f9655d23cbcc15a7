"""The main window over a fake loader backend: hanging, linking, browser, skipped files."""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path

import pytest
from fakes import FakeBackend, three_dates
from PySide6 import QtCore, QtGui, QtWidgets

from app.core.imaging import PRESETS
from app.core.state import Camera, Channel, MatchInfo, SliceMapper
from app.ui.loading.loader import Loader
from app.ui.shell.errors import install_excepthook
from app.ui.shell.main_window import MainWindow
from app.ui.viewer.presets import PRESET_KEYS

Qt = QtCore.Qt


def test_one_viewport_per_study_newest_first(hung):
    dates = [s.volume.info.study_date for s in hung.viewport_states()]
    assert dates == ["20240610", "20220301", "20200115"]
    headers = [hung.views[i].header.full_text() for i in sorted(hung.views)]
    assert headers[0].startswith("2024-06-10 · CT CHEST W")
    assert headers[2].startswith("2020-01-15")
    # Left to right on screen too, not just in the dict.
    xs = [hung.views[i].mapTo(hung, QtCore.QPoint(0, 0)).x() for i in sorted(hung.views)]
    assert xs == sorted(xs)
    # Keys go to the newest study first.
    assert hung.active_view is hung.views[0]


def test_default_series_has_most_slices_and_browser_swaps_it(hung, qtbot):
    middle = hung.viewport_states()[1]
    assert middle.volume.n_slices == 30  # "mid-thin" beats the 20-slice series
    item = hung.browser.series_item("mid-thick")
    assert item is not None and not item.font(0).bold()
    hung.browser.tree.itemActivated.emit(item, 0)
    qtbot.waitUntil(lambda: hung.viewport_states()[1].volume.n_slices == 20, timeout=3000)
    assert hung.browser.series_item("mid-thick").font(0).bold()
    assert not hung.browser.series_item("mid-thin").font(0).bold()
    assert [s.volume.info.study_date for s in hung.viewport_states()][1] == "20220301"


def test_browser_tree_lists_studies_newest_first_with_counts(hung):
    patient = hung.browser.tree.topLevelItem(0)
    studies = [patient.child(i).text(0) for i in range(patient.childCount())]
    assert [s[:10] for s in studies] == ["2024-06-10", "2022-03-01", "2020-01-15"]
    mid = patient.child(1)
    labels = sorted(mid.child(i).text(0) for i in range(mid.childCount()))
    assert any("30 slices" in t for t in labels) and any("20 slices" in t for t in labels)
    # Thumbnails replaced the generic icon once the series were read.
    icon = hung.browser.series_item("new").icon(0)
    assert not icon.isNull()


def test_skipped_files_are_listed_and_announced(window, qtbot, backend):
    with qtbot.waitSignal(window.settled, timeout=5000):
        window.open_paths(["/data/new", "/data/junk.txt"])
    assert window.skipped_dock.entries() == [("/data/junk.txt", "not a CT image (fake reason)")]
    assert window.skipped_label.isVisible()
    assert "1 file skipped" in window.skipped_label.text()
    assert not window.skipped_dock.isVisible()
    window.skipped_label.linkActivated.emit("show")
    assert window.skipped_dock.isVisible()


def test_nothing_found_is_reported_not_raised(window, qtbot):
    with qtbot.waitSignal(window.error_shown, timeout=5000) as sig:
        window.open_paths(["/data/junk"])
    assert "No CT series found" in sig.args[0]
    assert window.error_box.box is not None and window.error_box.box.isVisible()
    assert not window.error_box.box.isModal()
    assert window.views == {}


def test_preset_keys_and_combo_with_linked_window(hung, qtbot):
    states = hung.viewport_states()
    hung.views[0].setFocus()
    qtbot.keyClick(hung, Qt.Key.Key_1)
    assert all(s.window == PRESETS["lung"] for s in states)
    assert hung.preset_combo.currentData() == "lung"
    hung.preset_combo.activated.emit(PRESET_KEYS.index("bone"))
    assert all(s.window == PRESETS["bone"] for s in states)


def test_unlinked_window_changes_only_the_active_viewport(hung, qtbot):
    states = hung.viewport_states()
    hung.link_window_action.setChecked(False)
    assert not hung.sync.enabled[Channel.VOI]
    hung.views[1].setFocus()
    qtbot.keyClick(hung, Qt.Key.Key_5)
    assert states[1].window == PRESETS["brain"]
    assert states[0].window != PRESETS["brain"] and states[2].window != PRESETS["brain"]
    # Turning the link back on aligns everyone with the active viewport.
    hung.link_window_action.setChecked(True)
    assert all(s.window == PRESETS["brain"] for s in states)


def test_camera_link_and_reset(hung, qtbot):
    states = hung.viewport_states()
    states[0].zoom_by(2.0)
    assert all(s.camera.zoom == pytest.approx(2.0) for s in states)
    hung.link_camera_action.setChecked(False)
    states[2].pan_by(4.0, 0.0)
    assert states[0].camera.pan == (0.0, 0.0)
    hung.link_camera_action.setChecked(True)
    hung.views[0].setFocus()
    qtbot.keyClick(hung, Qt.Key.Key_R)
    assert all(s.camera == Camera() for s in states)


def test_slice_sync_switches_on_once_indexed_and_the_toggle_stops_it(hung, qtbot):
    states = hung.viewport_states()
    # `hung` waits for settled, which includes indexing and aligning every series.
    assert all(hung.anatomy.index_state(s).status == "ready" for s in states)
    assert hung.sync.enabled[Channel.SLICE] and hung.sync_slices_action.isChecked()
    assert hung.sync_status_label.text() == "Sync: ready"
    hung.sync_slices_action.trigger()  # the user switches it off
    assert not hung.sync.enabled[Channel.SLICE]
    before = [s.slice_index for s in states[1:]]
    states[0].step(3)
    assert [s.slice_index for s in states[1:]] == before


def test_a_plugged_in_slice_mapper_drives_sync_and_overlay(hung):
    class Fixed(SliceMapper):
        def map(self, source, target):
            covered = target.volume.n_slices > 20
            return 2, MatchInfo(score=0.87, in_coverage=covered)

    states = hung.viewport_states()
    hung.sync.slice_mapper = Fixed()
    hung.sync_slices_action.setChecked(True)
    states[0].step(1)
    assert states[1].slice_index == 2 and states[2].slice_index == 2
    assert "match 0.87" in hung.views[1].slice_label.text()  # 30 slices: covered
    assert not hung.views[1].banner.isVisible()
    assert hung.views[2].banner.isVisible()  # 20 slices: the level is not covered
    assert hung.views[2].image_item.opacity() < 1.0
    # A user scroll in a synced viewport clears its match annotation.
    states[1].step(1)
    assert "match" not in hung.views[1].slice_label.text()


def test_arrow_keys_scroll_the_active_viewport_only(hung, qtbot):
    states = hung.viewport_states()
    hung.sync_slices_action.trigger()  # unsynced: the others must not move
    hung.views[2].setFocus()
    qtbot.waitUntil(lambda: hung.active_view is hung.views[2], timeout=2000)
    before = [s.slice_index for s in states]
    qtbot.keyClick(hung.views[2], Qt.Key.Key_Up)
    after = [s.slice_index for s in states]
    assert after == [before[0], before[1], before[2] + 1]
    assert hung.views[2].property("active") and not hung.views[0].property("active")


def test_loader_runs_off_the_gui_thread(hung, backend):
    gui = threading.get_ident()
    assert backend.idents, "the backend was never called"
    assert gui not in backend.idents


def test_cancel_stops_a_running_scan(qtbot):
    gate = threading.Event()
    backend = FakeBackend(three_dates(), gate=gate)
    win = MainWindow(Loader(backend))
    qtbot.addWidget(win)
    win.show()
    assert not win.cancel_action.isVisible()  # nothing loading yet: no cancel to offer
    win.open_paths(["/data/new"])
    qtbot.waitUntil(lambda: win.cancel_action.isEnabled(), timeout=2000)
    assert win.cancel_action.isVisible()
    assert win.progress_bar.isVisible()
    with qtbot.waitSignal(win.loader.cancelled, timeout=2000):
        win.cancel_action.trigger()
    qtbot.waitUntil(lambda: not win.loader.is_busy, timeout=3000)
    assert win.views == {} and not win.cancel_action.isEnabled()
    assert not win.cancel_action.isVisible()
    win.shutdown()


def test_drop_files_opens_them(window, qtbot):
    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile("/data/old"), QtCore.QUrl.fromLocalFile("/data/new")])
    pos = QtCore.QPointF(window.width() / 2, window.height() / 2)
    actions = Qt.DropAction.CopyAction
    enter = QtGui.QDragEnterEvent(
        pos.toPoint(), actions, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    QtWidgets.QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    drop = QtGui.QDropEvent(
        pos, actions, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    with qtbot.waitSignal(window.settled, timeout=5000):
        QtWidgets.QApplication.sendEvent(window, drop)
    qtbot.waitUntil(lambda: len(window.views) == 2, timeout=3000)
    dates = [s.volume.info.study_date for s in window.viewport_states()]
    assert dates == ["20240610", "20200115"]


def test_second_open_adds_to_the_catalogue(window, qtbot):
    with qtbot.waitSignal(window.settled, timeout=5000):
        window.open_paths(["/data/old"])
    with qtbot.waitSignal(window.settled, timeout=5000):
        window.open_paths(["/data/new"])
    qtbot.waitUntil(lambda: len(window.views) == 2, timeout=3000)
    assert [s.volume.info.study_date for s in window.viewport_states()] == [
        "20240610",
        "20200115",
    ]


def test_excepthook_logs_and_shows_a_short_message(window, caplog):
    previous = sys.excepthook
    restore = install_excepthook(window.report)
    assert sys.excepthook is not previous
    try:
        try:
            raise ValueError("something odd\nwith a second line")
        except ValueError:
            with caplog.at_level(logging.ERROR, logger="app.ui"):
                sys.excepthook(*sys.exc_info())
    finally:
        restore()
    text = window.error_box.box.text()
    assert text.startswith("Unexpected error: something odd")
    assert "Traceback" not in text and "second line" not in text
    assert "Traceback" in caplog.text  # the details go to the log
    assert sys.excepthook is previous


def test_no_patient_identifiers_in_logs(qtbot, caplog):
    backend = FakeBackend(three_dates())
    with caplog.at_level(logging.DEBUG):
        win = MainWindow(Loader(backend))
        qtbot.addWidget(win)
        win.show()
        with qtbot.waitSignal(win.settled, timeout=5000):
            win.open_paths([*backend.files, "/data/junk"])
        qtbot.waitUntil(lambda: len(win.views) == 3, timeout=3000)
        win.shutdown()
    assert "PID-SECRET" not in caplog.text and "Doe" not in caplog.text


def test_load_failure_shows_in_its_viewport(qtbot):
    class Failing(FakeBackend):
        def load(self, ref, progress=None, cancel=None):
            if ref.key == "old":
                raise OSError("disk on fire")
            return super().load(ref, progress, cancel)

    backend = Failing(three_dates())
    win = MainWindow(Loader(backend))
    qtbot.addWidget(win)
    win.show()
    with qtbot.waitSignal(win.settled, timeout=5000):
        win.open_paths(list(backend.files))
    qtbot.waitUntil(lambda: len(win.views) == 2, timeout=3000)
    assert len(win.hanging.area.frames) == 3
    last = win.hanging.area.frame(2).content
    assert "disk on fire" in last.text()
    assert win.error_box.box.isVisible()
    win.shutdown()


def test_screenshot_and_quit_after(tmp_path, backend):
    from app.ui.shell.application import run_viewer

    out = tmp_path / "shot.png"
    code = run_viewer(list(backend.files), screenshot=out, quit_after_s=20, loader=Loader(backend))
    assert code == 0
    image = QtGui.QImage(str(out))
    assert image.width() == 1600 and image.height() == 900
    # The viewer's quit must not leak into later event loops of this process
    # (it did: a pending Quit event ended the next test's waits at once).
    loop = QtCore.QEventLoop()
    timer = QtCore.QTimer()
    timer.setSingleShot(True)
    timer.timeout.connect(loop.quit)
    timer.start(50)
    start = time.perf_counter()
    assert loop.exec() == 0
    assert time.perf_counter() - start >= 0.04


def test_cli_rejects_bad_window_options(capsys):
    from app.cli import main

    assert main(["view", "--quit-after", "0"]) == 2
    assert "--quit-after" in capsys.readouterr().err
    assert main(["demo", "--screenshot", str(Path("x.jpg"))]) == 2


def test_keys_return_to_the_active_viewport_after_a_dialog(hung, qtbot):
    view = hung.views[1]
    hung.hanging.set_active(view)
    view.setFocus()
    box = QtWidgets.QMessageBox(hung)
    box.setText("a dialog")
    box.show()
    box.activateWindow()
    qtbot.waitUntil(lambda: QtWidgets.QApplication.focusWidget() is not view, timeout=3000)
    # Meanwhile the keys' target would be lost: nothing in the window has focus.
    hung.setFocus()
    box.close()
    hung.activateWindow()
    qtbot.waitUntil(lambda: QtWidgets.QApplication.focusWidget() is view, timeout=3000)
