"""The follow-up table and saving / reloading the measurements beside the caches."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from app.core.measure import Measurement
from app.core.measure_store import MeasurementStore
from app.core.volume import SeriesInfo
from app.io.catalog import PatientGroup, StudyGroup
from app.io.measurements_file import measurements_path
from app.ui.measure.dock import FollowUpDock
from app.ui.measure.persistence import MeasurementPersistence, patient_key


def line(length: float, date: str, series: str, finding: str = "F1") -> Measurement:
    return Measurement("line", series, date, ((0, 0, 0), (length, 0, 0)), finding)


def test_table_lists_dates_oldest_first_with_changes(qtbot):
    store = MeasurementStore()
    dock = FollowUpDock(store)
    qtbot.addWidget(dock)
    assert dock.cell_texts() == [] and not dock.empty.isHidden()
    store.add(line(12.0, "20250310", "cur"))
    store.add_many([line(8.0, "20230117", "p2"), line(10.0, "20240205", "p1")])
    assert dock.cell_texts() == [
        ["F1", "2023-01-17", "8.0 mm", "-", "-"],
        ["F1", "2024-02-05", "10.0 mm", "+25.0 %", "+25.0 %"],
        ["F1", "2025-03-10", "12.0 mm", "+50.0 %", "+20.0 %"],
    ]
    assert dock.empty.isHidden()
    chosen = []
    dock.row_chosen.connect(lambda f, d: chosen.append((f, d)))
    dock.table.cellClicked.emit(1, 2)
    assert chosen == [("F1", "20240205")]
    store.undo()
    assert [r[1] for r in dock.cell_texts()] == ["2025-03-10"]


def patient(pid: str = "PID-SECRET") -> PatientGroup:
    info = SeriesInfo(patient_id=pid, patient_name="Doe^Jane", study_uid="1.2")
    ref = SimpleNamespace(info=info)
    return PatientGroup(pid, "Doe^Jane", [StudyGroup("1.2", "20250310", "", "CT", [ref])])


def test_save_and_reload_round_trip(qtbot, tmp_path):
    store = MeasurementStore()
    saver = MeasurementPersistence(store, tmp_path)
    saver.open_patient(patient())
    store.add(line(12.0, "20250310", "cur", ""))
    store.add(Measurement("ellipse", "cur", "20250310", ((0, 0, 0), (5, 0, 0), (0, 3, 0)), ""))
    path = measurements_path(patient_key(patient()), tmp_path)
    assert path.exists()
    text = path.read_text()
    assert "PID-SECRET" not in text and "Doe" not in text and "PID-SECRET" not in path.name
    again = MeasurementStore()
    MeasurementPersistence(again, tmp_path).open_patient(patient())
    assert [m for _, m in again.items()] == [m for _, m in store.items()]
    assert not again.can_undo  # a reload is no step to undo
    # Another patient sees none of them.
    other = MeasurementStore()
    MeasurementPersistence(other, tmp_path).open_patient(patient("OTHER"))
    assert len(other) == 0


def test_a_corrupt_file_is_skipped_with_a_message_and_never_overwritten(qtbot, tmp_path):
    path = measurements_path(patient_key(patient()), tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'{"format": "priorsync-measurements", "version": 1, "findings": [{"na')
    store = MeasurementStore()
    saver = MeasurementPersistence(store, tmp_path)
    messages: list[str] = []
    saver.message.connect(messages.append)
    saver.open_patient(patient())
    assert len(store) == 0
    assert len(messages) == 1 and "corrupt" in messages[0] and "untouched" in messages[0]
    store.add(line(12.0, "20250310", "cur", ""))
    assert path.read_bytes().endswith(b'"na')  # untouched
    saved = sorted(p for p in tmp_path.iterdir() if p != path)
    assert len(saved) == 1
    assert json.loads(saved[0].read_text())["findings"][0]["name"] == "F1"
    # Opened again: the corrupt file is still skipped, the new one is read.
    again = MeasurementStore()
    MeasurementPersistence(again, tmp_path).open_patient(patient())
    assert len(again) == 1


def test_a_failed_save_says_so(qtbot, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    store = MeasurementStore()
    saver = MeasurementPersistence(store, blocker / "measurements")
    messages: list[str] = []
    saver.message.connect(messages.append)
    saver.open_patient(patient())
    store.add(line(12.0, "20250310", "cur", ""))
    assert messages and messages[-1].startswith("cannot save the measurements")
    assert len(store) == 1  # nothing lost on screen


@pytest.mark.parametrize("pid,name", [("", ""), ("X", "")])
def test_patient_key_without_identifiers_uses_the_studies(pid, name):
    ref = SimpleNamespace(info=SeriesInfo(patient_id=pid, patient_name=name, study_uid="9.9"))
    p = PatientGroup(pid, name, [StudyGroup("9.9", "", "", "", [ref])])
    assert ("9.9" in patient_key(p)) == (not pid and not name)
