"""The main window's side of the sketch dock's :class:`~app.ui.sketch.dock.SketchHost` seam."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from app.core.state import Channel, SyncGroup
from app.core.volume import Volume
from app.io.records import SeriesRef
from app.ml.anatomy.sync_service import SyncEngine
from app.ml.sketch.search import SliceRef
from app.ui.sketch.dock import slice_for, volume_matches
from app.ui.sketch.query import LoadedSeries
from app.ui.viewer.hanging import StudySlot
from app.ui.viewer.seams import StatusSink, ViewportSet
from app.ui.viewer.viewport import ViewportView

__all__ = ["WindowLink"]


class WindowLink:
    """What the sketch dock may read and do, given as the window's typed parts.

    Parameters
    ----------
    viewports
        The viewports on screen.
    engine
        The anatomy engine (its indexes hold the anatomy codes).
    sync
        The sync group (a jump to a result carries the other dates along).
    slots, catalogue
        The hanging's slots and the scanned series, read when asked.
    show_series, open_paths
        Hang a catalogued series; scan and hang paths.
    status
        The status bar.
    """

    def __init__(
        self,
        viewports: ViewportSet,
        engine: SyncEngine,
        sync: SyncGroup,
        slots: Callable[[], list[StudySlot]],
        catalogue: Callable[[], list[SeriesRef]],
        show_series: Callable[[SeriesRef], None],
        open_paths: Callable[[Sequence[Path | str]], None],
        status: StatusSink,
    ) -> None:
        self.viewports = viewports
        self.engine = engine
        self.sync = sync
        self._slots = slots
        self._catalogue = catalogue
        self._show_series = show_series
        self._open_paths = open_paths
        self._status = status

    def current_view(self) -> ViewportView | None:
        """The active viewport, else the first one, else ``None``."""
        return self.viewports.target_view()

    def loaded_series(self) -> list[LoadedSeries]:
        """The series on screen with their anatomy codes (``None`` while being indexed)."""
        views = self.viewports.views
        slots = self._slots()
        out = []
        for i in sorted(views):
            volume = views[i].state.volume
            index = self.engine.index_of(volume)
            key = str(slots[i].key) if i < len(slots) else ""
            out.append(LoadedSeries(volume, key, None if index is None else index.embeddings))
        return out

    def anatomy_code(self, volume: Volume, k: int) -> np.ndarray | None:
        """The anatomy code of a slice if its series is indexed, else ``None``."""
        index = self.engine.index_of(volume)
        return None if index is None else np.asarray(index.embeddings[k])

    def go_to_loaded(self, volume: Volume, k: int) -> bool:
        """Show slice ``k`` in the viewport of ``volume``; False if it is not on screen."""
        views = self.viewports.views.values()
        view = next((v for v in views if v.state.volume is volume), None)
        if view is None:
            return False
        self._show(view, k)
        return True

    def go_to_matching(self, ref: SliceRef) -> bool:
        """Show ``ref``'s slice if a viewport shows its series; False otherwise."""
        for view in self.viewports.views.values():
            if volume_matches(view.state.volume, ref):
                self._show(view, slice_for(view.state.volume, ref))
                return True
        return False

    def show_catalogued(self, ref: SliceRef) -> bool:
        """Hang ``ref``'s series if the catalogue already knows it; False otherwise."""
        for series in self._catalogue():
            info = series.info
            if info.series_uid and info.series_uid == ref.series_key:
                self._show_series(series)
                return True
        return False

    def open_source(self, ref: SliceRef) -> None:
        """Scan and hang the file or folder a result comes from."""
        self._open_paths([ref.source])

    def status(self, message: str) -> None:
        """Say something short in the window's status bar."""
        self._status.status(message, 8000)

    def _show(self, view: ViewportView, k: int) -> None:
        state = view.state
        view.activated.emit(view)  # the keys go where the user looks now
        if state.slice_index != k:
            state.set_slice(k)  # the sync group carries the other dates along
        elif self.sync.enabled[Channel.SLICE]:
            self.sync.sync_from(state, Channel.SLICE)
