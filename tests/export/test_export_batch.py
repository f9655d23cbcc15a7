"""Batch export of matched pairs: names, coverage, progress, cancel, collisions, failures."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

import app.io.safe_write as sw
from app.core.imaging import PRESETS, window_to_uint8
from app.core.volume import Volume
from app.export.batch import BatchExportError, export_matched_pairs
from app.export.errors import ExportError
from app.export.render import GAP
from app.ml.anatomy.align import Alignment
from app.ml.anatomy.match import MatchResult, SliceMatch

WINDOW = PRESETS["lung"]


def fake_result(current: Volume, prior: Volume, offset: int) -> MatchResult:
    """Current slice i shows the level of prior slice i - offset; levels outside the prior are uncovered.

    Built by hand so the batch tests need no model; the engine's own tests cover matching.
    """
    n, m = current.n_slices, prior.n_slices
    j = np.arange(n) - offset
    covered = (j >= 0) & (j < m)
    nearest = np.clip(j, 0, m - 1)
    score = np.where(covered, 0.9, 0.3)
    alignment = Alignment(
        current_z=current.slice_z,
        mapped_z=prior.slice_z[nearest] + (j - nearest) * 6.0,
        prior_index=nearest,
        score=score,
        in_coverage=covered,
        prior_z=prior.slice_z,
        outlier=np.zeros(n, bool),
    )
    matches = [
        SliceMatch(
            i,
            tuple(current.slice_positions[i]),
            int(j[i]) if covered[i] else None,
            tuple(prior.slice_positions[j[i]]) if covered[i] else None,
            float(score[i]),
            bool(covered[i]),
        )
        for i in range(n)
    ]
    return MatchResult("test-model", matches, alignment, 1.0)


@pytest.fixture
def pair(ct_factory):
    current = ct_factory(shape=(10, 40, 48), seed=1)
    prior = ct_factory(shape=(8, 36, 44), study_date="20250110", seed=2)
    return current, prior, fake_result(current, prior, offset=2)


def test_exports_covered_pairs_with_the_right_slices(pair, tmp_path) -> None:
    current, prior, result = pair
    calls = []
    out = export_matched_pairs(
        current,
        prior,
        result,
        tmp_path / "new" / "folder",
        window=WINDOW,
        slices=range(6),
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(i, 6) for i in range(1, 7)]
    assert out.uncovered == [0, 1]  # the prior starts at current slice 2
    assert not out.cancelled
    assert [p.name for p in out.written] == [
        # Image numbers (from the head, from 1): current has 10 slices, the prior 8.
        f"priorsync_20260314_im{10 - k:03d}_vs_20250110_im{8 - (k - 2):03d}.png"
        for k in range(2, 6)
    ]
    for k, path in zip(range(2, 6), out.written, strict=True):
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        assert np.array_equal(image[:40, :48, 0], window_to_uint8(current.slice(k), WINDOW))
        assert np.array_equal(
            image[:36, 48 + GAP : 48 + GAP + 44, 2], window_to_uint8(prior.slice(k - 2), WINDOW)
        )


def test_uncovered_slices_on_request(pair, tmp_path) -> None:
    current, prior, result = pair
    out = export_matched_pairs(
        current, prior, result, tmp_path, window=WINDOW, slices=[0], include_uncovered=True
    )
    assert out.uncovered == []
    # The prior's nearest slice (0) is shown, flagged in the caption.
    assert out.written[0].name == "priorsync_20260314_im010_vs_20250110_im008.png"


def test_cancel_keeps_whole_files_only(pair, tmp_path) -> None:
    current, prior, result = pair
    cancel = threading.Event()

    def progress(done: int, total: int) -> None:
        if done == 4:  # two files written by then (slices 2 and 3)
            cancel.set()

    out = export_matched_pairs(
        current, prior, result, tmp_path, window=WINDOW, progress=progress, cancel=cancel
    )
    assert out.cancelled
    assert len(out.written) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in out.written)
    for path in out.written:
        assert cv2.imread(str(path)) is not None  # complete, decodable


def test_second_batch_does_not_overwrite_the_first(pair, tmp_path) -> None:
    current, prior, result = pair
    first = export_matched_pairs(current, prior, result, tmp_path, window=WINDOW, slices=[3, 4])
    stamps = {p: p.read_bytes() for p in first.written}
    second = export_matched_pairs(
        current, prior, result, tmp_path, window=PRESETS["bone"], slices=[3, 4]
    )
    assert [p.name for p in second.written] == [
        "priorsync_20260314_im007_vs_20250110_im007_2.png",
        "priorsync_20260314_im006_vs_20250110_im006_2.png",
    ]
    assert all(p.read_bytes() == data for p, data in stamps.items())


def test_a_write_failure_reports_what_was_written(pair, tmp_path, monkeypatch) -> None:
    current, prior, result = pair
    real = sw._write_all
    count = []

    def fail_third(fd: int, data: bytes) -> None:
        count.append(1)
        if len(count) == 3:
            raise OSError(28, "No space left on device")
        real(fd, data)

    monkeypatch.setattr(sw, "_write_all", fail_third)
    with pytest.raises(BatchExportError, match="the disk is full") as info:
        export_matched_pairs(current, prior, result, tmp_path, window=WINDOW)
    written = info.value.result.written
    assert len(written) == 2
    assert sorted(tmp_path.iterdir()) == sorted(written)


def test_bad_slice_range(pair, tmp_path) -> None:
    current, prior, result = pair
    with pytest.raises(ExportError, match=r"slice 10 is outside the current series \(0..9\)"):
        export_matched_pairs(current, prior, result, tmp_path, window=WINDOW, slices=[9, 10])
    assert list(tmp_path.iterdir()) == []


def test_export_safe_write_reports_failures_as_export_errors(tmp_path) -> None:
    from app.export.errors import ExportError, ExportExistsError
    from app.export.safe_write import safe_write

    path = safe_write(tmp_path / "a.png", b"one")
    with pytest.raises(ExportExistsError) as info:
        safe_write(path, b"two")
    assert info.value.path == path and path.read_bytes() == b"one"
    with pytest.raises(ExportError, match="does not exist"):
        safe_write(tmp_path / "missing" / "a.png", b"x")
