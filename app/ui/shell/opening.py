"""File ▸ Open folder / Open files / Open recent, and drag and drop onto the window.

Widgets never read files: these commands only collect paths and hand them to
the window's :meth:`open_paths`, which scans them in the loader's worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from PySide6 import QtCore, QtWidgets

from app.ui.settings.preferences import Preferences

__all__ = ["OpenCommands", "PathOpener", "local_paths"]

_FILE_FILTER = "CT images (*.dcm *.nii *.nii.gz *.nrrd *.nhdr *.mha *.mhd);;All files (*)"


class PathOpener(Protocol):
    """What opens paths: the main window."""

    def open_paths(self, paths: Sequence[Path | str]) -> None:
        """Scan ``paths`` in the background and hang what they hold."""
        ...


class OpenCommands(QtCore.QObject):
    """The open dialogs and the recent-paths menu.

    Parameters
    ----------
    opener
        Where chosen paths go.
    preferences
        The last folder and the recent paths.
    dialog_parent
        The widget the file dialogs are centred on.
    """

    def __init__(
        self, opener: PathOpener, preferences: Preferences, dialog_parent: QtWidgets.QWidget
    ) -> None:
        super().__init__(dialog_parent)
        self.opener = opener
        self.preferences = preferences
        self.parent_widget = dialog_parent
        self.recent_menu = QtWidgets.QMenu("Open &recent", dialog_parent)
        # Rebuilt each time it opens, so paths deleted meanwhile drop out.
        self.recent_menu.aboutToShow.connect(self.rebuild_recent_menu)
        self.rebuild_recent_menu()

    def open_folder_dialog(self) -> None:
        """Ask for a DICOM folder and open it."""
        folder = QtWidgets.QFileDialog.getExistingDirectory(
            self.parent_widget, "Open DICOM folder", self.preferences.last_folder()
        )
        if folder:
            self.preferences.set_last_folder(folder)
            self.opener.open_paths([folder])

    def open_files_dialog(self) -> None:
        """Ask for CT files and open them."""
        files, _ = QtWidgets.QFileDialog.getOpenFileNames(
            self.parent_widget, "Open files", self.preferences.last_folder(), _FILE_FILTER
        )
        if files:
            self.preferences.set_last_folder(Path(files[0]).parent)
            self.opener.open_paths(files)

    def rebuild_recent_menu(self) -> None:
        """Fill File ▸ Open recent from the preferences, dropping paths that no longer exist."""
        recent = self.preferences.recent_paths()
        existing = [p for p in recent if Path(p).exists()]
        if existing != recent:
            self.preferences.set_recent_paths(existing)
        menu = self.recent_menu
        menu.clear()
        for path in existing:
            action = menu.addAction(path.replace("&", "&&"))  # no mnemonics in paths
            action.triggered.connect(lambda _=False, p=path: self.opener.open_paths([p]))
        if existing:
            menu.addSeparator()
        clear = menu.addAction("Clear list", self.clear_recent)
        clear.setEnabled(bool(existing))

    def clear_recent(self) -> None:
        """Forget the recently opened folders and files."""
        self.preferences.set_recent_paths([])
        self.rebuild_recent_menu()


def local_paths(mime: QtCore.QMimeData) -> list[Path]:
    """The local files and folders of a drag (URLs elsewhere are ignored)."""
    if not mime.hasUrls():
        return []
    return [Path(url.toLocalFile()) for url in mime.urls() if url.isLocalFile()]
