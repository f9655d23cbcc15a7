"""From a match to export bytes: panels for a current slice and its prior matches.

The viewer builds :class:`~app.export.render.SlicePanel` objects from its
viewports directly; the command line and the batch exporter start from the
engine's :class:`~app.ml.anatomy.match.MatchResult`, which :func:`prior_slice` reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from app.core.imaging import Window
from app.core.state import ViewportState
from app.core.volume import Volume
from app.export.captions import DateStyle, date_label, image_number
from app.export.formats import Exporter, ImageMetadata
from app.export.render import Rendered, SlicePanel, render_panels
from app.ml.anatomy.match import MatchResult

__all__ = [
    "PriorSlice",
    "build_panels",
    "describe_panels",
    "encode_panels",
    "panels_from_viewports",
    "prior_slice",
]


@dataclass(frozen=True)
class PriorSlice:
    """The slice of a prior series matched to the current slice.

    ``index`` is the matched slice, or the nearest slice to the mapped level
    when the prior does not image it (``in_coverage`` False).
    """

    volume: Volume
    index: int
    score: float | None
    in_coverage: bool = True


def prior_slice(prior: Volume, result: MatchResult, current_index: int) -> PriorSlice:
    """The prior slice the engine matched to ``current_index``.

    Raises
    ------
    IndexError
        ``current_index`` is not a slice of the matched current series.
    """
    if not 0 <= current_index < len(result.matches):
        raise IndexError(
            f"slice {current_index} is outside the current series (0..{len(result.matches) - 1})"
        )
    m = result.matches[current_index]
    if m.prior_index is not None:
        return PriorSlice(prior, m.prior_index, m.score, m.in_coverage)
    nearest = int(np.clip(result.alignment.prior_index[current_index], 0, prior.n_slices - 1))
    return PriorSlice(prior, nearest, m.score, False)


def build_panels(
    current: Volume,
    index: int,
    priors: Sequence[PriorSlice],
    window: Window,
    overlays: Sequence[np.ndarray | None] | None = None,
    overlay_label: str = "similarity overlay",
) -> list[SlicePanel]:
    """Panels for the current slice (the driver) followed by its prior matches.

    Parameters
    ----------
    overlays
        One RGB overlay or ``None`` per panel (current first), or ``None``.
    """
    n = 1 + len(priors)
    overlays = list(overlays) if overlays is not None else [None] * n
    if len(overlays) != n:
        raise ValueError(f"expected {n} overlays (one per panel), got {len(overlays)}")
    panels = [
        SlicePanel(
            current,
            index,
            window,
            role="current",
            driver=True,
            overlay=overlays[0],
            overlay_label=overlay_label,
        )
    ]
    for p, overlay in zip(priors, overlays[1:], strict=True):
        panels.append(
            SlicePanel(
                p.volume,
                p.index,
                window,
                role="prior",
                score=p.score,
                in_coverage=p.in_coverage,
                overlay=overlay,
                overlay_label=overlay_label,
            )
        )
    return panels


def panels_from_viewports(
    driver: ViewportState,
    others: Sequence[ViewportState],
    overlays: Sequence[np.ndarray | None] | None = None,
) -> list[SlicePanel]:
    """Panels showing what the viewer shows: each viewport's slice in its own window.

    Parameters
    ----------
    driver
        The viewport the others are synced to (the current study).
    others
        The synced viewports, left to right; their ``match`` gives score and coverage.
    overlays
        One RGB overlay or ``None`` per panel (driver first), as painted on screen.
    """
    states = [driver, *others]
    overlays = list(overlays) if overlays is not None else [None] * len(states)
    if len(overlays) != len(states):
        raise ValueError(f"expected {len(states)} overlays (one per panel), got {len(overlays)}")
    panels = []
    for i, (vp, overlay) in enumerate(zip(states, overlays, strict=True)):
        match = None if i == 0 else vp.match
        panels.append(
            SlicePanel(
                vp.volume,
                vp.slice_index,
                vp.window,
                role="current" if i == 0 else "prior",
                driver=i == 0,
                score=None if match is None else match.score,
                in_coverage=True if match is None else match.in_coverage,
                overlay=overlay,
            )
        )
    return panels


def describe_panels(panels: Sequence[SlicePanel], date_style: DateStyle = "absolute") -> str:
    """A non-identifying description of an export, for the file's metadata.

    Example: ``"CT slices matched by anatomy. CURRENT 2026-03-14 Im 81/120;
    PRIOR 2025-01-10 Im 76/110, match score 0.91"``.
    """
    driver = next((p for p in panels if p.driver), panels[0])
    ref = driver.volume.info.study_date
    parts = []
    for p in panels:
        v = p.volume
        text = (
            f"{(p.role or 'slice').upper()} {date_label(v.info.study_date, ref, date_style)} "
            f"Im {image_number(p.index, v.n_slices)}/{v.n_slices}"
        )
        if not p.driver:
            if not p.in_coverage:
                text += ", outside coverage (nearest slice)"
            elif p.score is not None:
                text += f", match score {p.score:.2f}"
        parts.append(text)
    return "CT slices matched by anatomy. " + "; ".join(parts)


def _identifier_items(panels: Sequence[SlicePanel]) -> dict[str, str]:
    sets = []
    for p in panels:
        items = p.identifiers.text_items()
        if items and items not in sets:
            sets.append(items)
    if len(sets) <= 1:
        return sets[0] if sets else {}
    # Series of different patients side by side: keep each, numbered, rather
    # than let one silently stand for all.
    return {f"{key}.{i}": value for i, items in enumerate(sets, 1) for key, value in items.items()}


def encode_panels(
    panels: Sequence[SlicePanel],
    exporter: Exporter,
    *,
    include_identifiers: bool = False,
    date_style: DateStyle = "absolute",
    footer: Sequence[str] = (),
) -> tuple[bytes, Rendered]:
    """Render ``panels`` and encode them with ``exporter``.

    Patient identifiers reach the caption and the file metadata only with
    ``include_identifiers``. ``footer`` lines go under the panels (see
    :func:`~app.export.render.render_panels`).

    Returns
    -------
    (bytes, Rendered)
        The file contents and the rendered image with its caption text.
    """
    rendered = render_panels(
        panels, include_identifiers=include_identifiers, date_style=date_style, footer=footer
    )
    metadata = ImageMetadata(
        description=describe_panels(panels, date_style),
        identifiers=_identifier_items(panels) if include_identifiers else {},
    )
    return exporter.encode(rendered.image, metadata), rendered
