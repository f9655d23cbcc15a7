"""The hanging on screen: which study goes in which slot, and the viewport of each.

:class:`HangingController` turns a patient of the catalogue into slots
(:func:`~app.ui.viewer.hanging.plan_hanging`, newest first, at most
:data:`~app.ui.viewer.layouts.MAX_VISIBLE` on screen), asks the loader for
each slot's series (or takes it from the volume cache), and puts a viewport
in the slot once the volume is there. It owns the viewports and which one is
active; what links them is the window's business, told through the
:attr:`view_added` and :attr:`view_removed` signals.
"""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from app.core.state import Channel, SyncGroup, ViewportState
from app.core.volume import Volume
from app.io.catalog import PatientGroup
from app.io.records import SeriesRef
from app.ui.loading.loader import Loader
from app.ui.loading.volume_cache import VolumeCache
from app.ui.viewer.hanging import StudySlot, plan_hanging, study_title
from app.ui.viewer.layouts import MAX_VISIBLE
from app.ui.viewer.slot_area import Placeholder, SlotArea
from app.ui.viewer.viewport import ViewportView

__all__ = ["HangingController"]


class HangingController(QtCore.QObject):
    """Slots, their viewports and the active viewport (satisfies :class:`ViewportSet`).

    Signals
    -------
    view_added(object)
        A viewport was put on screen (not yet linked).
    view_removed(object)
        A viewport is about to go away (unlink it).
    active_changed(object)
        The viewport receiving keys changed.
    shown_changed()
        The set of series on screen changed.
    """

    view_added = QtCore.Signal(object)
    view_removed = QtCore.Signal(object)
    active_changed = QtCore.Signal(object)
    shown_changed = QtCore.Signal()

    def __init__(
        self, loader: Loader, cache: VolumeCache, sync: SyncGroup, parent: QtCore.QObject
    ) -> None:
        super().__init__(parent)
        self.loader = loader
        self.cache = cache
        self.sync = sync
        self.area = SlotArea(self._dispose)
        self.slots: list[StudySlot] = []
        self._views: dict[int, ViewportView] = {}
        self._active: ViewportView | None = None
        self.user_picked_view = False
        self._focusing = False

    # -- ViewportSet ---------------------------------------------------------------------
    @property
    def views(self) -> dict[int, ViewportView]:
        return self._views

    @property
    def active_view(self) -> ViewportView | None:
        return self._active

    def viewport_states(self) -> list[ViewportState]:
        """States of the shown viewports, in slot order."""
        return [self._views[i].state for i in sorted(self._views)]

    def target_view(self) -> ViewportView | None:
        """Commands act on the active viewport, else the first one."""
        return self._active or (self._views[min(self._views)] if self._views else None)

    # -- hanging -------------------------------------------------------------------------
    def hang(self, patient: PatientGroup) -> None:
        """One slot per study of ``patient``, newest first (at most :data:`MAX_VISIBLE`)."""
        self.clear()
        self.slots = plan_hanging(patient)[:MAX_VISIBLE]
        for i, slot in enumerate(self.slots):
            self.area.add_frame()
            self.area.set_content(i, Placeholder(f"{slot.chosen.info.display_date()}\nLoading…"))
            self.request(i)
        self.shown_changed.emit()

    def show_series(self, patient: PatientGroup, ref: SeriesRef) -> None:
        """Show ``ref`` in its study's slot; a study not on screen replaces the last slot."""
        key = str(ref.key)
        i = self.slot_of(key)
        if i is None:
            # A fifth date: it takes the place of the oldest one on screen.
            study = next(s for s in patient.studies if any(str(r.key) == key for r in s.series))
            series = list(study.series)
            chosen = next(r for r in series if str(r.key) == key)
            if not self.slots:
                return
            i = len(self.slots) - 1
            self.slots[i] = StudySlot(study=study, series=series, chosen=chosen)
        else:
            slot = self.slots[i]
            if slot.key == key and i in self._views:
                return
            slot.chosen = next(r for r in slot.series if str(r.key) == key)
        self.request(i)
        self.shown_changed.emit()

    def request(self, i: int) -> None:
        """Show slot ``i``'s series: from the cache, or ask the loader for it."""
        key = self.slots[i].key
        cached = self.cache.get(key)
        if cached is not None:
            self.show_volume(i, cached)
        elif key not in self.cache.pending:
            self.cache.pending.add(key)
            self.loader.load(self.slots[i].chosen)

    def on_volume_loaded(self, key: str, volume: Volume) -> None:
        """A volume arrived: keep it and show it in every slot that wants it."""
        self.cache.put(key, volume)
        for i, slot in enumerate(self.slots):
            if slot.key == key:
                self.show_volume(i, volume)
        self.cache.trim(self.shown_keys())

    def on_load_failed(self, key: str, message: str) -> bool:
        """Say in the slots of ``key`` why it could not load; False if none wanted it."""
        if key not in self.cache.pending:
            return False
        self.cache.pending.discard(key)
        for i, slot in enumerate(self.slots):
            if slot.key == key:
                self.area.set_content(i, Placeholder(f"Could not load this series:\n{message}"))
        return True

    def on_cancelled(self) -> None:
        """Loading was cancelled: the slots still waiting say so."""
        for i, slot in enumerate(self.slots):
            if slot.key in self.cache.pending:
                self.area.set_content(i, Placeholder("Loading cancelled"))
        self.cache.pending.clear()

    def show_volume(self, i: int, volume: Volume) -> None:
        """Put a viewport of ``volume`` in slot ``i``."""
        reference = self._active.state if self._active is not None else None
        state = ViewportState(volume)
        if reference is not None:
            # A new viewport joins linked channels with the current values, as if the
            # user had just adjusted the active one.
            if self.sync.enabled[Channel.VOI]:
                state.set_window(reference.window)
            if self.sync.enabled[Channel.CAMERA]:
                state.set_camera(reference.camera)
        view = ViewportView(state, study_title(volume.info))
        view.activated.connect(self._on_user_activated)
        self.area.set_content(i, view)
        self._views[i] = view
        self.view_added.emit(view)
        # Keys go to the newest study unless the user has picked a viewport already.
        if self._active is None or (i == 0 and not self.user_picked_view):
            self.set_active(view)
            self._focusing = True
            try:
                view.setFocus()
            finally:
                self._focusing = False

    def set_active(self, view: ViewportView | None) -> None:
        """Direct the keys to ``view`` (its border shows it)."""
        if self._active is view:
            return
        self._active = view
        for v in self._views.values():
            v.set_active(v is view)
        self.active_changed.emit(view)

    def clear(self) -> None:
        """Take every slot and viewport off screen."""
        self.area.clear()
        self._views.clear()
        self._active = None
        self.user_picked_view = False
        self.slots = []
        self.cache.pending.clear()

    def shown_keys(self) -> set[str]:
        """Series keys of the slots."""
        return {s.key for s in self.slots}

    def slot_of(self, key: str) -> int | None:
        """The slot whose study holds series ``key``."""
        for i, slot in enumerate(self.slots):
            if any(str(r.key) == key for r in slot.series):
                return i
        return None

    def is_loading(self) -> bool:
        """True while a slot's series is being read."""
        return bool(self.cache.pending)

    def _on_user_activated(self, view: ViewportView) -> None:
        if not self._focusing and view.user_activation:
            self.user_picked_view = True
        self.set_active(view)

    def _dispose(self, widget: QtWidgets.QWidget | None) -> None:
        if widget is None:
            return
        if isinstance(widget, ViewportView):
            self.view_removed.emit(widget)
            widget.detach()
            for i, v in list(self._views.items()):
                if v is widget:
                    del self._views[i]
            if self._active is widget:
                self._active = None
        widget.hide()
        widget.setParent(None)
        widget.deleteLater()
