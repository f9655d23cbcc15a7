"""The linked-cursor tool: its toolbar action and key, the clicks it takes, one overlay per viewport.

In the linked-cursor mode (:attr:`~app.ui.viewer.slice_view_box.InteractionMode.CROSSHAIR`,
toolbar "Linked cursor" or the key :data:`SHORTCUT`) a click or a drag in any
viewport, in any plane, places the cursor there: the viewport's own MPR
cursor moves as before, and the point (LPS mm) drives the sync group's
``CURSOR`` channel, which :class:`~app.ui.points.linked_cursor.LinkedCursor`
answers for the other dates. Leaving the mode takes the cursor off.

The point pairs are prepared when the mode is first switched on (and for
dates aligned later while it is on), not at every opening: each takes
seconds of CPU that cannot be interrupted, which a reader who never links the
cursor should not pay for on a two-core laptop. Until a date's pair is ready
it says "preparing" rather than showing a guess.

On the other dates the answer also moves the date's MPR cursor to the point,
so its coronal and sagittal planes show it too.

The main window (or whoever assembles it) calls::

    tool = LinkedCursorTool(window.sync, window.anatomy, window.hanging, modes, window)
    tool.add_to(window.toolbar, before=saliency_action, menu=view_menu)

and hands every viewport to :meth:`LinkedCursorTool.attach` / :meth:`LinkedCursorTool.detach`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from app.core.cursor import point_on_plane
from app.core.state import Channel, SyncGroup, ViewportState
from app.ui.points.cursor_overlay import CursorOverlay
from app.ui.points.linked_cursor import LinkedCursor
from app.ui.resources import icon
from app.ui.sync.anatomical_sync import AnatomicalSync
from app.ui.viewer.mode_switch import ModeSwitch
from app.ui.viewer.seams import ViewportSet
from app.ui.viewer.slice_view_box import InteractionMode
from app.ui.viewer.viewport import ViewportView

__all__ = ["SHORTCUT", "LinkedCursorTool"]

# X is taken by the crosshair lines, L and E by the measurement tools.
SHORTCUT = "P"


class LinkedCursorTool(QtCore.QObject):
    """The linked cursor's action, its mouse handling and its overlays.

    Parameters
    ----------
    sync
        The sync group (its ``CURSOR`` channel is switched on).
    anatomy
        The anatomical sync: its alignments start the point pairs.
    viewports
        The viewports on screen.
    modes
        The window's interaction mode switch.
    parent
        Owner of the action (the main window).
    """

    def __init__(
        self,
        sync: SyncGroup,
        anatomy: AnatomicalSync,
        viewports: ViewportSet,
        modes: ModeSwitch,
        parent: QtCore.QObject,
    ) -> None:
        super().__init__(parent)
        self.sync = sync
        self.viewports = viewports
        self.modes = modes
        self.linked = LinkedCursor(sync, anatomy.engine, parent=self)
        self.overlays: dict[int, CursorOverlay] = {}
        self._followers: dict[int, Callable[[str], None]] = {}
        sync.set_enabled(Channel.CURSOR, True)
        anatomy.alignment_ready.connect(self._on_alignment_ready)

        self.action = QtGui.QAction(icon("linked-cursor"), "Linked cursor", parent)
        self.action.setShortcut(QtGui.QKeySequence(SHORTCUT))
        self.action.setToolTip(
            f"Linked cursor ({SHORTCUT}): click or drag on any date; every other date shows "
            "the same spot, with its uncertainty circle"
        )
        modes.add(InteractionMode.CROSSHAIR, self.action)
        if isinstance(parent, QtWidgets.QWidget):
            parent.addAction(self.action)  # the key works wherever the focus is in the window
        modes.mode_changed.connect(self._on_mode_changed)

    # -- viewports ---------------------------------------------------------------------------
    def add_to(
        self,
        toolbar: QtWidgets.QToolBar,
        before: QtGui.QAction | None = None,
        menu: QtWidgets.QMenu | None = None,
    ) -> None:
        """Put the action in ``toolbar`` (before ``before``, else at the end) and ``menu``."""
        if before is not None:
            toolbar.insertAction(before, self.action)
        else:
            toolbar.addAction(self.action)
        if menu is not None:
            menu.addAction(self.action)

    def attach(self, view: ViewportView) -> None:
        """Give a new viewport its overlay and let its clicks place the cursor."""

        # Before the overlay's own connection: it then paints on the moved planes.
        def follow(what: str, v: ViewportView = view) -> None:
            self._follow(v, what)

        self._followers[id(view)] = follow
        view.state.changed.connect(follow)
        self.overlays[id(view)] = CursorOverlay(view)
        view.view_box.clicked_at.connect(lambda x, y, v=view: self._on_mouse(v, x, y))
        view.view_box.dragged_to.connect(lambda x, y, v=view: self._on_mouse(v, x, y))
        self.modes.attach(view)

    def detach(self, view: ViewportView) -> None:
        """A viewport goes away."""
        overlay = self.overlays.pop(id(view), None)
        if overlay is not None:
            overlay.detach()
        follow = self._followers.pop(id(view), None)
        if follow is not None:
            view.state.changed.disconnect(follow)
        self.linked.forget(view.state)

    def overlay(self, view: ViewportView) -> CursorOverlay | None:
        """The overlay painting ``view``'s cursor."""
        return self.overlays.get(id(view))

    def place(self, view: ViewportView, x_mm: float, y_mm: float) -> None:
        """Place the cursor at ``(x_mm, y_mm)`` of ``view``'s plane (what a click does)."""
        state: ViewportState = view.state
        point = point_on_plane(state.volume, view.plane, view.cursor, x_mm, y_mm)
        self.linked.place(state, point)

    def shutdown(self) -> None:
        """Stop the workers (before the window goes away)."""
        self.linked.shutdown()

    # -- handlers ----------------------------------------------------------------------------
    def _on_mouse(self, view: ViewportView, x_mm: float, y_mm: float) -> None:
        # The viewport's own handler has moved its MPR cursor already (connected first).
        if view.mode is InteractionMode.CROSSHAIR:
            self.place(view, x_mm, y_mm)

    def _follow(self, view: ViewportView, what: str) -> None:
        """Another date's answer moves this date's MPR cursor (row, column) to the point."""
        mark = view.state.cursor_mark
        if what != "cursor" or mark is None or mark.driving or not mark.shown:
            return
        assert mark.point is not None
        col, row, _ = view.state.volume.geometry.lps_to_index(np.asarray(mark.point))
        view.move_cursor(int(round(float(row))), int(round(float(col))))

    def _on_alignment_ready(self, source: ViewportState, target: ViewportState) -> None:
        if self.modes.mode is InteractionMode.CROSSHAIR:
            self.linked.prepare_pair(source, target)

    def _on_mode_changed(self, mode: InteractionMode) -> None:
        if mode is InteractionMode.CROSSHAIR:
            self.linked.prepare_all()
        else:
            self.linked.clear()
