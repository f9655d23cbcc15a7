"""Keys go back to the active viewport when the main window becomes active again."""

from __future__ import annotations

from collections.abc import Callable

from PySide6 import QtCore, QtGui, QtWidgets

from app.ui.viewer.seams import ViewportSet

__all__ = ["FocusReturn"]


class FocusReturn(QtCore.QObject):
    """Gives the keyboard back to the active viewport after a dialog or a message box.

    Parameters
    ----------
    window
        The main window (its native window is the one that must become active).
    viewports
        The viewports on screen and the active one.
    holds_focus
        True for a widget the user is typing or choosing in (the docks): it keeps the keys.
    """

    def __init__(
        self,
        window: QtWidgets.QMainWindow,
        viewports: ViewportSet,
        holds_focus: Callable[[QtWidgets.QWidget | None], bool],
    ) -> None:
        super().__init__(window)
        self._window = window
        self._viewports = viewports
        self._holds_focus = holds_focus
        app = QtWidgets.QApplication.instance()
        if isinstance(app, QtGui.QGuiApplication):
            app.focusWindowChanged.connect(self._on_focus_window)

    def _on_focus_window(self, window: QtGui.QWindow | None) -> None:
        # Back from a dialog or a message box: keys go to the active viewport again,
        # unless the user is typing or choosing in a dock.
        if window is None or window is not self._window.windowHandle():
            return
        QtCore.QTimer.singleShot(0, self.focus_active_view)

    def focus_active_view(self) -> None:
        """Give the keyboard to the active viewport unless a dock or another control has it."""
        view = self._viewports.active_view
        focus = QtWidgets.QApplication.focusWidget()
        if view is not None and not self._holds_focus(focus) and focus is not view:
            view.setFocus(QtCore.Qt.FocusReason.OtherFocusReason)
