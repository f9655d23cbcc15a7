"""Viewer state: one :class:`ViewportState` per hung series, linked by a :class:`SyncGroup`.

Data flows one way: readers build volumes, volumes go into viewport states, Qt
views subscribe to ``changed`` and paint. User input writes back to the state
(never to a widget directly), and the sync group propagates it to other
viewports on the channels that are switched on, as OHIF's SyncGroupService does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from app.core.crosshair import BodyBoxMapper, CrosshairMapper
from app.core.cursor import NO_ENGINE_MARK, OUTSIDE_SCAN, CursorMark, contains_point
from app.core.imaging import PRESETS, Window
from app.core.observable import Signal
from app.core.orientation import direction_label
from app.core.volume import Volume

__all__ = [
    "Camera",
    "Channel",
    "CursorMapper",
    "MatchInfo",
    "ViewportState",
    "SyncGroup",
    "SliceMapper",
    "ZOOM_RANGE",
    "window_after_drag",
    "newest_first",
    "edge_labels",
]

# Zoom limits relative to "fit": below 0.1 the image is a dot, above 40 one
# voxel fills the screen; both are states a user only reaches by accident.
ZOOM_RANGE = (0.1, 40.0)


@dataclass(frozen=True)
class Camera:
    """Zoom factor (1 = fit) and pan offset in mm, relative to the slice centre.

    Pan is in patient millimetres (not screen pixels) so that a linked camera
    shows the same anatomy offset in viewports of different sizes and spacings.
    """

    zoom: float = 1.0
    pan: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        zoom = float(self.zoom)
        if not np.isfinite(zoom) or zoom <= 0:
            raise ValueError("zoom must be a positive finite number")
        object.__setattr__(self, "zoom", float(np.clip(zoom, *ZOOM_RANGE)))
        px, py = (float(v) for v in self.pan)
        if not (np.isfinite(px) and np.isfinite(py)):
            raise ValueError("pan must be finite")
        object.__setattr__(self, "pan", (px, py))

    def zoomed(self, factor: float) -> Camera:
        """This camera with its zoom multiplied by ``factor`` (clamped to :data:`ZOOM_RANGE`)."""
        return Camera(self.zoom * factor, self.pan)

    def panned(self, dx_mm: float, dy_mm: float) -> Camera:
        """This camera with its view centre moved by ``(dx_mm, dy_mm)`` (screen right, down)."""
        return Camera(self.zoom, (self.pan[0] + dx_mm, self.pan[1] + dy_mm))


def window_after_drag(window: Window, dx: float, dy: float) -> Window:
    """The window after a window/level mouse drag of ``(dx, dy)`` screen pixels.

    Dragging right widens the window, dragging down raises the level, as in
    most PACS viewers. The rate scales with the current width so that a narrow
    brain window and a wide lung window both respond usefully to a small drag.

    Parameters
    ----------
    window
        Window before the drag.
    dx, dy
        Mouse movement in pixels since the drag started or since the last event.

    Returns
    -------
    Window
        The new window (width floored at 1 HU by :class:`Window`).
    """
    rate = max(window.width, 20.0) / 256.0  # HU per pixel
    return Window(center=window.center + dy * rate, width=window.width + dx * rate)


def edge_labels(direction: np.ndarray) -> dict[str, str]:
    """Orientation letters at the screen edges of a slice painted row 0 on top, column 0 left.

    The right edge shows where the column axis points, the bottom edge where the
    row axis points, the opposite edges their negation; e.g. a display-oriented
    axial slice gives ``{"left": "R", "right": "L", "top": "A", "bottom": "P"}``.

    Parameters
    ----------
    direction
        3x3 matrix whose columns are the LPS unit vectors of the column, row and
        slice index axes (:attr:`app.core.volume.Geometry.direction`).
    """
    d = np.asarray(direction, dtype=np.float64)
    col, row = d[:, 0], d[:, 1]
    return {
        "left": direction_label(-col),
        "right": direction_label(col),
        "top": direction_label(-row),
        "bottom": direction_label(row),
    }


def newest_first(dates: list[str]) -> list[int]:
    """Indices ordering study dates newest first; undated (not ``YYYYMMDD``) last, stable.

    Parameters
    ----------
    dates
        DICOM StudyDate strings, ``""`` when unknown.
    """

    def key(i: int) -> tuple[int, int]:
        d = dates[i]
        if len(d) == 8 and d.isdigit():
            return (0, -int(d))
        return (1, 0)

    return sorted(range(len(dates)), key=key)


class Channel(StrEnum):
    """What a sync group can link."""

    SLICE = "slice"  # anatomical slice level (driven by the matching engine)
    VOI = "voi"  # window/level
    CAMERA = "camera"  # zoom and pan
    CURSOR = "cursor"  # the linked cursor, a point in LPS mm (driven by the point engine)


@dataclass
class MatchInfo:
    """How a viewport's current slice was reached by anatomical sync."""

    score: float
    in_coverage: bool
    candidates: list[tuple[int, float]] = field(default_factory=list)  # (index, score)


class ViewportState:
    """State of one viewport: which slice of which volume, and how it is displayed.

    ``changed`` is emitted with the name of the field that changed
    (``"slice"``, ``"window"``, ``"camera"``, ``"match"``, ``"overlay"``,
    ``"crosshair"``, ``"cursor"``).
    """

    def __init__(self, volume: Volume, window: Window | None = None) -> None:
        if volume.n_slices < 1:
            raise ValueError("a viewport needs a volume with at least one slice")
        self.volume = volume
        self.changed = Signal()
        self._slice = volume.n_slices // 2
        self._window = window or PRESETS["mediastinum"]
        self._camera = Camera()
        self.match: MatchInfo | None = None
        self.cursor_mark: CursorMark | None = None
        _, rows, cols = volume.shape
        # Row and column of the MPR cursor (its level is the slice): where this
        # date's coronal and sagittal planes cut it.
        self._crosshair_rc = (rows // 2, cols // 2)

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

    # -- linked cursor -----------------------------------------------------------
    def set_cursor(self, mark: CursorMark | None) -> None:
        """Show the linked cursor as ``mark`` (``None``: no cursor here)."""
        if mark != self.cursor_mark:
            self.cursor_mark = mark
            self.changed.emit("cursor")

    # -- MPR cursor --------------------------------------------------------------
    @property
    def crosshair_rc(self) -> tuple[int, int]:
        """``(row, column)`` of the MPR cursor on the current slice."""
        return self._crosshair_rc

    @property
    def crosshair(self) -> tuple[int, int, int]:
        """The MPR cursor ``(slice, row, column)``; its slice is the (synced) level."""
        return self._slice, self._crosshair_rc[0], self._crosshair_rc[1]

    def set_crosshair(self, k: int, r: int, c: int) -> None:
        """Move the MPR cursor: the level first (``"slice"``), then ``"crosshair"``.

        ``"crosshair"`` is emitted when anything moved, the level included: a
        sync group maps the other dates' levels on ``"slice"``, then their rows
        and columns (which depend on the level) on ``"crosshair"``. Scrolling
        (:meth:`set_slice`) moves only the level. Values are clipped to the volume.
        """
        before = self.crosshair
        if int(k) != self._slice:
            self.set_slice(k)
        _, rows, cols = self.volume.shape
        self._crosshair_rc = (int(np.clip(r, 0, rows - 1)), int(np.clip(c, 0, cols - 1)))
        if self.crosshair != before:
            self.changed.emit("crosshair")

    # -- window ----------------------------------------------------------------
    @property
    def window(self) -> Window:
        return self._window

    def set_window(self, window: Window) -> None:
        if window != self._window:
            self._window = window
            self.changed.emit("window")

    def apply_preset(self, name: str) -> None:
        """Set one of :data:`app.core.imaging.PRESETS` by name (``KeyError`` if unknown)."""
        self.set_window(PRESETS[name])

    def drag_window(self, dx: float, dy: float) -> None:
        """Window/level drag by ``(dx, dy)`` pixels; see :func:`window_after_drag`."""
        self.set_window(window_after_drag(self._window, dx, dy))

    # -- camera ----------------------------------------------------------------
    @property
    def camera(self) -> Camera:
        return self._camera

    def set_camera(self, camera: Camera) -> None:
        if camera != self._camera:
            self._camera = camera
            self.changed.emit("camera")

    def zoom_by(self, factor: float) -> None:
        self.set_camera(self._camera.zoomed(factor))

    def pan_by(self, dx_mm: float, dy_mm: float) -> None:
        self.set_camera(self._camera.panned(dx_mm, dy_mm))

    def reset_camera(self) -> None:
        """Back to "fit, centred"."""
        self.set_camera(Camera())

    # -- display geometry --------------------------------------------------------
    @property
    def orientation_labels(self) -> dict[str, str]:
        """Letters for the left, right, top and bottom screen edges (see :func:`edge_labels`)."""
        return edge_labels(self.volume.geometry.direction)

    @property
    def extent_mm(self) -> tuple[float, float]:
        """Width and height (mm) of a slice as painted: columns x spacing, rows x spacing."""
        _, rows, cols = self.volume.shape
        sx, sy = self.volume.geometry.spacing[:2]
        return float(cols * sx), float(rows * sy)


class SliceMapper:
    """Maps a slice of a source viewport to a slice of a target (anatomical sync).

    The default maps by equal position along the normal, which is only right
    within one frame of reference; the matching engine supplies a better one.
    """

    def map(self, source: ViewportState, target: ViewportState) -> tuple[int, MatchInfo | None]:
        z = source.slice_position_mm
        k = int(np.argmin(np.abs(target.volume.slice_z - z)))
        return k, None


class CursorMapper:
    """Answers the linked cursor's question: where is the driver's point in each target?

    The default answers only where LPS coordinates mean the same anatomy: a
    target in the driver's frame of reference (same non-empty
    FrameOfReferenceUID) gets the same point, or "outside this scan" when its
    volume does not hold it; any other target is told that it needs the point
    engine, never given a guess. The point engine's mapper
    (:class:`app.ui.points.linked_cursor.LinkedCursor`) answers in the
    background and reports back through :meth:`ViewportState.set_cursor`.
    """

    def request(self, source: ViewportState, targets: list[ViewportState]) -> None:
        """Give every target its mark for ``source``'s driving mark."""
        mark = source.cursor_mark
        frame = source.volume.info.frame_of_reference_uid
        for target in targets:
            if mark is None or mark.point is None:
                target.set_cursor(None)
            elif not frame or target.volume.info.frame_of_reference_uid != frame:
                target.set_cursor(NO_ENGINE_MARK)
            elif contains_point(target.volume, np.asarray(mark.point)):
                along = float(np.asarray(mark.point) @ target.volume.geometry.normal)
                target.set_slice(int(np.argmin(np.abs(target.volume.slice_z - along))))
                target.set_cursor(CursorMark(mark.point))
            else:
                target.set_cursor(CursorMark.outside(OUTSIDE_SCAN))


class SyncGroup:
    """Links viewports on typed channels; any member can drive.

    Propagation is guarded against re-entry: when the group moves a target,
    the target's own change does not propagate back.
    """

    def __init__(self) -> None:
        self.viewports: list[ViewportState] = []
        self.enabled: dict[Channel, bool] = dict.fromkeys(Channel, False)
        self.slice_mapper: SliceMapper = SliceMapper()
        self.cursor_mapper: CursorMapper = CursorMapper()
        # Maps the MPR crosshair's row and column between dates (the level goes
        # by slice_mapper); the point engine can replace it.
        self.crosshair_mapper: CrosshairMapper = BodyBoxMapper()
        self.toggled = Signal()  # (channel, on)
        self._propagating = False
        self._slots: dict[int, Callable[..., None]] = {}

    def add(self, vp: ViewportState) -> None:
        self.viewports.append(vp)

        def on_change(what: str, vp: ViewportState = vp) -> None:
            self._on_change(vp, what)

        self._slots[id(vp)] = on_change
        vp.changed.connect(on_change)

    def remove(self, vp: ViewportState) -> None:
        if vp in self.viewports:
            self.viewports.remove(vp)
            vp.changed.disconnect(self._slots.pop(id(vp)))

    def clear(self) -> None:
        for vp in list(self.viewports):
            self.remove(vp)

    def set_enabled(self, channel: Channel, on: bool) -> None:
        if self.enabled[channel] != on:
            self.enabled[channel] = on
            self.toggled.emit(channel, on)

    @contextmanager
    def held(self) -> Iterator[None]:
        """Changes made inside the block stay in their viewport (nothing propagates).

        For adjustments of one synced viewport that must not move the driver,
        e.g. stepping through a target's next-best match candidates.
        """
        was = self._propagating
        self._propagating = True
        try:
            yield
        finally:
            self._propagating = was

    def sync_from(self, source: ViewportState, channel: Channel) -> None:
        """Push ``source``'s value on ``channel`` to every other member now."""
        if self._propagating:
            return
        self._propagating = True
        try:
            if channel is Channel.CURSOR:
                # One request for every target: the point engine answers them in one job.
                self.cursor_mapper.request(source, [t for t in self.viewports if t is not source])
                return
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

    def follow_crosshair(self, source: ViewportState) -> None:
        """Move every other member's crosshair row and column to ``source``'s (its level stays).

        Part of anatomical sync: it runs on a crosshair move while ``SLICE`` is on.
        """
        if self._propagating:
            return
        self._propagating = True
        try:
            for target in self.viewports:
                if target is not source:
                    r, c = self.crosshair_mapper.map(
                        source.volume, source.crosshair, target.volume, target.slice_index
                    )
                    target.set_crosshair(target.slice_index, r, c)
        finally:
            self._propagating = False

    def _on_change(self, vp: ViewportState, what: str) -> None:
        if what == "crosshair" and self.enabled[Channel.SLICE]:
            self.follow_crosshair(vp)
            return
        channel = {
            "slice": Channel.SLICE,
            "window": Channel.VOI,
            "camera": Channel.CAMERA,
            "cursor": Channel.CURSOR,
        }.get(what)
        if channel is Channel.CURSOR and not (vp.cursor_mark and vp.cursor_mark.driving):
            return  # only the date the user placed the cursor on drives it
        if channel is not None and self.enabled[channel]:
            self.sync_from(vp, channel)
