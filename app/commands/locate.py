"""``priorsync locate``: where points of the current scan lie in a prior (headless).

Each query point (LPS mm, as in ``priorsync match --json``) gets the
corresponding prior point with a confidence and an uncertainty radius, or
``in_coverage: false`` with a message when it lies outside the current volume,
outside the body, or at a level the prior does not image. See
:mod:`app.ml.points.locate`.

Points come from ``--point X,Y,Z`` (repeatable; ``--point=-12,5,30`` when the
first coordinate is negative, which would otherwise read as an option)
and/or ``--points-file F``: a
text file with one ``X,Y,Z`` (or ``X Y Z``) per line, ``#`` comments and blank
lines allowed, or a JSON list of ``[x, y, z]`` triples.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from app.commands.exit_codes import EXIT_INPUT, EXIT_MODEL, EXIT_OK
from app.commands.options import (
    InputError,
    add_model_arguments,
    load_input_volumes,
    open_index_cache,
    print_result,
)

if TYPE_CHECKING:
    from app.ml.points.locate import PointMatch

__all__ = ["add_arguments", "parse_point", "read_points_file", "run", "format_table"]

# A points file larger than this is not a list of points someone wrote.
_MAX_FILE_BYTES = 16 * 1024 * 1024
_MAX_POINTS = 100_000


class PointsError(ValueError):
    """Malformed point input; the message is for the user."""


def parse_point(text: str) -> tuple[float, float, float]:
    """``"X,Y,Z"`` (commas and/or spaces) as three finite floats.

    Raises
    ------
    PointsError
        Not exactly three finite numbers.
    """
    parts = [p for p in text.replace(",", " ").split() if p]
    if len(parts) != 3:
        raise PointsError(f"a point needs three coordinates X,Y,Z (LPS mm), got {text!r}")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise PointsError(f"a point's coordinates must be numbers, got {text!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise PointsError(f"a point's coordinates must be finite numbers, got {text!r}")
    return values  # type: ignore[return-value]


def read_points_file(path: Path) -> list[tuple[float, float, float]]:
    """The points of a points file (module docstring for the formats).

    Raises
    ------
    PointsError
        Unreadable, too large, or a line / entry that is not a point (the
        message names the line).
    """
    try:
        size = path.stat().st_size
        if size > _MAX_FILE_BYTES:
            raise PointsError(
                f"points file {path} is too large ({size} bytes) for a list of points"
            )
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PointsError(f"cannot read points file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise PointsError(f"points file {path} is not a text file") from None
    stripped = text.lstrip()
    points: list[tuple[float, float, float]] = []
    if stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PointsError(f"points file {path} is not valid JSON: {exc}") from None
        if not isinstance(data, list):
            raise PointsError(f"points file {path}: expected a JSON list of [x, y, z]")
        for i, item in enumerate(data):
            if (
                not isinstance(item, list)
                or len(item) != 3
                or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in item)
            ):
                raise PointsError(f"points file {path}: entry {i + 1} is not [x, y, z]: {item!r}")
            points.append(parse_point(" ".join(str(v) for v in item)))
    else:
        for n, line in enumerate(text.splitlines(), start=1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            try:
                points.append(parse_point(line))
            except PointsError as exc:
                raise PointsError(f"points file {path}, line {n}: {exc}") from None
    if len(points) > _MAX_POINTS:
        raise PointsError(f"points file {path} holds {len(points)} points; at most {_MAX_POINTS}")
    return points


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``priorsync locate``."""
    parser.add_argument("current", metavar="CURRENT", type=Path, help="DICOM folder or volume file")
    parser.add_argument("prior", metavar="PRIOR", type=Path, help="DICOM folder or volume file")
    parser.add_argument(
        "--point",
        action="append",
        default=[],
        metavar="X,Y,Z",
        help="a point of CURRENT in LPS mm (repeatable; write --point=X,Y,Z when X is negative)",
    )
    parser.add_argument(
        "--points-file",
        type=Path,
        default=None,
        metavar="F",
        help="file of points: one X,Y,Z per line, or a JSON list of [x, y, z]",
    )
    parser.add_argument("--json", action="store_true", help="print the answers as JSON")
    add_model_arguments(parser)


def _error(message: str) -> None:
    print(f"priorsync locate: error: {message}", file=sys.stderr)


def _fmt(p: tuple[float, float, float] | None) -> str:
    return "-" if p is None else "({:.1f}, {:.1f}, {:.1f})".format(*p)


def format_table(answers: list[PointMatch]) -> str:
    """The human-readable report of ``priorsync locate``."""
    lines = [f"{'current point (LPS mm)':<28} {'prior point (LPS mm)':<28} {'conf':>5} "
             f"{'radius':>6}  note"]  # fmt: skip
    for a in answers:
        if a.in_coverage:
            lines.append(
                f"{_fmt(a.current_point):<28} {_fmt(a.prior_point):<28} {a.confidence:>5.2f} "
                f"{a.radius_mm:>4.1f}mm"
            )
        else:
            lines.append(f"{_fmt(a.current_point):<28} {'-':<28} {'-':>5} {'-':>6}  {a.message}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run ``priorsync locate``; returns the exit code."""
    try:
        points = [parse_point(p) for p in args.point]
        if args.points_file is not None:
            points += read_points_file(args.points_file)
    except PointsError as exc:
        _error(str(exc))
        return EXIT_INPUT
    if not points:
        _error("give at least one point (--point X,Y,Z or --points-file F)")
        return EXIT_INPUT

    from app.ml.anatomy.match import Matcher, MatchError
    from app.ml.points.engine import PointEngine
    from app.ml.runtime.model import EmbeddingModel, ModelError

    try:
        model = EmbeddingModel.load(args.model, device=args.device)
    except ModelError as exc:
        _error(str(exc))
        return EXIT_MODEL
    try:
        current, prior = load_input_volumes(
            "locate", [("CURRENT", args.current), ("PRIOR", args.prior)]
        )
    except InputError as exc:
        _error(str(exc))
        return EXIT_INPUT

    engine = PointEngine(Matcher(model, cache=open_index_cache(args.no_cache)))
    try:
        pair = engine.pair(current, prior)
    except MatchError as exc:
        _error(str(exc))
        return EXIT_INPUT
    answers = [pair.locate(p) for p in points]
    text = json.dumps([a.to_dict() for a in answers]) if args.json else format_table(answers)
    print_result(text)
    return EXIT_OK
