"""The composed export image: layout, exact pixels, captions."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from app.core.imaging import PRESETS, Window, window_to_uint8
from app.export.errors import ExportError
from app.export.formats import exporter_for
from app.export.pairs import PriorSlice, build_panels, encode_panels
from app.export.render import GAP, SlicePanel, TextStyle, render_panels


def decode(data: bytes) -> np.ndarray:
    """PNG bytes -> RGB, through the same route a user's viewer would take (a real decoder)."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert bgr is not None and bgr.dtype == np.uint8 and bgr.shape[2] == 3
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def test_size_and_exact_pixels_of_two_sizes(ct_factory, tmp_path) -> None:
    current = ct_factory(shape=(16, 48, 56), seed=1)
    prior = ct_factory(shape=(12, 40, 72), spacing=(3.0, 3.0, 5.0), seed=2, study_date="20250110")
    window = PRESETS["lung"]
    panels = build_panels(current, 9, [PriorSlice(prior, 4, 0.87)], window)
    data, rendered = encode_panels(panels, exporter_for("png"))
    path = tmp_path / "pair.png"
    path.write_bytes(data)
    # cv2.imread: the file as any PNG reader sees it.
    image = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert np.array_equal(image, rendered.image)

    caption_bar = rendered.image.shape[0] - 48
    assert image.shape == (48 + caption_bar, 56 + GAP + 72, 3)
    assert rendered.caption_top == 48
    assert rendered.slice_boxes == ((0, 0, 56, 48), (56 + GAP, 0, 72, 40))
    style = TextStyle()
    n_lines = max(len(c) for c in rendered.captions)
    assert caption_bar == 2 * style.padding + n_lines * style.line_height

    expected_cur = window_to_uint8(current.slice(9), window)
    expected_pri = window_to_uint8(prior.slice(4), window)
    for c in range(3):  # grey written as R = G = B
        assert np.array_equal(image[:48, :56, c], expected_cur)
        assert np.array_equal(image[:40, 56 + GAP : 56 + GAP + 72, c], expected_pri)
    # Black gap between the slices, and below the shorter slice down to the captions.
    assert not image[:48, 56 : 56 + GAP].any()
    assert not image[40:48, 56 + GAP :].any()
    # Something was written in each caption bar.
    assert image[48:, :56].any() and image[48:, 56 + GAP :].any()


def test_pixels_follow_the_window_and_the_indices(ct_factory) -> None:
    vol = ct_factory()
    window = Window(-300, 900)
    panels = [SlicePanel(vol, k, window) for k in (0, 7, 15)]
    rendered = render_panels(panels)
    for (x, y, w, h), k in zip(rendered.slice_boxes, (0, 7, 15), strict=True):
        assert np.array_equal(
            rendered.image[y : y + h, x : x + w, 1], window_to_uint8(vol.slice(k), window)
        )
    # Different slices really differ (the test would notice a wrong index).
    assert not np.array_equal(rendered.image[:48, :56], rendered.image[:48, 56 + GAP : 112 + GAP])


def test_overlay_replaces_the_grey_slice(ct_factory) -> None:
    vol = ct_factory(shape=(8, 48, 300))
    rng = np.random.default_rng(3)
    overlay = rng.integers(0, 256, size=(48, 300, 3), dtype=np.uint8)
    panels = build_panels(vol, 3, [PriorSlice(vol, 4, 0.5)], PRESETS["lung"], [overlay, None])
    rendered = render_panels(panels)
    assert np.array_equal(rendered.image[:48, :300], overlay)
    grey = window_to_uint8(vol.slice(4), PRESETS["lung"])
    assert np.array_equal(rendered.image[:48, 300 + GAP :, 0], grey)
    assert "colour: similarity overlay" in rendered.captions[0]
    assert not any("overlay" in line for line in rendered.captions[1])


def test_overlay_of_the_wrong_shape_is_refused(ct_factory) -> None:
    vol = ct_factory()
    bad = np.zeros((48, 55, 3), dtype=np.uint8)
    with pytest.raises(ExportError, match="overlay must be a 48x56 RGB uint8"):
        render_panels([SlicePanel(vol, 0, PRESETS["lung"], overlay=bad)])


def test_slice_out_of_range_and_no_panels(ct_factory) -> None:
    vol = ct_factory()
    with pytest.raises(
        ExportError, match=r"slice 16 does not exist: the series has 16 slices \(0..15\)"
    ):
        render_panels([SlicePanel(vol, 16, PRESETS["lung"])])
    with pytest.raises(ExportError, match="no slices"):
        render_panels([])


def test_caption_content(ct_factory) -> None:
    # 400 columns: wide enough that no caption line is cut.
    current = ct_factory(shape=(16, 40, 400), seed=1)
    prior = ct_factory(shape=(12, 40, 400), seed=2, study_date="20250110", series_description="")
    panels = build_panels(
        current,
        9,
        [PriorSlice(prior, 4, 0.8712), PriorSlice(prior, 0, 0.41, in_coverage=False)],
        PRESETS["lung"],
    )
    captions = render_panels(panels).captions
    cur, pri, out = captions
    assert cur[0] == "CURRENT  2026-03-14"
    assert cur[1] == "CHEST 5mm"
    z = current.slice_z[9]
    assert cur[2] == f"Im 7/16  z {z:.1f} mm"  # the viewer's "Im" numbering, nothing else
    assert cur[3] == "current: reference slice"
    assert cur[4] == "W 1500 L -600   pixel 4.00 mm   R on the left"
    assert pri[0] == "PRIOR  2025-01-10"
    assert pri[1] == "(no series description)"
    assert pri[3] == "match score 0.87"
    assert out[3] == "OUTSIDE COVERAGE: nearest slice shown"
    assert not any("NOT TO SCALE" in line for c in captions for line in c)


def test_relative_dates(ct_factory) -> None:
    current = ct_factory(shape=(4, 40, 300))
    prior = ct_factory(shape=(4, 40, 300), study_date="20250110")
    undated = ct_factory(shape=(4, 40, 300), study_date="")
    panels = build_panels(
        current, 1, [PriorSlice(prior, 1, 0.9), PriorSlice(undated, 1, 0.9)], PRESETS["lung"]
    )
    captions = render_panels(panels, date_style="relative").captions
    assert [c[0] for c in captions] == ["CURRENT  current", "PRIOR  -428 days", "PRIOR  undated"]


def test_different_pixel_sizes_are_flagged_not_resampled(ct_factory) -> None:
    a = ct_factory(shape=(4, 40, 300), spacing=(0.7, 0.7, 5.0))
    b = ct_factory(shape=(4, 30, 320), spacing=(0.8, 0.9, 5.0), seed=4)
    rendered = render_panels(build_panels(a, 0, [PriorSlice(b, 2, 0.7)], PRESETS["lung"]))
    assert rendered.image.shape[1] == 300 + GAP + 320  # native sizes, no resampling
    for caption in rendered.captions:
        assert "NOT TO SCALE: pixel sizes differ" in caption
    assert rendered.captions[1][4].startswith("W 1500 L -600   pixel 0.80 x 0.90 mm")


def test_long_lines_are_cut_to_the_slice_width(ct_factory) -> None:
    vol = ct_factory(series_description="A VERY LONG SERIES DESCRIPTION " * 4)
    rendered = render_panels(
        [SlicePanel(vol, 0, PRESETS["lung"]), SlicePanel(vol, 1, PRESETS["lung"])]
    )
    style = TextStyle()
    for caption in rendered.captions:
        for line in caption:
            width = cv2.getTextSize(line, style.font, style.scale, style.thickness)[0][0]
            assert width <= 56 - 2 * style.padding
        assert caption[1].endswith("...")
    # Text stays inside its own column: the gap is black all the way down.
    assert not rendered.image[:, 56 : 56 + GAP].any()


def test_non_ascii_text_is_transliterated(ct_factory) -> None:
    vol = ct_factory(
        shape=(4, 40, 400), series_description="Thorax nativ \u00dcbersicht \u2264 5 mm"
    )
    caption = render_panels([SlicePanel(vol, 0, PRESETS["lung"])]).captions[0]
    assert caption[1] == "Thorax nativ Ubersicht ? 5 mm"


def test_panels_from_viewports_show_what_the_viewer_shows(ct_factory) -> None:
    from app.core.state import MatchInfo, ViewportState
    from app.export.pairs import panels_from_viewports

    current = ViewportState(ct_factory(shape=(8, 40, 400)), PRESETS["lung"])
    prior = ViewportState(ct_factory(shape=(8, 40, 400), study_date="20250110"), Window(40, 400))
    unmatched = ViewportState(ct_factory(shape=(8, 40, 400), study_date="20240110"))
    current.set_slice(5)
    prior.set_slice(3, match=MatchInfo(score=0.777, in_coverage=True))
    unmatched.set_slice(0, match=MatchInfo(score=0.2, in_coverage=False))
    panels = panels_from_viewports(current, [prior, unmatched])
    rendered = render_panels(panels)
    assert [p.index for p in panels] == [5, 3, 0]
    assert np.array_equal(
        rendered.image[:40, 400 + GAP : 800 + GAP, 0],
        window_to_uint8(prior.volume.slice(3), Window(40, 400)),  # each viewport's own window
    )
    assert [c[3] for c in rendered.captions] == [
        "current: reference slice",
        "match score 0.78",
        "OUTSIDE COVERAGE: nearest slice shown",
    ]
