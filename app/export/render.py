"""Composing matched slices into one picture (numpy + OpenCV; no Qt, no screen grab).

Layout: the slices stand side by side, left to right in the order given, each
at its native pixel resolution (one image pixel per voxel, no resampling, so
nothing is interpolated into or out of the diagnostic image), top-aligned on a
black canvas with a fixed gap between them. Under each slice a caption bar
says what it is. When the slices' pixel sizes differ they are not shown to
the same physical scale, and the caption says so rather than resample.

Each slice is windowed with :func:`app.core.imaging.window_to_uint8` and
written as RGB with R = G = B; a colour overlay, when given, replaces the grey
slice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from app.core.imaging import Window, window_to_uint8
from app.core.orientation import direction_label
from app.core.volume import Volume
from app.export.captions import (
    DateStyle,
    PatientIdentifiers,
    ascii_text,
    date_label,
    image_number,
    mask_identifiers,
)
from app.export.errors import ExportError

__all__ = ["GAP", "Rendered", "SlicePanel", "TextStyle", "render_panels"]

GAP = 8  # px of black between slices


@dataclass(frozen=True)
class TextStyle:
    """Caption typography (OpenCV Hershey font, anti-aliased).

    The defaults give 11-px capitals: legible at 1:1 on a 512-pixel slice while
    a line still holds about 45 characters.
    """

    font: int = cv2.FONT_HERSHEY_SIMPLEX
    scale: float = 0.5
    thickness: int = 1
    line_height: int = 19
    padding: int = 8
    color: tuple[int, int, int] = (225, 225, 225)
    heading_color: tuple[int, int, int] = (255, 255, 255)
    warning_color: tuple[int, int, int] = (255, 190, 40)


@dataclass(frozen=True)
class SlicePanel:
    """One slice to export and what its caption knows about it.

    Parameters
    ----------
    volume
        Display-oriented volume.
    index
        Slice index in ``volume``.
    window
        Window applied to the slice.
    role
        Caption heading, e.g. ``"current"`` or ``"prior"``.
    driver
        The slice the others were matched to (its match line reads ``"current"``).
    score
        Match similarity of this slice to the driver, when known.
    in_coverage
        ``False`` when this series does not image the driver's level; ``index``
        is then the nearest slice, and the caption says so prominently.
    overlay
        ``(rows, cols, 3)`` ``uint8`` RGB picture drawn instead of the grey
        slice (e.g. a saliency map blended over it).
    overlay_label
        What the overlay shows, for the caption.
    institution
        Institution name, shown only with identifiers (not in ``SeriesInfo``).
    """

    volume: Volume
    index: int
    window: Window
    role: str = ""
    driver: bool = False
    score: float | None = None
    in_coverage: bool = True
    overlay: np.ndarray | None = None
    overlay_label: str = "similarity overlay"
    institution: str = ""

    @property
    def identifiers(self) -> PatientIdentifiers:
        """The patient identifiers of this panel's series."""
        return PatientIdentifiers.from_info(self.volume.info, self.institution)


@dataclass(frozen=True)
class Rendered:
    """A composed export image.

    Attributes
    ----------
    image
        ``(height, width, 3)`` ``uint8`` RGB.
    captions
        Per panel, the caption lines exactly as drawn.
    slice_boxes
        Per panel, ``(x, y, width, height)`` of the slice in ``image``.
    caption_top
        First row of the caption bar.
    footer
        The lines under all panels (e.g. the follow-up table), as drawn.
    """

    image: np.ndarray
    captions: tuple[tuple[str, ...], ...]
    slice_boxes: tuple[tuple[int, int, int, int], ...]
    caption_top: int
    footer: tuple[str, ...] = ()


def _slice_rgb(panel: SlicePanel) -> np.ndarray:
    vol = panel.volume
    if not 0 <= panel.index < vol.n_slices:
        raise ExportError(
            f"slice {panel.index} does not exist: the series has {vol.n_slices} slices "
            f"(0..{vol.n_slices - 1})"
        )
    _, rows, cols = vol.shape
    if panel.overlay is not None:
        overlay = np.asarray(panel.overlay)
        if overlay.shape != (rows, cols, 3) or overlay.dtype != np.uint8:
            raise ExportError(
                f"the overlay must be a {rows}x{cols} RGB uint8 image like its slice, "
                f"got {overlay.shape} {overlay.dtype}"
            )
        return overlay
    grey = window_to_uint8(vol.slice(panel.index), panel.window)
    return np.repeat(grey[:, :, None], 3, axis=2)


def _spacing_text(spacing: np.ndarray) -> str:
    sx, sy = float(spacing[0]), float(spacing[1])
    if abs(sx - sy) < 0.005:
        return f"pixel {sx:.2f} mm"
    return f"pixel {sx:.2f} x {sy:.2f} mm"


def _match_line(panel: SlicePanel) -> tuple[str, bool]:
    """The match status line and whether it is a warning."""
    if panel.driver:
        return "current: reference slice", False
    if not panel.in_coverage:
        return "OUTSIDE COVERAGE: nearest slice shown", True
    if panel.score is None:
        return "match score unknown", False
    return f"match score {panel.score:.2f}", False


def _caption(
    panel: SlicePanel,
    reference_date: str,
    date_style: DateStyle,
    include_identifiers: bool,
    spacing_differs: bool,
) -> list[tuple[str, str]]:
    """``(kind, text)`` lines; kind is "heading", "text" or "warning"."""
    vol = panel.volume
    info = vol.info
    n = vol.n_slices
    k = panel.index
    ids = panel.identifiers
    role = panel.role.upper() or ("CURRENT" if panel.driver else "PRIOR")
    desc = info.series_description.strip() or info.study_description.strip()
    if not include_identifiers:
        desc = mask_identifiers(desc, ids)
    # Which side of the patient is on the image's left (R in radiological convention).
    left = direction_label(-vol.geometry.direction[:, 0])
    lines: list[tuple[str, str]] = [
        ("heading", f"{role}  {date_label(info.study_date, reference_date, date_style)}"),
        ("text", desc or "(no series description)"),
        (
            "text",
            f"Im {image_number(k, n)}/{n}  z {float(vol.slice_z[k]):.1f} mm",
        ),
    ]
    status, warn = _match_line(panel)
    lines.append(("warning" if warn else "text", status))
    spacing = _spacing_text(vol.geometry.spacing)
    w = panel.window
    lines.append(("text", f"W {w.width:.0f} L {w.center:.0f}   {spacing}   {left} on the left"))
    if spacing_differs:
        lines.append(("warning", "NOT TO SCALE: pixel sizes differ"))
    if panel.overlay is not None:
        lines.append(("text", f"colour: {panel.overlay_label}"))
    if include_identifiers:
        lines += [("text", line) for line in ids.caption_lines()]
    return [(kind, ascii_text(text)) for kind, text in lines]


def _fit(text: str, width: int, style: TextStyle) -> str:
    """``text`` cut (with ``...``) to fit ``width`` pixels."""

    def w(s: str) -> int:
        return cv2.getTextSize(s, style.font, style.scale, style.thickness)[0][0]

    if w(text) <= width:
        return text
    lo, hi = 0, len(text)
    while lo < hi:  # longest prefix that fits with the ellipsis
        mid = (lo + hi + 1) // 2
        if w(text[:mid].rstrip() + "...") <= width:
            lo = mid
        else:
            hi = mid - 1
    return (text[:lo].rstrip() + "...") if lo else ""


def render_panels(
    panels: Sequence[SlicePanel],
    *,
    include_identifiers: bool = False,
    date_style: DateStyle = "absolute",
    gap: int = GAP,
    style: TextStyle | None = None,
    footer: Sequence[str] = (),
) -> Rendered:
    """Compose slices side by side with a caption bar under each.

    Parameters
    ----------
    panels
        The slices, left to right (conventionally the current first).
    include_identifiers
        Add patient name, ID, birth date, accession number and institution to
        the captions. Off by default: exports leave the viewer.
    date_style
        ``"absolute"`` dates or ``"relative"`` intervals to the driver's (or the
        first panel's) study date; see :mod:`app.export.captions`.
    gap
        Pixels of black between neighbouring slices.
    style
        Caption typography.
    footer
        Lines drawn under all panels (the follow-up table); tabs split a
        line into cells, drawn in aligned columns. The picture is widened
        when the table is wider than the panels. None by default.

    Returns
    -------
    Rendered
        Width ``sum(cols) + gap * (len(panels) - 1)`` (or the footer's),
        height ``max(rows) + caption bar`` (+ the footer's rows).

    Raises
    ------
    ExportError
        No panels, a slice index out of range, or an overlay of the wrong shape.
    """
    if not panels:
        raise ExportError("nothing to export: no slices were given")
    if gap < 0:
        raise ValueError("gap must be >= 0")
    style = style or TextStyle()
    slices = [_slice_rgb(p) for p in panels]
    driver = next((p for p in panels if p.driver), panels[0])
    reference = driver.volume.info.study_date
    spacings = {
        (
            round(float(p.volume.geometry.spacing[0]), 3),
            round(float(p.volume.geometry.spacing[1]), 3),
        )
        for p in panels
    }
    differs = len(spacings) > 1
    texts = [_caption(p, reference, date_style, include_identifiers, differs) for p in panels]

    top = max(s.shape[0] for s in slices)
    n_lines = max(len(t) for t in texts)
    bar = 2 * style.padding + n_lines * style.line_height
    width = sum(s.shape[1] for s in slices) + gap * (len(slices) - 1)
    footer_rows = [[ascii_text(cell) for cell in line.split("\t")] for line in footer]
    footer_h = (2 * style.padding + len(footer_rows) * style.line_height) if footer_rows else 0
    if footer_rows:
        # The table is never cut: a picture narrower than it is widened (black on the right).
        xs = _footer_columns(footer_rows, style)
        last = max(_text_width(r[-1], style) for r in footer_rows)
        width = max(width, xs[-1] + last + style.padding)
    canvas = np.zeros((top + bar + footer_h, width, 3), dtype=np.uint8)

    colours = {"heading": style.heading_color, "text": style.color, "warning": style.warning_color}
    (_, cap_h), _ = cv2.getTextSize("Ag", style.font, style.scale, style.thickness)
    boxes: list[tuple[int, int, int, int]] = []
    captions: list[tuple[str, ...]] = []
    x = 0
    for rgb, lines in zip(slices, texts, strict=True):
        rows, cols = rgb.shape[:2]
        canvas[:rows, x : x + cols] = rgb
        boxes.append((x, 0, cols, rows))
        drawn: list[str] = []
        for i, (kind, text) in enumerate(lines):
            text = _fit(text, cols - 2 * style.padding, style)
            drawn.append(text)
            if not text:
                continue
            baseline_y = top + style.padding + i * style.line_height + cap_h + 2
            cv2.putText(
                canvas,
                text,
                (x + style.padding, baseline_y),
                style.font,
                style.scale,
                colours[kind],
                style.thickness,
                cv2.LINE_AA,
            )
        captions.append(tuple(drawn))
        x += cols + gap
    footer_drawn = _draw_footer(canvas, footer_rows, top + bar, style, cap_h)
    return Rendered(
        image=canvas,
        captions=tuple(captions),
        slice_boxes=tuple(boxes),
        caption_top=top,
        footer=footer_drawn,
    )


_FOOTER_GAP = 16  # px between the footer's columns


def _text_width(text: str, style: TextStyle) -> int:
    w: int = cv2.getTextSize(text, style.font, style.scale, style.thickness)[0][0]
    return w


def _footer_columns(rows: list[list[str]], style: TextStyle) -> list[int]:
    """x offset of each column of the footer's tab-separated cells."""
    n = max((len(r) for r in rows), default=0)
    widths = [
        max((_text_width(r[c], style) for r in rows if c < len(r)), default=0) for c in range(n)
    ]
    xs, x = [], style.padding
    for w in widths:
        xs.append(x)
        x += w + _FOOTER_GAP
    return xs


def _draw_footer(
    canvas: np.ndarray, rows: list[list[str]], y0: int, style: TextStyle, cap_h: int
) -> tuple[str, ...]:
    """Draw the footer's rows of cells from row ``y0``, in columns (the first row bold)."""
    xs = _footer_columns(rows, style)
    for i, cells in enumerate(rows):
        baseline_y = y0 + style.padding + i * style.line_height + cap_h + 2
        for x, text in zip(xs, cells, strict=False):
            cv2.putText(
                canvas,
                text,
                (x, baseline_y),
                style.font,
                style.scale,
                style.heading_color if i == 0 else style.color,
                style.thickness + (1 if i == 0 else 0),
                cv2.LINE_AA,
            )
    return tuple("  ".join(cells) for cells in rows)
