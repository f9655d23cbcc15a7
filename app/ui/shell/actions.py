"""The main window's menus and toolbar, built from the actions its parts own.

Parts own their actions (the presets, the link toggles, the saliency toggle);
this module owns the window-level ones (open, export, reset, cancel, layout,
help) and puts all of them in the menus and the toolbar, in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from PySide6 import QtCore, QtGui, QtWidgets

from app.ui.export.actions import ExportActions
from app.ui.resources import icon
from app.ui.saliency.scheduler import SaliencyScheduler
from app.ui.shell.opening import OpenCommands
from app.ui.sync.wiring import SyncWiring
from app.ui.viewer.layouts import Layout
from app.ui.viewer.presets import PresetControls
from app.ui.viewer.viewport_menu import ViewportCommands

__all__ = ["MenuParts", "WindowActions", "WindowCommands"]


class WindowCommands(Protocol):
    """The window-level commands the actions trigger."""

    def close(self) -> bool: ...

    def reset_view(self) -> None: ...

    def cancel_loading(self) -> None: ...

    def set_layout(self, layout: Layout) -> None: ...

    def show_about(self) -> None: ...

    def show_controls(self) -> None: ...


@dataclass
class MenuParts:
    """The window's parts whose actions go into the menus and toolbar."""

    opening: OpenCommands
    exports: ExportActions
    presets: PresetControls
    wiring: SyncWiring
    saliency: SaliencyScheduler
    viewport_commands: ViewportCommands
    docks: list[QtWidgets.QDockWidget]
    sketch_toggle: QtGui.QAction


def _action(
    parent: QtCore.QObject,
    text: str,
    slot: Callable[[], object],
    icon_name: str | None = None,
    shortcut: QtGui.QKeySequence | QtGui.QKeySequence.StandardKey | str | None = None,
) -> QtGui.QAction:
    action = QtGui.QAction(text, parent)
    if icon_name:
        action.setIcon(icon(icon_name))
    if shortcut is not None:
        action.setShortcut(QtGui.QKeySequence(shortcut))
    action.triggered.connect(lambda _=False: slot())
    return action


class WindowActions:
    """Builds the window's own actions, the File/View/Layout/Help menus and the toolbar."""

    def __init__(
        self, window: QtWidgets.QMainWindow, commands: WindowCommands, parts: MenuParts
    ) -> None:
        keys = QtGui.QKeySequence.StandardKey
        opening, exports = parts.opening, parts.exports
        self.open_folder_action = _action(
            window, "Open &folder…", opening.open_folder_dialog, "open-folder", keys.Open
        )
        self.open_files_action = _action(
            window, "Open f&iles…", opening.open_files_dialog, "open-files", "Ctrl+Shift+O"
        )
        quit_action = _action(window, "&Quit", commands.close, shortcut=keys.Quit)
        self.export_action = _action(
            window, "&Export matched slices…", exports.export_pair_dialog, "export", "Ctrl+E"
        )
        self.export_action.setIconText("Export")  # the toolbar's short label
        self.export_action.setToolTip(
            "Save the synced slices side by side as one image, captioned (Ctrl+E)"
        )
        self.batch_export_action = _action(
            window, "Export a slice &range…", exports.export_batch_dialog, shortcut="Ctrl+Shift+E"
        )
        self.reset_action = _action(window, "&Reset view", commands.reset_view, "reset-view", "R")
        self.cancel_action = _action(window, "Cancel loading", commands.cancel_loading, "cancel")
        self.cancel_action.setEnabled(False)
        # Only while something loads: a greyed "cancel" at rest reads as a control
        # that should work and does not.
        self.cancel_action.setVisible(False)
        self.layout_group = QtGui.QActionGroup(window)
        self.layout_actions: dict[Layout, QtGui.QAction] = {}
        for layout, shortcut in ((Layout.ROW, "Ctrl+1"), (Layout.GRID, "Ctrl+2")):
            action = _action(
                window, layout.label, partial(commands.set_layout, layout), shortcut=shortcut
            )
            action.setCheckable(True)
            action.setIconText(layout.value.replace("x", "×"))
            action.setToolTip(f"Hang the dates {layout.label} ({shortcut})")
            self.layout_group.addAction(action)
            self.layout_actions[layout] = action

        menu_bar = window.menuBar()
        file_menu = menu_bar.addMenu("&File")
        file_menu.addAction(self.open_folder_action)
        file_menu.addAction(self.open_files_action)
        file_menu.addMenu(opening.recent_menu)
        file_menu.addSeparator()
        file_menu.addAction(self.export_action)
        file_menu.addAction(self.batch_export_action)
        file_menu.addSeparator()
        file_menu.addAction(quit_action)
        view_menu = menu_bar.addMenu("&View")
        self.view_menu = view_menu  # tools add their toggles (the linked cursor)
        view_menu.addAction(self.reset_action)
        parts.presets.fill_menu(view_menu.addMenu("Window &presets"))
        view_menu.addSeparator()
        for action, _ in parts.wiring.link_actions():
            view_menu.addAction(action)
        view_menu.addAction(parts.saliency.action)
        commands_ = parts.viewport_commands
        view_menu.addAction(commands_.crosshair_action)
        view_menu.addAction(commands_.next_action)
        view_menu.addAction(commands_.previous_action)
        view_menu.addSeparator()
        for dock in parts.docks:
            view_menu.addAction(dock.toggleViewAction())
        self.sketch_action = parts.sketch_toggle
        view_menu.addAction(self.sketch_action)
        layout_menu = menu_bar.addMenu("&Layout")
        for action in self.layout_actions.values():
            layout_menu.addAction(action)
        help_menu = menu_bar.addMenu("&Help")
        help_menu.addAction(
            _action(window, "&Mouse and keys…", commands.show_controls, shortcut=keys.HelpContents)
        )
        self.about_action = _action(window, "&About PriorSync…", commands.show_about)
        help_menu.addAction(self.about_action)

        toolbar = window.addToolBar("Main")
        toolbar.setObjectName("mainToolbar")
        toolbar.setMovable(False)
        toolbar.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        toolbar.addAction(self.open_folder_action)
        toolbar.addAction(self.open_files_action)
        toolbar.addAction(self.export_action)
        toolbar.addSeparator()
        toolbar.addWidget(parts.presets.combo)
        toolbar.addAction(self.reset_action)
        toolbar.addSeparator()
        for action in self.layout_actions.values():
            toolbar.addAction(action)
        toolbar.addSeparator()
        for action, _ in parts.wiring.link_actions():
            toolbar.addAction(action)
        toolbar.addSeparator()
        toolbar.addAction(parts.saliency.action)
        toolbar.addWidget(parts.saliency.opacity_slider)
        toolbar.addWidget(parts.saliency.colormap_combo)
        toolbar.addSeparator()
        toolbar.addAction(self.cancel_action)
        self.toolbar = toolbar
        presets_menu = QtWidgets.QMenu("Window presets", window)
        for action in parts.presets.preset_actions.values():
            presets_menu.addAction(action)
        # Every viewport's context menu: presets, sync, saliency, export (after its plane).
        commands_.menu_groups = [
            [presets_menu, self.reset_action],
            [action for action, _ in parts.wiring.link_actions()],
            [parts.saliency.action],
            [self.export_action, self.batch_export_action],
        ]
