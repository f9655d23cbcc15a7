"""Preferences persist between windows (in the temporary store conftest sets up)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import FakeBackend, three_dates
from PySide6 import QtCore, QtGui, QtWidgets

from app.core.imaging import PRESETS, Window
from app.core.state import Channel
from app.ui.loading.loader import Loader
from app.ui.settings.preferences import MAX_RECENT, Preferences
from app.ui.shell.about import LICENCES
from app.ui.shell.main_window import MainWindow


def _new_window(qtbot) -> MainWindow:
    win = MainWindow(Loader(FakeBackend(three_dates())))
    qtbot.addWidget(win)
    return win


def test_settings_live_in_the_temporary_folder(_private_settings):
    prefs = Preferences()
    prefs.set_saliency_opacity(42)
    prefs.sync()
    files = list(Path(_private_settings).rglob("*.ini"))
    assert [f.name for f in files] == ["priorsync.ini"]
    assert files[0].parent.name == "PriorSync"


def test_toggles_and_overlay_settings_come_back_in_a_new_window(qtbot):
    first = _new_window(qtbot)
    assert first.link_window_action.isChecked()  # defaults before anything is saved
    assert first.opacity_slider.value() == 50
    first.link_window_action.setChecked(False)
    first.link_camera_action.setChecked(False)
    first.sync_slices_action.trigger()  # the user switches slice sync on...
    first.sync_slices_action.trigger()  # ...and off again
    first.opacity_slider.setValue(30)
    other = next(
        i for i in range(first.colormap_combo.count()) if i != first.colormap_combo.currentIndex()
    )
    first.colormap_combo.setCurrentIndex(other)
    colormap = first.colormap_combo.currentData()
    first.close()

    second = _new_window(qtbot)
    assert not second.link_window_action.isChecked()
    assert not second.sync.enabled[Channel.VOI]
    assert not second.link_camera_action.isChecked()
    assert not second.sync.enabled[Channel.CAMERA]
    # The user's "off" survives the automatic switch-on when indexes are ready.
    second.anatomy.ready_changed.emit(True)
    assert not second.sync.enabled[Channel.SLICE]
    assert second.opacity_slider.value() == 30
    assert second.colormap_combo.currentData() == colormap
    second.close()


def test_geometry_and_dock_state_are_restored(qtbot):
    first = _new_window(qtbot)
    first.show()
    qtbot.waitExposed(first)
    first.resize(700, 500)  # fits the 800x600 offscreen screen
    first.browser.hide()
    saved = first.size()
    assert saved != QtCore.QSize(1400, 850)  # not the default size
    first.close()

    second = _new_window(qtbot)
    assert second.size() == saved
    assert second.browser.isHidden()
    second.close()


def test_bad_stored_values_fall_back_to_defaults(qtbot):
    prefs = Preferences()
    settings = QtCore.QSettings(
        QtCore.QSettings.defaultFormat(), QtCore.QSettings.Scope.UserScope, "PriorSync", "priorsync"
    )
    settings.setValue("saliency/opacity", "lots")
    settings.setValue("saliency/colormap", "no-such-map")
    settings.setValue("sync/linkWindow", "maybe")
    settings.setValue("window/geometry", "junk")
    settings.sync()
    assert prefs.saliency_opacity() is None and prefs.link_window() is None
    win = _new_window(qtbot)
    assert win.opacity_slider.value() == 50
    assert win.link_window_action.isChecked()
    assert win.colormap_combo.currentIndex() >= 0


def test_recent_list_is_most_recent_first_unique_and_bounded():
    prefs = Preferences()
    for i in range(MAX_RECENT + 3):
        prefs.add_recent_path(f"/p/{i}")
    prefs.add_recent_path("/p/5")
    recent = prefs.recent_paths()
    assert len(recent) == MAX_RECENT
    assert recent[:3] == ["/p/5", f"/p/{MAX_RECENT + 2}", f"/p/{MAX_RECENT + 1}"]
    assert len(set(recent)) == len(recent)


def _recent_entries(win: MainWindow) -> list[QtGui.QAction]:
    win.opening.recent_menu.aboutToShow.emit()
    return [a for a in win.opening.recent_menu.actions() if not a.isSeparator()]


def test_open_recent_lists_reopens_and_clears(qtbot, tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    gone = tmp_path / "gone"
    gone.mkdir()
    win = _new_window(qtbot)
    win.open_paths([gone])
    win.open_paths([folder])
    win.open_paths([gone])  # opened again: moves up, not listed twice
    qtbot.waitUntil(lambda: not win.loader.is_busy, timeout=5000)
    gone.rmdir()  # deleted since: dropped when the menu is shown
    entries = _recent_entries(win)
    assert [a.text() for a in entries] == [str(folder), "Clear list"]
    assert Preferences().recent_paths() == [str(folder)]

    opened: list[list[Path]] = []
    win.open_paths = lambda paths: opened.append([Path(p) for p in paths])
    entries[0].trigger()
    assert opened == [[folder]]

    entries[-1].trigger()  # Clear list
    entries = _recent_entries(win)
    assert [a.text() for a in entries] == ["Clear list"]
    assert not entries[0].isEnabled()
    assert Preferences().recent_paths() == []

    # A new window lists what an earlier one opened.
    win.open_paths = MainWindow.open_paths.__get__(win)
    win.open_paths([folder])
    assert [a.text() for a in _recent_entries(_new_window(qtbot))] == [str(folder), "Clear list"]


def test_open_dialogs_start_in_the_last_folder(qtbot, tmp_path, monkeypatch):
    win = _new_window(qtbot)
    seen: list[str] = []
    monkeypatch.setattr(
        QtWidgets.QFileDialog,
        "getExistingDirectory",
        lambda _parent, _title, start: seen.append(start) or str(tmp_path),
    )
    monkeypatch.setattr(win, "open_paths", lambda paths: None)
    win.opening.open_folder_dialog()
    win.opening.open_folder_dialog()
    assert seen == ["", str(tmp_path)]
    monkeypatch.setattr(
        QtWidgets.QFileDialog,
        "getOpenFileNames",
        lambda _parent, _title, start, _filter: (
            seen.append(start) or [str(tmp_path / "sub" / "a.nrrd")],
            "",
        ),
    )
    win.opening.open_files_dialog()
    assert seen[-1] == str(tmp_path)
    assert Preferences().last_folder() == str(tmp_path / "sub")


def test_about_lists_the_licences(qtbot):
    win = _new_window(qtbot)
    text = win.about_text()
    assert "PriorSync" in text and "Model:" in text  # the version/model lines stay
    for name, _use, licence in LICENCES:
        assert f"<td>{name}</td>" in text and licence in text
    assert "totalsegmentator 2.18.0" in text and "LGPLv3" in text


def test_a_customised_preset_applies_by_its_key_and_survives_into_a_new_window(hung, qtbot):
    state = hung.active_view.state
    custom = Window(-500, 1200)
    state.set_window(custom)
    hung.presets.save_window_as_preset("lung")
    assert hung.preset_actions["lung"].text() == "Lung (W 1200 L -500)"
    assert hung.preset_combo.currentData() == "lung"  # the custom window is now the preset

    state.set_window(PRESETS["bone"])
    lung_key = hung.preset_actions["lung"]
    assert lung_key.shortcut() == QtGui.QKeySequence("1")
    lung_key.trigger()
    assert state.window == custom
    state.set_window(PRESETS["bone"])
    hung.presets.combo.activated.emit(hung.preset_combo.findData("lung"))
    assert state.window == custom

    second = _new_window(qtbot)
    assert second.presets.window_presets["lung"] == custom
    assert (
        second.presets.window_presets["bone"] == PRESETS["bone"]
    )  # the others keep their defaults
    assert second.preset_actions["lung"].text() == "Lung (W 1200 L -500)"
    tooltip = second.preset_combo.itemData(
        second.preset_combo.findData("lung"), QtCore.Qt.ItemDataRole.ToolTipRole
    )
    assert "W 1200 L -500" in tooltip
    second.close()


def test_save_current_window_menu_lists_every_preset(hung):
    menu = hung.presets.save_menu
    assert [a.text() for a in menu.actions()] == [
        a.text() + "…" for a in hung.preset_actions.values()
    ]
    menu.aboutToShow.emit()
    assert all(a.isEnabled() for a in menu.actions())


def test_reset_restores_the_default_presets(hung, qtbot):
    state = hung.active_view.state
    state.set_window(Window(10, 20))
    hung.presets.save_window_as_preset("brain")
    assert Preferences().window_presets()["brain"] == Window(10, 20)

    hung.presets.reset_presets_action.trigger()
    assert hung.presets.window_presets == PRESETS
    assert Preferences().window_presets() == PRESETS
    assert hung.preset_actions["brain"].text() == "Brain (W 80 L 40)"
    state.set_window(PRESETS["lung"])
    hung.preset_actions["brain"].trigger()
    assert state.window == PRESETS["brain"]


def test_invalid_stored_presets_fall_back_to_their_defaults(qtbot):
    settings = QtCore.QSettings(
        QtCore.QSettings.defaultFormat(), QtCore.QSettings.Scope.UserScope, "PriorSync", "priorsync"
    )
    settings.setValue("presets/lung/center", "deep")  # not a number
    settings.setValue("presets/lung/width", 1000)
    settings.setValue("presets/bone/center", 300)
    settings.setValue("presets/bone/width", 0.5)  # narrower than Window allows
    settings.setValue("presets/brain/center", "nan")
    settings.setValue("presets/brain/width", 90)
    settings.setValue("presets/abdomen/center", 60)  # width missing
    settings.setValue("presets/mediastinum/center", "45")  # ini strings that are numbers are fine
    settings.setValue("presets/mediastinum/width", "450")
    settings.sync()

    presets = Preferences().window_presets()
    assert list(presets) == list(PRESETS)
    for name in ("lung", "bone", "brain", "abdomen"):
        assert presets[name] == PRESETS[name]
    assert presets["mediastinum"] == Window(45, 450)
    win = _new_window(qtbot)
    assert win.preset_actions["lung"].text() == "Lung (W 1500 L -600)"
    win.close()


def test_only_known_presets_can_be_stored():
    with pytest.raises(KeyError, match="unknown window preset"):
        Preferences().set_window_preset("liver", Window(60, 150))
