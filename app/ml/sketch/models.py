"""The two models of sketch search: abnormality code of an image, and of a drawn sketch.

Both map a slice-sized picture in the model frame of :mod:`app.ml.runtime.preprocess`
to a unit vector in one shared space: the *abnormality* model reads CT slices
(exactly :func:`~app.ml.runtime.preprocess.prepare_slices`' output), the *sketch* model
reads a user's drawing as per-class coverage maps
(:func:`~app.ml.runtime.preprocess.labels_to_input`). A sketch's code is close to the
codes of slices showing that kind of lesion at that place.

Files are opened through :func:`app.ml.runtime.model.open_model_file`, like the
slice-embedding model, so problems read the same everywhere.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from app.core.sketch import SKETCH_CLASSES
from app.core.volume import Volume
from app.ml.runtime.model import ModelError, OpenedModel, open_model_file
from app.ml.runtime.preprocess import InputSpec, prepare_slices
from app.ml.sketch.encoder import MIN_INSIDE_BODY, SketchCoding, SketchError, check_sketch_labels
from app.paths import models_dir

__all__ = [
    "ABNORMALITY_MODEL_NAME",
    "MIN_INSIDE_BODY",
    "SKETCH_MODEL_NAME",
    "SketchError",
    "SketchModels",
    "check_sketch_labels",
    "default_sketch_model_paths",
]

log = logging.getLogger(__name__)

ABNORMALITY_MODEL_NAME = "priorsync-abnormality.onnx"
SKETCH_MODEL_NAME = "priorsync-sketch.onnx"
_OUTPUT = "embedding"
_MISSING_HINT = (
    "reinstall PriorSync, or train the sketch models with `priorsync train-sketch`, "
    "or point PRIORSYNC_ABNORMALITY_MODEL / PRIORSYNC_SKETCH_MODEL at .onnx files"
)


def default_sketch_model_paths() -> tuple[Path, Path]:
    """``(abnormality, sketch)`` model files: environment overrides, else the shipped ones."""
    abn = os.environ.get("PRIORSYNC_ABNORMALITY_MODEL")
    sk = os.environ.get("PRIORSYNC_SKETCH_MODEL")
    return (
        Path(abn) if abn else models_dir() / ABNORMALITY_MODEL_NAME,
        Path(sk) if sk else models_dir() / SKETCH_MODEL_NAME,
    )


def _metadata_classes(meta: dict[str, str], path: Path) -> tuple[str, ...]:
    raw = meta.get("priorsync.lesion_classes")
    if raw is None:
        raise ModelError(f"{path} is not a PriorSync sketch model: no priorsync.lesion_classes")
    try:
        classes = json.loads(raw)
    except ValueError:
        classes = None
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise ModelError(f"{path}: priorsync.lesion_classes must be a JSON list of names")
    return tuple(classes)


def _name(opened: OpenedModel) -> str:
    meta = opened.metadata
    base = meta.get("priorsync.name") or opened.path.stem
    version = meta.get("priorsync.version", "")
    return f"{base}-{version}" if version and version not in base else base


def _output_dim(opened: OpenedModel) -> int:
    shape = {o.name: o.shape for o in opened.session.get_outputs()}[_OUTPUT]
    dim = shape[-1]
    if not isinstance(dim, int):
        dim = int(opened.metadata.get("priorsync.embedding_dim", "0") or 0)
    if dim <= 0:
        raise ModelError(f"{opened.path}: the length of its embedding is unknown")
    return int(dim)


class SketchModels(SketchCoding):
    """The abnormality and sketch models, loaded together (use :meth:`load`).

    Attributes
    ----------
    spec
        Input specification shared by both models (and the slice-embedding model).
    classes
        Lesion class names; label value ``c + 1`` is ``classes[c]``.
    abnormality_dim
        Length of an abnormality code (both models give the same length).
    default_weight
        The weight ``w`` of the abnormality score that the models recommend.
    provider
        Execution provider in use.
    abnormality_sha256, sketch_sha256
        Identities of the two files.
    """

    def __init__(self, abnormality: OpenedModel, sketch: OpenedModel) -> None:
        self._abn = abnormality
        self._sketch = sketch
        self.abnormality_sha256 = abnormality.sha256
        self.sketch_sha256 = sketch.sha256
        self.provider = abnormality.provider
        try:
            spec_a = InputSpec.from_metadata(abnormality.metadata)
            spec_s = InputSpec.from_metadata(sketch.metadata)
        except ValueError as exc:
            raise ModelError(f"the sketch models' metadata is incomplete: {exc}") from None
        if spec_a.size != spec_s.size or spec_a.pixel_mm != spec_s.pixel_mm:
            raise ModelError(
                f"{abnormality.path} and {sketch.path} expect different input frames: "
                "they are not a matching pair"
            )
        self.spec = spec_a
        self.classes = _metadata_classes(sketch.metadata, sketch.path)
        if _metadata_classes(abnormality.metadata, abnormality.path) != self.classes:
            raise ModelError(
                f"{abnormality.path} and {sketch.path} know different lesion classes: "
                "they are not a matching pair"
            )
        drawable = tuple(c.name for c in SKETCH_CLASSES)
        if self.classes != drawable:
            # A sketch's label value k means SKETCH_CLASSES[k - 1]; the model reads
            # it as its own k-th class, so any other list or order would search
            # for the wrong lesion.
            raise ModelError(
                f"{sketch.path} was trained for the lesion classes {list(self.classes)}, "
                f"but sketches are drawn with {list(drawable)}: use models trained "
                "by this version of PriorSync"
            )
        dim_a, dim_s = _output_dim(abnormality), _output_dim(sketch)
        if dim_a != dim_s:
            raise ModelError(
                f"{abnormality.path} gives {dim_a}-long codes, {sketch.path} {dim_s}-long: "
                "they are not a matching pair"
            )
        self.abnormality_dim = dim_a
        raw_w = sketch.metadata.get(
            "priorsync.default_weight", abnormality.metadata.get("priorsync.default_weight", "0.5")
        )
        try:
            weight = float(raw_w)
        except ValueError:
            weight = float("nan")
        if not (0.0 <= weight <= 1.0):
            raise ModelError(f"{sketch.path}: priorsync.default_weight {raw_w!r} is not in [0, 1]")
        self.default_weight = weight
        self.abnormality_name = _name(abnormality)
        self.sketch_name = _name(sketch)

    @classmethod
    def load(
        cls,
        abnormality_path: Path | str | None = None,
        sketch_path: Path | str | None = None,
        device: str | None = None,
    ) -> SketchModels:
        """Load both models (the shipped ones for ``None`` paths).

        Parameters
        ----------
        abnormality_path, sketch_path
            ONNX files; :func:`default_sketch_model_paths` for ``None``.
        device
            ``"auto"``, ``"cpu"`` or ``"cuda"``; ``PRIORSYNC_DEVICE`` or ``"auto"`` when ``None``.

        Raises
        ------
        ModelError
            A file is missing, unreadable, corrupt, lacks the contract's input,
            output or metadata, or the two files are not a matching pair.
        """
        default_abn, default_sk = default_sketch_model_paths()
        abn = open_model_file(
            Path(abnormality_path) if abnormality_path is not None else default_abn,
            device,
            kind="abnormality model",
            inputs=("slices",),
            outputs=(_OUTPUT,),
            missing_hint=_MISSING_HINT,
        )
        sk = open_model_file(
            Path(sketch_path) if sketch_path is not None else default_sk,
            device,
            kind="sketch model",
            inputs=("sketch",),
            outputs=(_OUTPUT,),
            missing_hint=_MISSING_HINT,
        )
        models = cls(abn, sk)
        log.info(
            "sketch models %s (%s), %s (%s) on %s",
            models.abnormality_name,
            abn.sha256[:12],
            models.sketch_name,
            sk.sha256[:12],
            models.provider,
        )
        return models

    @property
    def identity(self) -> str:
        """Both models' names and hashes, as reports and archives record them."""
        return (
            f"{self.abnormality_name} sha256:{self.abnormality_sha256}, "
            f"{self.sketch_name} sha256:{self.sketch_sha256}"
        )

    # -- inference ---------------------------------------------------------------
    @staticmethod
    def _run(opened: OpenedModel, name: str, batch: np.ndarray) -> np.ndarray:
        out = opened.session.run([_OUTPUT], {name: batch})
        emb = np.asarray(out[0], dtype=np.float32)
        # Re-normalised so inner products are cosines even if an export drifts a little.
        return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)

    def abnormality_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """Abnormality codes ``(N, Db)`` of prepared slices ``(N, C, S, S)``."""
        batch = np.ascontiguousarray(inputs, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[2:] != (self.spec.size, self.spec.size):
            raise ValueError(f"expected (N, C, {self.spec.size}, {self.spec.size}) inputs")
        if len(batch) == 0:
            return np.zeros((0, self.abnormality_dim), dtype=np.float32)
        return self._run(self._abn, "slices", batch)

    def abnormality_of_slices(self, volume: Volume, indices: np.ndarray) -> np.ndarray:
        """Abnormality codes ``(len(indices), Db)`` of some slices of ``volume`` (one batch)."""
        return self.abnormality_inputs(prepare_slices(volume, indices, self.spec))

    def sketch_inputs_vectors(self, inputs: np.ndarray) -> np.ndarray:
        """Sketch codes ``(N, Db)`` of coverage maps ``(N, len(classes), S, S)``."""
        batch = np.ascontiguousarray(inputs, dtype=np.float32)
        if batch.ndim == 3:
            batch = batch[np.newaxis]
        return self._run(self._sketch, "sketch", batch)
