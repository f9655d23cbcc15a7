"""Measurements in the real main window: draw, propagate to both priors, the table, save, export."""

from __future__ import annotations

import cv2
import pytest
from PySide6 import QtCore

from app.core.measure_slice import measurement_slice, series_key
from app.ui.export.dialogs import PairChoices, PairExportDialog

Qt = QtCore.Qt


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """Measurement files of this test only (the index cache is the module's)."""
    monkeypatch.setenv("PRIORSYNC_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def current_view(win):
    return next(v for v in win.views.values() if v.state.volume.info.study_date == "20250310")


def test_measure_propagate_table_save_and_export(
    qtbot, private_cache, patient, patient_index_dir, tmp_path
):
    from sync_helpers import open_patient

    from app.ml.anatomy.index import IndexCache
    from app.ml.anatomy.sync_service import SyncEngine

    win = open_patient(qtbot, patient, SyncEngine(cache=IndexCache(patient_index_dir)))
    try:
        tools = win.measurements.tools
        assert tools.line_action in win.toolbar.actions()
        view = current_view(win)
        k = view.state.volume.n_slices // 2
        with win.sync.held():
            view.state.set_slice(k)
        w, h = view.plane_extent_mm()
        tools.choose("line")
        mid = tools.draw(view, (w / 2 - 40, h / 2), (w / 2 + 20, h / 2 + 10))
        assert mid is not None and win.measurements.dock.isVisible()
        store = win.measurements.store
        with qtbot.waitSignal(win.measurements.propagator.finished, timeout=120000) as done:
            tools.propagate_action.trigger()
        assert "placed on 2 of 2" in done.args[0], done.args[0]
        finding = store.get(mid).finding
        ids = store.ids_of_finding(finding)
        assert len(ids) == 3
        # Each prior shows its copy's slice, and paints it.
        for other in win.views.values():
            m = next(
                store.get(i)
                for i in ids
                if store.get(i).series_uid == series_key(other.state.volume)
            )
            assert other.state.slice_index == measurement_slice(other.state.volume, m)
            assert win.measurements.tools.overlays[other].rois
        rows = win.measurements.dock.cell_texts()
        assert [r[1] for r in rows] == ["2023-01-17", "2024-02-05", "2025-03-10"]
        assert rows[0][3] == "-" and rows[2][3].endswith("%")
        # A row click brings every date back to its measurement.
        with win.sync.held():
            view.state.set_slice(k + 5)
        win.measurements.dock.table.cellClicked.emit(2, 0)
        assert view.state.slice_index == k and store.selected == mid

        # Export with the measurements and the table, only when asked.
        plain = win.exports.export_pair_to(PairChoices(tmp_path / "plain.png", False, False))
        marked = win.exports.export_pair_to(
            PairChoices(tmp_path / "marked.png", False, False, True)
        )
        assert plain and marked
        assert cv2.imread(str(marked)).shape[0] > cv2.imread(str(plain)).shape[0]
        dialog = PairExportDialog(
            tmp_path / "x.png",
            False,
            False,
            win,
            measurements_available=win.exports.has_measurements(),
        )
        assert dialog.measurements.isEnabled() and not dialog.choices().include_measurements
        # Never over an existing file without asking.
        win.exports.confirm_overwrite = lambda path: False
        before = marked.read_bytes()
        assert win.exports.export_pair_to(PairChoices(marked, False, False, True)) is None
        assert marked.read_bytes() == before
        saved = [m for _, m in store.items()]
    finally:
        win.shutdown()
        win.close()

    # Opened again: the measurements come back with the studies.
    again = open_patient(qtbot, patient, SyncEngine(cache=IndexCache(patient_index_dir)))
    try:
        assert [m for _, m in again.measurements.store.items()] == saved
        assert len(again.measurements.dock.cell_texts()) == 3
    finally:
        again.shutdown()
        again.close()
