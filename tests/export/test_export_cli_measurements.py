"""``priorsync export --measurements``: the viewer's saved measurements and the follow-up table."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from test_export_cli import dicom_pair, run_cli  # noqa: F401 - the fixture, by name

from app.core.measure import Finding, Measurement
from app.core.measure_slice import image_to_lps, series_key
from app.io.load import load_volume
from app.io.measurements_file import MeasurementsFile, measurements_path, patient_key
from app.ml.runtime.model import default_model_path

pytestmark = pytest.mark.skipif(
    not default_model_path().is_file(),
    reason="the shipped embedding model models/priorsync-embed.onnx is missing from this checkout",
)


@pytest.fixture
def saved(dicom_pair, tmp_path, monkeypatch):  # noqa: F811 - the fixture above
    monkeypatch.setenv("PRIORSYNC_CACHE_DIR", str(tmp_path / "cache"))
    current = load_volume(dicom_pair["current"])
    prior = load_volume(dicom_pair["prior"])
    info = current.info
    path = measurements_path(patient_key(info.patient_id, info.patient_name))
    lines = [
        Measurement(
            "line",
            series_key(v),
            v.info.study_date,
            (image_to_lps(v, k, 30.0, 100.0), image_to_lps(v, k, 30.0 + length, 100.0)),
            "F1",
        )
        for v, k, length in ((current, 12, 120.0), (prior, 12 - 3, 100.0))
    ]
    MeasurementsFile(path).save([Finding("F1", lines)])
    return path


def test_measurements_and_table_are_drawn_only_when_asked(dicom_pair, saved, tmp_path, capsys):  # noqa: F811
    args = [dicom_pair["current"], dicom_pair["prior"], "--slice", 12, "--window", "lung"]
    rc, _, err = run_cli(capsys, *args, "--out", tmp_path / "plain.png")
    assert rc == 0, err
    rc, _, err = run_cli(capsys, *args, "--out", tmp_path / "measured.png", "--measurements")
    assert rc == 0, err and "warning" not in err
    plain = cv2.imread(str(tmp_path / "plain.png"))
    measured = cv2.imread(str(tmp_path / "measured.png"))
    assert measured.shape[0] > plain.shape[0]  # the follow-up table's rows
    # The current's line: pixel row 100 / 3 mm, from x 30 mm to 150 mm, in the measurement colour.
    row = int(100 / 3.0 - 0.5)
    segment = measured[row, 15:45].astype(int)
    assert (np.abs(segment - plain[row, 15:45].astype(int)).sum(axis=1) > 0).all()
    assert measured[row, 30, 2] > measured[row, 30, 0]  # amber: more red than blue (BGR)


def test_a_corrupt_measurements_file_is_skipped_with_a_warning(dicom_pair, saved, tmp_path, capsys):  # noqa: F811
    saved.write_bytes(b"{not json")
    out = tmp_path / "x.png"
    rc, _, err = run_cli(
        capsys,
        dicom_pair["current"],
        dicom_pair["prior"],
        "--slice",
        12,
        "--out",
        out,
        "--measurements",
    )
    assert rc == 0, err
    assert "corrupt" in err and "no saved measurements" in err
    assert saved.read_bytes() == b"{not json"
