"""The measurements file: atomic round trip, corrupt files skipped and never overwritten."""

from __future__ import annotations

import json

from app.core.measure import Finding, Measurement
from app.io.measurements_file import MeasurementsFile, measurements_path


def findings() -> list[Finding]:
    m = Measurement("line", "1.2.3", "20250101", ((0, 0, 0), (10, 0, 0)), "n1", "RUL nodule")
    e = Measurement("ellipse", "1.2.4", "20260101", ((0, 0, 0), (6, 0, 0), (0, 4, 0)), "n1")
    return [Finding("RUL nodule", [m, e])]


def test_round_trip(tmp_path):
    path = measurements_path("PAT-1|Doe^Jane", tmp_path)
    assert "PAT" not in path.name and "Doe" not in path.name
    store = MeasurementsFile(path)
    assert store.load() == [] and store.message == ""
    assert store.save(findings()) == path
    again = MeasurementsFile(path).load()
    assert again == findings()
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))


def test_corrupt_file_is_skipped_and_kept(tmp_path, caplog):
    path = measurements_path("PAT-2", tmp_path)
    path.write_bytes(b'{"format": "priorsync-measurements", "findi')
    before = path.read_bytes()
    store = MeasurementsFile(path)
    assert store.load() == []
    assert "corrupt" in store.message and "left untouched" in store.message
    assert "PAT-2" not in caplog.text
    written = store.save(findings())
    assert written != path and path.read_bytes() == before
    assert MeasurementsFile(written).load() == findings()


def test_wrong_content_is_not_overwritten_even_when_it_appears_later(tmp_path):
    path = measurements_path("PAT-3", tmp_path)
    store = MeasurementsFile(path)
    store.load()
    path.write_text(json.dumps({"format": "something else"}))
    written = store.save(findings())
    assert written != path and json.loads(path.read_text()) == {"format": "something else"}


def test_bad_measurement_inside_counts_as_corrupt(tmp_path):
    path = tmp_path / "m.json"
    doc = {"format": "priorsync-measurements", "version": 1, "findings": [
        {"name": "x", "measurements": [{"kind": "line", "points": [[0, 0, 0]]}]}
    ]}  # fmt: skip
    path.write_text(json.dumps(doc))
    store = MeasurementsFile(path)
    assert store.load() == [] and "needs 2 points" in store.message


def test_unwritable_folder_gives_a_message(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = MeasurementsFile(blocker / "sub" / "m.json")
    try:
        store.save(findings())
    except Exception as exc:  # noqa: BLE001 - the type is checked below
        assert type(exc).__name__ == "MeasurementsFileError" and "cannot" in str(exc)
    else:
        raise AssertionError("saving under a file should fail")
