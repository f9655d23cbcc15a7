"""Drawing, editing, deleting and undoing measurements in a real viewport (pytest-qt)."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import make_volume
from input_events import drag
from PySide6 import QtCore, QtWidgets

from app.core.measure_slice import lps_to_image, measurement_slice, roi_stats, series_key
from app.core.measure_store import MeasurementStore
from app.core.planes import Plane
from app.core.state import ViewportState
from app.ui.measure.overlay import roi_points
from app.ui.measure.tools import MeasureTools
from app.ui.viewer.slice_view_box import InteractionMode
from app.ui.viewer.viewport import ViewportView

Qt = QtCore.Qt


@pytest.fixture
def setup(qtbot):
    window = QtWidgets.QWidget()
    qtbot.addWidget(window)
    layout = QtWidgets.QHBoxLayout(window)
    state = ViewportState(make_volume(shape=(20, 48, 64), spacing=(0.7, 0.9, 2.5)))
    view = ViewportView(state, "2024-01-01 · CT")
    layout.addWidget(view)
    window.resize(600, 480)
    window.show()
    qtbot.waitExposed(window)
    store = MeasurementStore()
    messages: list[str] = []
    tools = MeasureTools(store, window, messages.append)
    tools.attach(view)
    yield tools, view, store, messages
    tools.detach(view)
    view.detach()


def to_widget(view: ViewportView, x_mm: float, y_mm: float) -> QtCore.QPoint:
    scene = view.view_box.mapViewToScene(QtCore.QPointF(x_mm, y_mm))
    return view.graphics.mapFromScene(scene)


def from_widget(view: ViewportView, p: QtCore.QPoint) -> tuple[float, float]:
    v = view.view_box.mapSceneToView(view.graphics.mapToScene(p))
    return v.x(), v.y()


def test_l_key_chooses_the_line_tool_and_a_drag_draws_a_line(setup, qtbot):
    tools, view, store, _ = setup
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_L)
    assert tools.kind == "line" and view.mode is InteractionMode.MEASURE
    a, b = to_widget(view, 10, 12), to_widget(view, 30, 27)
    drag(view.graphics.viewport(), a, b, Qt.MouseButton.LeftButton, steps=6)
    ((mid, m),) = store.items()
    assert m.kind == "line" and m.series_uid == series_key(view.state.volume)
    assert measurement_slice(view.state.volume, m) == view.state.slice_index
    # The length is the physical distance between where the drag began and ended.
    (x0, y0), (x1, y1) = from_widget(view, a), from_widget(view, b)
    assert m.diameter_mm == pytest.approx(np.hypot(x1 - x0, y1 - y0), abs=0.1)
    assert store.selected == mid
    label = tools.overlays[view].labels[mid]
    assert label.textItem.toPlainText() == f"{m.diameter_mm:.1f} mm"
    qtbot.keyClick(view, Qt.Key.Key_L)  # again: back to navigating
    assert tools.kind is None and view.mode is InteractionMode.NAVIGATE


def test_an_ellipse_shows_the_numbers_of_core_measure(setup, qtbot):
    tools, view, store, _ = setup
    tools.choose("ellipse")
    mid = tools.draw(view, (12.0, 10.0), (32.0, 26.0))
    m = store.get(mid)
    assert m.diameter_mm == pytest.approx(20.0)
    stats = roi_stats(view.state.volume, m)
    text = tools.overlays[view].labels[mid].textItem.toPlainText()
    assert (
        f"{stats.area_mm2:.0f} mm²" in text
        and f"{stats.mean_hu:.0f} ± {stats.sd_hu:.0f} HU" in text
    )
    # The ROI on screen is where the store says.
    roi = tools.overlays[view].rois[mid]
    want = [lps_to_image(view.state.volume, view.state.slice_index, p) for p in m.points]
    assert np.allclose(roi_points(roi), want, atol=1e-6)


def test_editing_a_handle_is_one_undoable_step(setup, qtbot):
    tools, view, store, _ = setup
    tools.choose("line")
    mid = tools.draw(view, (10.0, 10.0), (20.0, 10.0))
    roi = tools.overlays[view].rois[mid]
    handle = roi.getHandles()[1]
    start = to_widget(view, 20.0, 10.0)
    end = to_widget(view, 40.0, 10.0)
    tools.choose(None)  # handles work in any mode
    assert handle.scenePos() is not None
    drag(view.graphics.viewport(), start, end, Qt.MouseButton.LeftButton, steps=6)
    assert store.get(mid).diameter_mm == pytest.approx(
        np.hypot(*np.subtract(from_widget(view, end), (10.0, 10.0))), abs=0.2
    )
    assert tools.overlays[view].rois[mid] is roi  # the ROI was already there: kept
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert store.get(mid).diameter_mm == pytest.approx(10.0)
    qtbot.keyClick(
        view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
    )
    assert store.get(mid).diameter_mm > 15.0


def test_delete_key_and_undo_bring_it_back_on_screen(setup, qtbot):
    tools, view, store, messages = setup
    tools.choose("line")
    mid = tools.draw(view, (10.0, 10.0), (20.0, 15.0))
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_Delete)
    assert store.get(mid) is None and mid not in tools.overlays[view].rois
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert store.get(mid) is not None and mid in tools.overlays[view].rois
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # the add
    assert len(store) == 0
    # Nothing left to undo or delete: the actions say so by being disabled.
    assert not tools.undo_action.isEnabled() and tools.redo_action.isEnabled()
    assert not tools.delete_action.isEnabled()
    assert not tools.undo() and messages[-1] == "nothing to undo"
    assert not tools.delete_selected() and "select a measurement" in messages[-1]


def test_measurements_stay_on_their_slice_and_survive_zoom(setup, qtbot):
    tools, view, store, _ = setup
    tools.choose("line")
    mid = tools.draw(view, (10.0, 10.0), (20.0, 15.0))
    k = view.state.slice_index
    view.state.zoom_by(2.0)
    view.state.pan_by(5.0, 3.0)
    assert mid in tools.overlays[view].rois
    view.state.set_slice(k + 1)
    assert mid not in tools.overlays[view].rois
    view.state.set_slice(k)
    assert mid in tools.overlays[view].rois
    view.set_plane(Plane.CORONAL)
    assert not tools.overlays[view].rois
    assert tools.draw(view, (1.0, 1.0), (9.0, 9.0)) is None


def test_two_clicks_draw_and_slips_are_refused(setup, qtbot):
    tools, view, store, messages = setup
    tools.choose("line")
    host = view.graphics.viewport()
    a, b = to_widget(view, 10, 10), to_widget(view, 25, 10)
    qtbot.mouseClick(host, Qt.MouseButton.LeftButton, pos=a)
    assert len(store) == 0 and tools.overlays[view].preview is not None
    qtbot.mouseClick(host, Qt.MouseButton.LeftButton, pos=b)
    assert len(store) == 1 and tools.overlays[view].preview is None
    assert tools.draw(view, (10.0, 10.0), (10.3, 10.2)) is None
    assert "too small" in messages[-1]


def test_drawing_on_another_series_while_selected_joins_the_finding(qtbot):
    from app.core.measure import Measurement

    window = QtWidgets.QWidget()
    qtbot.addWidget(window)
    state = ViewportState(make_volume(shape=(20, 48, 64), date="20230101", seed=4))
    view = ViewportView(state, "2023")
    store = MeasurementStore()
    tools = MeasureTools(store, window, lambda _m: None)
    tools.attach(view)
    other = store.add(Measurement("line", "elsewhere", "20240101", ((0, 0, 0), (9, 0, 0))))
    tools.choose("line")
    store.select(other)
    joined = tools.draw(view, (5.0, 5.0), (15.0, 5.0))
    assert store.get(joined).finding == store.get(other).finding
    # Once the finding is measured here, another drawing starts a new finding.
    store.select(other)
    second = tools.draw(view, (5.0, 15.0), (15.0, 15.0))
    assert store.get(second).finding not in ("", store.get(other).finding)
    # Nothing selected: a new finding too.
    store.select(None)
    third = tools.draw(view, (5.0, 25.0), (25.0, 25.0))
    assert store.get(third).finding not in (store.get(other).finding, store.get(second).finding)
    tools.detach(view)
    view.detach()


def test_delete_and_undo_keys_belong_to_the_viewports_area(qtbot):
    """Delete / Ctrl+Z / Ctrl+Shift+Z are shortcuts of the viewports' area only.

    A dock's own undo (the sketch dock binds the same keys to its widget) and
    a text field keep their keys: a window-wide shortcut would be ambiguous there.
    """
    window = QtWidgets.QWidget()
    qtbot.addWidget(window)
    area = QtWidgets.QWidget(window)
    tools = MeasureTools(MeasurementStore(), window, lambda _m: None, area)
    for action in (tools.delete_action, tools.undo_action, tools.redo_action):
        assert action.shortcutContext() == Qt.ShortcutContext.WidgetWithChildrenShortcut
        assert action in area.actions() and action not in window.actions()
    for action in (tools.line_action, tools.ellipse_action):
        assert action in window.actions()
