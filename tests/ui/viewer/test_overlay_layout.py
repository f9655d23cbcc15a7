"""No overlay text overprints another, at any viewport size down to the minimum."""

from __future__ import annotations

import itertools

import pytest
from fakes import make_volume

from app.core.state import MatchInfo, ViewportState
from app.ui.viewer.viewport import ViewportView


@pytest.fixture
def busy_view(qtbot):
    """A viewport with every overlay shown: status, candidates, out-of-coverage mark."""
    state = ViewportState(make_volume(shape=(40, 48, 64)))
    view = ViewportView(state, "2024-01-01 · CT CHEST · Lung 1.25 mm B70f")
    qtbot.addWidget(view)
    view.show()
    qtbot.waitExposed(view)
    view.set_sync_status("indexing 40%")
    yield view
    view.detach()


def visible_labels(view):
    labels = [
        view.slice_label,
        view.window_label,
        view.zoom_label,
        view.banner,
        view.sync_label,
        view.candidates_label,
        *view.orientation_labels.values(),
    ]
    return [lab for lab in labels if not lab.isHidden() and lab.text()]


@pytest.mark.parametrize("size", [(240, 240), (320, 300), (520, 420), (900, 700)])
@pytest.mark.parametrize("outside", [False, True])
def test_no_two_overlay_texts_intersect(busy_view, qtbot, size, outside):
    view = busy_view
    state = view.state
    candidates = [(20, 0.91), (22, 0.7), (28, 0.6), (10, 0.5)]
    state.set_slice(20, match=MatchInfo(0.91, in_coverage=not outside, candidates=candidates))
    view.resize(*size)
    qtbot.wait(20)
    view._place_overlays()
    shown = visible_labels(view)
    host = view.graphics.viewport().rect()
    for label in shown:
        assert host.contains(label.geometry()), label.text()
    for a, b in itertools.combinations(shown, 2):
        assert not a.geometry().intersects(b.geometry()), (a.text(), b.text())
    if outside:
        assert view.banner in shown and view.candidates_label not in shown
        assert "match" not in view.slice_label.text()
    elif size[1] >= 300:
        assert view.candidates_label in shown  # room enough: the list stays
