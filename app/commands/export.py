"""``priorsync export CURRENT PRIOR [PRIOR ...] --slice N --out FILE.png``: export a matched pair.

Loads the series, matches the current series to each prior with the engine
(whole-series alignment, so a slice the prior does not image is reported as
such), and writes one image: the current slice and each prior's matching slice
side by side at native resolution, captioned with date, series, image number,
position and match score. Priors are hung newest first, as in the viewer.

With ``--measurements`` the measurements saved in the viewer for these
studies are drawn on their slices and the follow-up table is added as a
caption (a corrupt measurements file is skipped with a message).

Patient identifiers stay out of the image and its metadata unless
``--include-identifiers`` is given; ``--relative-dates`` also replaces the
study dates by the interval to the current study (for teaching files).

Exit codes: 0 written, 2 bad input (unreadable series, slice out of range,
series that cannot be matched, unsupported format), 3 the model is missing or
corrupt, 4 the output cannot be written (exists without ``--overwrite``, no
permission, disk full).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from app.commands.exit_codes import EXIT_INPUT, EXIT_MODEL, EXIT_OK, EXIT_OUTPUT
from app.commands.options import (
    InputError,
    add_model_arguments,
    load_input_volumes,
    open_index_cache,
)

if TYPE_CHECKING:  # imported for real inside the functions, to keep `priorsync --help` light
    from app.core.imaging import Window
    from app.export.formats import Exporter

__all__ = ["add_arguments", "parse_window", "run"]

log = logging.getLogger(__name__)


class _UsageError(Exception):
    """A bad argument; the message is for the user."""


def parse_window(text: str) -> Window:
    """A window from a preset name (``lung``) or ``CENTER,WIDTH`` in HU (``-600,1500``).

    Raises
    ------
    ValueError
        Neither a preset nor two numbers with a positive width.
    """
    from app.core.imaging import PRESETS, Window

    key = text.strip().lower()
    if key in PRESETS:
        return PRESETS[key]
    parts = key.split(",")
    if len(parts) == 2:
        try:
            center, width = float(parts[0]), float(parts[1])
        except ValueError:
            pass
        else:
            if width > 0 and abs(center) < 1e5 and width < 1e5:
                return Window(center, width)
            raise ValueError(f"window {text!r}: the width must be positive and both values sane")
    raise ValueError(
        f"unknown window {text!r}: use one of {', '.join(PRESETS)} or CENTER,WIDTH in HU "
        "(e.g. --window=-600,1500)"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``priorsync export``."""
    parser.add_argument(
        "current", metavar="CURRENT", type=Path, help="current series: DICOM folder or volume file"
    )
    parser.add_argument(
        "priors",
        metavar="PRIOR",
        type=Path,
        nargs="+",
        help="one or more prior series (each gets a panel, newest first)",
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--slice",
        type=int,
        metavar="N",
        help="slice index in CURRENT, from 0 (as `priorsync match` reports it)",
    )
    which.add_argument(
        "--image",
        type=int,
        metavar="N",
        help="image number in CURRENT as the viewer shows it ('Im N/total', from the head)",
    )
    parser.add_argument(
        "--out", type=Path, required=True, metavar="FILE", help="output image file (.png)"
    )
    parser.add_argument(
        "--window",
        default="mediastinum",
        metavar="NAME|C,W",
        help="lung, mediastinum, abdomen, bone, brain, or CENTER,WIDTH in HU "
        "(write a negative center as --window=-600,1500); default mediastinum",
    )
    parser.add_argument(
        "--overlay", action="store_true", help="colour the slices by what made them match"
    )
    parser.add_argument(
        "--include-identifiers",
        action="store_true",
        help="put patient name, ID, birth date and accession number in the caption and file",
    )
    parser.add_argument(
        "--relative-dates",
        action="store_true",
        help="show days relative to the current study instead of dates (teaching files)",
    )
    parser.add_argument(
        "--measurements",
        action="store_true",
        help="draw the measurements saved in the viewer for these studies (those on the "
        "slices shown) and add the follow-up table as a caption",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    add_model_arguments(parser)


def _error(message: str) -> None:
    print(f"priorsync export: error: {message}", file=sys.stderr)


def _check_output(args: argparse.Namespace) -> Exporter:
    """Refuse a bad ``--out`` before spending time on loading and matching."""
    from app.export.errors import ExportExistsError
    from app.export.formats import exporter_for

    if args.out.is_dir():
        raise _UsageError(f"--out {args.out} is a folder; give a file name")
    exporter = exporter_for(args.out)  # ExportError for an unsupported extension
    if args.out.exists() and not args.overwrite:
        raise ExportExistsError(args.out)
    parent = args.out.parent
    if not parent.is_dir():
        raise _UsageError(f"the folder {parent} does not exist")
    return exporter


def _current_index(args: argparse.Namespace, n_slices: int) -> int:
    if args.slice is not None:
        k = args.slice
        if not 0 <= k < n_slices:
            raise _UsageError(
                f"--slice {k} is outside CURRENT, which has {n_slices} slices (0..{n_slices - 1})"
            )
        return k
    if not 1 <= args.image <= n_slices:
        raise _UsageError(f"--image {args.image} is outside CURRENT's images 1..{n_slices}")
    # The viewer numbers images from the head (the last slice index) down.
    return n_slices - args.image


def _require_saliency() -> None:
    """Fail early, in words, if the saliency overlay cannot run in this installation."""
    try:
        import app.export.overlays  # noqa: F401 - imports app.ml.saliency.gradcam and onnx
    except ImportError as exc:
        raise _UsageError(
            f"--overlay is not available in this installation ({exc}); export without --overlay"
        ) from None


def _with_saved_measurements(panels: list) -> tuple[list, list[str]]:
    """The panels with the viewer's saved measurements drawn, and the follow-up table."""
    from app.core.measure_slice import series_key
    from app.export.measurements import table_lines, with_measurements
    from app.io.measurements_file import MeasurementsFile, measurements_path, patient_key

    info = panels[0].volume.info
    studies = {p.volume.info.study_uid for p in panels}
    file = MeasurementsFile(
        measurements_path(patient_key(info.patient_id, info.patient_name, studies))
    )
    findings = file.load()
    if file.message:
        print(f"priorsync export: warning: {file.message}", file=sys.stderr)
    keys = {series_key(p.volume) for p in panels}
    shown = [f for f in findings if any(m.series_uid in keys for m in f.measurements)]
    if not shown:
        print(
            "priorsync export: warning: no saved measurements on these series "
            "(measure them in the viewer first)",
            file=sys.stderr,
        )
        return panels, []
    measurements = [m for f in shown for m in f.measurements]
    marked = with_measurements(
        panels, lambda v: [m for m in measurements if m.series_uid == series_key(v)]
    )
    return marked, table_lines(shown)


def run(args: argparse.Namespace) -> int:
    """Run ``priorsync export``; returns the exit code."""
    from app.core.state import newest_first
    from app.export.errors import ExportError, ExportExistsError
    from app.export.pairs import build_panels, describe_panels, encode_panels, prior_slice
    from app.export.safe_write import safe_write
    from app.ml.anatomy.match import Matcher, MatchError
    from app.ml.runtime.model import EmbeddingModel, ModelError

    try:
        window = parse_window(args.window)
        exporter = _check_output(args)
        if args.overlay:
            _require_saliency()
        for role, path in [("CURRENT", args.current)] + [("PRIOR", p) for p in args.priors]:
            if not path.exists():
                raise _UsageError(f"{role} {path} does not exist")
    except ExportExistsError as exc:
        _error(f"{exc.path} already exists (use --overwrite to replace it)")
        return EXIT_OUTPUT
    except (ValueError, _UsageError, ExportError) as exc:
        _error(str(exc))
        return EXIT_INPUT

    try:
        model = EmbeddingModel.load(args.model, device=args.device)
    except ModelError as exc:
        _error(str(exc))
        return EXIT_MODEL

    try:
        volumes = load_input_volumes(
            "export", [("CURRENT", args.current)] + [("PRIOR", p) for p in args.priors]
        )
    except InputError as exc:
        _error(str(exc))
        return EXIT_INPUT
    current, priors = volumes[0], volumes[1:]
    priors = [priors[i] for i in newest_first([p.info.study_date for p in priors])]

    try:
        k = _current_index(args, current.n_slices)
    except _UsageError as exc:
        _error(str(exc))
        return EXIT_INPUT

    matcher = Matcher(model, cache=open_index_cache(args.no_cache))
    matched = []
    try:
        for prior in priors:
            matched.append(prior_slice(prior, matcher.match(current, prior), k))
    except MatchError as exc:
        _error(str(exc))
        return EXIT_INPUT

    try:
        panels = build_panels(current, k, matched, window)
        if args.overlay:
            from app.export.overlays import add_saliency_overlays
            from app.ml.saliency.gradcam import SimilaritySaliency

            panels = add_saliency_overlays(panels, SimilaritySaliency(model))
    except ModelError as exc:  # SaliencyError: the model's graph does not allow the maps
        _error(f"--overlay: {exc}")
        return EXIT_MODEL

    footer: list[str] = []
    if args.measurements:
        panels, footer = _with_saved_measurements(panels)

    try:
        data, rendered = encode_panels(
            panels,
            exporter,
            include_identifiers=args.include_identifiers,
            date_style="relative" if args.relative_dates else "absolute",
            footer=footer,
        )
        safe_write(args.out, data, overwrite=args.overwrite)
    except ExportExistsError as exc:
        _error(f"{exc.path} already exists (use --overwrite to replace it)")
        return EXIT_OUTPUT
    except ExportError as exc:
        _error(str(exc))
        return EXIT_OUTPUT

    h, w = rendered.image.shape[:2]
    print(f"wrote {args.out} ({w}x{h} px)")
    # The file's own description: already free of identifiers and in the chosen date style.
    summary = describe_panels(panels, "relative" if args.relative_dates else "absolute")
    for part in summary.split(". ", 1)[-1].split("; "):
        print(f"  {part}")
    return EXIT_OK
