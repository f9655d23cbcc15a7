"""Opening the simulated patient in the real main window and driving it like a user."""

from __future__ import annotations

from fakes import FakeBackend
from PySide6 import QtCore, QtTest

from app.ml.anatomy.sync_service import SyncEngine
from app.ui.loading.loader import Loader
from app.ui.shell.main_window import MainWindow

Qt = QtCore.Qt


def open_patient(qtbot, patient, engine: SyncEngine) -> MainWindow:
    """A shown main window with the patient's three dates hung, indexed and aligned."""
    win = MainWindow(Loader(FakeBackend(patient.files)), engine)
    qtbot.addWidget(win)
    win.resize(1500, 700)
    win.show()
    qtbot.waitExposed(win)
    with qtbot.waitSignal(win.settled, timeout=60000):
        win.open_paths(list(patient.files))
    qtbot.waitUntil(lambda: len(win.views) == 3 and win.is_settled(), timeout=60000)
    return win


def click(view) -> None:
    """A left click (press and release, no drag) in the middle of the image."""
    host = view.graphics.viewport()
    QtTest.QTest.mouseClick(host, Qt.MouseButton.LeftButton, pos=host.rect().center())
    QtCore.QCoreApplication.processEvents()


def show_slice_unsynced(win, state, k: int) -> None:
    """Put ``state`` on slice ``k`` without moving the others."""
    with win.sync.held():
        state.set_slice(k)
