"""Which interaction mode every viewport is in: one exclusive choice for the whole window.

Each tool that needs the left mouse button (the linked cursor, the
measurement tools) owns a checkable action and registers it here with its
:class:`~app.ui.viewer.slice_view_box.InteractionMode`. At most one of them is
checked; none checked is :attr:`~InteractionMode.NAVIGATE`. The choice applies
to every viewport on screen and to every viewport hung later.
"""

from __future__ import annotations

from PySide6 import QtCore, QtGui

from app.ui.viewer.seams import ViewportSet
from app.ui.viewer.slice_view_box import InteractionMode
from app.ui.viewer.viewport import ViewportView

__all__ = ["ModeSwitch"]


class ModeSwitch(QtCore.QObject):
    """The window's interaction mode, chosen by mutually exclusive tool actions.

    Signals
    -------
    mode_changed(object)
        The new :class:`InteractionMode`.
    """

    mode_changed = QtCore.Signal(object)

    def __init__(self, viewports: ViewportSet, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.viewports = viewports
        self.group = QtGui.QActionGroup(self)
        # Clicking the checked tool again unchecks it: back to navigating.
        self.group.setExclusionPolicy(QtGui.QActionGroup.ExclusionPolicy.ExclusiveOptional)
        self._modes: dict[QtGui.QAction, InteractionMode] = {}
        self._mode = InteractionMode.NAVIGATE
        self.group.triggered.connect(lambda _action: self._sync_from_actions())

    @property
    def mode(self) -> InteractionMode:
        """The mode every viewport is in."""
        return self._mode

    def add(self, mode: InteractionMode, action: QtGui.QAction) -> None:
        """Make ``action`` (made checkable) select ``mode``; the tools' actions exclude each other."""
        action.setCheckable(True)
        self.group.addAction(action)
        self._modes[action] = mode
        action.toggled.connect(lambda _on: self._sync_from_actions())

    def set_mode(self, mode: InteractionMode) -> None:
        """Select ``mode`` (checking its action; :attr:`~InteractionMode.NAVIGATE` unchecks all)."""
        if mode is InteractionMode.NAVIGATE:
            checked = self.group.checkedAction()
            if checked is not None:
                checked.setChecked(False)
        else:
            action = next((a for a, m in self._modes.items() if m is mode), None)
            if action is None:
                raise ValueError(f"no tool selects the {mode.value} mode")
            action.setChecked(True)
        self._sync_from_actions()

    def attach(self, view: ViewportView) -> None:
        """Put a newly hung viewport in the current mode."""
        self._apply(view)

    # -- internals -------------------------------------------------------------------------
    def _sync_from_actions(self) -> None:
        checked = self.group.checkedAction()
        mode = self._modes.get(checked, InteractionMode.NAVIGATE) if checked else None
        mode = mode or InteractionMode.NAVIGATE
        if mode is self._mode:
            return
        self._mode = mode
        for view in self.viewports.views.values():
            self._apply(view)
        self.mode_changed.emit(mode)

    def _apply(self, view: ViewportView) -> None:
        try:
            view.set_mode(self._mode)
        except ValueError:
            # The tool registers its handler per viewport; until then the viewport navigates.
            view.set_mode(InteractionMode.NAVIGATE)
