"""Writing a PyTorch network as a checked ONNX file, atomically (shared by both trainings).

Both exports fold batch-norm into the convolutions first (fewer ops at run
time, identical maths) and give the graph a dynamic batch axis, opset
:data:`OPSET`, and the ``priorsync.*`` metadata the app reads.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeVar, cast

import onnx
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from app.io.safe_write import replacing

__all__ = ["OPSET", "fold_batchnorm", "write_onnx"]

OPSET = 17

_Net = TypeVar("_Net", bound=nn.Module)


def fold_batchnorm(model: _Net) -> _Net:
    """An eval-mode copy of ``model`` with every BatchNorm merged into its conv.

    ``model.backbone`` is a sequence of ``conv-BN-ReLU`` blocks (the layout of
    both trainings' networks); each becomes ``conv(with bias)-Identity-ReLU``,
    the layout :func:`app.ml.train.anatomy.export.load_onnx_weights` rebuilds
    from an exported file.
    """
    folded = copy.deepcopy(model).eval()
    for block in cast(nn.Sequential, folded.backbone):
        block = cast(nn.Sequential, block)
        conv, bn = cast(nn.Conv2d, block[0]), block[1]
        if isinstance(bn, nn.BatchNorm2d):
            block[0] = fuse_conv_bn_eval(conv, bn)
            block[1] = nn.Identity()
    return folded


def write_onnx(
    module: nn.Module,
    example: torch.Tensor,
    path: Path | str,
    *,
    input_name: str,
    output_names: Sequence[str],
    metadata: Mapping[str, str],
    doc: str,
) -> Path:
    """Export ``module`` to a checked ONNX file with a dynamic batch axis, atomically.

    Parameters
    ----------
    module
        The network to export, ready for inference (e.g. batch-norm folded).
    example
        An input batch of the right shape (its values do not matter).
    path
        Destination ``.onnx``; written to a temporary file in the same folder
        and renamed, so readers never see half a model.
    input_name, output_names
        Names of the graph's input and outputs.
    metadata
        The custom metadata props (they replace any the exporter wrote).
    doc
        The graph's doc string.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    # A model is an ordinary file others may read: public permissions.
    with replacing(path, public=True) as tmp:
        with warnings.catch_warnings():
            # The TorchScript-based exporter is the one that needs no extra
            # package (onnxscript); torch announces its future removal.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            torch.onnx.export(
                module,
                (example,),
                str(tmp),
                input_names=[input_name],
                output_names=list(output_names),
                dynamic_axes={n: {0: "batch"} for n in (input_name, *output_names)},
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        proto = onnx.load(str(tmp))
        del proto.metadata_props[:]
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, str(value)
        proto.producer_name = "priorsync"
        proto.doc_string = doc
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, str(tmp))
    return path
