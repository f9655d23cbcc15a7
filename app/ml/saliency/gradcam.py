"""Similarity Grad-CAM: where on two matched slices the model sees the match.

For a matched pair (query slice, matched slice) the viewer shows, on each
slice, which regions drive the cosine similarity of their embeddings. The map
is Grad-CAM of that similarity at the last convolutional layer, computed in
closed form in numpy from the ONNX outputs, so the viewer needs no autograd
framework.

The maths. The network ends ``F -> GAP -> Linear(W, b) -> L2-normalise``: with
``g = mean_ij F[:, i, j]``, ``z = W g + b`` and ``e = z / |z|``, the similarity
of slices *a* and *b* is ``s = e_a . e_b``. Its gradient with respect to the
feature map of *a* is

    ds/dF_a[k, i, j] = (1 / (h w)) [W^T (I - e_a e_a^T) e_b / |z_a|]_k ,

the same at every position, so Grad-CAM's channel weights (the spatial mean of
the gradient) are exactly these values and the map is
``ReLU(sum_k alpha_k F_a[k])`` (the definition of captum's ``LayerGradCam``
with ``relu_attributions=True``). The formula is symmetric, giving the map of
the other slice by swapping *a* and *b*.

Reading the map: scaling ``z`` does not change ``e``, so the gradient is
orthogonal to ``z`` and the unrectified map sums to ``-dz . b`` over the
cells: evidence for and against the match roughly balance, and the ReLU keeps
the regions whose features pull this slice's embedding towards the other
slice's. About a third to two thirds of the cells are positive with a trained
model; an all-zero map (possible with an untrained head) is drawn empty.

``W`` and ``b`` are read once from the ONNX graph (the Gemm or MatMul fed by
the pooled ``features``); where each feature cell sits on the input image is
derived from the convolutions' strides and paddings, so the overlay is not
shifted by half a cell, as the usual "resize the map to the image" would do.

The map is then carried back onto the original slice's pixel grid by
inverting the affine that :func:`app.ml.runtime.preprocess.prepare_slices` used, and
:func:`blend_overlay` colours it over the windowed slice.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np
import onnx
from onnx import numpy_helper

from app.core.body import body_mask
from app.core.volume import Geometry, Volume
from app.ml.runtime.model import EmbeddingModel, ModelError
from app.ml.runtime.preprocess import InputSpec, input_to_slice_affine

__all__ = [
    "COLORMAPS",
    "FEATURES_OUTPUT",
    "FeatureGrid",
    "HeadWeights",
    "PairMaps",
    "SaliencyError",
    "SimilaritySaliency",
    "SliceFeatures",
    "blend_overlay",
    "body_mask_on_input",
    "feature_grid",
    "gradcam_weights",
    "normalise_map",
    "read_head",
    "similarity_gradcam",
    "colormap_rgb",
    "readable_map",
    "to_slice_grid",
    "upsample_to_input",
]

log = logging.getLogger(__name__)

FEATURES_OUTPUT = "features"

# Colormap names offered to the UI, mapped to OpenCV's lookup tables.
COLORMAPS: dict[str, int] = {
    "inferno": cv2.COLORMAP_INFERNO,
    "jet": cv2.COLORMAP_JET,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "hot": cv2.COLORMAP_HOT,
    "magma": cv2.COLORMAP_MAGMA,
    "plasma": cv2.COLORMAP_PLASMA,
    "turbo": cv2.COLORMAP_TURBO,
    "cividis": cv2.COLORMAP_CIVIDIS,
}

# Ops that pass a feature map through unchanged in geometry (one image input).
_POINTWISE = frozenset(
    {
        "Relu",
        "LeakyRelu",
        "PRelu",
        "Clip",
        "Sigmoid",
        "Tanh",
        "Elu",
        "Selu",
        "HardSigmoid",
        "HardSwish",
        "Gelu",
        "BatchNormalization",
        "Identity",
        "Dropout",
    }
)
# Ops between the pooled vector and the linear layer that only change its shape.
_RESHAPES = frozenset({"Flatten", "Reshape", "Squeeze", "Identity"})
# A head weight reproduces the ONNX embedding to float32 rounding; this is far above it.
_HEAD_CHECK_TOL = 1e-3


class SaliencyError(ModelError):
    """The model's graph does not allow the closed-form similarity saliency."""


# --------------------------------------------------------------------------- reading the graph


@dataclass(frozen=True)
class HeadWeights:
    """The linear embedding head ``z = weight @ gap(features) + bias``.

    Attributes
    ----------
    weight
        ``(D, K)`` float64: embedding dimension by feature channels.
    bias
        ``(D,)`` float64.
    """

    weight: np.ndarray
    bias: np.ndarray

    @property
    def channels(self) -> int:
        """Number of feature channels ``K`` the head expects."""
        return int(self.weight.shape[1])

    def pre_norm(self, features: np.ndarray) -> np.ndarray:
        """``z`` (before L2 normalisation) of one ``(K, h, w)`` feature map."""
        pooled = np.asarray(features, dtype=np.float64).mean(axis=(1, 2))
        return self.weight @ pooled + self.bias


@dataclass(frozen=True)
class FeatureGrid:
    """Where the feature cells sit on the model's input image.

    Feature cell ``(i, j)`` is centred on input pixel
    ``(start[0] + jump[0] * i, start[1] + jump[1] * j)`` (row, col), pixel
    centres at integer coordinates.

    Attributes
    ----------
    start
        ``(row, col)`` input-pixel position of cell ``(0, 0)``.
    jump
        ``(row, col)`` input pixels between neighbouring cells (the total stride).
    exact
        True when derived from the convolutions; False for the fallback
        (cells tiling the input evenly).
    """

    start: tuple[float, float]
    jump: tuple[float, float]
    exact: bool


class _Graph:
    """Index of an ONNX graph: producers, consumers and constant tensors."""

    def __init__(self, proto: onnx.ModelProto) -> None:
        graph = proto.graph
        self.graph = graph
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            for name in node.output:
                self.producer[name] = node
            for name in node.input:
                if name:
                    self.consumers.setdefault(name, []).append(node)
        self._initialisers = {init.name: init for init in graph.initializer}
        self.outputs = {o.name for o in graph.output}
        self.inputs = [i.name for i in graph.input if i.name not in self._initialisers]

    def constant(self, name: str) -> np.ndarray | None:
        """Value of an initialiser or Constant-node output, else None."""
        if name in self._initialisers:
            return numpy_helper.to_array(self._initialisers[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    return numpy_helper.to_array(attr.t)
        return None

    def single_consumer(self, name: str) -> onnx.NodeProto | None:
        nodes = self.consumers.get(name, [])
        return nodes[0] if len(nodes) == 1 else None


def _attr(node: onnx.NodeProto, name: str, default):
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def _reduces_spatial_mean(node: onnx.NodeProto, graph: _Graph) -> bool:
    """Whether a ReduceMean node averages exactly the two spatial axes of an NCHW map."""
    axes = _attr(node, "axes", None)
    if axes is None and len(node.input) > 1 and node.input[1]:
        value = graph.constant(node.input[1])  # opset >= 18 passes axes as an input
        axes = None if value is None else value.tolist()
    if axes is None:
        return False  # no axes: reduces everything (or nothing), not a GAP
    return sorted(int(a) % 4 for a in axes) == [2, 3]


def read_head(proto: onnx.ModelProto) -> HeadWeights:
    """Find the linear head fed by the globally pooled ``features`` and read its weights.

    The node is found by the graph's structure (``features`` -> global average
    pooling -> reshapes -> Gemm, or MatMul followed by an Add), not by name.

    Parameters
    ----------
    proto
        The embedding model.

    Returns
    -------
    HeadWeights
        ``W`` as ``(D, K)`` and ``b`` (zeros when the head has no bias), with
        Gemm's ``alpha``/``beta``/``transB`` folded in.

    Raises
    ------
    SaliencyError
        When there is no ``features`` output, it is not globally average pooled
        into a linear layer, or the layer's weights are not constants.
    """
    graph = _Graph(proto)
    if FEATURES_OUTPUT not in graph.outputs:
        raise SaliencyError(
            f"the model has no {FEATURES_OUTPUT!r} output (the last convolutional feature map), "
            "so it cannot show saliency maps"
        )
    expected = "global average pooling of 'features' followed by a linear layer"
    name, pooled = FEATURES_OUTPUT, False
    for _ in range(16):  # a head is a handful of nodes; this only bounds a malformed graph
        node = graph.single_consumer(name)
        if node is None:
            n = len(graph.consumers.get(name, []))
            raise SaliencyError(
                f"the model's head is not the expected {expected}: "
                f"{name!r} feeds {n} nodes, expected one"
            )
        op = node.op_type
        if not pooled and (
            (op == "ReduceMean" and _reduces_spatial_mean(node, graph)) or op == "GlobalAveragePool"
        ):
            pooled = True
        elif pooled and op in _RESHAPES:
            pass
        elif pooled and op == "Gemm":
            return _gemm_head(node, name, graph)
        elif pooled and op == "MatMul":
            return _matmul_head(node, name, graph)
        else:
            raise SaliencyError(
                f"the model's head is not the expected {expected}: found a {op} node "
                f"after {'the pooling' if pooled else repr(FEATURES_OUTPUT)}"
            )
        name = node.output[0]
    raise SaliencyError(f"the model's head is not the expected {expected}: no linear layer found")


def _gemm_head(node: onnx.NodeProto, pooled_name: str, graph: _Graph) -> HeadWeights:
    if node.input[0] != pooled_name or _attr(node, "transA", 0):
        raise SaliencyError("the model's linear head takes the pooled features in an unusual form")
    weight = graph.constant(node.input[1])
    if weight is None or weight.ndim != 2:
        raise SaliencyError("the model's linear head weight is not a constant matrix")
    weight = np.asarray(weight, dtype=np.float64)
    if not _attr(node, "transB", 0):
        weight = weight.T  # Gemm computes A @ B: B is (K, D)
    weight = weight * float(_attr(node, "alpha", 1.0))
    bias = np.zeros(weight.shape[0])
    if len(node.input) > 2 and node.input[2]:
        c = graph.constant(node.input[2])
        if c is None:
            raise SaliencyError("the model's linear head bias is not a constant")
        bias = np.broadcast_to(np.asarray(c, dtype=np.float64).reshape(-1), bias.shape).copy()
        bias *= float(_attr(node, "beta", 1.0))
    return HeadWeights(weight, bias)


def _matmul_head(node: onnx.NodeProto, pooled_name: str, graph: _Graph) -> HeadWeights:
    if node.input[0] != pooled_name:
        raise SaliencyError("the model's linear head takes the pooled features in an unusual form")
    b_matrix = graph.constant(node.input[1])
    if b_matrix is None or b_matrix.ndim != 2:
        raise SaliencyError("the model's linear head weight is not a constant matrix")
    weight = np.asarray(b_matrix, dtype=np.float64).T
    bias = np.zeros(weight.shape[0])
    add = graph.single_consumer(node.output[0])
    if add is not None and add.op_type == "Add":
        other = [n for n in add.input if n != node.output[0]]
        c = graph.constant(other[0]) if len(other) == 1 else None
        if c is not None:
            bias = np.broadcast_to(np.asarray(c, dtype=np.float64).reshape(-1), bias.shape).copy()
    return HeadWeights(weight, bias)


def feature_grid(
    proto: onnx.ModelProto, input_size: int, feature_shape: tuple[int, int]
) -> FeatureGrid:
    """Where the cells of the ``features`` map sit on the input image.

    Walks from ``features`` back to the graph input through convolutions,
    poolings and pointwise ops, accumulating the receptive-field centre of
    cell 0 and the total stride. A ``3x3``, stride-2, padding-1 convolution
    centres output cell ``i`` on input pixel ``2i``, not ``2i + 0.5``: after
    four such stages the difference is 7.5 input pixels, which a plain image
    resize of the map would paint as a 24 mm shift.

    Parameters
    ----------
    proto
        The embedding model.
    input_size
        Side of the (square) input image, pixels.
    feature_shape
        ``(h, w)`` of the feature map.

    Returns
    -------
    FeatureGrid
        Exact when every op on the path is understood and the strides agree
        with the sizes; otherwise the cells are assumed to tile the input
        evenly (``exact=False``), which is right to within half a cell.
    """
    h, w = (int(v) for v in feature_shape)
    fallback = FeatureGrid(
        start=((input_size / h - 1) / 2.0, (input_size / w - 1) / 2.0),
        jump=(input_size / h, input_size / w),
        exact=False,
    )
    graph = _Graph(proto)
    layers: list[tuple[list[int], list[int], list[int], list[int]]] = []
    name = FEATURES_OUTPUT
    for _ in range(len(graph.graph.node) + 1):
        if name in graph.inputs:
            break
        node = graph.producer.get(name)
        if node is None:
            return fallback
        if node.op_type in _POINTWISE:
            name = node.input[0]
            continue
        if node.op_type not in ("Conv", "MaxPool", "AveragePool"):
            log.debug("feature grid: %s on the path; assuming evenly tiled cells", node.op_type)
            return fallback
        if _attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID", "NOTSET", "VALID"):
            return fallback
        kernel = list(_attr(node, "kernel_shape", []))
        if not kernel and node.op_type == "Conv":
            wt = graph.constant(node.input[1])
            kernel = list(wt.shape[2:]) if wt is not None else []
        if len(kernel) != 2:
            return fallback
        strides = list(_attr(node, "strides", [1, 1]))
        pads = list(_attr(node, "pads", [0, 0, 0, 0]))
        dilations = list(_attr(node, "dilations", [1, 1]))
        layers.append((kernel, strides, pads[:2], dilations))
        name = node.input[0]
    else:
        return fallback
    start, jump = [0.0, 0.0], [1.0, 1.0]
    for kernel, strides, pad_begin, dilations in reversed(layers):  # input -> output order
        for ax in range(2):
            start[ax] += ((kernel[ax] - 1) * dilations[ax] / 2.0 - pad_begin[ax]) * jump[ax]
            jump[ax] *= strides[ax]
    # The walk must explain the map's size; if not, something on the path was missed.
    if abs(jump[0] * h - input_size) > jump[0] or abs(jump[1] * w - input_size) > jump[1]:
        return fallback
    return FeatureGrid(start=(start[0], start[1]), jump=(jump[0], jump[1]), exact=True)


# --------------------------------------------------------------------------- the maths


def gradcam_weights(
    features: np.ndarray, embedding: np.ndarray, other_embedding: np.ndarray, head: HeadWeights
) -> np.ndarray:
    """Grad-CAM channel weights of the similarity, for one slice's feature map.

    Parameters
    ----------
    features
        ``(K, h, w)`` feature map of this slice.
    embedding
        ``(D,)`` unit embedding of this slice (the model's output).
    other_embedding
        ``(D,)`` unit embedding of the other slice, held fixed.
    head
        The model's linear head.

    Returns
    -------
    np.ndarray
        ``(K,)`` float64: ``ds/dF[k, i, j]`` (the same at every ``i, j``),
        ``s = embedding . other_embedding``.
    """
    k, h, w = features.shape
    if k != head.channels:
        raise ValueError(f"feature map has {k} channels, the head expects {head.channels}")
    e = np.asarray(embedding, dtype=np.float64)
    other = np.asarray(other_embedding, dtype=np.float64)
    # |z| from the features (the ONNX graph does not output it); guarded for a zero z.
    z_norm = max(float(np.linalg.norm(head.pre_norm(features))), 1e-12)
    # ds/dz = (I - e e^T) other / |z| = (other - s e) / |z|
    dz = (other - float(e @ other) * e) / z_norm
    return (head.weight.T @ dz) / float(h * w)


def similarity_gradcam(
    features_a: np.ndarray,
    embedding_a: np.ndarray,
    features_b: np.ndarray,
    embedding_b: np.ndarray,
    head: HeadWeights,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Raw similarity Grad-CAM maps of both slices of a pair.

    Parameters
    ----------
    features_a, features_b
        ``(K, h, w)`` feature maps.
    embedding_a, embedding_b
        ``(D,)`` unit embeddings.
    head
        The model's linear head.

    Returns
    -------
    cam_a, cam_b, similarity
        ``(h, w)`` float32 maps ``ReLU(sum_k alpha_k F[k])`` (unnormalised;
        equal to captum's ``LayerGradCam(relu_attributions=True)`` of the
        similarity to the other, fixed, embedding), and the cosine similarity.
    """
    fa = np.asarray(features_a, dtype=np.float32)
    fb = np.asarray(features_b, dtype=np.float32)
    ea = np.asarray(embedding_a, dtype=np.float64)
    eb = np.asarray(embedding_b, dtype=np.float64)
    alpha_a = gradcam_weights(fa, ea, eb, head).astype(np.float32)
    alpha_b = gradcam_weights(fb, eb, ea, head).astype(np.float32)
    cam_a = np.maximum(np.tensordot(alpha_a, fa, axes=1), 0.0)
    cam_b = np.maximum(np.tensordot(alpha_b, fb, axes=1), 0.0)
    return cam_a, cam_b, float(ea @ eb)


def normalise_map(cam: np.ndarray) -> np.ndarray:
    """Scale a non-negative map to [0, 1] by its maximum (all zeros stays zeros).

    Dividing by the maximum rather than min-max stretching keeps "no positive
    evidence" at 0 and does not inflate a nearly flat map into a contrasty one.
    """
    cam = np.nan_to_num(np.asarray(cam, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    top = float(cam.max()) if cam.size else 0.0
    if top <= 0.0:
        return np.zeros_like(cam)
    return np.clip(cam / top, 0.0, 1.0)


def upsample_to_input(cam: np.ndarray, grid: FeatureGrid, size: int) -> np.ndarray:
    """Bilinearly place an ``(h, w)`` feature-cell map on the ``size x size`` input grid.

    Each cell value sits at its receptive-field centre (``grid``); beyond the
    outermost centres the edge value continues.
    """
    (sr, sc), (jr, jc) = grid.start, grid.jump
    # Inverse map: input pixel (x, y) samples cell ((x - sc) / jc, (y - sr) / jr).
    matrix = np.array([[1.0 / jc, 0.0, -sc / jc], [0.0, 1.0 / jr, -sr / jr]])
    return cv2.warpAffine(
        np.ascontiguousarray(cam, dtype=np.float32),
        matrix,
        (size, size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )


# --------------------------------------------------------------------------- geometry


def body_mask_on_input(volume: Volume, index: int, spec: InputSpec) -> np.ndarray:
    """The body outline (largest region above -500 HU, holes filled) on the model-input grid.

    Lets maps be compared inside the body only, where the question "which
    anatomy drives the match" lives, without the trivial body/air contrast.

    Returns
    -------
    np.ndarray
        ``(S, S)`` bool.
    """
    outline = body_mask(volume.voxels[index]).astype(np.uint8)
    on_input = cv2.warpAffine(
        outline,
        input_to_slice_affine(volume, index, spec),
        (spec.size, spec.size),
        flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return on_input.astype(bool)


def to_slice_grid(map01: np.ndarray, volume: Volume, index: int, spec: InputSpec) -> np.ndarray:
    """Carry a map on the model's input grid back onto the original slice pixels.

    Parameters
    ----------
    map01
        ``(S, S)`` map on the input grid (e.g. from :meth:`SimilaritySaliency.pair_maps`).
    volume
        The volume the slice came from.
    index
        Slice index.
    spec
        The model's input specification.

    Returns
    -------
    np.ndarray
        ``(rows, cols)`` float32; 0 outside the field the model saw.
    """
    size = spec.size
    map01 = np.asarray(map01, dtype=np.float32)
    if map01.shape != (size, size):
        raise ValueError(f"map must be {size} x {size} (the model input), got {map01.shape}")
    rows, cols = volume.voxels.shape[1:]
    forward = input_to_slice_affine(volume, index, spec)
    # Inverse map: slice pixel (c, r) samples the input at forward^-1 (c, r).
    inverse = cv2.invertAffineTransform(forward)
    return cv2.warpAffine(
        np.ascontiguousarray(map01),
        inverse,
        (cols, rows),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )


def readable_map(
    map_on_slice: np.ndarray, hu_slice: np.ndarray, cell_mm: float, pixel_mm: float
) -> np.ndarray:
    """A slice-grid map as a reader should see it: smooth, and only inside the body.

    The model's map has one value per feature cell (tens of millimetres), so
    even bilinear upsampling leaves square blotches; a Gaussian of half a
    cell smooths them away. Outside the body (air, the table) no anatomy can
    drive a match, so the map is cut to the body outline, with a soft edge,
    and scaled back so its strongest point inside the body is 1.

    Parameters
    ----------
    map_on_slice
        ``(rows, cols)`` map in [0, 1] on the slice pixels (:func:`to_slice_grid`).
    hu_slice
        The slice in HU (same shape): where the body is.
    cell_mm
        Size of one feature cell in mm (the map's own resolution).
    pixel_mm
        In-plane pixel size of the slice in mm.
    """
    m = np.ascontiguousarray(map_on_slice, dtype=np.float32)
    if m.shape != np.shape(hu_slice):
        raise ValueError(f"map shape {m.shape} differs from the slice shape {np.shape(hu_slice)}")
    sigma = max(0.5, 0.5 * float(cell_mm) / max(float(pixel_mm), 1e-6))
    m = np.asarray(
        cv2.GaussianBlur(m, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REPLICATE),
        dtype=np.float32,
    )
    body = body_mask(np.asarray(hu_slice)).astype(np.float32)
    # A soft edge of about 3 mm, so the colour fades at the skin instead of stopping.
    edge = max(0.5, 3.0 / max(float(pixel_mm), 1e-6))
    body = cv2.GaussianBlur(body, (0, 0), sigmaX=edge, sigmaY=edge) * body
    m *= body
    return normalise_map(m)


@functools.cache
def _rgb_lut(name: str) -> np.ndarray:
    """OpenCV colormap ``name`` as a 256 x 1 RGB lookup table (OpenCV's own are BGR)."""
    ramp = np.arange(256, dtype=np.uint8).reshape(256, 1)
    return np.ascontiguousarray(cv2.applyColorMap(ramp, COLORMAPS[name])[:, :, ::-1])


def colormap_rgb(name: str, n: int = 256) -> np.ndarray:
    """``n`` RGB colours of colour map ``name`` from low (0) to high (1): for a legend."""
    if name not in COLORMAPS:
        raise ValueError(f"unknown colormap {name!r}; choose one of {', '.join(COLORMAPS)}")
    idx = np.linspace(0, 255, max(1, int(n))).round().astype(int)
    return _rgb_lut(name)[idx, 0].copy()


def blend_overlay(
    grey: np.ndarray, map01: np.ndarray, colormap: str = "inferno", opacity: float = 0.5
) -> np.ndarray:
    """Colour a saliency map over a greyscale slice.

    Each pixel is mixed as ``(1 - a) grey + a colour(map)`` with
    ``a = opacity * map``, so regions with no saliency keep the plain slice
    and the colour strengthens with the saliency.

    Parameters
    ----------
    grey
        ``(rows, cols)`` uint8 windowed slice.
    map01
        ``(rows, cols)`` map in [0, 1] (values outside are clipped, NaN is 0).
    colormap
        One of :data:`COLORMAPS`.
    opacity
        Strongest colour weight, in [0, 1].

    Returns
    -------
    np.ndarray
        ``(rows, cols, 3)`` uint8 RGB.
    """
    grey = np.asarray(grey)
    if grey.ndim != 2 or grey.dtype != np.uint8:
        raise ValueError(f"grey must be a 2-D uint8 image, got {grey.dtype} {grey.shape}")
    map01 = np.ascontiguousarray(map01, dtype=np.float32)
    if map01.shape != grey.shape:
        raise ValueError(f"map shape {map01.shape} differs from the image shape {grey.shape}")
    if colormap not in COLORMAPS:
        raise ValueError(f"unknown colormap {colormap!r}; choose one of {', '.join(COLORMAPS)}")
    if not (0.0 <= float(opacity) <= 1.0):
        raise ValueError(f"opacity must be between 0 and 1, got {opacity}")
    # OpenCV's single-pass ops throughout: this runs on every slice change in the viewer.
    finite, _ = cv2.checkRange(map01)
    if not finite:
        map01 = np.nan_to_num(map01, nan=0.0, posinf=1.0, neginf=0.0)
    _, m = cv2.threshold(map01, 0.0, 0.0, cv2.THRESH_TOZERO)
    _, m = cv2.threshold(m, 1.0, 1.0, cv2.THRESH_TRUNC)
    colour = cv2.applyColorMap(cv2.convertScaleAbs(m, alpha=255.0), _rgb_lut(colormap))
    base = cv2.cvtColor(np.ascontiguousarray(grey), cv2.COLOR_GRAY2RGB)
    # OpenCV's stubs omit the scalar operands that cv2.multiply / subtract accept (4.x; 5.x stubs
    # vary by function), hence unused-ignore too.
    alpha = cv2.multiply(m, float(opacity))  # type: ignore[call-overload, unused-ignore]
    return cv2.blendLinear(colour, base, alpha, cv2.subtract(1.0, alpha))  # type: ignore[call-overload, unused-ignore]


# --------------------------------------------------------------------------- the model wrapper


@dataclass(frozen=True)
class SliceFeatures:
    """What the model outputs for one slice: enough to draw its saliency later.

    Attributes
    ----------
    embedding
        ``(D,)`` float32 unit embedding.
    features
        ``(K, h, w)`` float32 last convolutional feature map.
    """

    embedding: np.ndarray
    features: np.ndarray


class PairMaps(NamedTuple):
    """Saliency maps of a matched pair (unpacks as ``map_q, map_m, similarity``)."""

    query: np.ndarray
    match: np.ndarray
    similarity: float


class SimilaritySaliency:
    """Similarity Grad-CAM for an :class:`~app.ml.runtime.model.EmbeddingModel`.

    Reads the model's head weights and feature-cell geometry once, and checks
    that they reproduce the model's embeddings.

    Parameters
    ----------
    model
        A loaded embedding model.

    Raises
    ------
    SaliencyError
        When the model's graph is not ``features -> GAP -> linear ->
        normalise``, or its file changed on disk since it was loaded.
    """

    def __init__(self, model: EmbeddingModel) -> None:
        self.model = model
        self.spec: InputSpec = model.spec
        try:
            data = model.path.read_bytes()
        except OSError as exc:
            raise SaliencyError(
                f"cannot read the model file {model.path}: {exc.strerror}"
            ) from None
        if hashlib.sha256(data).hexdigest() != model.sha256:
            # The weights read here must be the ones the session runs.
            raise SaliencyError(
                f"the model file {model.path} changed since it was loaded; reload the model"
            )
        try:
            proto = onnx.load_model_from_string(data)
        except Exception as exc:  # protobuf raises its own DecodeError
            raise SaliencyError(f"cannot parse the model file {model.path}: {exc}") from None
        self.head = read_head(proto)
        probe = self._probe_features()
        self._check_head(probe)
        self.grid = feature_grid(proto, self.spec.size, probe.features.shape[1:])

    def _probe_features(self) -> SliceFeatures:
        """Features of a small synthetic body slice (to check the head and get the map size)."""
        n = 48
        c = np.arange(n) - (n - 1) / 2.0
        x, y = np.meshgrid(c, c)
        img = np.full((n, n), -1000, dtype=np.int16)
        img[(x / 18) ** 2 + (y / 13) ** 2 <= 1] = 40
        img[(x - 7) ** 2 + y**2 <= 16] = -850
        img[x**2 + (y - 7) ** 2 <= 6] = 900
        geom = Geometry(
            origin=np.zeros(3),
            spacing=np.array([self.spec.pixel_mm, self.spec.pixel_mm, 1.0]),
            direction=np.eye(3),
        )
        return self.slice_features(Volume(img[np.newaxis], geom), 0)

    def _check_head(self, probe: SliceFeatures) -> None:
        feats = probe.features
        if feats.ndim != 3:
            raise SaliencyError(f"the model's features are not a (K, h, w) map: {feats.shape}")
        if feats.shape[0] != self.head.channels:
            raise SaliencyError(
                f"the model's head expects {self.head.channels} channels, "
                f"'features' has {feats.shape[0]}"
            )
        z = self.head.pre_norm(feats)
        e = z / max(float(np.linalg.norm(z)), 1e-12)
        err = (
            float(np.abs(e - probe.embedding).max()) if e.shape == probe.embedding.shape else np.inf
        )
        if not err <= _HEAD_CHECK_TOL:
            raise SaliencyError(
                "the linear layer found after 'features' does not reproduce the model's "
                f"embedding (max difference {err:.3g}); saliency maps would be wrong"
            )

    def slice_features(self, volume: Volume, index: int) -> SliceFeatures:
        """Run the model on one slice, keeping the feature map.

        Parameters
        ----------
        volume
            Display-oriented volume.
        index
            Slice index.
        """
        emb, feats = self.model.embed_slices(volume, [int(index)], with_features=True)
        return SliceFeatures(embedding=emb[0], features=feats[0])

    def maps_from_features(self, query: SliceFeatures, match: SliceFeatures) -> PairMaps:
        """Saliency maps of a pair from already computed model outputs.

        Returns
        -------
        PairMaps
            ``query`` and ``match`` maps ``(S, S)`` float32 in [0, 1] on the
            model-input grid (see :func:`to_slice_grid`), and the similarity.
        """
        cam_q, cam_m, sim = similarity_gradcam(
            query.features, query.embedding, match.features, match.embedding, self.head
        )
        size = self.spec.size
        map_q = upsample_to_input(normalise_map(cam_q), self.grid, size)
        map_m = upsample_to_input(normalise_map(cam_m), self.grid, size)
        return PairMaps(map_q, map_m, sim)

    def pair_maps(
        self, query_volume: Volume, q_index: int, match_volume: Volume, m_index: int
    ) -> PairMaps:
        """Saliency maps of the query slice and its matched slice.

        Parameters
        ----------
        query_volume, q_index
            The query slice.
        match_volume, m_index
            The matched slice (e.g. in the prior).

        Returns
        -------
        PairMaps
            ``(map_q, map_m, similarity)``: ``(S, S)`` float32 maps in [0, 1]
            on the model-input grid, and the cosine similarity of the slices.
        """
        return self.maps_from_features(
            self.slice_features(query_volume, q_index), self.slice_features(match_volume, m_index)
        )
