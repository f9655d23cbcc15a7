"""``priorsync search-sketch ARCHIVE_OR_FOLDER --template VOLUME --slice N [--sketch MASK.png]``.

The query the viewer's sketch canvas runs, from the command line: the anatomy
code of template slice N plus the code of the drawn sketch, scored
``(1 - w) * anatomy + w * abnormality`` over every slice of an archive
(``priorsync index``) or of a folder of CT series (indexed in memory for this
search; an archive made by ``priorsync index FOLDER`` with the default ``--out``
is used when present). Slices showing no evidence of the sketched lesion where
it is drawn rank below every slice that shows some, at every weight above 0.

Without ``--sketch`` it is a plain similar-slice search: this level in the
other patients (the viewer's "Find similar slices"): anatomy only, the
template's own patient left out.

The sketch PNG has the template slice's size (rows x columns as displayed):
grey values ``1..3`` are the classes (1 mass, 2 hypodense, 3 hyperdense) and 0
background; an image with other values (e.g. a 0/255 mask, or colour) counts
every non-zero pixel as drawn, of the class ``--class``.

Slice numbers are 1-based on the command line and in the output (the viewer's
convention); the output also gives the 0-based index.

Exit codes: 0 success, 2 bad input (archive, template, slice or sketch), 3 a
model is missing or corrupt.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from app.commands.exit_codes import EXIT_INPUT, EXIT_MODEL, EXIT_OK
from app.commands.options import InputError, add_model_arguments, load_input_volumes

__all__ = ["add_arguments", "read_sketch_png", "run"]

_CLASSES = ("mass", "hypodense", "hyperdense")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``priorsync search-sketch``."""
    parser.add_argument(
        "source", metavar="ARCHIVE_OR_FOLDER", type=Path, help="archive or folder of CT series"
    )
    parser.add_argument(
        "--template", type=Path, required=True, metavar="VOLUME", help="template series"
    )
    parser.add_argument(
        "--slice", type=int, required=True, metavar="N", help="template slice, 1-based"
    )
    parser.add_argument("--sketch", type=Path, default=None, metavar="MASK.png", help="sketch")
    parser.add_argument(
        "--class",
        dest="lesion_class",
        choices=_CLASSES,
        default="mass",
        help="class of a 0/non-zero sketch image (default mass)",
    )
    parser.add_argument(
        "--weight",
        type=float,
        default=None,
        metavar="W",
        help="abnormality weight in [0, 1] (default: the representation's)",
    )
    parser.add_argument("--top", type=int, default=10, metavar="K", help="hits (default 10)")
    parser.add_argument("--json", action="store_true", help="print the hits as JSON")
    add_model_arguments(parser, cache=False, sketch=True)


def _error(message: str) -> None:
    print(f"priorsync search-sketch: error: {message}", file=sys.stderr)


def read_sketch_png(path: Path, shape: tuple[int, int], lesion_class: str) -> np.ndarray:
    """A sketch image as a label image (0 background, ``1..3`` classes).

    Raises
    ------
    InputError
        Missing or unreadable file, or another size than the template slice.
    """
    import cv2

    if not path.is_file():
        raise InputError(f"sketch {path} does not exist")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"sketch {path} is not a readable image")
    if img.ndim == 3:
        img = img[..., :3].max(axis=2) if img.shape[2] >= 3 else img[..., 0]
    if img.shape != shape:
        raise InputError(
            f"sketch {path} is {img.shape[0]}x{img.shape[1]} pixels but the template slice is "
            f"{shape[0]}x{shape[1]}: draw it on the template slice"
        )
    if int(img.max()) <= len(_CLASSES):
        return img.astype(np.int32)
    return (img != 0).astype(np.int32) * (1 + _CLASSES.index(lesion_class))


def _open_source(source: Path, model: Any, rep: Any) -> tuple[Any, str]:
    """The index to search and a note on where it came from."""
    from app.ml.sketch.archive import Archive, ArchiveError, default_archive_dir

    if (source / "manifest.json").is_file():
        return Archive.open(source, model=model, sketch_models=rep).index, f"archive {source}"
    cached = default_archive_dir(source)
    if (cached / "manifest.json").is_file():
        try:
            return Archive.open(cached, model=model, sketch_models=rep).index, f"archive {cached}"
        except ArchiveError as exc:
            print(f"priorsync search-sketch: not using {cached}: {exc}", file=sys.stderr)
    return _index_folder(source, model, rep), f"folder {source} (indexed for this search)"


def _index_folder(folder: Path, model: Any, rep: Any) -> Any:
    from app.io.catalog import group_series
    from app.io.errors import LoadError
    from app.io.load import load_series
    from app.io.scan import scan_paths
    from app.ml.sketch.archive import ArchiveError, code_volume
    from app.ml.sketch.search import SketchIndex, slice_refs

    scan = scan_paths([folder])
    for s in scan.skipped:
        print(f"priorsync search-sketch: skipped {s.path}: {s.reason}", file=sys.stderr)
    index = SketchIndex(
        model.embedding_dim,
        rep.abnormality_dim,
        evidence_floor=getattr(rep, "evidence_floor", None),
    )
    for patient in group_series(scan.series):
        for ref in patient.series:
            if not ref.is_ct or ref.n_slices < 2:
                continue
            try:
                volume = load_series(ref)
                coded = code_volume(volume, model, rep, with_thumbnails=False)
            except (LoadError, ValueError, RuntimeError, MemoryError) as exc:
                print(f"priorsync search-sketch: skipped {ref.source}: {exc}", file=sys.stderr)
                continue
            index.add(slice_refs(volume, ref.key), coded.anatomy, coded.abnormality)
    if len(index) == 0:
        raise ArchiveError(f"no usable CT series found in {folder}")
    return index


def _hit_dict(rank: int, hit: Any) -> dict[str, Any]:
    ref = hit.ref
    return {
        "rank": rank,
        "patient": ref.patient_label,
        "study_date": ref.study_date,
        "series": ref.series_label,
        "source": ref.source,
        "slice_number": ref.slice_index + 1,
        "slice_index": ref.slice_index,
        "n_slices": ref.n_slices,
        "position_lps_mm": list(ref.position) if ref.position is not None else None,
        "z_mm": round(ref.z_mm, 2),
        "score": round(hit.score, 4),
        "anatomy_score": round(hit.anatomy_score, 4),
        "abnormality_score": round(hit.abnormality_score, 4),
    }


def run(args: argparse.Namespace) -> int:
    """Run ``priorsync search-sketch``; returns the exit code."""
    from app.commands.options import load_sketch_stack
    from app.ml.runtime.model import ModelError
    from app.ml.sketch.archive import ArchiveError
    from app.ml.sketch.models import SketchError
    from app.ml.sketch.search import patient_key, similar_slices

    if args.top < 1:
        _error("--top must be at least 1")
        return EXIT_INPUT
    if args.weight is not None and not 0.0 <= args.weight <= 1.0:
        _error("--weight must be in [0, 1]")
        return EXIT_INPUT
    if not args.source.exists():
        _error(f"{args.source} does not exist")
        return EXIT_INPUT
    try:
        (template,) = load_input_volumes("search-sketch", [("template", args.template)])
    except InputError as exc:
        _error(str(exc))
        return EXIT_INPUT
    k = args.slice - 1
    if not 0 <= k < template.n_slices:
        _error(f"--slice {args.slice} is not in the template (slices 1 to {template.n_slices})")
        return EXIT_INPUT
    try:
        labels = (
            read_sketch_png(args.sketch, template.voxels.shape[1:], args.lesion_class)
            if args.sketch is not None
            else None
        )
        model, rep = load_sketch_stack(args)
    except InputError as exc:
        _error(str(exc))
        return EXIT_INPUT
    except ModelError as exc:
        _error(str(exc))
        return EXIT_MODEL
    try:
        sketch_q = (
            rep.sketch_vector(template, k, labels)
            if labels is not None
            else np.zeros(rep.abnormality_dim, np.float32)
        )
    except SketchError as exc:
        _error(str(exc))
        return EXIT_INPUT
    try:
        index, where = _open_source(args.source, model, rep)
    except ArchiveError as exc:
        _error(str(exc))
        return EXIT_INPUT
    if index.anatomy_dim != model.embedding_dim:
        _error("the archive was indexed with another anatomy model: index it again")
        return EXIT_INPUT
    anat_q = np.asarray(model.embed_slices(template, [k]))[0]
    weight = 0.0 if labels is None else (rep.default_weight if args.weight is None else args.weight)
    if labels is None:
        # Similar slices: this level in *other* patients.
        own = patient_key(template.info, template.info.series_uid or template.source)
        hits = similar_slices(index, anat_q, own, k=args.top)
    else:
        hits = index.query(anat_q, sketch_q, weight, k=args.top)
    hit_dicts = [_hit_dict(i + 1, h) for i, h in enumerate(hits)]
    result = {
        "searched": where,
        "n_slices": len(index),
        "template": {"source": str(args.template), "slice_number": args.slice, "slice_index": k},
        "sketch": str(args.sketch) if args.sketch is not None else None,
        "weight": weight,
        "representation": rep.identity,
        "hits": hit_dicts,
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return EXIT_OK
    print(f"searched {where}: {len(index)} slices; w = {weight:.2f}")
    for h in hit_dicts:
        pos = h["position_lps_mm"]
        pos_text = "({:.1f}, {:.1f}, {:.1f})".format(*pos) if pos else f"z {h['z_mm']:.1f}"
        print(
            f"{h['rank']:>3}  {h['score']:.3f}  {h['patient'] or '-'}  {h['study_date'] or '-'}  "
            f"{h['series']}  slice {h['slice_number']}/{h['n_slices']}  LPS {pos_text} mm"
        )
    return EXIT_OK
