"""The one place the main window meets the PACS features.

The coordinator (or the main window's owner) calls :func:`install_pacs` once
the window's menus exist::

    from app.ui.pacs.hooks import install_pacs
    install_pacs(window)                         # File menu found by its title
    install_pacs(window, file_menu=self.file_menu)

and, for a Preferences dialog with pages, adds :func:`pacs_preferences_page`
as its "PACS" page. Studies opened from the PACS reach
``window.open_paths(folders)``: the viewer's normal loading path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6 import QtGui, QtWidgets

from app.pacs.servers import ServerStore
from app.ui.pacs.open_dialog import OpenFromPacsDialog
from app.ui.pacs.server_settings import ServerSettingsWidget

__all__ = ["PacsActions", "install_pacs", "pacs_preferences_page"]


def pacs_preferences_page(parent: QtWidgets.QWidget | None = None) -> ServerSettingsWidget:
    """The PACS servers page of Preferences (a widget to put in the dialog)."""
    return ServerSettingsWidget(ServerStore(), parent)


@dataclass
class PacsActions:
    """What :func:`install_pacs` added: the two menu actions, and the open dialog while shown."""

    open_action: QtGui.QAction
    servers_action: QtGui.QAction
    dialog: OpenFromPacsDialog | None = None
    servers_dialog: QtWidgets.QDialog | None = None


def _file_menu(window: QtWidgets.QMainWindow) -> QtWidgets.QMenu:
    for action in window.menuBar().actions():
        menu = action.menu()
        if isinstance(menu, QtWidgets.QMenu) and action.text().replace("&", "") == "File":
            return menu
    return window.menuBar().addMenu("&File")


def install_pacs(
    window: QtWidgets.QMainWindow, file_menu: QtWidgets.QMenu | None = None
) -> PacsActions:
    """Add File ▸ Open from PACS… and File ▸ PACS servers… to ``window``.

    Parameters
    ----------
    window
        The main window; it must have ``open_paths(paths)``.
    file_menu
        The menu to add to (default: the menu bar's "File" menu).
    """
    menu = file_menu or _file_menu(window)
    open_action = QtGui.QAction("Open from &PACS…", window)
    open_action.setShortcut(QtGui.QKeySequence("Ctrl+Shift+P"))
    servers_action = QtGui.QAction("PACS &servers…", window)
    actions = PacsActions(open_action, servers_action)
    # After the local "Open" entries, before the recent list and exports.
    anchor = next((a for a in menu.actions() if a.menu() is not None or a.isSeparator()), None)
    # Qt appends when the anchor is None; the stub does not allow None.
    menu.insertAction(anchor, open_action)  # type: ignore[arg-type]
    menu.insertAction(anchor, servers_action)  # type: ignore[arg-type]

    def open_dialog() -> None:
        if actions.dialog is not None and actions.dialog.isVisible():
            actions.dialog.raise_()
            actions.dialog.activateWindow()
            return
        dialog = OpenFromPacsDialog(window)
        dialog.folders_ready.connect(lambda folders: _open(window, folders))
        dialog.finished.connect(lambda _r: dialog.deleteLater())
        actions.dialog = dialog
        # Not modal: the priors keep arriving while the user reads the current study.
        dialog.show()

    def servers_dialog() -> None:
        dialog = QtWidgets.QDialog(window)
        dialog.setWindowTitle("PACS servers")
        layout = QtWidgets.QVBoxLayout(dialog)
        layout.addWidget(pacs_preferences_page(dialog))
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(dialog.reject)
        layout.addWidget(buttons)
        dialog.resize(760, 480)
        actions.servers_dialog = dialog
        dialog.finished.connect(lambda _r: dialog.deleteLater())
        dialog.show()

    open_action.triggered.connect(open_dialog)
    servers_action.triggered.connect(servers_dialog)
    return actions


def _open(window: QtWidgets.QMainWindow, folders: list[Path]) -> None:
    # The main window's open_paths: this package may not import app.ui.shell (a
    # contract), so the type names the QMainWindow only.
    window.open_paths(folders)  # type: ignore[attr-defined]
