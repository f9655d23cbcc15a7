"""Tiny contract-conforming abnormality and sketch ONNX models for the sketch-search tests.

Neither is trained. The abnormality model's code is the L2-normalised 4x4
average-pooled input; the sketch model's code is the same pooling of the
coverage maps. That is enough to exercise loading, batching, normalisation,
indexing and the evaluation's bookkeeping in microseconds. Tests that need
real judgement use the shipped models.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from engine_helpers import TOY_PIXEL_MM, TOY_SIZE

TOY_DIM = 3 * (TOY_SIZE // 4) ** 2


def _pool_model(
    path: Path, input_name: str, metadata: dict[str, str] | None, out_dim: int | None = None
) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    pooled = TOY_SIZE // 4
    dim = 3 * pooled**2
    nodes = [
        helper.make_node(
            "AveragePool", [input_name], ["pooled"], kernel_shape=[4, 4], strides=[4, 4]
        ),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
    ]
    if out_dim is not None and out_dim != dim:
        nodes.append(helper.make_node("Slice", ["flat", "starts", "ends", "axes"], ["cut"]))
        last = "cut"
        dim = out_dim
    else:
        last = "flat"
    nodes.append(helper.make_node("LpNormalization", [last], ["embedding"], axis=1, p=2))
    initializers = []
    if last == "cut":
        initializers = [
            helper.make_tensor("starts", TensorProto.INT64, [1], [0]),
            helper.make_tensor("ends", TensorProto.INT64, [1], [dim]),
            helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
        ]
    graph = helper.make_graph(
        nodes,
        "toy-" + input_name,
        [
            helper.make_tensor_value_info(
                input_name, TensorProto.FLOAT, ["N", 3, TOY_SIZE, TOY_SIZE]
            )
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", dim])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    props = {
        "priorsync.input_size": str(TOY_SIZE),
        "priorsync.pixel_mm": str(TOY_PIXEL_MM),
        "priorsync.windows": json.dumps([[-600, 1500], [40, 400], [400, 1800]]),
        "priorsync.embedding_dim": str(dim),
        "priorsync.version": "test",
        "priorsync.name": f"toy-{input_name}",
        "priorsync.lesion_classes": json.dumps(["mass", "hypodense", "hyperdense"]),
        "priorsync.default_weight": "0.5",
        "priorsync.train_command": "none (test fixture)",
        "priorsync.training_data": "none",
    }
    props.update(metadata or {})
    helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def write_toy_abnormality_model(
    path: Path, metadata: dict[str, str] | None = None, out_dim: int | None = None
) -> Path:
    """Toy abnormality model (input ``slices``) at ``path``."""
    return _pool_model(path, "slices", metadata, out_dim)


def write_toy_sketch_model(
    path: Path, metadata: dict[str, str] | None = None, out_dim: int | None = None
) -> Path:
    """Toy sketch model (input ``sketch``) at ``path``."""
    return _pool_model(path, "sketch", metadata, out_dim)
