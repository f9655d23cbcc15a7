"""The base of the window's parts that act on the synced viewports, and their toggles.

The sync wiring (:class:`~app.ui.sync.wiring.SyncWiring`) and the saliency
scheduler (:class:`~app.ui.saliency.scheduler.SaliencyScheduler`) both follow
the sync group and its slice mapper, paint into the viewports, keep settings in
the preferences and speak through the status bar; :class:`SyncedPart` holds
those once (given as one :class:`SyncContext`). :func:`toggle_action` makes the checkable toolbar actions they show.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6 import QtCore, QtGui

from app.core.state import SyncGroup
from app.ml.anatomy.sync_service import AnatomicalSliceMapper
from app.ui.resources import icon
from app.ui.settings.preferences import Preferences
from app.ui.viewer.seams import StatusSink, ViewportSet

__all__ = ["SyncContext", "SyncedPart", "toggle_action"]


@dataclass(frozen=True)
class SyncContext:
    """What every :class:`SyncedPart` is given by the window.

    Attributes
    ----------
    sync, mapper
        The sync group and its slice mapper (which viewport drove, how a slice was matched).
    viewports
        The viewports on screen.
    preferences
        Where the parts' settings persist.
    status
        Where a part tells the user something short.
    """

    sync: SyncGroup
    mapper: AnatomicalSliceMapper
    viewports: ViewportSet
    preferences: Preferences
    status: StatusSink


class SyncedPart(QtCore.QObject):
    """A part of the window that follows the synced viewports.

    Parameters
    ----------
    context
        The sync group, mapper, viewports, preferences and status bar, kept as attributes.
    parent
        The window (owner of this object).
    """

    def __init__(self, context: SyncContext, parent: QtCore.QObject) -> None:
        super().__init__(parent)
        self.sync = context.sync
        self.mapper = context.mapper
        self.viewports = context.viewports
        self.preferences = context.preferences
        self.status = context.status


def toggle_action(parent: QtCore.QObject, icon_name: str, text: str, tip: str) -> QtGui.QAction:
    """A checkable action with an icon and a tooltip, as the toolbar's toggles are."""
    action = QtGui.QAction(icon(icon_name), text, parent)
    action.setCheckable(True)
    action.setToolTip(tip)
    return action
