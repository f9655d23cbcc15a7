"""When the saliency overlay is asked for, and where its results are painted.

The overlay shows, on the slice that drove the sync and on each synced target
that shows a match inside its coverage, where the model sees the match.
Requests are coalesced (one per event-loop turn, after the sync settled); a
result that no longer describes its viewport's slice pair is dropped.
"""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from app.core.planes import Plane
from app.core.state import Channel
from app.ml.saliency.gradcam import COLORMAPS, colormap_rgb
from app.ui.saliency.overlay import DEFAULT_COLORMAP, OverlayKey, OverlayRequest, SaliencyOverlay
from app.ui.viewer.coverage import shows_outside_level
from app.ui.viewer.synced_part import SyncContext, SyncedPart, toggle_action
from app.ui.viewer.viewport import ViewportView

__all__ = ["SaliencyScheduler"]


class SaliencyScheduler(SyncedPart):
    """The saliency toggle (S), its opacity and colour map, and the requests they cause.

    Parameters
    ----------
    overlay
        Computes the overlays in the background.
    context
        The sync group (is slice sync on?) and its mapper (which viewport drove),
        the viewports painted, where opacity and colour map persist, and where
        "unavailable" is said.
    parent
        The window.
    """

    def __init__(
        self,
        overlay: SaliencyOverlay,
        context: SyncContext,
        parent: QtCore.QObject,
    ) -> None:
        super().__init__(context, parent)
        self.overlay = overlay
        self.wanted: dict[OverlayKey, ViewportView] = {}
        self._timer = QtCore.QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self.update)

        self.action = toggle_action(
            self,
            "saliency",
            "Saliency overlay",
            "Colour where the model sees the match, on the driving slice and its matches (S)",
        )
        self.action.setShortcut(QtGui.QKeySequence("S"))
        self.action.toggled.connect(lambda _on: self.update())
        self.action.setIconText("Saliency")
        self.opacity_slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(50)
        self.opacity_slider.setFixedWidth(90)
        self.opacity_slider.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self.opacity_slider.setToolTip("Saliency overlay opacity")
        self.opacity_slider.valueChanged.connect(lambda _v: self.schedule())
        self.opacity_slider.valueChanged.connect(self.preferences.set_saliency_opacity)
        self.colormap_combo = QtWidgets.QComboBox()
        self.colormap_combo.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self.colormap_combo.setToolTip("Saliency overlay colour map")
        for name in COLORMAPS:
            self.colormap_combo.addItem(name, name)
        self.colormap_combo.setCurrentIndex(self.colormap_combo.findData(DEFAULT_COLORMAP))
        self.colormap_combo.currentIndexChanged.connect(lambda _i: self.schedule())
        self.colormap_combo.currentIndexChanged.connect(
            lambda _i: self.preferences.set_saliency_colormap(self.colormap_combo.currentData())
        )
        opacity = self.preferences.saliency_opacity()
        if opacity is not None:
            self.opacity_slider.setValue(opacity)
        index = self.colormap_combo.findData(self.preferences.saliency_colormap())
        if index >= 0:
            self.colormap_combo.setCurrentIndex(index)
        overlay.ready.connect(self._on_ready)
        overlay.unavailable.connect(self._on_unavailable)

    def is_wanted(self) -> bool:
        """True when the overlay is on or results are still expected."""
        return self.action.isChecked() or bool(self.wanted)

    def schedule(self) -> None:
        """Ask for the overlay once the current event-loop turn ends (if it is wanted)."""
        if self.is_wanted():
            self._timer.start()

    def request(self) -> tuple[OverlayRequest, list[ViewportView]] | None:
        """What the overlay should show now: the driver and its synced, covered targets.

        ``None`` when the overlay is off, slices are not synced, or no target
        shows a match.
        """
        if not self.action.isChecked() or not self.sync.enabled[Channel.SLICE]:
            return None
        # Saliency is computed on axial slices: coronal and sagittal views take no part.
        views = [
            self.viewports.views[i]
            for i in sorted(self.viewports.views)
            if self.viewports.views[i].plane is Plane.AXIAL
        ]
        driver = self.mapper.last_source
        driver_view = next((v for v in views if v.state is driver), None)
        if driver is None or driver_view is None:
            return None
        targets = [
            v
            for v in views
            if v is not driver_view
            and v.state.match is not None
            and not shows_outside_level(v.state)
        ]
        if not targets:
            return None
        request = OverlayRequest.make(
            (driver.volume, driver.slice_index, driver.window),
            [(v.state.volume, v.state.slice_index, v.state.window) for v in targets],
            self.colormap_combo.currentData(),
            self.opacity_slider.value() / 100.0,
        )
        return request, [driver_view, *targets]

    def update(self) -> None:
        """Drop overlays that no longer fit their viewport and ask for the ones wanted now."""
        wanted = self.request()
        self.wanted = {}
        if wanted is not None:
            request, views = wanted
            self.wanted = dict(zip(request.keys(), views, strict=True))
        # Drop overlays that no longer describe their viewport's slice pair now,
        # before the new ones arrive; a new colour map or opacity may wait.
        keep = {id(v): k for k, v in self.wanted.items()}
        for view in self.viewports.views.values():
            key = keep.get(id(view))
            if view.overlay is not None and (key is None or not key.same_content(view.overlay_key)):
                view.set_overlay(None)
        if wanted is not None:
            self.overlay.request(wanted[0])
            # Feature maps of every slice on screen, in the background: later syncs are cheap.
            self.overlay.prefetch([(v.state.volume, v.state.slice_index) for v in wanted[1]])
        elif not self.action.isChecked():
            self.overlay.clear_cache()

    def _on_ready(self, results: list) -> None:
        views = list(self.viewports.views.values())
        for key, rgb in results:
            view = self.wanted.get(key)
            if view is None or view not in views:
                continue  # superseded while it was computed
            state = view.state
            if (state.slice_index, state.window) != (key.index, key.window):
                continue
            caption = "saliency"
            if state is self.mapper.last_source:
                # The driver's map depends on the pair: say which date it is for.
                partner = next(
                    (v.state for v in views if id(v.state.volume) == key.partner),
                    None,
                )
                if partner is not None:
                    caption = f"saliency vs {partner.volume.info.display_date()}"
            view.set_overlay(rgb, key, caption, colormap_rgb(self.colormap_combo.currentData()))

    def _on_unavailable(self, message: str) -> None:
        self.action.setChecked(False)
        self.action.setEnabled(False)
        self.action.setToolTip(f"Saliency overlay is unavailable: {message}")
        self.status.status(f"Saliency overlay is unavailable: {message}", 10000)
