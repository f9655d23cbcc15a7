"""UI test setup: Qt renders offscreen (no display needed) and windows are torn down.

The platform is chosen before pytest-qt creates the QApplication, so every UI
test paints into offscreen buffers that ``grab()`` can read back. Only
test_app_subprocess.py starts the real app on an X server (Xvfb).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ["QT_QPA_PLATFORM"] = "offscreen"

import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))  # the fakes module beside the tests

from fakes import FakeBackend, three_dates  # noqa: E402


@pytest.fixture(autouse=True)
def _pyqtgraph_options(qapp):
    from app.ui.shell.shutdown import configure_pyqtgraph

    configure_pyqtgraph()
    yield


@pytest.fixture(autouse=True)
def _private_settings(tmp_path_factory, monkeypatch):
    """Point QSettings at a fresh temporary folder: tests never touch the user's settings.

    XDG_CONFIG_HOME covers the app started in a subprocess (test_app_subprocess.py).
    """
    from PySide6.QtCore import QSettings

    folder = tmp_path_factory.mktemp("settings")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(folder))
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))
    QSettings.setPath(
        QSettings.Format.IniFormat, QSettings.Scope.SystemScope, str(folder / "system")
    )
    yield folder


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend(three_dates())


@pytest.fixture
def window(qtbot, backend):
    """A main window over the fake backend, closed (and its workers stopped) afterwards."""
    from app.ui.loading.loader import Loader
    from app.ui.shell.main_window import MainWindow

    win = MainWindow(Loader(backend))
    qtbot.addWidget(win)
    win.resize(1200, 600)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.shutdown()


@pytest.fixture
def hung(window, qtbot, backend):
    """The window after opening the three fake studies."""
    # Generous: indexing runs the real model, and CI machines may be shared.
    with qtbot.waitSignal(window.settled, timeout=30000):
        window.open_paths(list(backend.files))
    qtbot.waitUntil(lambda: len(window.views) == 3, timeout=5000)
    return window


@pytest.fixture(scope="module")
def patient():
    """Three simulated dates of one patient with known correspondence (see sim_patient)."""
    from sim_patient import simulated_patient

    return simulated_patient()


@pytest.fixture(scope="module")
def patient_index_dir(tmp_path_factory):
    """One index cache per test module: the first window embeds, the others reuse it."""
    return tmp_path_factory.mktemp("index")


@pytest.fixture
def synced(qtbot, patient, patient_index_dir):
    """The simulated patient hung in the real window, indexed and synced."""
    from sync_helpers import open_patient

    from app.ml.anatomy.index import IndexCache
    from app.ml.anatomy.sync_service import SyncEngine

    win = open_patient(qtbot, patient, SyncEngine(cache=IndexCache(patient_index_dir)))
    yield win
    win.shutdown()
