"""The measurement tools: their actions and keys, drawing in any viewport, delete and undo.

Line (L) and Ellipse (E) put every viewport into
:attr:`~app.ui.viewer.slice_view_box.InteractionMode.MEASURE`; pressing the
checked tool again goes back to navigating. In the window the two actions
join its :class:`~app.ui.viewer.mode_switch.ModeSwitch` (:meth:`MeasureTools.use_modes`),
so choosing a tool leaves the linked cursor's mode and the other way round. In that mode a left drag draws
the shape (a line from end to end; an ellipse in the box dragged), or two
clicks do; drawn on another date while a measurement is selected, it joins
that measurement's finding (if the finding has none there yet). Handles edit
a measurement in any mode; a click selects it;
Delete removes the selected one; Ctrl+Z / Ctrl+Shift+Z undo and redo every
change (add, edit, delete, propagate) through the store's one history. A
right click on a measurement offers Delete and Propagate to priors.

Measurements are drawn on axial planes (coronal and sagittal views show none).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

from PySide6 import QtCore, QtGui, QtWidgets

from app.core.measure import Measurement, MeasurementError
from app.core.measure_slice import measurement_slice, series_key
from app.core.measure_store import MeasurementStore
from app.core.planes import Plane
from app.ui.measure.overlay import MeasurementOverlay
from app.ui.viewer.mode_switch import ModeSwitch
from app.ui.viewer.slice_view_box import InteractionMode
from app.ui.viewer.viewport import ViewportView

__all__ = ["MIN_SIZE_MM", "MeasureTools"]

# Smaller shapes are slips of the mouse, not measurements.
MIN_SIZE_MM = 1.0


class MeasureTools(QtCore.QObject):
    """Actions, per-viewport overlays and the drawing of new measurements.

    Parameters
    ----------
    store
        The measurements.
    window
        The widget the shortcuts belong to (the main window).
    status
        Shows a one-line message (the status bar).
    scope
        The widget around the viewports (``window`` when omitted): Delete,
        Ctrl+Z and Ctrl+Shift+Z act on measurements only while the keyboard is
        in it, so they never take those keys from a dock's own undo or a text field.

    Signals
    -------
    propagate_requested(str)
        The id of the measurement the user wants in the priors.
    """

    propagate_requested = QtCore.Signal(str)

    def __init__(
        self,
        store: MeasurementStore,
        window: QtWidgets.QWidget,
        status: Callable[[str], None],
        scope: QtWidgets.QWidget | None = None,
    ) -> None:
        super().__init__(window)
        self.store = store
        self.window = window
        self.scope = scope if scope is not None else window
        self.status = status
        self.kind: str | None = None  # "line" / "ellipse" while a tool is chosen
        self.modes: ModeSwitch | None = None  # the window's switch, once joined
        self.overlays: dict[ViewportView, MeasurementOverlay] = {}
        self._pending: tuple[ViewportView, tuple[float, float]] | None = None

        self.tool_group = QtGui.QActionGroup(window)
        self.tool_group.setExclusionPolicy(QtGui.QActionGroup.ExclusionPolicy.ExclusiveOptional)
        self.line_action = self._tool("Line", "L", "line", "Measure a length in mm (L)")
        self.ellipse_action = self._tool(
            "Ellipse ROI", "E", "ellipse", "Measure area and HU mean / SD in an ellipse (E)"
        )
        self.delete_action = self._action("Delete measurement", "Delete", self.delete_selected)
        self.undo_action = self._action(
            "Undo measurement", QtGui.QKeySequence.StandardKey.Undo, self.undo
        )
        self.redo_action = self._action("Redo measurement", "Ctrl+Shift+Z", self.redo)
        self.propagate_action = self._action("Propagate to priors", None, self.propagate_selected)
        self.propagate_action.setToolTip(
            "Place the selected measurement at the same anatomy in every other date"
        )
        store.changed.connect(self._update_actions)
        self._update_actions()

    def _tool(self, text: str, key: str, kind: str, tip: str) -> QtGui.QAction:
        action = QtGui.QAction(text, self.window)
        action.setCheckable(True)
        action.setShortcut(QtGui.QKeySequence(key))
        action.setToolTip(tip)
        action.setData(kind)
        action.toggled.connect(lambda on, kind=kind: self._tool_toggled(kind, on))
        self.tool_group.addAction(action)
        self.window.addAction(action)
        return action

    def _action(
        self,
        text: str,
        key: QtGui.QKeySequence.StandardKey | str | None,
        slot: Callable[[], object],
    ) -> QtGui.QAction:
        action = QtGui.QAction(text, self.window)
        if key is not None:
            action.setShortcut(QtGui.QKeySequence(key))
            action.setShortcutContext(QtCore.Qt.ShortcutContext.WidgetWithChildrenShortcut)
            self.scope.addAction(action)
        action.triggered.connect(lambda _=False: slot())
        return action

    def actions(self) -> list[QtGui.QAction]:
        """The tools' actions, in menu order."""
        return [
            self.line_action,
            self.ellipse_action,
            self.propagate_action,
            self.delete_action,
            self.undo_action,
            self.redo_action,
        ]

    def _update_actions(self, _what: str = "") -> None:
        self.delete_action.setEnabled(self.store.selected is not None)
        self.propagate_action.setEnabled(self.store.selected is not None)
        self.undo_action.setEnabled(self.store.can_undo)
        self.redo_action.setEnabled(self.store.can_redo)

    # -- modes ---------------------------------------------------------------------------
    def use_modes(self, modes: ModeSwitch) -> None:
        """Let the window's mode switch own the tools' mode, beside the other tools'.

        The two actions move into its exclusive group: checking the linked
        cursor unchecks the measurement tool and the other way round, and the
        switch, not these tools, puts every viewport in its mode.
        """
        self.modes = modes
        for action in (self.line_action, self.ellipse_action):
            modes.add(InteractionMode.MEASURE, action)

    def _tool_toggled(self, kind: str, on: bool) -> None:
        if on:
            self.kind = kind
        elif self.kind == kind:
            self.kind = None
        self._cancel_pending()
        if self.modes is not None:
            return  # the switch sets every viewport's mode
        mode = InteractionMode.MEASURE if self.kind else InteractionMode.NAVIGATE
        for view in self.overlays:
            view.set_mode(mode)

    def choose(self, kind: str | None) -> None:
        """Select the ``"line"`` or ``"ellipse"`` tool, or none (navigate)."""
        for action in (self.line_action, self.ellipse_action):
            action.setChecked(action.data() == kind)

    # -- viewports -----------------------------------------------------------------------
    def attach(self, view: ViewportView) -> None:
        """Paint and edit ``view``'s measurements; draw in it while a tool is chosen."""
        view.register_mode(InteractionMode.MEASURE, lambda _x, _y: None)
        self.overlays[view] = MeasurementOverlay(view, self.store, self.show_menu, self.status)
        box = view.view_box
        box.drag_started.connect(lambda x, y, v=view: self._begin(v, x, y))
        box.dragged_to.connect(lambda x, y, v=view: self._drag(v, x, y))
        box.drag_finished.connect(lambda x, y, v=view: self._finish(v, x, y))
        box.clicked_at.connect(lambda x, y, v=view: self._click(v, x, y))
        if self.kind:
            view.set_mode(InteractionMode.MEASURE)

    def detach(self, view: ViewportView) -> None:
        """``view`` goes away."""
        overlay = self.overlays.pop(view, None)
        if overlay is not None:
            overlay.detach()
        if self._pending is not None and self._pending[0] is view:
            self._pending = None

    # -- drawing -------------------------------------------------------------------------
    def _drawing(self, view: ViewportView) -> bool:
        return self.kind is not None and view.mode is InteractionMode.MEASURE

    def _begin(self, view: ViewportView, x: float, y: float) -> None:
        if self._drawing(view):
            self._cancel_pending()
            self._pending = (view, (x, y))

    def _drag(self, view: ViewportView, x: float, y: float) -> None:
        if self._drawing(view) and self._pending is not None and self._pending[0] is view:
            assert self.kind is not None
            self.overlays[view].show_preview(self.kind, self._pending[1], (x, y))

    def _finish(self, view: ViewportView, x: float, y: float) -> None:
        if self._drawing(view) and self._pending is not None and self._pending[0] is view:
            start = self._pending[1]
            self._cancel_pending()
            self.draw(view, start, (x, y))

    def _click(self, view: ViewportView, x: float, y: float) -> None:
        if not self._drawing(view):
            return
        if self._pending is None or self._pending[0] is not view:
            self._begin(view, x, y)
            self._drag(view, x, y)
            self.status("click the other end (or drag)")
        else:
            self._finish(view, x, y)

    def _cancel_pending(self) -> None:
        if self._pending is not None:
            overlay = self.overlays.get(self._pending[0])
            if overlay is not None:
                overlay.clear_preview()
        self._pending = None

    def draw(
        self, view: ViewportView, start: tuple[float, float], end: tuple[float, float]
    ) -> str | None:
        """Add the chosen shape from ``start`` to ``end`` (image mm of ``view``); returns its id.

        A line runs from ``start`` to ``end``; an ellipse fills the box they span.
        """
        if self.kind is None:
            return None
        if view.plane is not Plane.AXIAL:
            self.status("measurements are drawn on the axial plane (A)")
            return None
        (x0, y0), (x1, y1) = start, end
        if self.kind == "line":
            points = [start, end]
            small = ((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5 < MIN_SIZE_MM
        else:
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            a, b = abs(x1 - x0) / 2, abs(y1 - y0) / 2
            points = [(cx, cy), (cx + a, cy), (cx, cy + b)]
            small = min(a, b) < MIN_SIZE_MM / 2
        if small:
            self.status("too small to measure: drag further")
            return None
        volume = view.state.volume
        series = series_key(volume)
        try:
            m = Measurement(
                self.kind,  # type: ignore[arg-type]
                series,
                volume.info.study_date,
                tuple(self.overlays[view].to_lps(points)),
                self.joined_finding(series),
            )
        except MeasurementError as exc:
            self.status(f"not measured: {exc}")
            return None
        mid = self.store.add(m)
        self.store.select(mid)
        return mid

    def joined_finding(self, series: str) -> str:
        """The finding a new measurement on ``series`` belongs to ("" starts a new one).

        While a measurement is selected whose finding has none on this series
        yet, the new one measures that finding here (a reader who deleted a
        misplaced copy selects the finding and draws it on the right slice).
        """
        selected = self.store.get(self.store.selected or "")
        if selected is None or selected.series_uid == series:
            return ""
        taken = {m.series_uid for _, m in self.store.items() if m.finding == selected.finding}
        return "" if series in taken else selected.finding

    # -- commands ------------------------------------------------------------------------
    def delete_selected(self) -> bool:
        """Delete the selected measurement."""
        mid = self.store.selected
        if mid is None:
            self.status("select a measurement to delete (click it)")
            return False
        return self.store.delete(mid)

    def undo(self) -> bool:
        done = self.store.undo()
        if not done:
            self.status("nothing to undo")
        return done

    def redo(self) -> bool:
        done = self.store.redo()
        if not done:
            self.status("nothing to redo")
        return done

    def propagate_selected(self) -> None:
        mid = self.store.selected
        if mid is None:
            self.status("select a measurement to propagate (click it)")
            return
        self.propagate_requested.emit(mid)

    def show_menu(self, mid: str, global_pos: QtCore.QPoint) -> None:
        """The context menu of a measurement (already selected)."""
        menu = QtWidgets.QMenu(self.window)
        menu.addAction(self.propagate_action)
        menu.addAction(self.delete_action)
        menu.popup(global_pos)

    def show_finding(
        self,
        views: list[ViewportView],
        finding: str,
        study_date: str,
        hold: Callable[[], AbstractContextManager[None]],
    ) -> None:
        """Every date of ``finding`` shows its measurement's slice; the one of ``study_date`` is selected."""
        chosen: str | None = None
        with hold():
            for mid in self.store.ids_of_finding(finding):
                m = self.store.get(mid)
                if m is None:
                    continue
                for view in views:
                    if series_key(view.state.volume) != m.series_uid:
                        continue
                    k = measurement_slice(view.state.volume, m)
                    if k is not None:
                        if view.plane is not Plane.AXIAL:
                            view.set_plane(Plane.AXIAL)
                        view.state.set_slice(k)
                    if m.study_date == study_date and (
                        chosen is None or m.diameter_mm > self.store.get(chosen).diameter_mm  # type: ignore[union-attr]
                    ):
                        chosen = mid
        self.store.select(chosen)
