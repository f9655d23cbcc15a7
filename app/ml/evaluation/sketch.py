"""Evaluation of sketch search on a data role: does a drawn lesion find the patient who has it?

Bodies come from a data role of :mod:`app.sim.roles` (``role="validation"`` to
choose settings, ``role="test"`` once for the report); sketches are drawn on
templates of the *training* bodies, never on an evaluated one.

Part 1, inserted lesions
    Every evaluated volume is re-scanned into several simulated patients
    (``standard`` preset, no simulator lesion), and each gets one lesion from
    :func:`app.sim.lesions.insert_lesion_3d` (random class, size and site).
    The archive holds every slice of those patients plus the lesion-free
    originals as distractor patients. A query imitates a reader: the lesion's
    central-slice mask becomes a rough sketch
    (:func:`app.sim.sketches.sketch_from_mask`) drawn on a TEMPLATE slice of
    another source volume (other anatomy) at the matching level (the template
    slice whose anatomy code is nearest the lesion slice's lesion-free version).
    The mask is carried to the template through the model frame (same place
    relative to the body centre, same physical size).
Part 2, real tumours
    The role's bodies with a tumour mask in the shared data folder: several
    tumour levels x several jittered "mass" sketches on a template from
    another body.
Part 3, OpenKBP targets
    The role's OpenKBP patients whose PTV70 (gross disease) is visibly abnormal
    by a fixed rule (:func:`visible_target_level`): one level, several jittered
    sketches of the class the rule gives.

Scoring, per query, over the exact full ranking of the archive
(:meth:`~app.ml.sketch.search.SketchIndex.ranking`):

* relevant = a slice of the right patient within 2 slices of the lesion's
  central slice (parts 2 and 3: of the tumour level; part 1's re-scans of a
  tumour volume show the same tumour in the same body, so they are left out of
  that volume's archive for parts 2 and 3 rather than counted as other patients);
* hit@k = a relevant slice among the first k results *as the user sees them*
  (one per patient and level, :func:`~app.ml.sketch.search.dedupe_hits`);
* AP over the full, un-deduplicated ranking; mAP its mean.

Each figure is given for the models' default weight, for the anatomy-only
baseline (w = 0: what a "similar slices" search without the sketch gives) and
for the sketch alone (w = 1), with bootstrap 95 % intervals over queries (also
of each weight's paired difference from anatomy only).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import cv2
import numpy as np

from app.core.volume import Volume
from app.ml.runtime.preprocess import input_to_slice_affine
from app.ml.sketch.archive import code_volume
from app.ml.sketch.models import SketchError
from app.ml.sketch.search import SketchIndex, SliceRef

if TYPE_CHECKING:
    from app.ml.sketch.encoder import SketchEncoder

if TYPE_CHECKING:
    from app.ml.runtime.model import EmbeddingModel
    from app.sim.followup import SimParams

__all__ = [
    "QueryResult",
    "SketchEvalReport",
    "SourceSet",
    "WEIGHT_RULE",
    "average_precision",
    "choose_validation_weight",
    "format_sketch_report",
    "hit_at_k",
    "load_eval_sources",
    "run_sketch_eval",
    "transfer_mask",
]

log = logging.getLogger(__name__)

LEVEL_TOLERANCE_SLICES = 2
BOOTSTRAP_RESAMPLES = 2000
# OpenKBP label value of PTV70 (gross disease), see openkbp/README.md.
OPENKBP_PTV70 = 10
# A PTV70 counts as visibly abnormal when its soft tissue differs this much (HU)
# from the same-class tissue around it (see visible_target_level).
TARGET_MIN_DIFFERENCE_HU = 15.0
_TEMPLATE_CANDIDATES = (
    "chest-angio",
    "chest-lung1",
    "chest-lung2",
    "upper-abdomen-dicom",
    "abdomen-pelvis",
)
# Lesion levels are drawn among slices whose best template match is at least
# this similar (a reader finds a template at the lesion's level); if a volume
# has none, its best-matched half is used.
_MIN_TEMPLATE_COSINE = 0.6
_SKETCH_TRIES = 5


# --------------------------------------------------------------------------- metrics


def average_precision(relevant_sorted: np.ndarray) -> float:
    """Average precision of a ranking, given relevance flags in rank order.

    Returns ``nan`` when nothing is relevant.
    """
    rel = np.asarray(relevant_sorted, dtype=bool)
    n_rel = int(rel.sum())
    if n_rel == 0:
        return float("nan")
    ranks = np.flatnonzero(rel) + 1
    precision = np.arange(1, n_rel + 1) / ranks
    return float(precision.mean())


def hit_at_k(relevant_sorted: Sequence[bool] | np.ndarray, k: int) -> bool:
    """Whether any of the first ``k`` results is relevant."""
    return bool(np.any(np.asarray(relevant_sorted, dtype=bool)[:k]))


# --------------------------------------------------------------------------- data


@dataclass
class SourceSet:
    """Volumes the evaluation runs on (real sources, or anything in tests).

    Attributes
    ----------
    holdout
        Name -> volume: lesions are inserted into re-scans of these.
    templates
        Name -> volume: sketches are drawn on these (a query never uses a
        template of the same name as its target).
    tumours
        Name -> (volume, tumour mask ``(n, rows, cols)`` bool) for part 2;
        the names also appear in ``holdout`` when they are held out.
    notes
        What was missing or checked, for the report.
    targets
        Name -> (volume, OpenKBP PTV70 mask) of targets that pass the
        visibility rule (:func:`visible_target_level`), for part 3.
    role
        The data role of ``holdout`` (:mod:`app.sim.roles`), ``None`` when
        the volumes are not a role's (tests, the former held-out set).
    """

    holdout: dict[str, Volume]
    templates: dict[str, Volume]
    tumours: dict[str, tuple[Volume, np.ndarray]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    targets: dict[str, tuple[Volume, np.ndarray]] = field(default_factory=dict)
    role: str | None = None


def _load_tumour(name: str, volume: Volume, notes: list[str]) -> np.ndarray | None:
    """The shared folder's tumour mask of ``name``, read like the image and checked against it."""
    from app.io.load import LoadError, load_volume
    from app.paths import shared_data_dir

    shared = shared_data_dir()
    path = _tumour_mask_path(name) if shared is not None else None
    if path is None:
        notes.append(f"{name}: no tumour mask (the shared data folder is absent or lacks it)")
        return None
    try:
        mask_vol = load_volume(path)
    except LoadError as exc:
        notes.append(f"{name}: tumour mask unreadable ({exc})")
        return None
    # Same reader, same display orientation: the grids must agree exactly.
    same_grid = (
        mask_vol.shape == volume.shape
        and np.allclose(mask_vol.geometry.spacing, volume.geometry.spacing, atol=1e-3)
        and np.allclose(mask_vol.slice_positions, volume.slice_positions, atol=0.05)
        and np.allclose(mask_vol.geometry.direction, volume.geometry.direction, atol=1e-4)
    )
    if not same_grid:
        notes.append(f"{name}: tumour mask is on another grid than the image; not used")
        return None
    mask = mask_vol.voxels > 0
    if not mask.any():
        notes.append(f"{name}: tumour mask is empty")
        return None
    inside = volume.voxels[mask].astype(np.float64)
    fraction_soft = float(np.mean(inside > -300))
    notes.append(
        f"{name}: tumour mask aligned (same grid after display orientation); "
        f"{int(mask.sum())} voxels on {int(mask.any(axis=(1, 2)).sum())} slices, "
        f"median HU inside {np.median(inside):.0f}, {100 * fraction_soft:.0f} % above -300 HU"
    )
    if fraction_soft < 0.5:
        notes.append(f"{name}: the mask does not sit on a soft-tissue blob; not used")
        return None
    return mask


def _tumour_mask_path(name: str) -> Path | None:
    from app.paths import shared_data_dir

    shared = shared_data_dir()
    if shared is None:
        return None
    for suffix in (".tumour-mask.nrrd", ".tumour-mask.nii.gz"):
        if (shared / f"{name}{suffix}").is_file():
            return shared / f"{name}{suffix}"
    return None


def visible_target_level(
    volume: Volume, target: np.ndarray, min_difference_hu: float = TARGET_MIN_DIFFERENCE_HU
) -> tuple[int, str, float] | None:
    """The slice where an OpenKBP PTV70 is visibly abnormal, its sketch class, and the contrast.

    The rule (fixed before any figure was seen): on the slice of largest target
    area, the mean HU of the target's soft tissue (-100 to 200 HU) must differ by
    at least ``min_difference_hu`` from the mean of the same-class tissue in a
    ring 3 to 10 mm around it; the
    sketch class is ``hyperdense`` when the target is denser, ``hypodense``
    otherwise. A PTV carries a margin of normal tissue, so most targets fail the
    rule: those are left out, and the report says how many.

    Returns
    -------
    tuple or None
        ``(slice, class, difference_hu)``, or ``None`` when not visible.
    """
    areas = target.reshape(len(target), -1).sum(axis=1)
    if areas.max() == 0:
        return None
    k = int(np.argmax(areas))
    hu = volume.voxels[k].astype(np.float32)
    mask = target[k].astype(np.uint8)
    spacing = float(np.mean(volume.geometry.spacing[:2]))
    inner = max(1, int(round(3.0 / spacing)))
    outer = max(inner + 1, int(round(10.0 / spacing)))
    disc = lambda r: cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))  # noqa: E731
    ring = cv2.dilate(mask, disc(outer)).astype(bool) & ~cv2.dilate(mask, disc(inner)).astype(bool)
    soft = (hu > -100) & (hu < 200)
    inside_px, ring_px = hu[mask.astype(bool) & soft], hu[ring & soft]
    if len(inside_px) < 20 or len(ring_px) < 20:
        return None
    diff = float(inside_px.mean() - ring_px.mean())
    if abs(diff) < min_difference_hu:
        return None
    return k, ("hyperdense" if diff > 0 else "hypodense"), diff


def load_eval_sources(
    progress: Callable[[str], None] | None = None,
    role: str | None = None,
    openkbp_limit: int = 6,
) -> SourceSet:
    """The evaluated volumes, template volumes and tumour masks available here.

    Parameters
    ----------
    progress
        Called with a line of text per volume loaded.
    role
        ``"validation"`` or ``"test"`` (:mod:`app.sim.roles`): the role's named
        bodies and its first ``openkbp_limit`` OpenKBP patients are evaluated,
        sketches are drawn on templates of the *training* bodies, and the role's
        tumours and visible OpenKBP targets (:func:`visible_target_level`) are
        queried. ``None``: the former held-out set
        (the named test bodies of :mod:`app.sim.roles`, fetched from PyPI where needed).
    openkbp_limit
        OpenKBP patients of the role to use at most.

    Raises
    ------
    ValueError
        No volume to evaluate can be had at all, or an unknown role.
    """
    from app.sim.sources import SourceError, load_source, openkbp_labels_path

    cache: dict[str, Volume | None] = {}
    notes: list[str] = []

    def get(name: str) -> Volume | None:
        if name not in cache:
            if progress:
                progress(f"loading {name}")
            try:
                cache[name] = load_source(name)
            except SourceError as exc:
                notes.append(f"{name}: {exc}")
                cache[name] = None  # noted once, not retried
        return cache[name]

    targets: dict[str, tuple[Volume, np.ndarray]] = {}
    if role is None:
        from app.sim.roles import bodies

        names: tuple[str, ...] = bodies("test", openkbp=False)
        template_names: tuple[str, ...] = _TEMPLATE_CANDIDATES
        tumour_names: tuple[str, ...] = ("chest-lung1", "chest-lung2")
    else:
        from app.sim import roles

        if role not in ("validation", "test"):
            raise ValueError(f"evaluate on the validation or test role, not {role!r}")
        checked = cast(roles.Role, role)  # checked just above
        named = roles.bodies(checked, openkbp=False)
        kbp = [n for n in roles.bodies(checked) if roles.openkbp_number(n) is not None]
        names = named + tuple(kbp[: max(0, openkbp_limit)])
        template_names = roles.bodies("training", openkbp=False)
        tumour_names = tuple(n for n in named if n in roles.TUMOUR_BODIES)
    holdout = {n: v for n in names if (v := get(n)) is not None}
    if not holdout:
        raise ValueError("no CT volume is available to evaluate on: " + "; ".join(notes))
    templates = {n: v for n in template_names if (v := get(n)) is not None}
    tumours = {}
    for name in tumour_names:
        vol = holdout.get(name)
        if vol is None:
            continue
        mask = _load_tumour(name, vol, notes)
        if mask is not None:
            tumours[name] = (vol, mask)
    if role is not None:
        from app.io.load import LoadError, load_volume

        for name, vol in holdout.items():
            labels_path = openkbp_labels_path(name)
            if labels_path is None:
                continue
            try:
                labels = load_volume(labels_path).voxels
            except LoadError as exc:
                notes.append(f"{name}: labels unreadable ({exc})")
                continue
            if labels.shape != vol.shape:
                notes.append(f"{name}: labels on another grid; not used")
                continue
            target = labels == OPENKBP_PTV70
            found = visible_target_level(vol, target)
            if found is None:
                notes.append(f"{name}: PTV70 not visibly abnormal by the rule; not queried")
                continue
            targets[name] = (vol, target)
            notes.append(
                f"{name}: PTV70 visible at slice {found[0]} ({found[1]}, {found[2]:+.0f} HU)"
            )
    return SourceSet(holdout, templates, tumours, notes, targets, role)


# --------------------------------------------------------------------------- geometry


def _affine3(m: np.ndarray) -> np.ndarray:
    return np.vstack([np.asarray(m, dtype=np.float64), [0.0, 0.0, 1.0]])


def transfer_mask(
    mask: np.ndarray, source: Volume, k: int, target: Volume, k_target: int, spec: Any
) -> np.ndarray:
    """Carry a mask from slice ``k`` of ``source`` to slice ``k_target`` of ``target``.

    Both slices are put in the model frame (body centre at the image centre,
    fixed mm per pixel), so the mask lands at the same place relative to the
    body and keeps its physical size.

    Returns
    -------
    np.ndarray
        ``bool`` ``(rows, cols)`` of ``target``.
    """
    to_src = _affine3(input_to_slice_affine(source, k, spec))  # model -> source pixels
    to_tgt = _affine3(input_to_slice_affine(target, k_target, spec))  # model -> target pixels
    tgt_to_src = (to_src @ np.linalg.inv(to_tgt))[:2]
    rows, cols = target.voxels.shape[1:]
    out = cv2.warpAffine(
        np.asarray(mask, dtype=np.float32),
        tgt_to_src,
        (cols, rows),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )
    return out >= 0.5


# --------------------------------------------------------------------------- results


@dataclass
class QueryResult:
    """One query and how each weight ranked its relevant slices."""

    part: str  # "inserted" or "tumour"
    kind: str
    target: str
    template: str
    target_slice: int
    template_slice: int
    template_cosine: float
    n_relevant: int
    hit1: dict[str, bool] = field(default_factory=dict)
    hit10: dict[str, bool] = field(default_factory=dict)
    ap: dict[str, float] = field(default_factory=dict)
    first_rank: dict[str, int] = field(default_factory=dict)


@dataclass
class SketchEvalReport:
    """Everything :func:`run_sketch_eval` measured."""

    models: str
    seed: int
    weights: dict[str, float]
    archive_slices: dict[str, int]
    archive_patients: dict[str, int]
    queries: list[QueryResult]
    notes: list[str]
    skipped_queries: list[str]
    seconds: float
    role: str | None = None

    def summary(
        self, part: str, kind: str | None = None, n_boot: int = BOOTSTRAP_RESAMPLES
    ) -> dict[str, dict[str, Any]]:
        """``{weight name: {hit1, hit10, mAP, n, ci95}}`` over a part (and class).

        ``ci95`` holds a bootstrap 95 % interval of each figure (resampling the
        queries, ``n_boot`` times, fixed seed) as ``[low, high]``, and of each
        weight's difference from the anatomy-only figure (``vs_anatomy``) when
        an ``anatomy-only`` weight was scored: the queries are resampled together,
        so the interval of a difference is paired.
        """
        qs = [q for q in self.queries if q.part == part and (kind is None or q.kind == kind)]
        out: dict[str, dict[str, Any]] = {}
        if not qs:
            return out
        rng = np.random.default_rng(12345)
        draws = rng.integers(0, len(qs), size=(n_boot, len(qs)))
        per_query: dict[str, dict[str, np.ndarray]] = {}
        for name in self.weights:
            per_query[name] = {
                "hit1": np.array([q.hit1[name] for q in qs], dtype=np.float64),
                "hit10": np.array([q.hit10[name] for q in qs], dtype=np.float64),
                "mAP": np.array([q.ap[name] for q in qs], dtype=np.float64),
            }

        def interval(values: np.ndarray) -> list[float]:
            resampled = np.nanmean(values[draws], axis=1)
            return [
                float(np.nanpercentile(resampled, 2.5)),
                float(np.nanpercentile(resampled, 97.5)),
            ]

        base = per_query.get("anatomy-only")
        for name, figures in per_query.items():
            entry: dict[str, Any] = {
                metric: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
                for metric, v in figures.items()
            }
            entry["n"] = len(qs)
            entry["ci95"] = {metric: interval(v) for metric, v in figures.items()}
            if base is not None and name != "anatomy-only":
                entry["vs_anatomy"] = {
                    metric: interval(v - base[metric]) for metric, v in figures.items()
                }
            out[name] = entry
        return out

    def to_dict(self) -> dict[str, Any]:
        """All figures, JSON-serialisable."""
        parts = sorted({q.part for q in self.queries})
        return {
            "models": self.models,
            "role": self.role,
            "seed": self.seed,
            "weights": self.weights,
            "archive_slices": self.archive_slices,
            "archive_patients": self.archive_patients,
            "summary": {
                part: {
                    "all": self.summary(part),
                    "per_class": {
                        kind: self.summary(part, kind)
                        for kind in sorted({q.kind for q in self.queries if q.part == part})
                    },
                }
                for part in parts
            },
            "queries": [dataclasses.asdict(q) for q in self.queries],
            "notes": self.notes,
            "skipped_queries": self.skipped_queries,
            "seconds": round(self.seconds, 1),
        }


# --------------------------------------------------------------------------- the default weight

WEIGHT_RULE = (
    "the weight with the highest mAP on the validation role's inserted lesions among "
    "w = 0.0, 0.1, ..., 1.0 (eval-sketch --role validation --sweep); ties to the weight nearest "
    "0.5, then the lower"
)


def choose_validation_weight(results: dict[str, Any], representation: str = "") -> dict[str, Any]:
    """The slider's default weight chosen by :data:`WEIGHT_RULE` from a validation sweep.

    Parameters
    ----------
    results
        :meth:`SketchEvalReport.to_dict` of a ``--sweep`` run (or its ``--json`` file, read back).
    representation
        ``""`` for the main representation, else a ``compare`` name (``"evidence"``).

    Returns
    -------
    dict
        ``weight`` (the choice), ``rule``, ``role``, ``models`` and ``sweep``: per weight
        ``{"w", "hit1", "hit10", "mAP", "n"}`` on inserted lesions, in weight order.

    Raises
    ------
    ValueError
        The results are not of the validation role (a weight is never chosen on
        training or test bodies), hold no sweep, or no inserted-lesion query.
    """
    if results.get("role") != "validation":
        raise ValueError(
            f"the default weight is chosen on the validation role only, not on {results.get('role')!r}"
        )
    prefix = f"{representation}/" if representation else ""
    inserted = results.get("summary", {}).get("inserted", {}).get("all", {})
    sweep = []
    for name, w in results["weights"].items():
        if not name.startswith(prefix) or (not prefix and "/" in name):
            continue
        if name[len(prefix) :] == "default" or name not in inserted:
            continue  # the default is one of the grid's weights; scored under its own name too
        figures = inserted[name]
        sweep.append(
            {
                "w": round(float(w), 2),
                **{m: float(figures[m]) for m in ("hit1", "hit10", "mAP")},
                "n": int(figures["n"]),
            }
        )
    sweep.sort(key=lambda e: e["w"])
    if len({e["w"] for e in sweep}) < 11:
        raise ValueError("choosing the default weight needs a --sweep run (w = 0.0 ... 1.0)")
    # Distances rounded (0.7 - 0.5 and 0.5 - 0.3 differ in the last bit); then the lower w.
    best = min(
        sweep,
        key=lambda e: (-np.nan_to_num(e["mAP"], nan=-np.inf), round(abs(e["w"] - 0.5), 6), e["w"]),
    )
    return {
        "weight": best["w"],
        "rule": WEIGHT_RULE,
        "role": results["role"],
        "models": results.get("models", ""),
        "sweep": sweep,
    }


# --------------------------------------------------------------------------- the run


@dataclass
class _Patient:
    key: str
    source: str
    volume: Volume
    anatomy: np.ndarray
    abnormality: dict[str, np.ndarray]  # representation name ("" = the main one) -> codes
    source_z: np.ndarray  # per slice: level in the source's slice_z (mm)
    lesion: tuple[str, int, np.ndarray] | None = None  # (kind, central slice, labels)
    clean_anatomy: np.ndarray | None = None  # anatomy codes before the lesion


def _refs(p: _Patient) -> list[SliceRef]:
    z = p.volume.slice_z
    n = p.volume.n_slices
    return [
        SliceRef(p.key, p.key, "", p.key, p.source, p.source, k, n, float(z[k])) for k in range(n)
    ]


def _ranked_templates(
    anat_q: np.ndarray, exclude: str, templates: dict[str, np.ndarray]
) -> list[tuple[str, int, float]]:
    """Each template's best-matching slice to ``anat_q``, best template first."""
    out = []
    for name, codes in templates.items():
        if name == exclude:
            continue
        sims = codes @ anat_q
        j = int(np.argmax(sims))
        out.append((name, j, float(sims[j])))
    return sorted(out, key=lambda t: -t[2])


def run_sketch_eval(
    model: EmbeddingModel,
    sketch_models: SketchEncoder,
    sources: SourceSet,
    seed: int = 0,
    patients_per_volume: int = 4,
    sketches_per_lesion: int = 2,
    tumour_levels: int = 3,
    sketches_per_tumour_level: int = 3,
    progress: Callable[[str], None] | None = None,
    sim_params: SimParams | None = None,
    weights: dict[str, float] | None = None,
    compare: dict[str, Any] | None = None,
    openkbp_patients_per_volume: int | None = None,
) -> SketchEvalReport:
    """Run both parts of the sketch evaluation (see the module docstring).

    Parameters
    ----------
    model, sketch_models
        The anatomy model and the sketch models under test.
    sources
        Volumes to use (:func:`load_eval_sources`).
    seed
        Seeds every random draw.
    patients_per_volume
        Simulated lesion patients per held-out volume.
    sketches_per_lesion
        Jittered sketches (queries) per inserted lesion.
    tumour_levels, sketches_per_tumour_level
        Part 2: tumour levels per tumour volume, sketches per level.
    progress
        Called with a line of text at each step.
    sim_params
        How lesion patients are re-scanned; the ``standard`` preset without
        the simulator's own lesion when ``None``.
    weights
        Name -> weight to score every query at; the models' default, anatomy
        only (0) and sketch only (1) when ``None`` (a validation sweep passes more).
    openkbp_patients_per_volume
        Simulated lesion patients per OpenKBP volume (small 128^3 scans, cheap
        to simulate); ``patients_per_volume`` when ``None``.
    compare
        Name -> another abnormality representation scored on the very same
        patients and sketches; its figures are named ``"<name>/<weight name>"``.

    Raises
    ------
    ValueError
        No template volume other than the held-out volume itself exists.
    """
    from app.sim.followup import SIM_PRESETS, simulate_followup
    from app.sim.lesions import LESION_CLASSES, insert_lesion_3d
    from app.sim.sketches import sketch_from_mask

    t0 = time.perf_counter()
    say = progress or (lambda _m: None)
    rng = np.random.default_rng([seed, 6])
    spec = sketch_models.spec
    weights = (
        dict(weights)
        if weights
        else {
            "default": float(sketch_models.default_weight),
            "anatomy-only": 0.0,
            "sketch-only": 1.0,
        }
    )
    notes = list(sources.notes)
    skipped: list[str] = []
    reps: dict[str, Any] = {"": sketch_models, **(compare or {})}
    base_weights = dict(weights)

    def rep_weight(r: str, bname: str, w: float) -> float:
        # "default" means each representation's own default weight.
        return float(reps[r].default_weight) if (r and bname == "default") else w

    weights = {
        (b if r == "" else f"{r}/{b}"): rep_weight(r, b, w)
        for r in reps
        for b, w in base_weights.items()
    }

    def codes(volume: Volume) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        coded = code_volume(volume, model, sketch_models, with_thumbnails=False)
        abn = {"": coded.abnormality}
        for r, other in reps.items():
            if r:
                abn[r] = other.abnormality_vectors(volume)
        return coded.anatomy, abn

    def new_index(r: str) -> SketchIndex:
        other = reps[r]
        return SketchIndex(
            model.embedding_dim,
            other.abnormality_dim,
            evidence_floor=getattr(other, "evidence_floor", None),
        )

    templates = {
        name: code_volume(v, model, sketch_models, with_thumbnails=False).anatomy
        for name, v in sources.templates.items()
    }
    for name in sources.holdout:
        if not set(templates) - {name}:
            raise ValueError(f"no template volume other than {name} itself to draw sketches on")

    # ---- patients: originals (distractors / tumour patients) and lesion patients
    params = sim_params or dataclasses.replace(SIM_PRESETS["standard"], lesion_probability=0.0)
    patients: list[_Patient] = []
    from app.sim.roles import openkbp_number

    for name, vol in sources.holdout.items():
        a, b = codes(vol)
        patients.append(_Patient(f"{name}/original", name, vol, a, b, vol.slice_z.copy()))
        n_patients = patients_per_volume
        if openkbp_patients_per_volume is not None and openkbp_number(name) is not None:
            n_patients = openkbp_patients_per_volume
        for i in range(n_patients):
            say(f"{name}: simulating lesion patient {i + 1}/{n_patients}")
            sim = simulate_followup(vol, params, rng)
            clean_a = code_volume(sim.volume, model, sketch_models, with_thumbnails=False).anatomy
            # Lesion levels a reader could find a template for.
            best_cos = np.max(
                [np.max(c @ clean_a.T, axis=0) for t, c in templates.items() if t != name], axis=0
            )
            n = sim.volume.n_slices
            middle = np.arange(int(0.1 * (n - 1)), int(np.ceil(0.9 * (n - 1))) + 1)
            ok = middle[best_cos[middle] >= _MIN_TEMPLATE_COSINE]
            if len(ok) == 0:
                ok = middle[best_cos[middle] >= np.median(best_cos[middle])]
            inserted = None
            for _ in range(10):
                kind = str(rng.choice(LESION_CLASSES))
                try:
                    new_vol, labels = insert_lesion_3d(
                        sim.volume, kind, rng, center_index=int(rng.choice(ok))
                    )
                except ValueError:
                    continue
                inserted = (kind, new_vol, labels)
                break
            if inserted is None:
                skipped.append(f"{name} patient {i}: no site for a lesion")
                continue
            kind, new_vol, labels = inserted
            areas = labels.reshape(len(labels), -1).astype(bool).sum(axis=1)
            centre = int(np.argmax(areas))
            a, b = codes(new_vol)
            patients.append(
                _Patient(
                    f"{name}/sim{i}",
                    name,
                    new_vol,
                    a,
                    b,
                    np.asarray(sim.source_z, dtype=np.float64),
                    (kind, centre, labels),
                    clean_a,
                )
            )

    indexes = {r: new_index(r) for r in reps}
    offsets: dict[str, int] = {}
    for p in patients:
        offsets[p.key] = len(indexes[""])
        for r, idx in indexes.items():
            idx.add(_refs(p), p.anatomy, p.abnormality[r])
    index = indexes[""]
    row_patient = np.array([r.patient_key for r in index.refs])
    row_slice = np.array([r.slice_index for r in index.refs])
    queries: list[QueryResult] = []

    def score(
        searches: dict[str, SketchIndex],
        query: QueryResult,
        anat_q: np.ndarray,
        sketch_qs: dict[str, np.ndarray],
        relevant: np.ndarray,
    ) -> None:
        query.n_relevant = int(relevant.sum())
        for r, bname, w0 in ((r, b, w) for r in reps for b, w in base_weights.items()):
            wname = bname if r == "" else f"{r}/{bname}"
            w = rep_weight(r, bname, w0)
            search, sketch_q = searches[r], sketch_qs[r]
            order, _ = search.ranking(anat_q, sketch_q, w)
            rel_sorted = relevant[order]
            query.ap[wname] = average_precision(rel_sorted)
            first = np.flatnonzero(rel_sorted)
            query.first_rank[wname] = int(first[0]) + 1 if len(first) else -1
            shown = search.query(anat_q, sketch_q, w, k=10, one_per_patient_level=True, exact=True)
            shown_rel = [bool(relevant[h.row]) for h in shown]
            query.hit1[wname] = hit_at_k(shown_rel, 1)
            query.hit10[wname] = hit_at_k(shown_rel, 10)
        queries.append(query)

    def sketch_query(
        mask: np.ndarray, src: Volume, k: int, clean_anat: np.ndarray, exclude: str, kind: str
    ) -> tuple[np.ndarray, dict[str, np.ndarray], str, int, float] | str:
        """The query (template anatomy, sketch code, template, slice, cosine), or why not.

        Templates are tried best-matching first: the lesion may fall outside a
        smaller field of view, where a reader would pick another template.
        """
        label = 1 + LESION_CLASSES.index(kind)
        why = "no template volume"
        for tname, kt, cos in _ranked_templates(clean_anat, exclude, templates):
            tvol = sources.templates[tname]
            on_template = transfer_mask(mask, src, k, tvol, kt, spec)
            if not on_template.any():
                why = f"the lesion falls outside {tname}'s field at slice {kt}"
                continue
            pixel_mm = float(np.sqrt(np.prod(tvol.geometry.spacing[:2])))
            for _ in range(_SKETCH_TRIES):
                drawn = sketch_from_mask(on_template, rng, pixel_mm=pixel_mm)
                try:
                    vecs = {
                        r: other.sketch_vector(tvol, kt, drawn.astype(np.uint8) * label)
                        for r, other in reps.items()
                    }
                except SketchError as exc:
                    why = f"on {tname} slice {kt}: {exc}"
                    continue
                return templates[tname][kt], vecs, tname, kt, cos
        return why

    # ---- part 1: inserted lesions
    for p in patients:
        if p.lesion is None:
            continue
        kind, centre, labels = p.lesion
        say(f"part 1: queries for {p.key} ({kind})")
        relevant = (row_patient == p.key) & (np.abs(row_slice - centre) <= LEVEL_TOLERANCE_SLICES)
        assert p.clean_anatomy is not None
        for s in range(sketches_per_lesion):
            made = sketch_query(
                labels[centre] > 0, p.volume, centre, p.clean_anatomy[centre], p.source, kind
            )
            if isinstance(made, str):
                skipped.append(f"{p.key} sketch {s}: {made}")
                continue
            anat_q, vec, tname, kt, cos = made
            q = QueryResult("inserted", kind, p.key, tname, centre, kt, cos, 0)
            score(indexes, q, anat_q, vec, relevant)

    # ---- part 2: real tumours. Re-scans of the tumour volume (part 1's lesion
    # patients made from it) show the same tumour in the same body: they would
    # be the same patient on another date, so they leave this part's archive
    # and only the tumour patient's own slices are relevant.
    part2_sizes: dict[str, int] = {}
    real_lesions = [("tumour", name, vol, mask) for name, (vol, mask) in sources.tumours.items()]
    real_lesions += [("target", name, vol, mask) for name, (vol, mask) in sources.targets.items()]
    for part, name, vol, mask in real_lesions:
        orig_key = f"{name}/original"
        if orig_key not in offsets:
            continue
        orig = next(p for p in patients if p.key == orig_key)
        members = [p for p in patients if p.source != name or p.key == orig_key]
        indexes2 = {r: new_index(r) for r in reps}
        for p in members:
            for r, idx in indexes2.items():
                idx.add(_refs(p), p.anatomy, p.abnormality[r])
        index2 = indexes2[""]
        part2_sizes[name] = len(index2)
        row_patient2 = np.array([r.patient_key for r in index2.refs])
        row_slice2 = np.array([r.slice_index for r in index2.refs])
        if part == "tumour":
            kind = "mass"
            areas = mask.reshape(len(mask), -1).sum(axis=1)
            big = np.flatnonzero(areas >= 0.3 * areas.max())
            picks = np.round(np.linspace(big.min(), big.max(), tumour_levels)).astype(int)
            levels = sorted({int(big[np.argmin(np.abs(big - k))]) for k in picks})
        else:
            found = visible_target_level(vol, mask)
            if found is None:
                continue
            levels, kind = [found[0]], found[1]
        for level in levels:
            say(f"{part}: {name} level {level}")
            relevant = (row_patient2 == orig_key) & (
                np.abs(row_slice2 - level) <= LEVEL_TOLERANCE_SLICES
            )
            for s in range(sketches_per_tumour_level):
                made = sketch_query(mask[level], vol, level, orig.anatomy[level], name, kind)
                if isinstance(made, str):
                    skipped.append(f"{name} level {level} sketch {s}: {made}")
                    continue
                anat_q, vec, tname, kt, cos = made
                q = QueryResult(part, kind, orig_key, tname, level, kt, cos, 0)
                score(indexes2, q, anat_q, vec, relevant)
    if not sources.tumours:
        notes.append("part 2 (real tumours) not run: no tumour masks available")
    for name, size in part2_sizes.items():
        notes.append(
            f"real-lesion archive for {name}: {size} slices "
            f"(part 1's archive less the re-scans of {name})"
        )

    n_lesion = sum(p.lesion is not None for p in patients)
    return SketchEvalReport(
        models="; ".join(
            [model.identity, sketch_models.identity]
            + [f"{r}: {o.identity}" for r, o in reps.items() if r]
        ),
        seed=seed,
        weights=weights,
        archive_slices={"all": len(index)},
        archive_patients={
            "all": len(patients),
            "with_inserted_lesion": n_lesion,
            "originals": len(patients) - n_lesion,
        },
        queries=queries,
        notes=notes,
        skipped_queries=skipped,
        seconds=time.perf_counter() - t0,
        role=sources.role,
    )


def format_sketch_report(report: SketchEvalReport) -> str:
    """The readable table printed by ``priorsync eval-sketch``."""
    lines = [
        f"models: {report.models}",
        f"seed {report.seed}; archive: {report.archive_slices['all']} slices of "
        f"{report.archive_patients['all']} patients "
        f"({report.archive_patients['with_inserted_lesion']} with an inserted lesion, "
        f"{report.archive_patients['originals']} lesion-free originals); "
        f"{report.seconds:.0f} s",
        "hit@k: a slice of the right patient within ±2 slices of the lesion among the first k "
        "results shown (one per patient and level); mAP over the full exact ranking",
    ]
    titles = {
        "inserted": "Part 1: inserted lesions",
        "tumour": "Part 2: real tumours",
        "target": "Part 3: visible OpenKBP PTV70 targets",
    }
    for part in ("inserted", "tumour", "target"):
        if not any(q.part == part for q in report.queries):
            continue
        lines += ["", titles[part]]
        lines.append(f"{'class':<12}{'weight':<22}{'n':>4}{'hit@1':>18}{'hit@10':>18}{'mAP':>20}")
        kinds = [None, *sorted({q.kind for q in report.queries if q.part == part})]
        for kind in kinds:
            summary = report.summary(part, kind)
            for wname, s in summary.items():
                label = f"{wname} (w={report.weights[wname]:.2f})"
                ci = s["ci95"]
                cells = "".join(
                    f"{s[m]:>7.{d}f} [{ci[m][0]:.{d}f},{ci[m][1]:.{d}f}]"
                    for m, d in (("hit1", 2), ("hit10", 2), ("mAP", 3))
                )
                lines.append(f"{kind or 'all':<12}{label:<22}{int(s['n']):>4}{cells}")
    if report.notes:
        lines += ["", "notes:"] + [f"  {n}" for n in report.notes]
    if report.skipped_queries:
        lines += ["", f"{len(report.skipped_queries)} queries skipped:"]
        lines += [f"  {s}" for s in report.skipped_queries[:20]]
    return "\n".join(lines)
