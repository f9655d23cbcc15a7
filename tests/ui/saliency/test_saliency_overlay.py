"""The saliency overlay on synced viewports: what it shows, when it goes, how it looks."""

from __future__ import annotations

import numpy as np
import pytest
from input_events import wheel
from PySide6 import QtCore
from sync_helpers import click, show_slice_unsynced

from app.core.imaging import window_to_uint8
from app.ml.runtime.model import default_model_path
from app.ml.saliency.gradcam import SimilaritySaliency, blend_overlay, readable_map, to_slice_grid

Qt = QtCore.Qt

pytestmark = pytest.mark.skipif(
    not default_model_path().is_file(), reason="needs the shipped model models/priorsync-embed.onnx"
)


def overlays_ready(win, views) -> bool:
    return all(
        v.overlay is not None
        and v.overlay_key is not None
        and v.overlay_key.index == v.state.slice_index
        for v in views
    )


def sync_at(win, k: int) -> None:
    show_slice_unsynced(win, win.views[0].state, k)
    click(win.views[0])


def test_s_shows_the_pair_maps_in_the_driver_and_every_target(synced, qtbot):
    views = [synced.views[i] for i in sorted(synced.views)]
    sync_at(synced, 60)
    synced.views[0].setFocus()
    qtbot.keyClick(synced, Qt.Key.Key_S)
    assert synced.saliency_action.isChecked()
    qtbot.waitUntil(lambda: overlays_ready(synced, views), timeout=20000)
    driver, target = views[0], views[1]
    assert "saliency vs 2024-02-05" in driver.slice_label.text()
    assert "saliency" in target.slice_label.text()
    # The target's overlay is exactly the library's map of this pair, blended on its slice.
    sal = SimilaritySaliency(synced.anatomy.engine.model)
    maps = sal.pair_maps(
        driver.state.volume, driver.state.slice_index, target.state.volume, target.state.slice_index
    )
    grey = target.windowed_slice()
    on_slice = to_slice_grid(maps.match, target.state.volume, target.state.slice_index, sal.spec)
    # As a reader sees it: smoothed over a feature cell, cut to the body.
    volume = target.state.volume
    shown = readable_map(
        on_slice,
        volume.slice(target.state.slice_index),
        float(max(sal.grid.jump)) * sal.spec.pixel_mm,
        float(min(volume.geometry.spacing[:2])),
    )
    expected = blend_overlay(grey, shown, "inferno", 0.5)
    assert target.overlay.shape == (*grey.shape, 3)
    np.testing.assert_array_equal(target.overlay, expected)
    assert target.legend_label.isVisible() and "low" in target.legend_label.text()
    # It is what the image item paints, and it is not the plain grey slice.
    assert np.array_equal(target.image_item.image, expected)
    assert np.abs(expected.astype(int) - grey[..., None]).max() > 30


def test_scrolling_never_leaves_an_overlay_on_another_slice(synced, qtbot):
    views = [synced.views[i] for i in sorted(synced.views)]
    sync_at(synced, 55)
    synced.saliency_action.trigger()
    qtbot.waitUntil(lambda: overlays_ready(synced, views), timeout=20000)
    for _ in range(4):
        wheel(views[0].graphics.viewport(), +1)
        # Right after the step: no view shows an overlay computed for another slice.
        for v in views:
            assert v.overlay is None or v.overlay_key.index == v.state.slice_index
    qtbot.waitUntil(lambda: overlays_ready(synced, views), timeout=20000)
    assert views[0].overlay_key.index == 59


def test_opacity_and_colour_map_change_the_look(synced, qtbot):
    views = [synced.views[i] for i in sorted(synced.views)]
    sync_at(synced, 60)
    synced.saliency_action.trigger()
    qtbot.waitUntil(lambda: overlays_ready(synced, views), timeout=20000)
    inferno = views[1].overlay.copy()
    synced.colormap_combo.setCurrentIndex(synced.colormap_combo.findData("jet"))
    qtbot.waitUntil(lambda: views[1].overlay_key.colormap == "jet", timeout=20000)
    assert not np.array_equal(views[1].overlay, inferno)
    synced.opacity_slider.setValue(0)
    qtbot.waitUntil(lambda: views[1].overlay_key.opacity == 0.0, timeout=20000)
    grey = window_to_uint8(
        views[1].state.volume.slice(views[1].state.slice_index), views[1].state.window
    )
    np.testing.assert_array_equal(views[1].overlay, np.repeat(grey[..., None], 3, axis=2))


def test_uncovered_targets_get_no_overlay_and_off_removes_all(synced, qtbot):
    views = [synced.views[i] for i in sorted(synced.views)]
    synced.saliency_action.trigger()
    sync_at(synced, 3)  # outside both priors
    qtbot.wait(300)
    qtbot.waitUntil(lambda: synced.saliency.is_idle(), timeout=20000)
    assert all(v.overlay is None for v in views)
    sync_at(synced, 60)
    qtbot.waitUntil(lambda: overlays_ready(synced, views), timeout=20000)
    synced.sync_slices_action.trigger()  # sync off: the pairs are gone, so are the maps
    assert all(v.overlay is None for v in views)
    synced.sync_slices_action.trigger()
    qtbot.waitUntil(lambda: overlays_ready(synced, views), timeout=20000)
    synced.saliency_action.trigger()  # S off
    assert all(v.overlay is None for v in views)
    assert all("saliency" not in v.slice_label.text() for v in views)


def test_feature_maps_are_prefetched_so_later_syncs_skip_the_model(synced, qtbot):
    views = [synced.views[i] for i in sorted(synced.views)]
    sync_at(synced, 60)
    synced.saliency_action.trigger()
    qtbot.waitUntil(lambda: overlays_ready(synced, views), timeout=20000)
    qtbot.waitUntil(synced.saliency.is_idle, timeout=60000)  # every slice prefetched
    single_runs: list[int] = []
    model = synced.saliency._saliency
    original = model.slice_features
    model.slice_features = lambda volume, index: (
        single_runs.append(index) or original(volume, index)
    )
    for k in (45, 55, 75):  # inside both priors: every viewport gets an overlay
        sync_at(synced, k)
        qtbot.waitUntil(lambda: overlays_ready(synced, views), timeout=20000)
    assert single_runs == []
