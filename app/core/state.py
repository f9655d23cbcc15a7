"""Viewer state: one :class:`ViewportState` per hung series, linked by a :class:`SyncGroup`.

Data flows one way: readers build volumes, volumes go into viewport states, Qt
views subscribe to ``changed`` and paint. User input writes back to the state
(never to a widget directly), and the sync group propagates it to other
viewports on the channels that are switched on, as OHIF's SyncGroupService does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from app.core.imaging import PRESETS, Window
from app.core.observable import Signal
from app.core.volume import Volume

__all__ = ["Camera", "Channel", "ViewportState", "SyncGroup", "SliceMapper"]


@dataclass(frozen=True)
class Camera:
    """Zoom factor (1 = fit) and pan offset in mm, relative to the slice centre."""

    zoom: float = 1.0
    pan: tuple[float, float] = (0.0, 0.0)


class Channel(StrEnum):
    """What a sync group can link."""

    SLICE = "slice"  # anatomical slice level (driven by the matching engine)
    VOI = "voi"  # window/level
    CAMERA = "camera"  # zoom and pan


@dataclass
class MatchInfo:
    """How a viewport's current slice was reached by anatomical sync."""

    score: float
    in_coverage: bool
    candidates: list[tuple[int, float]] = field(default_factory=list)  # (index, score)


class ViewportState:
    """State of one viewport: which slice of which volume, and how it is displayed.

    ``changed`` is emitted with the name of the field that changed
    (``"slice"``, ``"window"``, ``"camera"``, ``"match"``, ``"overlay"``).
    """

    def __init__(self, volume: Volume, window: Window | None = None) -> None:
        self.volume = volume
        self.changed = Signal()
        self._slice = volume.n_slices // 2
        self._window = window or PRESETS["mediastinum"]
        self._camera = Camera()
        self.match: MatchInfo | None = None

    # -- slice -----------------------------------------------------------------
    @property
    def slice_index(self) -> int:
        return self._slice

    def set_slice(self, k: int, *, match: MatchInfo | None = None) -> None:
        k = int(np.clip(k, 0, self.volume.n_slices - 1))
        match_changed = match is not self.match
        self.match = match
        if k != self._slice:
            self._slice = k
            self.changed.emit("slice")
        elif match_changed:
            self.changed.emit("match")

    def step(self, delta: int) -> None:
        self.set_slice(self._slice + delta)

    @property
    def slice_position_mm(self) -> float:
        return float(self.volume.slice_z[self._slice])

    # -- window ----------------------------------------------------------------
    @property
    def window(self) -> Window:
        return self._window

    def set_window(self, window: Window) -> None:
        if window != self._window:
            self._window = window
            self.changed.emit("window")

    # -- camera ----------------------------------------------------------------
    @property
    def camera(self) -> Camera:
        return self._camera

    def set_camera(self, camera: Camera) -> None:
        if camera != self._camera:
            self._camera = camera
            self.changed.emit("camera")


class SliceMapper:
    """Maps a slice of a source viewport to a slice of a target (anatomical sync).

    The default maps by equal position along the normal, which is only right
    within one frame of reference; the matching engine supplies a better one.
    """

    def map(self, source: ViewportState, target: ViewportState) -> tuple[int, MatchInfo | None]:
        z = source.slice_position_mm
        k = int(np.argmin(np.abs(target.volume.slice_z - z)))
        return k, None


class SyncGroup:
    """Links viewports on typed channels; any member can drive.

    Propagation is guarded against re-entry: when the group moves a target,
    the target's own change does not propagate back.
    """

    def __init__(self) -> None:
        self.viewports: list[ViewportState] = []
        self.enabled: dict[Channel, bool] = {c: False for c in Channel}
        self.slice_mapper: SliceMapper = SliceMapper()
        self.toggled = Signal()  # (channel, on)
        self._propagating = False
        self._slots: dict[int, object] = {}

    def add(self, vp: ViewportState) -> None:
        self.viewports.append(vp)

        def on_change(what: str, vp: ViewportState = vp) -> None:
            self._on_change(vp, what)

        self._slots[id(vp)] = on_change
        vp.changed.connect(on_change)

    def remove(self, vp: ViewportState) -> None:
        if vp in self.viewports:
            self.viewports.remove(vp)
            vp.changed.disconnect(self._slots.pop(id(vp)))  # type: ignore[arg-type]

    def clear(self) -> None:
        for vp in list(self.viewports):
            self.remove(vp)

    def set_enabled(self, channel: Channel, on: bool) -> None:
        if self.enabled[channel] != on:
            self.enabled[channel] = on
            self.toggled.emit(channel, on)

    def sync_from(self, source: ViewportState, channel: Channel) -> None:
        """Push ``source``'s value on ``channel`` to every other member now."""
        if self._propagating:
            return
        self._propagating = True
        try:
            for target in self.viewports:
                if target is source:
                    continue
                if channel is Channel.VOI:
                    target.set_window(source.window)
                elif channel is Channel.CAMERA:
                    target.set_camera(source.camera)
                elif channel is Channel.SLICE:
                    k, info = self.slice_mapper.map(source, target)
                    target.set_slice(k, match=info)
        finally:
            self._propagating = False

    def _on_change(self, vp: ViewportState, what: str) -> None:
        channel = {"slice": Channel.SLICE, "window": Channel.VOI, "camera": Channel.CAMERA}.get(
            what
        )
        if channel is not None and self.enabled[channel]:
            self.sync_from(vp, channel)
