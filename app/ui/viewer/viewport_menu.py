"""Commands on one viewport: match candidates (N / Shift+N), the plane, and its context menu.

N / Shift+N step through the match candidates of a prior. They act on the
viewport under the mouse, else on the one last clicked, else on the focused
one, and never on the date that drives the sync (the driver shows no match
of its own). Every viewport has a context menu (right click) holding the
window presets, the plane, the crosshair, slice sync, saliency and export,
and the commands on the viewport's own slice that features add
(:meth:`ViewportCommands.add_view_command`, e.g. "Find similar slices").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PySide6 import QtCore, QtGui, QtWidgets

from app.core.planes import Plane
from app.core.state import ViewportState
from app.ui.viewer.seams import ViewportSet
from app.ui.viewer.viewport import ViewportView

__all__ = ["MenuEntry", "ViewportCommands"]

MenuEntry = QtGui.QAction | QtWidgets.QMenu


class ViewportCommands(QtCore.QObject):
    """Candidate stepping, the crosshair toggle and the per-viewport context menu.

    Parameters
    ----------
    viewports
        The viewports on screen.
    driver
        Returns the state that drives the sync now (``None`` if none does).
    window
        The widget the shortcuts belong to (the main window).
    """

    def __init__(
        self,
        viewports: ViewportSet,
        driver: Callable[[], ViewportState | None],
        window: QtWidgets.QWidget,
    ) -> None:
        super().__init__(window)
        self.viewports = viewports
        self.driver = driver
        self.window = window
        self.last_clicked: ViewportView | None = None
        # Groups of window actions shown in every context menu (set by the window).
        self.menu_groups: list[Sequence[MenuEntry]] = []
        # Commands on the clicked viewport itself: (text, what to do with it).
        self.view_commands: list[tuple[str, Callable[[ViewportView], None]]] = []
        self.next_action = self._shortcut("Next match candidate", "N", +1)
        self.previous_action = self._shortcut("Previous match candidate", "Shift+N", -1)
        self.crosshair_action = QtGui.QAction("Crosshair lines", window)
        self.crosshair_action.setShortcut(QtGui.QKeySequence("X"))
        self.crosshair_action.setCheckable(True)
        self.crosshair_action.setToolTip("Reference lines where the other planes cross (X)")
        self.crosshair_action.toggled.connect(self._show_crosshair)
        window.addAction(self.crosshair_action)

    def _shortcut(self, text: str, key: str, delta: int) -> QtGui.QAction:
        action = QtGui.QAction(text, self.window)
        action.setShortcut(QtGui.QKeySequence(key))
        action.triggered.connect(lambda _=False: self.step(delta))
        self.window.addAction(action)
        return action

    def add_view_command(self, text: str, run: Callable[[ViewportView], None]) -> None:
        """Offer ``text`` in every viewport's context menu; ``run`` gets that viewport."""
        self.view_commands.append((text, run))

    def attach(self, view: ViewportView) -> None:
        """Give a new viewport its context menu and remember its clicks."""
        view.clicked.connect(self._on_clicked)
        view.candidates_label.picked.connect(lambda _j, v=view: self._on_clicked(v))
        view.menu_requested.connect(self.show_menu)
        view.set_crosshair_visible(self.crosshair_action.isChecked())

    def forget(self, view: ViewportView) -> None:
        """A viewport goes away."""
        if self.last_clicked is view:
            self.last_clicked = None

    # -- candidates ----------------------------------------------------------------------
    def target(self) -> ViewportView | None:
        """Where N / Shift+N go: under the mouse, last clicked, focused; never the driver."""
        driver = self.driver()
        views = list(self.viewports.views.values())
        under = QtWidgets.QApplication.widgetAt(QtGui.QCursor.pos())
        hovered = next((v for v in views if under is not None and v.isAncestorOf(under)), None)
        for view in (hovered, self.last_clicked, self.viewports.active_view):
            if (
                view is not None
                and view in views
                and view.state is not driver
                and view.candidates()
            ):
                return view
        return next((v for v in views if v.state is not driver and v.candidates()), None)

    def step(self, delta: int) -> bool:
        """Show the next (``delta`` > 0) or previous candidate in :meth:`target`."""
        view = self.target()
        return view is not None and view.step_candidate(delta)

    # -- crosshair and menu --------------------------------------------------------------
    def _show_crosshair(self, on: bool) -> None:
        for view in self.viewports.views.values():
            view.set_crosshair_visible(on)

    def _on_clicked(self, view: ViewportView) -> None:
        self.last_clicked = view

    def build_menu(self, view: ViewportView) -> QtWidgets.QMenu:
        """The context menu of ``view``: its plane, then the window's command groups."""
        menu = QtWidgets.QMenu(self.window)
        menu.setObjectName("viewportMenu")
        planes = QtGui.QActionGroup(menu)
        for plane, key in ((Plane.AXIAL, "A"), (Plane.CORONAL, "C"), (Plane.SAGITTAL, "G")):
            action = menu.addAction(f"{plane.value.capitalize()} plane\t{key}")
            action.setCheckable(True)
            action.setChecked(view.plane is plane)
            action.triggered.connect(lambda _=False, p=plane, v=view: v.set_plane(p))
            planes.addAction(action)
        menu.addAction(self.crosshair_action)
        if view.candidates():
            menu.addSeparator()
            menu.addAction(self.next_action)
            menu.addAction(self.previous_action)
        if self.view_commands:
            menu.addSeparator()
            for text, run in self.view_commands:
                action = menu.addAction(text)
                action.triggered.connect(lambda _=False, r=run, v=view: r(v))
        for group in self.menu_groups:
            menu.addSeparator()
            for entry in group:
                if isinstance(entry, QtWidgets.QMenu):
                    menu.addMenu(entry)
                else:
                    menu.addAction(entry)
        return menu

    def show_menu(self, view: ViewportView, global_pos: QtCore.QPoint) -> None:
        """Open ``view``'s context menu at ``global_pos``; keys go back to it afterwards."""
        menu = self.build_menu(view)
        menu.exec(global_pos)
        menu.deleteLater()
        if view in self.viewports.views.values():
            view.setFocus(QtCore.Qt.FocusReason.OtherFocusReason)
