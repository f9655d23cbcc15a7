"""File ▸ Open from PACS and the server settings, driven with pytest-qt against the real Orthanc."""

from __future__ import annotations

import pytest
from pacs_data import PATIENT_ID, assert_cache_clean, dicomweb_config, dimse_config
from PySide6 import QtCore, QtWidgets

from app.pacs.cache import StudyCache
from app.pacs.credentials import get_secret
from app.pacs.servers import ServerStore
from app.ui.pacs.hooks import install_pacs
from app.ui.pacs.open_dialog import OpenFromPacsDialog
from app.ui.pacs.server_settings import ServerSettingsWidget
from app.ui.pacs.tasks import PacsTasks

WAIT_MS = 30000


@pytest.fixture
def cache(tmp_path) -> StudyCache:
    return StudyCache(tmp_path / "ui-cache")


@pytest.fixture(params=["dicomweb", "dimse"])
def config(request, orthanc):
    return dicomweb_config(orthanc) if request.param == "dicomweb" else dimse_config(orthanc)


def make_dialog(qtbot, servers, cache, n_priors=1) -> OpenFromPacsDialog:
    dialog = OpenFromPacsDialog(servers=servers, tasks=PacsTasks(cache=cache), n_priors=n_priors)
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


def search(qtbot, dialog, **fields) -> None:
    for name, value in fields.items():
        getattr(dialog, name).setText(value)
    qtbot.mouseClick(dialog.search_button, QtCore.Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog._current_job is None, timeout=WAIT_MS)


def test_search_open_current_then_newest_priors(qtbot, config, patients, cache) -> None:
    dialog = make_dialog(qtbot, [config], cache, n_priors=1)
    search(qtbot, dialog, patient_id=PATIENT_ID)
    table = dialog.results
    assert table.rowCount() == 4
    first = [table.item(0, c).text() for c in range(table.columnCount())]
    assert first[:5] == ["2026-10-14", "CT/SR", "CT CHEST", "3", "30"]
    emitted: list[list] = []
    dialog.folders_ready.connect(emitted.append)
    table.selectRow(0)
    qtbot.mouseClick(dialog.open_button, QtCore.Qt.MouseButton.LeftButton)
    # The current study first, then (fetched in the background) the newest prior.
    qtbot.waitUntil(lambda: len(emitted) == 2, timeout=WAIT_MS)
    current = cache.study_folder(patients["current"].study_uid)
    prior = cache.study_folder(patients["prior1"].study_uid)
    assert sorted(emitted[0]) == sorted(current / u for u in patients["current"].series_uids[:2])
    assert emitted[1] == [prior / patients["prior1"].series_uids[0]]
    assert dialog.prior_list.count() == 2
    states = [dialog.prior_list.item(i).checkState() for i in range(2)]
    assert states == [QtCore.Qt.CheckState.Checked, QtCore.Qt.CheckState.Unchecked]
    assert dialog.prior_list.item(0).text().startswith("2025-10-07")
    assert "Fetched 1 prior" in dialog.status.text()


@pytest.mark.parametrize(
    ("fields", "keys"),
    [
        ({"patient_name": "Zebedee*"}, {"current", "prior1", "prior2", "mr"}),
        ({"accession": "ACC-24"}, {"prior2"}),
        ({"date_from": "2024-01-01", "date_to": "2024-12-31"}, {"prior2"}),
    ],
)
def test_search_by_name_accession_and_dates(qtbot, orthanc, patients, cache, fields, keys) -> None:
    dialog = make_dialog(qtbot, [dicomweb_config(orthanc)], cache)
    search(qtbot, dialog, **fields)
    assert {s.study_uid for s in dialog._studies} == {patients[k].study_uid for k in keys}


def test_bad_dates_and_empty_queries_are_told(qtbot, orthanc, cache) -> None:
    dialog = make_dialog(qtbot, [dicomweb_config(orthanc)], cache)
    dialog.date_from.setText("14/10/2026")
    dialog.search()
    assert "not a date" in dialog.status.text()
    dialog.date_from.clear()
    dialog.search()
    assert "Give a patient ID" in dialog.status.text()


def test_cancel_leaves_nothing(qtbot, orthanc, patients, cache) -> None:
    dialog = make_dialog(qtbot, [dimse_config(orthanc)], cache)
    search(qtbot, dialog, patient_id=PATIENT_ID)
    dialog.results.selectRow(0)
    dialog.open_selected()
    dialog.cancel()
    qtbot.waitUntil(lambda: dialog._current_job is None, timeout=WAIT_MS)
    assert "Cancelled" in dialog.status.text()
    assert_cache_clean(cache)


def test_a_server_that_went_away_is_reported(qtbot, private_orthanc, cache) -> None:
    server = private_orthanc()
    dialog = make_dialog(qtbot, [dicomweb_config(server)], cache)
    server.stop()
    search(qtbot, dialog, patient_id=PATIENT_ID)
    assert "cannot connect" in dialog.status.text()
    assert dialog.search_button.isEnabled()


def test_no_server_configured(qtbot, cache) -> None:
    dialog = make_dialog(qtbot, [], cache)
    assert "No PACS server is configured" in dialog.status.text()
    assert not dialog.search_button.isEnabled()


def test_server_settings_save_and_test(qtbot, orthanc) -> None:
    store = ServerStore()
    widget = ServerSettingsWidget(store)
    qtbot.addWidget(widget)
    widget._add()
    widget.name.setText("hospital")
    widget.protocol.setCurrentIndex(widget.protocol.findData("dicomweb"))
    widget.base_url.setText(orthanc.dicomweb_url)
    widget.auth.setCurrentIndex(widget.auth.findData("basic"))
    widget.username.setText(orthanc.username)
    widget.secret.setText(orthanc.password)
    assert widget.save_current()
    saved = store.get("hospital")
    assert saved is not None and saved.base_url == orthanc.dicomweb_url
    assert orthanc.password not in store.path.read_text()
    assert get_secret(saved) == orthanc.password
    qtbot.mouseClick(widget.test_button, QtCore.Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: widget.test_button.isEnabled(), timeout=WAIT_MS)
    assert widget.status.text() == "hospital: the server answers."
    # A DIMSE server beside it, with a wrong AE title: the test says so.
    widget._add()
    widget.name.setText("modality")
    widget.protocol.setCurrentIndex(widget.protocol.findData("dimse"))
    widget.host.setText("127.0.0.1")
    widget.port.setValue(orthanc.dicom_port)
    widget.called_ae.setText("WRONGAE")
    assert widget.save_current()
    assert [s.name for s in store.load()] == ["hospital", "modality"]
    widget.test_connection()
    qtbot.waitUntil(lambda: widget.test_button.isEnabled(), timeout=WAIT_MS)
    assert "refused the association" in widget.status.text()
    widget.port.setValue(1)
    widget.host.clear()
    assert not widget.save_current()
    assert "needs a host" in widget.status.text()


def test_install_pacs_adds_the_menu_entries_and_opens_into_the_window(
    qtbot, orthanc, patients, cache, monkeypatch
) -> None:
    class Window(QtWidgets.QMainWindow):
        def __init__(self) -> None:
            super().__init__()
            self.opened: list = []
            file_menu = self.menuBar().addMenu("&File")
            file_menu.addAction("Open folder…")
            file_menu.addSeparator()
            file_menu.addAction("Quit")

        def open_paths(self, paths) -> None:
            self.opened.append(list(paths))

    config = dicomweb_config(orthanc)
    ServerStore().put(config)
    window = Window()
    qtbot.addWidget(window)
    actions = install_pacs(window)
    titles = [a.text() for a in window.menuBar().actions()[0].menu().actions()]
    assert titles[:3] == ["Open folder…", "Open from &PACS…", "PACS &servers…"]
    monkeypatch.setattr(
        "app.ui.pacs.open_dialog.PacsTasks", lambda parent: PacsTasks(parent, cache)
    )
    actions.open_action.trigger()
    dialog = actions.dialog
    assert dialog is not None and dialog.isVisible()
    dialog.n_priors.setValue(0)
    search(qtbot, dialog, accession="ACC-25")
    dialog.open_selected()
    qtbot.waitUntil(lambda: len(window.opened) == 1, timeout=WAIT_MS)
    prior = patients["prior1"]
    assert window.opened == [[cache.study_folder(prior.study_uid) / prior.series_uids[0]]]
    actions.servers_action.trigger()
    assert actions.servers_dialog is not None and actions.servers_dialog.isVisible()
    actions.servers_dialog.close()
    dialog.close()
