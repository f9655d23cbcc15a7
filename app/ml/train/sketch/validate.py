"""A PROVISIONAL sketch slider weight, from a sweep on lesions in the TRAINING volumes.

The app scores a stored slice for a sketch query as
``(1 - w) * cos(anatomy_template, anatomy_slice) + w * cos(sketch, abnormality_slice)``.
``priorsync train-sketch`` exports the weight found here only as a provisional
default: the shipped one is chosen on the validation role
(:func:`app.ml.evaluation.sketch.choose_validation_weight`, ``train-sketch
--validation-json``). The sweep here never reads a validation or test body:

* each training volume is re-scanned once more by the simulator (a stream the
  training bank never used), and copies of that scan get one lesion each
  (:func:`app.sim.lesions.insert_lesion_3d`); the lesion-free scan stays in the
  archive as the look-alike that only the abnormality term can rule out;
* a query is the anatomy code of a template slice from ANOTHER training
  volume at the lesion's level (found with the shipped anatomy model) and
  the code of a sketch of the lesion (:func:`app.sim.sketches.sketch_from_mask`
  on its central slice);
* a hit is a retrieved slice of the lesion's series that shows the lesion.

``w`` maximises the mean of hit@1 and hit@10 over a grid.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from app.core.volume import Volume
from app.ml.runtime.preprocess import InputSpec, labels_to_input, prepare_slices
from app.ml.train.sketch.model import AbnormalityNet, SketchNet
from app.sim.lesions import LESION_CLASSES, insert_lesion_3d, lesion_label
from app.sim.sketches import sketch_from_mask

__all__ = ["ValidationResult", "choose_default_weight", "retrieval_hits"]

log = logging.getLogger(__name__)

WEIGHT_GRID = tuple(round(w, 2) for w in np.linspace(0.0, 1.0, 11))


@dataclass
class ValidationResult:
    """Retrieval figures per weight and the chosen default."""

    weights: list[float]
    hit1: list[float]
    hit10: list[float]
    default_weight: float
    n_queries: int
    n_slices: int
    queries: list[dict] = field(default_factory=list)

    def at(self, weight: float) -> tuple[float, float]:
        """``(hit@1, hit@10)`` at one of :attr:`weights`."""
        i = int(np.argmin(np.abs(np.asarray(self.weights) - weight)))
        return self.hit1[i], self.hit10[i]


@torch.no_grad()
def _encode(model: torch.nn.Module, x: np.ndarray, batch: int = 64) -> np.ndarray:
    model.eval()
    out = [
        model(torch.from_numpy(np.ascontiguousarray(x[i : i + batch]))).numpy()
        for i in range(0, len(x), batch)
    ]
    return np.concatenate(out) if out else np.zeros((0, 1), dtype=np.float32)


def retrieval_hits(
    anat_q: np.ndarray,
    sketch_q: np.ndarray,
    anat_db: np.ndarray,
    abn_db: np.ndarray,
    relevant: np.ndarray,
    weights: Sequence[float],
    *,
    candidate: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """hit@1 and hit@10 (fractions of queries) for each weight.

    Parameters
    ----------
    anat_q, sketch_q
        ``(Q, Da)`` and ``(Q, Db)`` unit query codes.
    anat_db, abn_db
        ``(N, Da)`` and ``(N, Db)`` unit codes of the archive's slices.
    relevant
        ``bool (Q, N)``: which slices answer each query.
    weights
        Slider values to evaluate.
    candidate
        ``bool (Q, N)``: slices each query may return (all when ``None``).
    """
    a = anat_q @ anat_db.T
    b = sketch_q @ abn_db.T
    excluded = np.zeros(a.shape, dtype=bool) if candidate is None else ~candidate
    hit1, hit10 = [], []
    for w in weights:
        score = np.where(excluded, -np.inf, (1.0 - w) * a + w * b)
        top = np.argsort(-score, axis=1, kind="stable")[:, :10]
        hits = np.take_along_axis(relevant, top, axis=1)
        hit1.append(float(hits[:, 0].mean()))
        hit10.append(float(hits.any(axis=1).mean()))
    return np.array(hit1), np.array(hit10)


def choose_default_weight(
    abnormality: AbnormalityNet,
    sketch: SketchNet,
    sources: dict[str, Volume],
    anatomy: Callable[[Volume], np.ndarray],
    simulate: Callable[[Volume, np.random.Generator], Volume],
    spec: InputSpec,
    *,
    seed: int,
    lesions_per_volume: int = 4,
    weights: Sequence[float] = WEIGHT_GRID,
) -> ValidationResult:
    """Build the training-volume validation set, measure retrieval, pick ``w``.

    Parameters
    ----------
    abnormality, sketch
        The trained encoders.
    sources
        Training volumes by name (at least two: templates come from another one).
    anatomy
        ``volume -> (n_slices, Da)`` unit anatomy codes (the shipped model).
    simulate
        ``(source, rng) -> lesion-free simulated Volume``.
    spec
        Model frame.
    seed
        Seeds the validation scans, lesions and sketches.
    lesions_per_volume
        Lesion series per training volume (classes in turn).
    weights
        Grid of slider values.
    """
    names = list(sources)
    if len(names) < 2:
        raise ValueError("the validation needs at least two training volumes")
    src_anat = {n: anatomy(v) for n, v in sources.items()}
    anat_db, abn_db, series_of, volume_of, shows = [], [], [], [], []
    queries: list[tuple[int, np.ndarray, np.ndarray, dict[str, object], str]] = []
    series = 0
    for vi, name in enumerate(names):
        rng = np.random.default_rng([seed, vi, 4242])
        scan = simulate(sources[name], rng)
        variants: list[tuple[Volume, np.ndarray | None, str]] = [(scan, None, "")]
        for j in range(lesions_per_volume):
            kind = LESION_CLASSES[(vi + j) % len(LESION_CLASSES)]
            try:
                with_lesion, lesion = insert_lesion_3d(scan, kind, rng)
            except ValueError as exc:
                log.info("validation: %s, no %s lesion (%s)", name, kind, exc)
                continue
            variants.append((with_lesion, lesion, kind))
        for vol, labels, kind in variants:
            anat = anatomy(vol)
            abn = _encode(abnormality, prepare_slices(vol, spec=spec))
            anat_db.append(anat)
            abn_db.append(abn)
            series_of.append(np.full(vol.n_slices, series))
            volume_of.append(np.full(vol.n_slices, vi))
            has = (
                labels.reshape(len(labels), -1).any(axis=1)
                if labels is not None
                else np.zeros(vol.n_slices, dtype=bool)
            )
            shows.append(has)
            if labels is not None and has.any():
                k = int(np.argmax((labels > 0).sum(axis=(1, 2))))
                # Template: the best-matching slice of the most similar OTHER volume.
                best = max(
                    ((o, int(np.argmax(src_anat[o] @ anat[k]))) for o in names if o != name),
                    key=lambda ok: float(src_anat[ok[0]][ok[1]] @ anat[k]),
                )
                drawn = sketch_from_mask(
                    labels[k] > 0, rng, pixel_mm=float(np.sqrt(np.prod(vol.geometry.spacing[:2])))
                )
                sketch_labels = drawn.astype(np.uint8) * lesion_label(kind)
                sketch_in = labels_to_input(vol, k, sketch_labels, len(LESION_CLASSES), spec)
                info = {
                    "volume": name,
                    "kind": kind,
                    "slice": k,
                    "template": best[0],
                    "template_slice": best[1],
                }
                queries.append((series, src_anat[best[0]][best[1]], sketch_in, info, best[0]))
            series += 1
    anat_all = np.concatenate(anat_db)
    abn_all = np.concatenate(abn_db)
    series_all = np.concatenate(series_of)
    shows_all = np.concatenate(shows)
    volume_all = np.concatenate(volume_of)
    if not queries:
        raise ValueError("no lesion could be placed in any validation scan")
    anat_q = np.stack([q[1] for q in queries]).astype(np.float32)
    sketch_q = _encode(sketch, np.stack([q[2] for q in queries]).astype(np.float32))
    relevant = np.stack([(series_all == q[0]) & shows_all for q in queries])
    # The template stands for a normal-anatomy atlas slice, not an archived
    # patient: its own volume's scans are left out of that query's candidates.
    candidate = np.stack([volume_all != names.index(q[4]) for q in queries])
    hit1, hit10 = retrieval_hits(
        anat_q, sketch_q, anat_all, abn_all, relevant, weights, candidate=candidate
    )
    objective = 0.5 * (hit1 + hit10)
    # Ties go to the weight nearest 0.5: the least extreme slider position.
    order = sorted(range(len(weights)), key=lambda i: (-objective[i], abs(weights[i] - 0.5)))
    chosen = float(weights[order[0]])
    return ValidationResult(
        weights=[float(w) for w in weights],
        hit1=hit1.tolist(),
        hit10=hit10.tolist(),
        default_weight=chosen,
        n_queries=len(queries),
        n_slices=len(anat_all),
        queries=[q[3] for q in queries],
    )
