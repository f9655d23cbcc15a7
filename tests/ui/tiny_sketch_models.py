"""A pair of tiny, untrained sketch-search ONNX models with the contract's inputs and metadata.

UI tests need models that load and run in milliseconds whatever the shipped
models are (or before they exist): each is an 8x8 average pool of its input
followed by a fixed random projection to 64 numbers. The codes carry no
meaning beyond being deterministic functions of the input, so tests built on
them check the plumbing (search runs, results show, clicks navigate), never
retrieval quality.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from app.ml.runtime.preprocess import InputSpec

DIM = 64
CLASSES = ("mass", "hypodense", "hyperdense")


def _model(input_name: str, seed: int, default_weight: float) -> onnx.ModelProto:
    spec = InputSpec()
    pooled = 3 * 8 * 8
    weights = np.random.default_rng(seed).normal(size=(pooled, DIM)).astype(np.float32)
    kernel = spec.size // 8
    graph = helper.make_graph(
        [
            helper.make_node(
                "AveragePool",
                [input_name],
                ["pooled"],
                kernel_shape=[kernel, kernel],
                strides=[kernel, kernel],
            ),
            helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "w"], ["embedding"]),
        ],
        f"tiny-{input_name}",
        [
            helper.make_tensor_value_info(
                input_name, TensorProto.FLOAT, ["N", 3, spec.size, spec.size]
            )
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", DIM])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {
        "priorsync.name": f"tiny-{input_name}",
        "priorsync.version": "1.0",
        "priorsync.embedding_dim": str(DIM),
        "priorsync.lesion_classes": json.dumps(list(CLASSES)),
        "priorsync.default_weight": repr(default_weight),
        **spec.to_metadata(),
    }
    helper.set_model_props(model, meta)
    return model


def write_tiny_sketch_models(folder: Path, default_weight: float = 0.35) -> tuple[Path, Path]:
    """Write ``(abnormality, sketch)`` ONNX files into ``folder`` and return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    abn = folder / "tiny-abnormality.onnx"
    sk = folder / "tiny-sketch.onnx"
    onnx.save(_model("slices", 1, default_weight), abn)
    onnx.save(_model("sketch", 2, default_weight), sk)
    return abn, sk
