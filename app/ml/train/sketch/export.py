"""ONNX export of the sketch encoders (``priorsync-abnormality`` and ``priorsync-sketch``).

Each graph has batch-norm folded into its convolutions
(:func:`app.ml.train.common.onnx_writer.fold_batchnorm`: the encoders share the
anatomy model's ``backbone`` layout), one input (``slices`` or
``sketch``), one output ``embedding`` with a dynamic batch axis, opset 17,
and the ``priorsync.*`` metadata the app reads (:class:`app.ml.sketch.models.SketchModels`
checks it at load).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch

from app.ml.runtime.preprocess import InputSpec
from app.ml.train.common.onnx_writer import fold_batchnorm, write_onnx
from app.ml.train.sketch.model import AbnormalityNet, SketchNet
from app.sim.lesions import LESION_CLASSES

__all__ = [
    "ABNORMALITY_INPUT",
    "ABNORMALITY_NAME",
    "MODEL_VERSION",
    "OUTPUT_NAME",
    "SKETCH_INPUT",
    "SKETCH_NAME",
    "export_encoder",
    "sketch_metadata",
]

ABNORMALITY_NAME = "priorsync-abnormality"
SKETCH_NAME = "priorsync-sketch"
MODEL_VERSION = "1.0"
ABNORMALITY_INPUT = "slices"
SKETCH_INPUT = "sketch"
OUTPUT_NAME = "embedding"


def sketch_metadata(
    *,
    name: str,
    spec: InputSpec,
    embedding_dim: int,
    train_command: str,
    training_data: str,
    default_weight: float,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The ``priorsync.*`` metadata of either sketch model."""
    return {
        "priorsync.name": name,
        "priorsync.version": MODEL_VERSION,
        "priorsync.embedding_dim": str(int(embedding_dim)),
        **spec.to_metadata(),
        "priorsync.lesion_classes": json.dumps(list(LESION_CLASSES)),
        "priorsync.train_command": train_command,
        "priorsync.training_data": training_data,
        "priorsync.default_weight": f"{float(default_weight):.2f}",
        **(extra or {}),
    }


def export_encoder(
    model: AbnormalityNet | SketchNet,
    path: Path | str,
    *,
    input_name: str,
    metadata: Mapping[str, str],
    doc: str,
) -> Path:
    """Write one encoder as a checked ONNX file, atomically.

    Parameters
    ----------
    model
        Trained encoder (copied and folded, not modified).
    path
        Destination ``.onnx``; written to a temporary file in the same folder
        and renamed, so readers never see half a model.
    input_name
        ``"slices"`` (abnormality) or ``"sketch"``.
    metadata
        Custom metadata (:func:`sketch_metadata`), plus the architecture is added.
    doc
        The graph's doc string.

    Returns
    -------
    Path
        ``path``.
    """
    cfg = model.config
    return write_onnx(
        fold_batchnorm(model).to("cpu"),
        torch.zeros(2, cfg.in_channels, cfg.input_size, cfg.input_size),
        path,
        input_name=input_name,
        output_names=(OUTPUT_NAME,),
        metadata={**metadata, "priorsync.architecture": json.dumps(cfg.to_dict())},
        doc=doc,
    )
