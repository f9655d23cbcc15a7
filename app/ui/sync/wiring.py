"""How the viewports are linked: the link toggles, clicks that drive, and the sync status.

The :class:`~app.core.state.SyncGroup` links the viewport states by channel
(window, camera, slice); :class:`~app.ui.sync.anatomical_sync.AnatomicalSync`
indexes and aligns their series in the background. :class:`SyncWiring` joins
the two to the screen: the three link toggles, a click that makes a viewport
drive, the per-viewport and status-bar indexing progress, and the model's
device.
"""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from app.core.state import Channel, ViewportState
from app.ui.sync.anatomical_sync import AnatomicalSync, ModelInfo
from app.ui.viewer.synced_part import SyncContext, SyncedPart, toggle_action
from app.ui.viewer.viewport import ViewportView

__all__ = ["SyncWiring"]


class SyncWiring(SyncedPart):
    """The link actions, the sync status labels and the handlers of anatomical sync.

    Signals
    -------
    driven()
        A viewport was clicked and drove the others (the saliency pair changed).
    """

    driven = QtCore.Signal()

    def __init__(
        self,
        anatomy: AnatomicalSync,
        context: SyncContext,
        parent: QtCore.QObject,
    ) -> None:
        super().__init__(context, parent)
        self.anatomy = anatomy
        # A user's own choice wins over the automatic switch-on when indexes are ready.
        self.choice_made = False

        self.link_window_action = self._toggle(
            "Link W/L", "link-window", Channel.VOI, "Window/level changes apply to every viewport"
        )
        self.link_camera_action = self._toggle(
            "Link zoom/pan", "link-camera", Channel.CAMERA, "Zoom and pan apply to every viewport"
        )
        self.sync_slices_action = self._toggle(
            "Sync slices",
            "sync-slices",
            Channel.SLICE,
            "Clicking or scrolling one viewport moves the others to the same anatomical level",
        )
        self.sync_slices_action.triggered.connect(self._on_sync_chosen)

        self.sync_status_label = QtWidgets.QLabel()
        self.sync_status_label.setObjectName("statusSync")
        self.device_label = QtWidgets.QLabel("model …")
        self.device_label.setObjectName("statusDevice")
        self.device_label.setToolTip("Where the matching model runs (loading)")

        self.sync.toggled.connect(self._on_toggled)
        anatomy.index_progress.connect(self._on_index_progress)
        anatomy.index_changed.connect(self._on_index_changed)
        anatomy.ready_changed.connect(self._on_ready)
        anatomy.alignment_ready.connect(self._on_alignment_ready)
        anatomy.model_loaded.connect(self._on_model_loaded)
        anatomy.unavailable.connect(self._on_unavailable)

    def link_actions(self) -> list[tuple[QtGui.QAction, Channel]]:
        """The three link toggles with their channels, in toolbar order."""
        return [
            (self.link_window_action, Channel.VOI),
            (self.link_camera_action, Channel.CAMERA),
            (self.sync_slices_action, Channel.SLICE),
        ]

    def restore(self) -> None:
        """Apply the link choices kept from the last session."""
        prefs = self.preferences
        for channel, on in (
            (Channel.VOI, prefs.link_window()),
            (Channel.CAMERA, prefs.link_camera()),
        ):
            if on is not None:
                self.sync.set_enabled(channel, on)
        if prefs.sync_slices() is False:
            # Only "off" needs restoring: "on" is what happens once indexes are ready.
            self.choice_made = True
            self.sync.set_enabled(Channel.SLICE, False)

    def attach(self, view: ViewportView) -> None:
        """Link a new viewport: join the group, start indexing, follow the driver."""
        state = view.state
        reference = self.viewports.active_view
        view.clicked.connect(self.drive_from)
        view.hold_sync = self.sync.held
        self.sync.add(state)
        view.set_sync_status("indexing…")
        self.anatomy.add(state)
        self.show_progress()
        if reference is not None and reference is not view and self.sync.enabled[Channel.SLICE]:
            k, info = self.mapper.map(reference.state, state)
            state.set_slice(k, match=info)

    def detach(self, view: ViewportView) -> None:
        """Unlink a viewport that goes away."""
        self.sync.remove(view.state)
        self.anatomy.remove(view.state)

    def drive_from(self, view: ViewportView) -> None:
        """Make ``view`` the driving date: the others jump to its anatomical level.

        A click drives even when the slice did not change (scrolling drives
        through the sync group's own slice channel).
        """
        if self.sync.enabled[Channel.SLICE]:
            # The clicked viewport drives now: it no longer shows a match of its own.
            view.state.set_slice(view.state.slice_index, match=None)
            self.sync.sync_from(view.state, Channel.SLICE)
            # Their MPR crosshairs follow too, on the levels just mapped.
            self.sync.follow_crosshair(view.state)
            self.driven.emit()

    def show_progress(self) -> None:
        """The status bar's "Sync: indexing 1/3…" or "Sync: ready"."""
        states = [self.anatomy.index_state(v.state) for v in self.viewports.views.values()]
        known = [s for s in states if s is not None]
        if self.anatomy.unavailable_reason is not None:
            text = "Sync: unavailable"
        elif not known:
            text = ""
        else:
            ready = sum(s.status == "ready" for s in known)
            pending = sum(s.status in ("queued", "indexing") for s in known)
            text = f"Sync: indexing {ready}/{len(known)}…" if pending else "Sync: ready"
        self.sync_status_label.setText(text)
        if text.startswith("Sync: indexing"):
            self.sync_slices_action.setText("Sync slices (indexing…)")
        else:
            self.sync_slices_action.setText("Sync slices")

    # -- handlers ----------------------------------------------------------------------------
    def _toggle(self, text: str, icon_name: str, channel: Channel, tip: str) -> QtGui.QAction:
        action = toggle_action(self, icon_name, text, tip)
        action.setChecked(self.sync.enabled[channel])
        action.toggled.connect(lambda on: self.sync.set_enabled(channel, on))
        return action

    def _view_of(self, state: ViewportState) -> ViewportView | None:
        return next((v for v in self.viewports.views.values() if v.state is state), None)

    def _on_toggled(self, channel: Channel, on: bool) -> None:
        # Slice sync also switches itself on: only the user's choice is kept (_on_sync_chosen).
        if channel is Channel.VOI:
            self.preferences.set_link_window(on)
        elif channel is Channel.CAMERA:
            self.preferences.set_link_camera(on)
        for action, ch in self.link_actions():
            if ch is channel and action.isChecked() != on:
                action.setChecked(on)
        active = self.viewports.active_view
        if on and active is not None:
            self.sync.sync_from(active.state, channel)

    def _on_sync_chosen(self, checked: bool) -> None:
        self.choice_made = True
        self.preferences.set_sync_slices(checked)

    def _on_index_progress(self, state: ViewportState, done: int, total: int) -> None:
        view = self._view_of(state)
        if view is not None and total > 0:
            view.set_sync_status(f"indexing {100 * done // total}%")

    def _on_index_changed(self, state: ViewportState) -> None:
        view = self._view_of(state)
        info = self.anatomy.index_state(state)
        if view is not None and info is not None:
            if info.status == "ready":
                view.set_sync_status("")
            elif info.status == "failed":
                view.set_sync_status("no anatomical sync")
                view.sync_label.setToolTip(info.message)
        self.show_progress()

    def _on_ready(self, ready: bool) -> None:
        self.show_progress()
        if ready and not self.choice_made:
            self.sync.set_enabled(Channel.SLICE, True)

    def _on_alignment_ready(self, source: ViewportState, target: ViewportState) -> None:
        # The alignment refines where the last driver's level lies in the target.
        driver = self.mapper.last_source
        active = self.viewports.active_view
        if driver is None and active is not None:
            driver = active.state
        if source is not driver or not self.sync.enabled[Channel.SLICE]:
            return
        if target not in self.sync.viewports:
            return
        k, info = self.mapper.map(source, target)
        with self.sync.held():
            target.set_slice(k, match=info)

    def _on_model_loaded(self, info: ModelInfo) -> None:
        self.device_label.setText(info.device)
        self.device_label.setToolTip(
            f"Matching model {info.name} runs on {info.provider} (Help ▸ About for details)"
        )

    def _on_unavailable(self, message: str) -> None:
        self.device_label.setText("no model")
        self.device_label.setToolTip(message)
        self.sync_slices_action.setToolTip(f"Anatomical sync is unavailable: {message}")
        self.show_progress()
        self.status.status(f"Anatomical sync is unavailable: {message}", 10000)
