"""What happens when viewports come, go, change or become active: the parts are told.

The hanging adds and removes viewports; :class:`ViewEvents` attaches each new
one to the sync wiring and the viewport commands, re-schedules the saliency
overlay when what a viewport shows changes, and keeps the preset box showing
the active viewport's window.
"""

from __future__ import annotations

from typing import Protocol

from PySide6 import QtCore

from app.core.state import Channel, SyncGroup
from app.ui.saliency.overlay import SaliencyOverlay
from app.ui.saliency.scheduler import SaliencyScheduler
from app.ui.sync.wiring import SyncWiring
from app.ui.viewer.hanging_controller import HangingController
from app.ui.viewer.presets import PresetControls
from app.ui.viewer.viewport import ViewportView
from app.ui.viewer.viewport_menu import ViewportCommands

__all__ = ["ViewEventParts", "ViewEvents"]


class ViewEventParts(Protocol):
    """The window's parts :class:`ViewEvents` routes events between (the main window)."""

    hanging: HangingController
    sync: SyncGroup
    wiring: SyncWiring
    viewport_commands: ViewportCommands
    saliency: SaliencyOverlay
    saliency_view: SaliencyScheduler
    presets: PresetControls


class ViewEvents(QtCore.QObject):
    """Routes the hanging's and the sync group's events to the parts that follow them.

    Parameters
    ----------
    parts
        The slots and viewports (``hanging``: added, removed and active), the
        sync group (its toggles) and the parts told about viewports.
    parent
        The window (owner of this object).
    """

    def __init__(self, parts: ViewEventParts, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self._hanging = parts.hanging
        self._wiring = parts.wiring
        self._commands = parts.viewport_commands
        self._saliency = parts.saliency
        self._scheduler = parts.saliency_view
        self._presets = parts.presets
        parts.wiring.driven.connect(parts.saliency_view.schedule)
        parts.sync.toggled.connect(self._on_sync_toggled)
        parts.hanging.view_added.connect(self._on_view_added)
        parts.hanging.view_removed.connect(self._on_view_removed)
        parts.hanging.active_changed.connect(self._on_active_changed)

    def _on_view_added(self, view: ViewportView) -> None:
        view.state.changed.connect(self._on_viewport_changed)
        view.plane_changed.connect(lambda _v: self._scheduler.schedule())
        self._wiring.attach(view)
        self._commands.attach(view)

    def _on_view_removed(self, view: ViewportView) -> None:
        self._wiring.detach(view)
        self._commands.forget(view)
        view.state.changed.disconnect(self._on_viewport_changed)
        self._saliency.forget(view.state.volume)

    def _on_active_changed(self, view: ViewportView | None) -> None:
        if view is not None:
            self._presets.show_window_of(view.state.window)

    def _on_viewport_changed(self, what: str) -> None:
        if what in ("slice", "match", "window"):
            self._scheduler.schedule()
        active = self._hanging.active_view
        if what == "window" and active is not None:
            self._presets.show_window_of(active.state.window)

    def _on_sync_toggled(self, channel: Channel, on: bool) -> None:
        if channel is Channel.SLICE and self._scheduler.is_wanted():
            self._scheduler.update()  # at once: unsynced slices are no pair any more
