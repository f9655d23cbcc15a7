"""Window/level presets: keys 1-5, the View ▸ Window presets menu and the toolbar combo.

The user's presets live in the preferences (defaults unless customised);
every preset applied reads them, and the menu and combo show the values a
preset applies now.
"""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from app.core.imaging import Window
from app.ui.settings.preferences import Preferences
from app.ui.viewer.seams import ViewportSet

__all__ = ["PRESET_KEYS", "PresetControls"]

# Keys 1-5 select these presets, in this order (also the toolbar combo's order).
PRESET_KEYS: tuple[str, ...] = ("lung", "mediastinum", "abdomen", "bone", "brain")
_CUSTOM = "Custom"


class PresetControls(QtCore.QObject):
    """The preset actions, the "save current window as" actions and the toolbar combo.

    Parameters
    ----------
    viewports
        The viewports presets apply to (the target one; linked ones follow).
    preferences
        Where the user's presets persist.
    """

    def __init__(
        self, viewports: ViewportSet, preferences: Preferences, parent: QtCore.QObject
    ) -> None:
        super().__init__(parent)
        self.viewports = viewports
        self.preferences = preferences
        self.window_presets: dict[str, Window] = preferences.window_presets()
        self.preset_actions: dict[str, QtGui.QAction] = {}
        self.save_preset_actions: dict[str, QtGui.QAction] = {}
        for i, name in enumerate(PRESET_KEYS, start=1):
            action = QtGui.QAction(name.capitalize(), self)
            action.setShortcut(QtGui.QKeySequence(str(i)))
            action.triggered.connect(lambda _=False, n=name: self.apply_preset(n))
            self.preset_actions[name] = action
            save = QtGui.QAction(f"{name.capitalize()}…", self)
            save.triggered.connect(lambda _=False, n=name: self.save_window_as_preset(n))
            self.save_preset_actions[name] = save
        self.reset_presets_action = QtGui.QAction("Reset presets to defaults", self)
        self.reset_presets_action.triggered.connect(self.reset_window_presets)

        self.combo = QtWidgets.QComboBox()
        self.combo.setToolTip("Window preset (keys 1-5)")
        self.combo.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        for i, name in enumerate(PRESET_KEYS, start=1):
            self.combo.addItem(f"{i} {name.capitalize()}", name)
        self.combo.addItem(_CUSTOM, None)
        # Viewports open in the mediastinal window (ViewportState's default).
        self.combo.setCurrentIndex(self.combo.findData("mediastinum"))
        self.combo.activated.connect(self._on_combo)
        self._label_presets()

    def fill_menu(self, menu: QtWidgets.QMenu) -> None:
        """Add the presets, a "Save current window as" submenu and the reset to ``menu``."""
        for action in self.preset_actions.values():
            menu.addAction(action)
        menu.addSeparator()
        self.save_menu = menu.addMenu("&Save current window as")
        for action in self.save_preset_actions.values():
            self.save_menu.addAction(action)
        # Saving needs a viewport whose window to take.
        self.save_menu.aboutToShow.connect(self._enable_save_presets)
        menu.addAction(self.reset_presets_action)

    def apply_preset(self, name: str) -> None:
        """Apply the user's window preset ``name`` to the target viewport (linked ones follow)."""
        view = self.viewports.target_view()
        if view is not None:
            view.state.set_window(self.window_presets[name])

    def save_window_as_preset(self, name: str) -> None:
        """Store the target viewport's current W/L as the preset ``name`` (kept between sessions)."""
        view = self.viewports.target_view()
        if view is None:
            return
        self.preferences.set_window_preset(name, view.state.window)
        self._reload_presets()

    def reset_window_presets(self) -> None:
        """Put every window preset back to its default value."""
        self.preferences.reset_window_presets()
        self._reload_presets()

    def show_window_of(self, window: Window) -> None:
        """Select the combo entry naming ``window`` (or "Custom")."""
        name = next((n for n in PRESET_KEYS if self.window_presets[n] == window), None)
        index = self.combo.findData(name) if name else self.combo.count() - 1
        self.combo.setCurrentIndex(index)

    def _reload_presets(self) -> None:
        self.window_presets = self.preferences.window_presets()
        self._label_presets()
        active = self.viewports.active_view
        if active is not None:
            self.show_window_of(active.state.window)

    def _label_presets(self) -> None:
        # Menu entries and combo tooltips show the values a preset applies now.
        for i, name in enumerate(PRESET_KEYS, start=1):
            w = self.window_presets[name]
            values = f"W {w.width:.0f} L {w.center:.0f}"
            self.preset_actions[name].setText(f"{name.capitalize()} ({values})")
            self.save_preset_actions[name].setText(f"{name.capitalize()} ({values})…")
            index = self.combo.findData(name)
            self.combo.setItemData(
                index,
                f"{name.capitalize()}: {values} (key {i})",
                QtCore.Qt.ItemDataRole.ToolTipRole,
            )

    def _enable_save_presets(self) -> None:
        enabled = self.viewports.target_view() is not None
        for action in self.save_preset_actions.values():
            action.setEnabled(enabled)

    def _on_combo(self, index: int) -> None:
        name = self.combo.itemData(index)
        if name:
            self.apply_preset(name)
