"""Measurements in exported pictures: shapes on their slices, the follow-up table as a caption."""

from __future__ import annotations

import cv2
import numpy as np
from conftest import IDENTIFIERS

from app.core.imaging import PRESETS
from app.core.measure import Finding, Measurement
from app.core.measure_slice import image_to_lps, series_key
from app.export.formats import exporter_for
from app.export.measurements import draw_measurements, table_lines, with_measurements
from app.export.pairs import PriorSlice, build_panels, encode_panels
from app.export.png_text import read_text_chunks


def horizontal_line(volume, k, y_mm, x0, x1, finding="F1") -> Measurement:
    pts = (image_to_lps(volume, k, x0, y_mm), image_to_lps(volume, k, x1, y_mm))
    return Measurement("line", series_key(volume), volume.info.study_date, pts, finding)


def test_a_line_is_drawn_on_its_slice_only(ct_factory):
    vol = ct_factory()
    sx, sy = vol.geometry.spacing[:2]
    m = horizontal_line(vol, 5, (20 + 0.5) * sy, (4 + 0.5) * sx, (40 + 0.5) * sx)
    grey = np.zeros((*vol.shape[1:], 3), np.uint8)
    drawn, n = draw_measurements(grey, vol, 5, [m])
    assert n == 1
    assert drawn[20, 10:35].max(axis=1).min() > 100  # along the line, pixel row 20
    assert drawn[30:, :30].max() == 0  # nowhere else below it
    assert grey.max() == 0  # the input is not touched
    same, n = draw_measurements(grey, vol, 6, [m])
    assert n == 0 and same.max() == 0


def test_an_ellipse_outline_surrounds_its_centre(ct_factory):
    vol = ct_factory()
    k = 3
    c = image_to_lps(vol, k, 100.0, 100.0)
    m = Measurement(
        "ellipse",
        series_key(vol),
        "",
        (c, image_to_lps(vol, k, 140.0, 100.0), image_to_lps(vol, k, 100.0, 120.0)),
        "F2",
    )
    drawn, n = draw_measurements(np.zeros((*vol.shape[1:], 3), np.uint8), vol, k, [m])
    sx, sy = vol.geometry.spacing[:2]
    row, col = int(100 / sy - 0.5), int(100 / sx - 0.5)
    assert n == 1 and drawn[row, col].max() == 0  # hollow
    assert drawn[row, int(140 / sx - 0.5) - 1 : int(140 / sx - 0.5) + 2].max() > 0  # its right end


def test_table_lines_give_changes_and_no_identifiers():
    f = Finding(
        "F1",
        [
            Measurement("line", "a", "20250310", ((0, 0, 0), (12, 0, 0)), "F1"),
            Measurement("line", "b", "20230117", ((0, 0, 0), (8, 0, 0)), "F1"),
            Measurement("line", "c", "20240205", ((0, 0, 0), (10, 0, 0)), "F1"),
        ],
    )
    lines = table_lines([f])
    assert lines[0].startswith("FOLLOW-UP")
    assert "2023-01-17" in lines[1] and lines[1].rstrip().endswith("-")
    assert "+25.0 %" in lines[2] and "+50.0 %" in lines[3] and "+20.0 %" in lines[3]
    assert table_lines([]) == []


def test_export_with_measurements_and_caption(ct_factory, tmp_path):
    current = ct_factory(seed=1)
    prior = ct_factory(seed=2, study_date="20250110")
    window = PRESETS["lung"]
    panels = build_panels(current, 9, [PriorSlice(prior, 4, 0.9)], window)
    measurements = {
        id(current): [horizontal_line(current, 9, 60.0, 20.0, 80.0)],
        id(prior): [horizontal_line(prior, 4, 60.0, 20.0, 70.0)],
    }
    findings = [Finding("F1", [m for ms in measurements.values() for m in ms])]
    marked = with_measurements(panels, lambda v: measurements.get(id(v), []))
    assert all(p.overlay is not None for p in marked)
    data, rendered = encode_panels(marked, exporter_for("png"), footer=table_lines(findings))
    plain, plain_rendered = encode_panels(panels, exporter_for("png"))
    assert rendered.image.shape[0] > plain_rendered.image.shape[0]  # the caption's rows
    assert rendered.footer[0].startswith("FOLLOW-UP") and len(rendered.footer) == 3
    assert "+20.0 %" in rendered.footer[2]
    picture = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape[:2] == rendered.image.shape[:2]
    # The caption is drawn (not just listed): its rows hold bright text.
    assert picture[plain_rendered.image.shape[0] :].max() > 150
    # Nothing identifying in the picture's text or metadata.
    blob = data.decode("latin-1") + " ".join(rendered.footer)
    for value in IDENTIFIERS.values():
        assert value not in blob
    assert all(IDENTIFIERS["patient_id"] not in v for _, v in read_text_chunks(data))


def test_panels_without_measurements_are_unchanged(ct_factory):
    current = ct_factory(seed=1)
    panels = build_panels(current, 9, [], PRESETS["lung"])
    assert with_measurements(panels, lambda v: []) == panels
