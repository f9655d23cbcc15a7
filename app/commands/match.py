"""``priorsync match CURRENT PRIOR [--json]``: match every current slice to the prior.

Output (``--json``), one entry per current slice in display order::

    {"model": "<name> sha256:<hash>",
     "matches": [{"current_index": k, "current_number": n, "current_position": [x, y, z],
                  "prior_index": j, "prior_number": m, "prior_position": [x, y, z],
                  "score": s, "in_coverage": true}, ...],
     "skipped": [{"input": "CURRENT", "path": "...", "reason": "..."}, ...]}

``*_index`` is the 0-based slice index from the feet (display order);
``*_number`` is the image number the viewer, the table and exports show:
counted from the head, from 1 (``number = n_slices - index``).

Positions are the slices' LPS positions (mm, first voxel, as
``Volume.slice_positions``). A current slice whose level the prior does not
image has ``"in_coverage": false`` and ``null`` prior_index / prior_position;
its score is then the similarity to the prior's nearest (edge) slice.
``"skipped"`` lists the files of either input that were not used, with the
reason (also printed on stderr, counted by reason).

Exit codes: 0 success, 2 the inputs cannot be matched (unreadable, not CT, a
single slice, no overlapping anatomy), 3 the model is missing or corrupt.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.commands.exit_codes import EXIT_INPUT, EXIT_MODEL, EXIT_OK
from app.commands.options import (
    InputError,
    add_model_arguments,
    load_input_volumes,
    open_index_cache,
    print_result,
)
from app.export.captions import image_number

if TYPE_CHECKING:  # heavy modules load only when the command runs
    from app.core.volume import Volume
    from app.io.records import SkippedFile
    from app.ml.anatomy.match import MatchResult

__all__ = ["add_arguments", "json_document", "run"]

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``priorsync match``."""
    parser.add_argument("current", metavar="CURRENT", type=Path, help="DICOM folder or volume file")
    parser.add_argument("prior", metavar="PRIOR", type=Path, help="DICOM folder or volume file")
    parser.add_argument("--json", action="store_true", help="print the matches as JSON")
    add_model_arguments(parser)


def _error(message: str) -> None:
    print(f"priorsync match: error: {message}", file=sys.stderr)


def format_table(result: MatchResult, current: Volume, prior: Volume, provider: str = "") -> str:
    """The human-readable report of a :class:`~app.ml.anatomy.match.MatchResult`."""
    a = result.alignment
    lines = [
        f"model:   {result.model}" + (f" (on {provider})" if provider else ""),
        f"current: {current.n_slices} slices, z {current.slice_z.min():.1f} .. "
        f"{current.slice_z.max():.1f} mm",
        f"prior:   {prior.n_slices} slices, z {prior.slice_z.min():.1f} .. "
        f"{prior.slice_z.max():.1f} mm",
        f"offset (prior z - current z, median): {a.offset_mm:+.1f} mm;  "
        f"covered: {int(a.in_coverage.sum())}/{len(a.in_coverage)} slices;  "
        f"overlap score {result.overlap:.2f} (0 = chance, 1 = every slice on its best match)",
        "",
        # Image numbers as the viewer shows them: from the head, from 1.
        f"{'current':>7} {'z (mm)':>9}   {'prior':>5} {'z (mm)':>9} {'score':>6}  note",
    ]
    cz = current.slice_z
    pz = prior.slice_z
    for m in result.matches:
        if m.in_coverage and m.prior_index is not None:
            j = m.prior_index
            note = "overruled outlier" if a.outlier[m.current_index] else ""
            lines.append(
                f"{image_number(m.current_index, current.n_slices):>7} "
                f"{cz[m.current_index]:>9.1f}   {image_number(j, prior.n_slices):>5} "
                f"{pz[j]:>9.1f} {m.score:>6.3f}  {note}"
            )
        else:
            lines.append(
                f"{image_number(m.current_index, current.n_slices):>7} "
                f"{cz[m.current_index]:>9.1f}   {'-':>5} {'-':>9} "
                f"{'-':>6}  not in prior (maps to {a.mapped_z[m.current_index]:.1f} mm)"
            )
    return "\n".join(lines)


def json_document(result: MatchResult, current: Volume, prior: Volume) -> dict[str, Any]:
    """``result.to_dict()`` with each index followed by its 1-based image number."""
    doc = result.to_dict()
    numbered = []
    for m in doc["matches"]:
        entry: dict[str, Any] = {}
        for key, value in m.items():
            entry[key] = value
            if key == "current_index":
                entry["current_number"] = image_number(value, current.n_slices)
            elif key == "prior_index":
                entry["prior_number"] = (
                    None if value is None else image_number(value, prior.n_slices)
                )
        numbered.append(entry)
    doc["matches"] = numbered
    return doc


def run(args: argparse.Namespace) -> int:
    """Run ``priorsync match``; returns the exit code."""
    from app.ml.anatomy.match import Matcher, MatchError
    from app.ml.runtime.model import EmbeddingModel, ModelError

    try:
        model = EmbeddingModel.load(args.model, device=args.device)
    except ModelError as exc:
        _error(str(exc))
        return EXIT_MODEL

    skipped: list[tuple[str, SkippedFile]] = []
    try:
        current, prior = load_input_volumes(
            "match", [("CURRENT", args.current), ("PRIOR", args.prior)], skipped
        )
    except InputError as exc:
        _error(str(exc))
        return EXIT_INPUT

    matcher = Matcher(model, cache=open_index_cache(args.no_cache))
    try:
        result = matcher.match(current, prior)
    except MatchError as exc:
        _error(str(exc))
        return EXIT_INPUT

    if args.json:
        doc = json_document(result, current, prior)
        doc["skipped"] = [
            {"input": role, "path": str(s.path), "reason": s.reason} for role, s in skipped
        ]
        text = json.dumps(doc)
    else:
        text = format_table(result, current, prior, model.provider)
    print_result(text)
    return EXIT_OK
