"""The main window's geometry and dock layout, kept between starts."""

from __future__ import annotations

from PySide6 import QtWidgets

from app.ui.settings.preferences import Preferences
from app.ui.viewer.layouts import Layout

__all__ = ["restore_window", "save_window"]


def restore_window(window: QtWidgets.QMainWindow, preferences: Preferences) -> Layout:
    """Put ``window`` back where it was (geometry, docks, toolbar); the viewport layout to use."""
    geometry = preferences.window_geometry()
    if geometry is not None:
        window.restoreGeometry(geometry)
    state = preferences.window_state()
    if state is not None:
        window.restoreState(state)
    return Layout.parse(preferences.layout())


def save_window(window: QtWidgets.QMainWindow, preferences: Preferences) -> None:
    """Keep ``window``'s geometry and its docks' and toolbar's state for the next start."""
    preferences.set_window_geometry(window.saveGeometry())
    preferences.set_window_state(window.saveState())
    preferences.sync()
