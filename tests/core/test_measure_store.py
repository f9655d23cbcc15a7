"""The measurement store: add, edit, delete, propagate and reload as undoable steps."""

from __future__ import annotations

import pytest

from app.core.measure import Measurement, MeasurementError
from app.core.measure_store import MeasurementStore


def line(x: float, series: str = "s1", date: str = "20240101", finding: str = "") -> Measurement:
    return Measurement("line", series, date, ((0, 0, 0), (x, 0, 0)), finding)


def test_add_starts_a_finding_and_lists_per_series():
    store = MeasurementStore()
    events: list[str] = []
    store.changed.connect(events.append)
    a = store.add(line(10))
    b = store.add(line(12, series="s2"))
    assert store.get(a).finding == "F1" and store.get(b).finding == "F2"
    assert [mid for mid, _ in store.items("s2")] == [b]
    assert events == ["measurements", "measurements"]


def test_edit_delete_undo_redo_are_one_history():
    store = MeasurementStore()
    a = store.add(line(10))
    assert store.edit(a, [(0, 0, 0), (20, 0, 0)])
    assert store.get(a).diameter_mm == pytest.approx(20)
    store.select(a)
    assert store.delete(a)
    assert store.get(a) is None and store.selected is None
    assert store.undo()  # the delete
    assert store.get(a).diameter_mm == pytest.approx(20)
    assert store.undo()  # the edit
    assert store.get(a).diameter_mm == pytest.approx(10)
    assert store.undo()  # the add
    assert len(store) == 0 and not store.can_undo and not store.undo()
    assert store.redo() and store.redo()
    assert store.get(a).diameter_mm == pytest.approx(20)
    assert store.redo() and store.get(a) is None
    assert not store.redo()


def test_a_new_change_clears_the_redo_history():
    store = MeasurementStore()
    a = store.add(line(10))
    store.undo()
    store.add(line(5))
    assert not store.can_redo
    assert store.get(a) is None


def test_propagation_is_one_step_and_one_finding():
    store = MeasurementStore()
    a = store.add(line(10))
    name = store.get(a).finding
    copies = [line(11, "p1", "20230101", name), line(9, "p2", "20220101", name)]
    ids = store.add_many(copies)
    assert [f.name for f in store.findings()] == [name]
    assert len(store.findings()[0].measurements) == 3
    assert set(store.ids_of_finding(name)) == {a, *ids}
    store.undo()
    assert store.ids_of_finding(name) == [a]


def test_a_bad_edit_is_refused_and_changes_nothing():
    store = MeasurementStore()
    a = store.add(line(10))
    with pytest.raises(MeasurementError):
        store.edit(a, [(0, 0, 0)])
    with pytest.raises(MeasurementError):
        store.edit(a, [(0, 0, 0), (float("nan"), 0, 0)])
    assert store.get(a).diameter_mm == pytest.approx(10)
    assert not store.edit("nope", [(0, 0, 0), (1, 1, 1)])
    assert not store.edit(a, [(0, 0, 0), (10, 0, 0)])  # nothing moved: no step
    store.undo()
    assert len(store) == 0


def test_replace_all_drops_history_and_selection():
    store = MeasurementStore()
    a = store.add(line(10))
    store.select(a)
    store.replace_all([line(3, finding="F7")])
    assert store.selected is None and not store.can_undo
    assert [f.name for f in store.findings()] == ["F7"]
    assert store.new_finding_name() == "F1"


def test_listeners_see_the_history_of_the_change_they_hear_about():
    store = MeasurementStore()
    seen: list[tuple[bool, bool]] = []
    store.changed.connect(lambda what: seen.append((store.can_undo, store.can_redo)))
    store.add(line(10))
    store.undo()
    store.redo()
    assert seen == [(True, False), (False, True), (True, False)]
