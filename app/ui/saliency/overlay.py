"""Similarity saliency over synced viewports, computed off the GUI thread, newest request wins.

When slice sync has moved a target to its match, the model's similarity
Grad-CAM (:mod:`app.ml.saliency.gradcam`) shows which regions of the two slices drive
the match. Each synced target shows the map of its matched slice; the driver
shows its own map for the pair with the first synced target (left-most).

Maps need the model's feature maps of both slices, then the closed-form
Grad-CAM, the warp back onto the slice grid and the colour blend. While the
overlay is on, the worker computes the feature maps of every slice of the
series on screen in small batches (nearest the slices shown first), so a
sync only costs the cheap steps; a slice not reached yet is run through the
model on its own. Everything runs in one worker thread: while the user
scrolls, only the newest request is computed (older ones are dropped
unstarted, and a request never waits for more than one prefetch batch), and
a result is shown only if it still describes what its viewport shows: an
overlay never sits on the wrong slice.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from PySide6 import QtCore

from app.core.imaging import Window, window_to_uint8
from app.core.volume import Volume
from app.ml.anatomy.sync_service import SyncEngine
from app.ml.saliency.gradcam import (
    COLORMAPS,
    SimilaritySaliency,
    SliceFeatures,
    blend_overlay,
    readable_map,
    to_slice_grid,
)
from app.ui.loading.jobs import Job

__all__ = ["OverlayKey", "OverlayRequest", "SaliencyOverlay", "DEFAULT_COLORMAP"]

log = logging.getLogger(__name__)

DEFAULT_COLORMAP = "inferno" if "inferno" in COLORMAPS else next(iter(COLORMAPS))
_FEATURE_CACHE = 96  # single slices outside prefetched series
_PREFETCH_BATCH = 16  # slices per prefetch step: one model call of a few tens of ms


@dataclass
class _SeriesFeatures:
    """Feature maps of a whole series, filled in batches by the worker."""

    volume: Volume
    order: np.ndarray  # slices in the order to compute them
    done: np.ndarray  # (n,) bool
    embeddings: np.ndarray | None = None  # (n, D)
    features: np.ndarray | None = None  # (n, K, h, w)
    cursor: int = 0

    @property
    def complete(self) -> bool:
        return self.cursor >= len(self.order)


@dataclass(frozen=True)
class OverlayKey:
    """Everything an overlay depends on: the slice painted, its window, its partner slice."""

    volume: int  # id() of the volume painted
    index: int
    window: Window
    partner: int  # id() of the other volume of the pair
    partner_index: int
    colormap: str
    opacity: float

    def same_content(self, other: object) -> bool:
        """True when ``other`` maps the same pair of slices in the same window (looks may differ)."""
        return isinstance(other, OverlayKey) and (
            self.volume,
            self.index,
            self.window,
            self.partner,
            self.partner_index,
        ) == (other.volume, other.index, other.window, other.partner, other.partner_index)


@dataclass(frozen=True)
class _Slice:
    volume: Volume
    index: int
    window: Window


@dataclass(frozen=True)
class OverlayRequest:
    """One sync state to draw: the driver slice and the matched target slices (left to right)."""

    driver: _Slice
    targets: tuple[_Slice, ...]
    colormap: str
    opacity: float

    @classmethod
    def make(
        cls,
        driver: tuple[Volume, int, Window],
        targets: list[tuple[Volume, int, Window]],
        colormap: str,
        opacity: float,
    ) -> OverlayRequest:
        return cls(_Slice(*driver), tuple(_Slice(*t) for t in targets), colormap, float(opacity))

    def keys(self) -> list[OverlayKey]:
        """The key of each overlay this request yields: driver first, then each target."""
        d, c, o = self.driver, self.colormap, self.opacity
        out = []
        if self.targets:
            first = self.targets[0]
            out.append(
                OverlayKey(id(d.volume), d.index, d.window, id(first.volume), first.index, c, o)
            )
        for t in self.targets:
            out.append(OverlayKey(id(t.volume), t.index, t.window, id(d.volume), d.index, c, o))
        return out


class SaliencyOverlay(QtCore.QObject):
    """Computes overlays for :class:`OverlayRequest` objects in a worker thread.

    Signals
    -------
    ready(object)
        ``list[(OverlayKey, rgb uint8 (rows, cols, 3))]`` for the newest request.
    unavailable(str)
        The model does not allow saliency (the reason, for the user).
    """

    ready = QtCore.Signal(object)
    unavailable = QtCore.Signal(str)

    def __init__(self, engine: SyncEngine, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.engine = engine
        self._pool = QtCore.QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._lock = threading.Lock()
        self._pending: OverlayRequest | None = None
        self._job: Job | None = None
        self._cancel = threading.Event()
        self._saliency: SimilaritySaliency | None = None
        # (id(volume), slice) -> (volume, features); the volume is kept to check identity.
        self._features: OrderedDict[tuple[int, int], tuple[Volume, SliceFeatures]] = OrderedDict()
        self._series: dict[int, _SeriesFeatures] = {}
        self.unavailable_reason: str | None = None

    def is_idle(self) -> bool:
        return self._job is None

    def request(self, request: OverlayRequest) -> None:
        """Compute overlays for ``request``, replacing any request not started yet."""
        if self.unavailable_reason is not None:
            return
        with self._lock:
            self._pending = request
        if self._job is None:
            self._start()

    def prefetch(self, slices: list[tuple[Volume, int]]) -> None:
        """Compute, in the background, the feature maps of these series (from these slices out)."""
        if self.unavailable_reason is not None:
            return
        with self._lock:
            for volume, here in slices:
                if id(volume) in self._series and self._series[id(volume)].volume is volume:
                    continue
                order = np.argsort(np.abs(np.arange(volume.n_slices) - here), kind="stable")
                self._series[id(volume)] = _SeriesFeatures(
                    volume, order, np.zeros(volume.n_slices, dtype=bool)
                )
        if self._job is None:
            self._start()

    def forget(self, volume: Volume) -> None:
        """Drop everything cached for ``volume`` (its viewport closed)."""
        with self._lock:
            self._series.pop(id(volume), None)
            for key in [k for k in self._features if k[0] == id(volume)]:
                del self._features[key]

    def clear_cache(self) -> None:
        """Forget every cached feature map."""
        with self._lock:
            self._features.clear()
            self._series.clear()

    def _has_work(self) -> bool:
        with self._lock:
            return self._pending is not None or any(not f.complete for f in self._series.values())

    def shutdown(self, timeout_ms: int = 10000) -> bool:
        self._cancel.set()
        with self._lock:
            self._pending = None
        self._pool.clear()
        return self._pool.waitForDone(timeout_ms)

    # -- worker ------------------------------------------------------------------------
    def _start(self) -> None:
        job = Job("saliency overlay", self._work, self._cancel)
        job.signals.succeeded.connect(self._on_done)
        job.signals.failed.connect(self._on_failed)
        job.signals.cancelled.connect(lambda: setattr(self, "_job", None))
        self._job = job
        self._pool.start(job.run)

    def _work(self, _progress, cancel: threading.Event):
        """One unit of work: the newest overlay request if any, else one prefetch batch."""
        if cancel.is_set():
            return None
        if self._saliency is None:
            self._saliency = SimilaritySaliency(self.engine.load_model())
        with self._lock:
            request, self._pending = self._pending, None
        if request is not None:
            return request, self._compute(request)
        self._prefetch_batch()
        return None

    def _prefetch_batch(self) -> None:
        with self._lock:
            entry = next((f for f in self._series.values() if not f.complete), None)
            if entry is None:
                return
            idx = entry.order[entry.cursor : entry.cursor + _PREFETCH_BATCH]
            entry.cursor += len(idx)
        assert self._saliency is not None
        emb, feats = self._saliency.model.embed_slices(entry.volume, idx, with_features=True)
        with self._lock:
            if entry.features is None or entry.embeddings is None:  # set together
                n = entry.volume.n_slices
                entry.embeddings = np.zeros((n, emb.shape[1]), dtype=np.float32)
                entry.features = np.zeros((n, *feats.shape[1:]), dtype=np.float32)
            entry.embeddings[idx] = emb
            entry.features[idx] = feats
            entry.done[idx] = True

    def _slice_features(self, s: _Slice) -> SliceFeatures:
        key = (id(s.volume), s.index)
        with self._lock:
            entry = self._series.get(id(s.volume))
            if entry is not None and entry.volume is s.volume and entry.done[s.index]:
                assert entry.embeddings is not None and entry.features is not None
                return SliceFeatures(entry.embeddings[s.index], entry.features[s.index])
            hit = self._features.get(key)
            if hit is not None and hit[0] is s.volume:
                self._features.move_to_end(key)
                return hit[1]
        assert self._saliency is not None
        feats = self._saliency.slice_features(s.volume, s.index)
        with self._lock:
            self._features[key] = (s.volume, feats)
            while len(self._features) > _FEATURE_CACHE:
                self._features.popitem(last=False)
        return feats

    def _overlay(self, s: _Slice, map_input: np.ndarray, request: OverlayRequest) -> np.ndarray:
        assert self._saliency is not None
        spec = self._saliency.spec
        on_slice = to_slice_grid(map_input, s.volume, s.index, spec)
        hu = s.volume.slice(s.index)
        # One feature cell spans the grid's jump (input pixels) of spec.pixel_mm each.
        cell_mm = float(max(self._saliency.grid.jump)) * spec.pixel_mm
        pixel_mm = float(min(s.volume.geometry.spacing[:2]))
        readable = readable_map(on_slice, hu, cell_mm, pixel_mm)
        grey = window_to_uint8(hu, s.window)
        return blend_overlay(grey, readable, request.colormap, request.opacity)

    def _compute(self, request: OverlayRequest) -> list[np.ndarray]:
        assert self._saliency is not None
        driver = self._slice_features(request.driver)
        images: list[np.ndarray] = []
        driver_map: np.ndarray | None = None
        for target in request.targets:
            maps = self._saliency.maps_from_features(driver, self._slice_features(target))
            if driver_map is None:
                driver_map = maps.query
            images.append(self._overlay(target, maps.match, request))
        if driver_map is not None:
            images.insert(0, self._overlay(request.driver, driver_map, request))
        return images

    # -- results (GUI thread) --------------------------------------------------------------
    def _on_done(self, result) -> None:
        self._job = None
        if result is not None:
            request, images = result
            self.ready.emit(list(zip(request.keys(), images, strict=True)))
        if self._has_work() and not self._cancel.is_set():
            self._start()

    def _on_failed(self, message: str) -> None:
        self._job = None
        self.unavailable_reason = message
        self.unavailable.emit(message)
