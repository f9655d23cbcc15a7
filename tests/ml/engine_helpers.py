"""Helpers for the matching-engine tests: a tiny ONNX model and a CT-like phantom.

The toy model follows the PriorSync model contract (input ``slices``, outputs
``embedding`` and ``features``, ``priorsync.*`` metadata) but is not trained:
its embedding is the L2-normalised 8x8 average-pooled input, which is enough
for the engine to match the phantom's slices, and it runs in microseconds.
Tests that need the real model's judgement load the shipped model instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.core.volume import Geometry, SeriesInfo, Volume

TOY_SIZE = 32
TOY_PIXEL_MM = 12.0


def write_toy_model(path: Path, metadata: dict[str, str] | None = None) -> Path:
    """Write the toy model to ``path`` (``metadata`` overrides/extends its props)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    pooled = TOY_SIZE // 4
    nodes = [
        helper.make_node(
            "AveragePool", ["slices"], ["features"], kernel_shape=[4, 4], strides=[4, 4]
        ),
        helper.make_node("Flatten", ["features"], ["flat"], axis=1),
        helper.make_node("LpNormalization", ["flat"], ["embedding"], axis=1, p=2),
    ]
    graph = helper.make_graph(
        nodes,
        "toy",
        [helper.make_tensor_value_info("slices", TensorProto.FLOAT, ["N", 3, TOY_SIZE, TOY_SIZE])],
        [
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 3 * pooled**2]),
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 3, pooled, pooled]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    props = {
        "priorsync.input_size": str(TOY_SIZE),
        "priorsync.pixel_mm": str(TOY_PIXEL_MM),
        "priorsync.windows": json.dumps([[-600, 1500], [40, 400], [400, 1800]]),
        "priorsync.embedding_dim": str(3 * pooled**2),
        "priorsync.version": "test",
        "priorsync.name": "toy",
    }
    props.update(metadata or {})
    helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def phantom_volume(
    n_slices: int = 60,
    spacing_z: float = 5.0,
    z0: float = 0.0,
    matrix: int = 64,
    pixel_mm: float = 6.0,
    level0: float = 0.0,
    seed: int = 0,
    modality: str = "CT",
) -> Volume:
    """A CT-like body whose anatomy changes non-monotonically along z.

    Slice ``k`` shows anatomical level ``level0 + k * spacing_z`` (mm); the
    same level always looks the same, whatever ``z0`` (the frame of
    reference) or the sampling, so two phantoms with different ``z0`` and
    ``level0`` are two "dates" of one patient with a known correspondence:
    prior z = current z + (current level0 - prior level0) + (prior z0 - current z0).
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:matrix, 0:matrix].astype(np.float64)
    c = (matrix - 1) / 2.0
    xm, ym = (x - c) * pixel_mm, (y - c) * pixel_mm
    vox = np.full((n_slices, matrix, matrix), -1000, dtype=np.int16)
    for k in range(n_slices):
        t = level0 + k * spacing_z  # anatomical level, mm
        sl = vox[k]
        ax = 150 + 25 * np.sin(t / 45.0)
        ay = 105 + 12 * np.cos(t / 60.0)
        body = (xm / ax) ** 2 + (ym / ay) ** 2 <= 1
        sl[body] = 40
        # Lungs above level 120 mm, growing then shrinking.
        if t > 120:
            r = 55 * np.sin(np.clip((t - 120) / 160.0, 0, 1) * np.pi) + 5
            for side in (-1, 1):
                lung = ((xm - side * 70) / (0.7 * r + 10)) ** 2 + (ym / (r + 15)) ** 2 <= 1
                sl[lung & body] = -850
        # An "organ" drifting across the abdomen below 150 mm.
        if t < 150:
            ox, oy = -60 + 40 * np.sin(t / 30.0), 10 * np.cos(t / 25.0)
            organ = ((xm - ox) / 45) ** 2 + ((ym - oy) / 35) ** 2 <= 1
            sl[organ & body] = 90
        spine = (xm / 18) ** 2 + ((ym - 70) / 18) ** 2 <= 1
        sl[spine] = 650 + int(80 * np.sin(t / 20.0))
        sl += rng.integers(-8, 9, size=sl.shape, dtype=np.int16)
    geometry = Geometry(
        origin=(-c * pixel_mm, -c * pixel_mm, z0),
        spacing=(pixel_mm, pixel_mm, spacing_z),
        direction=np.eye(3),
    )
    info = SeriesInfo(modality=modality, series_uid=f"1.2.3.{seed}.{int(abs(z0))}.{n_slices}")
    return Volume(vox, geometry, info=info, source=f"phantom-{seed}-{z0}")


def head_volume(n_slices: int = 30, spacing_z: float = 5.0, z0: float = 0.0) -> Volume:
    """A head-like phantom (small round skull around brain): no torso anatomy at all."""
    matrix, pixel_mm = 64, 4.0
    y, x = np.mgrid[0:matrix, 0:matrix].astype(np.float64)
    c = (matrix - 1) / 2.0
    r = np.hypot((x - c) * pixel_mm, (y - c) * pixel_mm)
    vox = np.full((n_slices, matrix, matrix), -1000, dtype=np.int16)
    for k in range(n_slices):
        radius = 60 + 30 * np.sin(np.pi * (k + 1) / (n_slices + 1))
        vox[k][r <= radius] = 1200  # skull
        vox[k][r <= radius - 7] = 35  # brain
    geometry = Geometry(
        origin=(-c * pixel_mm, -c * pixel_mm, z0),
        spacing=(pixel_mm, pixel_mm, spacing_z),
        direction=np.eye(3),
    )
    return Volume(vox, geometry, info=SeriesInfo(series_uid="1.2.3.head"), source="head")
