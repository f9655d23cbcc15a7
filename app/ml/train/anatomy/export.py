"""ONNX export of the embedding network, and loading its weights back.

The exported graph has batch-norm folded into the convolutions (fewer ops at
run time, identical maths), a dynamic batch axis, the two outputs
``embedding`` and ``features``, and ``priorsync.*`` metadata describing the
input so the app preprocesses exactly as in training.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import cast

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from app.ml.runtime.preprocess import InputSpec
from app.ml.train.anatomy.model import EmbeddingNet, NetConfig
from app.ml.train.common.onnx_writer import fold_batchnorm, write_onnx

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAMES",
    "export_onnx",
    "load_onnx_metadata",
    "load_onnx_weights",
]

INPUT_NAME = "slices"
OUTPUT_NAMES = ("embedding", "features")


def _folded_skeleton(config: NetConfig) -> EmbeddingNet:
    """An untrained network with the folded layout (conv biases, no BN)."""
    net = EmbeddingNet(config)
    for block in net.backbone:
        block = cast(nn.Sequential, block)
        conv = cast(nn.Conv2d, block[0])
        # torch types a conv's read-back geometry as tuple[int, ...], its
        # constructor's as tuple[int, int]: the same 2-D values.
        block[0] = nn.Conv2d(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,  # type: ignore[arg-type]
            stride=conv.stride,  # type: ignore[arg-type]
            padding=conv.padding,  # type: ignore[arg-type]
            bias=True,
        )
        block[1] = nn.Identity()
    return net.eval()


def export_onnx(
    model: EmbeddingNet,
    spec: InputSpec,
    path: Path | str,
    *,
    name: str,
    version: str,
    training_data: str,
    extra_metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write ``model`` as an ONNX file, atomically, and check it.

    Parameters
    ----------
    model
        Trained network (any mode; it is copied and folded, not modified).
    spec
        Input the model was trained on; stored as metadata.
    path
        Destination ``.onnx`` file. Written to a temporary file in the same
        directory first, then renamed, so readers never see half a model.
    name, version, training_data
        Stored as ``priorsync.name``, ``priorsync.version`` and
        ``priorsync.training_data``.
    extra_metadata
        More ``priorsync.*`` entries (e.g. the training settings).

    Returns
    -------
    Path
        ``path``.
    """
    folded = fold_batchnorm(model).to("cpu")
    metadata = {
        **spec.to_metadata(),
        "priorsync.embedding_dim": str(model.config.embedding_dim),
        "priorsync.version": version,
        "priorsync.training_data": training_data,
        "priorsync.name": name,
        "priorsync.architecture": json.dumps(model.config.to_dict()),
        **(extra_metadata or {}),
    }
    return write_onnx(
        folded,
        torch.zeros(2, spec.channels, spec.size, spec.size),
        path,
        input_name=INPUT_NAME,
        output_names=OUTPUT_NAMES,
        metadata=metadata,
        doc=f"{name} {version}: CT slice embedding for anatomical slice matching",
    )


def load_onnx_metadata(path: Path | str) -> dict[str, str]:
    """The custom metadata props of an ONNX file."""
    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


def load_onnx_weights(path: Path | str) -> EmbeddingNet:
    """Rebuild the (batch-norm folded) PyTorch network from an exported file.

    The architecture comes from the ``priorsync.architecture`` metadata and the
    weights from the graph's initialisers, so a shipped model can be inspected
    or fine-tuned without its training checkpoint.

    Raises
    ------
    ValueError
        When the file lacks the architecture entry or a weight is missing or
        has the wrong shape.
    """
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    if "priorsync.architecture" not in meta:
        raise ValueError(f"{Path(path).name} has no 'priorsync.architecture' metadata")
    arch = json.loads(meta["priorsync.architecture"])
    arch["widths"] = tuple(arch["widths"])
    net = _folded_skeleton(NetConfig(**arch))
    weights = {init.name: numpy_helper.to_array(init) for init in proto.graph.initializer}
    state = net.state_dict()
    loaded = {}
    for key, tensor in state.items():
        if key not in weights:
            raise ValueError(f"{Path(path).name} lacks the weight {key!r}")
        value = np.asarray(weights[key])
        if tuple(value.shape) != tuple(tensor.shape):
            raise ValueError(
                f"weight {key!r} has shape {value.shape}, expected {tuple(tensor.shape)}"
            )
        loaded[key] = torch.from_numpy(value.copy())
    net.load_state_dict(loaded)
    return net
