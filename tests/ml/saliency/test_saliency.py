"""Similarity Grad-CAM: the closed form equals captum's, geometry, overlay, errors."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from app.core.imaging import PRESETS, window_to_unit
from app.core.volume import Geometry, Volume
from app.ml.evaluation.saliency_metrics import deletion_drops, map_correlation
from app.ml.runtime.model import EmbeddingModel, default_model_path
from app.ml.runtime.preprocess import InputSpec, input_to_slice_affine, prepare_slices
from app.ml.saliency.gradcam import (
    COLORMAPS,
    HeadWeights,
    SaliencyError,
    SimilaritySaliency,
    blend_overlay,
    body_mask_on_input,
    feature_grid,
    gradcam_weights,
    normalise_map,
    read_head,
    similarity_gradcam,
    to_slice_grid,
    upsample_to_input,
)

SHIPPED = default_model_path()


# --------------------------------------------------------------------------- data and models


def body_phantom(
    n_slices: int = 4,
    *,
    matrix: tuple[int, int] = (256, 256),
    spacing: tuple[float, float] = (1.5, 1.5),
    centre_mm: tuple[float, float] = (0.0, 0.0),
    seed: int = 0,
) -> Volume:
    """A noisy chest-like phantom whose lungs, spine and a contrast blob change along z."""
    rows, cols = matrix
    x = (np.arange(cols) - (cols - 1) / 2.0) * spacing[0] - centre_mm[0]
    y = (np.arange(rows) - (rows - 1) / 2.0) * spacing[1] - centre_mm[1]
    x, y = np.meshgrid(x, y)
    rng = np.random.default_rng(seed)
    voxels = np.empty((n_slices, rows, cols), dtype=np.int16)
    for k in range(n_slices):
        img = np.full((rows, cols), -1000.0)
        body = (x / 160) ** 2 + (y / 110) ** 2 <= 1
        img[body] = -100  # subcutaneous fat
        img[(x / 145) ** 2 + (y / 95) ** 2 <= 1] = 40  # muscle and organs
        lung_r = 50 - 6 * k
        img[((np.abs(x) - 70) / lung_r) ** 2 + (y / (lung_r + 10)) ** 2 <= 1] = -850
        img[x**2 + (y - 70 + 4 * k) ** 2 <= 15**2] = 900
        img[(x + 10 - 8 * k) ** 2 + (y + 15) ** 2 <= (18 + 3 * k) ** 2] = 250
        voxels[k] = np.clip(img + rng.normal(0, 10, img.shape), -1024, 3000)
    geom = Geometry(origin=(0, 0, 0), spacing=(*spacing, 3.0), direction=np.eye(3))
    return Volume(voxels, geom)


def tiny_onnx(
    path,
    *,
    head: str = "matmul",
    pool: str = "gap",
    extra_op: bool = False,
    size: int = 32,
    channels: int = 4,
    dim: int = 6,
) -> dict[str, np.ndarray]:
    """Write a hand-built embedding model; returns its head constants.

    ``slices -> Conv(k3, s4, p1) -> Relu [-> Add 0] -> features -> pool -> head
    -> LpNormalization -> embedding``; an 8 x 8 feature map on a 32 x 32 input.
    """
    rng = np.random.default_rng(1)
    consts = {
        "cw": rng.normal(0, 0.5, (channels, 3, 3, 3)).astype(np.float32),
        "cb": rng.normal(0.2, 0.1, channels).astype(np.float32),
        "hw": rng.normal(0, 1, (channels, dim)).astype(np.float32),  # (K, D): A @ B
        "hb": rng.normal(0, 1, dim).astype(np.float32),
        "zero": np.zeros(1, np.float32),
        "axes": np.array([2, 3], np.int64),
    }
    nodes = [
        helper.make_node("Conv", ["slices", "cw", "cb"], ["conv"], strides=[4, 4], pads=[1] * 4),
        helper.make_node("Relu", ["conv"], ["relu" if extra_op else "features"]),
    ]
    if extra_op:  # an op the feature-grid walk does not know
        nodes.append(helper.make_node("Add", ["relu", "zero"], ["features"]))
    opset = 17
    if pool == "gap":
        nodes += [
            helper.make_node("GlobalAveragePool", ["features"], ["gap"]),
            helper.make_node("Flatten", ["gap"], ["pooled"]),
        ]
    elif pool == "reducemean18":
        opset = 18
        nodes.append(helper.make_node("ReduceMean", ["features", "axes"], ["pooled"], keepdims=0))
    elif pool == "reducemax":
        nodes.append(
            helper.make_node("ReduceMax", ["features"], ["pooled"], axes=[2, 3], keepdims=0)
        )
    if head == "matmul":
        nodes += [
            helper.make_node("MatMul", ["pooled", "hw"], ["mm"]),
            helper.make_node("Add", ["mm", "hb"], ["z"]),
        ]
    else:  # Gemm with B as (K, D), scaled
        nodes.append(
            helper.make_node("Gemm", ["pooled", "hw", "hb"], ["z"], alpha=0.5, beta=2.0, transB=0)
        )
    nodes.append(helper.make_node("LpNormalization", ["z"], ["embedding"], axis=1, p=2))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("slices", TensorProto.FLOAT, ["N", 3, size, size])],
        [
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", dim]),
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", channels, 8, 8]),
        ],
        initializer=[numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = 8
    for key, value in InputSpec(size=size, pixel_mm=10.0).to_metadata().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return consts


@pytest.fixture(scope="module")
def torch_mod():
    return pytest.importorskip("torch", reason="the captum comparison needs PyTorch (train extra)")


@pytest.fixture(scope="module")
def fresh_model(torch_mod, tmp_path_factory):
    """A freshly initialised network with perturbed batch-norm and its ONNX export."""
    pytest.importorskip("captum", reason="the captum comparison needs captum (train extra)")
    from app.ml.train.anatomy.export import export_onnx
    from app.ml.train.anatomy.model import EmbeddingNet

    torch = torch_mod
    torch.manual_seed(3)
    net = EmbeddingNet()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        net.train()
        for seed in range(2):  # non-trivial running statistics, so folding matters
            net(torch.from_numpy(prepare_slices(body_phantom(seed=seed))))
    net.eval()
    path = tmp_path_factory.mktemp("saliency") / "fresh.onnx"
    export_onnx(net, InputSpec(), path, name="fresh", version="0", training_data="none")
    return net, path


@pytest.fixture(scope="module")
def shipped() -> SimilaritySaliency:
    if not SHIPPED.is_file():
        pytest.skip(f"no shipped model at {SHIPPED}")
    return SimilaritySaliency(EmbeddingModel.load(SHIPPED, device="cpu"))


# --------------------------------------------------------------------------- the maths


def test_channel_weights_are_the_similarity_gradient() -> None:
    """Finite differences of s(F_a) = e(F_a) . e_b agree with the closed form at every cell."""
    rng = np.random.default_rng(0)
    k, h, w, d = 5, 3, 4, 7
    head = HeadWeights(rng.normal(size=(d, k)), rng.normal(size=d))
    fa, fb = rng.random((k, h, w)), rng.random((k, h, w))

    def unit(f: np.ndarray) -> np.ndarray:
        z = head.pre_norm(f)
        return z / np.linalg.norm(z)

    ea, eb = unit(fa), unit(fb)
    alpha = gradcam_weights(fa, ea, eb, head)
    eps = 1e-6
    for kk, i, j in [(0, 0, 0), (2, 1, 3), (4, 2, 1)]:
        step = np.zeros_like(fa)
        step[kk, i, j] = eps
        numeric = (unit(fa + step) @ eb - unit(fa - step) @ eb) / (2 * eps)
        assert numeric == pytest.approx(alpha[kk], rel=1e-5, abs=1e-10)
    cam_a, _, sim = similarity_gradcam(fa, ea, fb, eb, head)
    np.testing.assert_allclose(cam_a, np.maximum(np.tensordot(alpha, fa, axes=1), 0), rtol=1e-5)
    assert sim == pytest.approx(ea @ eb)


def test_normalise_map() -> None:
    np.testing.assert_array_equal(normalise_map(np.zeros((3, 3))), 0)
    out = normalise_map(np.array([[0.0, 2.0], [np.nan, 4.0]]))
    np.testing.assert_allclose(out, [[0, 0.5], [0, 1]])


def _captum_map(torch, net, x_map, x_fixed) -> np.ndarray:
    from captum.attr import LayerGradCam

    with torch.no_grad():
        fixed = net(torch.from_numpy(x_fixed))[0][0]
    cam = LayerGradCam(lambda x: net(x)[0] @ fixed, net.backbone[-1])
    out = cam.attribute(torch.from_numpy(x_map), relu_attributions=True)
    return out[0, 0].detach().numpy()


@pytest.mark.parametrize("which", ["fresh", "shipped"])
def test_equals_captum_layer_gradcam(which, torch_mod, fresh_model) -> None:
    """The numpy map from ONNX outputs is captum's LayerGradCam on the PyTorch model."""
    if which == "fresh":
        net, path = fresh_model
    else:
        if not SHIPPED.is_file():
            pytest.skip(f"no shipped model at {SHIPPED}")
        from app.ml.train.anatomy.export import load_onnx_weights

        net, path = load_onnx_weights(SHIPPED).eval(), SHIPPED
    sal = SimilaritySaliency(EmbeddingModel.load(path, device="cpu"))
    volume = body_phantom()
    for q, m in [(0, 1), (1, 3)]:
        fq, fm = sal.slice_features(volume, q), sal.slice_features(volume, m)
        cam_q, cam_m, _ = similarity_gradcam(
            fq.features, fq.embedding, fm.features, fm.embedding, sal.head
        )
        xq, xm = (prepare_slices(volume, [i], sal.spec) for i in (q, m))
        for ours, x_map, x_fixed in [(cam_q, xq, xm), (cam_m, xm, xq)]:
            theirs = _captum_map(torch_mod, net, x_map, x_fixed)
            assert theirs.max() > 0, "degenerate test: captum's map is all zero"
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-3 * theirs.max())
            up = [
                upsample_to_input(normalise_map(c), sal.grid, sal.spec.size) for c in (ours, theirs)
            ]
            assert map_correlation(*up) >= 0.99


def test_feature_cells_sit_on_their_receptive_field_centres(torch_mod, fresh_model) -> None:
    """The grid read from the graph puts each interior cell where its input gradient centres."""
    torch = torch_mod
    net, path = fresh_model
    sal = SimilaritySaliency(EmbeddingModel.load(path, device="cpu"))
    assert sal.grid.exact
    size = sal.spec.size
    # Random input: no dead (all-zero) regions, so the gradient reaches the whole receptive field.
    x = torch.rand(1, sal.spec.channels, size, size, generator=torch.Generator().manual_seed(0))
    x.requires_grad_(True)
    for i, j in [(3, 5), (4, 4), (5, 3)]:  # interior cells: fields not clipped by the border
        x.grad = None
        net(x)[1][0, :, i, j].sum().backward()
        rows, cols = np.nonzero(x.grad[0].abs().sum(0).numpy())
        centre = ((rows.min() + rows.max()) / 2.0, (cols.min() + cols.max()) / 2.0)
        expected = (
            sal.grid.start[0] + sal.grid.jump[0] * i,
            sal.grid.start[1] + sal.grid.jump[1] * j,
        )
        assert centre == pytest.approx(expected, abs=0.5)


# --------------------------------------------------------------------------- reading the graph


@pytest.mark.parametrize(
    ("head", "pool"), [("matmul", "gap"), ("gemm", "gap"), ("matmul", "reducemean18")]
)
def test_head_is_found_by_structure(tmp_path, head, pool) -> None:
    path = tmp_path / "tiny.onnx"
    c = tiny_onnx(path, head=head, pool=pool)
    found = read_head(onnx.load(str(path)))
    scale, bias_scale = (0.5, 2.0) if head == "gemm" else (1.0, 1.0)
    np.testing.assert_allclose(found.weight, scale * c["hw"].T, rtol=1e-6)
    np.testing.assert_allclose(found.bias, bias_scale * c["hb"], rtol=1e-6)
    # End to end: the loaded model's embedding is reproduced (checked at load) and maps come out.
    sal = SimilaritySaliency(EmbeddingModel.load(path, device="cpu"))
    assert sal.grid.exact and sal.grid.start == (0.0, 0.0) and sal.grid.jump == (4.0, 4.0)
    volume = body_phantom(2)
    maps = sal.pair_maps(volume, 0, volume, 1)
    assert maps.query.shape == maps.match.shape == (32, 32)


def test_head_names_do_not_matter(shipped, tmp_path) -> None:
    proto = onnx.load(str(SHIPPED))
    before = read_head(proto)
    renames = {i.name: f"w{n}" for n, i in enumerate(proto.graph.initializer)}
    for init in proto.graph.initializer:
        init.name = renames[init.name]
    for node in proto.graph.node:
        node.name = ""
        node.input[:] = [renames.get(n, n) for n in node.input]
    after = read_head(proto)
    np.testing.assert_array_equal(before.weight, after.weight)
    np.testing.assert_array_equal(before.bias, after.bias)
    assert after.weight.shape == (shipped.model.embedding_dim, shipped.head.channels)


def test_unknown_op_on_the_feature_path_falls_back_to_even_tiling(tmp_path) -> None:
    path = tmp_path / "tiny.onnx"
    tiny_onnx(path, extra_op=True)
    grid = feature_grid(onnx.load(str(path)), 32, (8, 8))
    assert not grid.exact and grid.start == (1.5, 1.5) and grid.jump == (4.0, 4.0)


def test_unsupported_head_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "tiny.onnx"
    tiny_onnx(path, pool="reducemax")
    with pytest.raises(SaliencyError, match="global average pooling"):
        SimilaritySaliency(EmbeddingModel.load(path, device="cpu"))


def test_missing_features_output_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "tiny.onnx"
    tiny_onnx(path)
    proto = onnx.load(str(path))
    keep = [o for o in proto.graph.output if o.name != "features"]
    del proto.graph.output[:]
    proto.graph.output.extend(keep)
    with pytest.raises(SaliencyError, match="no 'features' output"):
        read_head(proto)


def test_model_file_changed_since_loading_is_refused(tmp_path) -> None:
    path = tmp_path / "tiny.onnx"
    tiny_onnx(path)
    model = EmbeddingModel.load(path, device="cpu")
    proto = onnx.load(str(path))
    proto.doc_string = "retrained"
    onnx.save(proto, str(path))
    with pytest.raises(SaliencyError, match="changed since it was loaded"):
        SimilaritySaliency(model)


# --------------------------------------------------------------------------- the shipped model


def test_pair_maps_on_the_shipped_model(shipped) -> None:
    volume = body_phantom()
    other = body_phantom(seed=5)
    map_q, map_m, sim = shipped.pair_maps(volume, 1, other, 2)
    size = shipped.spec.size
    for m in (map_q, map_m):
        assert m.shape == (size, size) and m.dtype == np.float32
        assert m.min() >= 0.0 and m.max() <= 1.0
    emb_q = shipped.model.embed_slices(volume, [1])[0]
    emb_m = shipped.model.embed_slices(other, [2])[0]
    assert sim == pytest.approx(float(emb_q @ emb_m), abs=1e-5)
    # Swapping the slices swaps the maps.
    swapped = shipped.pair_maps(other, 2, volume, 1)
    np.testing.assert_allclose(swapped.query, map_m, atol=1e-6)
    np.testing.assert_allclose(swapped.match, map_q, atol=1e-6)


def test_copy_of_shipped_model_works_from_elsewhere(tmp_path) -> None:
    if not SHIPPED.is_file():
        pytest.skip(f"no shipped model at {SHIPPED}")
    copy = tmp_path / "copy.onnx"
    shutil.copyfile(SHIPPED, copy)
    sal = SimilaritySaliency(EmbeddingModel.load(copy, device="cpu"))
    assert sal.grid.exact


def test_deletion_drops_on_a_phantom(shipped) -> None:
    volume = body_phantom()
    res = deletion_drops(shipped, volume, 1, volume, 2, fraction=0.1)
    # Regions are a tenth of the body outline, lungs included (the whole body is in the field).
    outline = ((np.arange(256) - 127.5) * 1.5) ** 2
    body = (outline[None, :] / 160**2 + outline[:, None] / 110**2) <= 1
    assert res.n_pixels == pytest.approx(0.1 * body.sum(), rel=0.03)
    assert res.similarity == pytest.approx(
        float(
            shipped.model.embed_slices(volume, [1])[0] @ shipped.model.embed_slices(volume, [2])[0]
        ),
        abs=1e-5,
    )
    for drop in (res.drop_most, res.drop_least, res.drop_random):
        assert np.isfinite(drop)
    with pytest.raises(ValueError, match="fraction"):
        deletion_drops(shipped, volume, 1, volume, 2, fraction=0.7)
    air = Volume(np.full((1, 64, 64), -1000, np.int16), volume.geometry)
    with pytest.raises(ValueError, match="no body"):
        deletion_drops(shipped, volume, 1, air, 0)


# --------------------------------------------------------------------------- slice geometry


@pytest.mark.parametrize(
    ("matrix", "spacing"),
    [((448, 512), (0.7, 0.8)), ((100, 90), (4.0, 4.5))],  # shrink path, and no-shrink path
)
def test_to_slice_grid_inverts_prepare_slices(matrix, spacing) -> None:
    """A bright disc in the slice, through prepare_slices and back, lands where it was."""
    spec = InputSpec()
    volume = body_phantom(1, matrix=matrix, spacing=spacing, centre_mm=(30.0, -20.0))
    rows, cols = matrix
    # A bone disc far from the body centre, at a known position.
    disc_c, disc_r = cols * 0.6, rows * 0.45
    rr, cc = np.mgrid[:rows, :cols]
    inside = ((cc - disc_c) * spacing[0]) ** 2 + ((rr - disc_r) * spacing[1]) ** 2 <= 12**2
    voxels = volume.voxels.copy()
    voxels[0][(voxels[0] > 500)] = 40  # remove the phantom's own bone
    voxels[0][inside] = 1500
    volume = Volume(voxels, volume.geometry)
    bone = prepare_slices(volume, [0], spec)[0, 2]
    bone_map = np.clip((bone - 0.5) / 0.5, 0, 1)  # only the disc is brighter than 1150 HU
    back = to_slice_grid(bone_map, volume, 0, spec)
    assert back.shape == (rows, cols) and back.dtype == np.float32
    com_c, com_r = (back * cc).sum() / back.sum(), (back * rr).sum() / back.sum()
    true_c, true_r = cc[inside].mean(), rr[inside].mean()
    assert abs(com_c - true_c) * spacing[0] < 1.0  # mm
    assert abs(com_r - true_r) * spacing[1] < 1.0
    # Smooth content comes back too: the soft-tissue channel matches the windowed slice.
    soft = to_slice_grid(prepare_slices(volume, [0], spec)[0, 1], volume, 0, spec)
    # The model's 3.2 mm pixels and two bilinear resamplings blur by about 2 mm.
    blurred = cv2.GaussianBlur(
        voxels[0].astype(np.float32), (0, 0), 2.0 / spacing[0], sigmaY=2.0 / spacing[1]
    )
    ref = window_to_unit(blurred, PRESETS["mediastinum"])
    body = cv2.erode((voxels[0] > -500).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    assert map_correlation(soft, ref, body) > 0.97


def test_input_to_slice_affine_maps_the_body_centre_to_the_input_centre() -> None:
    spec = InputSpec()
    volume = body_phantom(1, matrix=(400, 500), spacing=(0.9, 0.9), centre_mm=(-40.0, 25.0))
    m = input_to_slice_affine(volume, 0, spec)
    half = (spec.size - 1) / 2.0
    col, row = m @ np.array([half, half, 1.0])
    body = volume.voxels[0] > -500
    rr, cc = np.nonzero(body)
    assert col == pytest.approx(cc.mean(), abs=6.0 / 0.9)  # centroid is found on a 6 mm grid
    assert row == pytest.approx(rr.mean(), abs=6.0 / 0.9)
    assert m[0, 0] * 0.9 == pytest.approx(spec.pixel_mm, rel=0.01)  # mm per input pixel


def test_body_mask_on_input_covers_the_body_with_its_lungs() -> None:
    spec = InputSpec()
    volume = body_phantom(1, matrix=(400, 500), spacing=(0.9, 0.9), centre_mm=(-40.0, 25.0))
    mask = body_mask_on_input(volume, 0, spec)
    assert mask.shape == (spec.size, spec.size) and mask.dtype == bool
    ellipse_px = np.pi * 160 * 110 / spec.pixel_mm**2
    assert mask.sum() == pytest.approx(ellipse_px, rel=0.03)
    half = spec.size // 2
    assert mask[half, half] and not mask[0, 0]


def test_to_slice_grid_rejects_a_wrong_map_size() -> None:
    with pytest.raises(ValueError, match="128 x 128"):
        to_slice_grid(np.zeros((8, 8)), body_phantom(1), 0, InputSpec())


# --------------------------------------------------------------------------- overlay


def test_blend_overlay() -> None:
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    grey_rgb = np.repeat(grey[..., None], 3, axis=2)
    # No saliency, or no opacity: the plain slice.
    np.testing.assert_array_equal(blend_overlay(grey, np.zeros((20, 30)), "jet", 0.8), grey_rgb)
    np.testing.assert_array_equal(blend_overlay(grey, np.ones((20, 30)), "jet", 0.0), grey_rgb)
    # Full saliency at full opacity: the colormap's top colour, in RGB order.
    for name in COLORMAPS:
        out = blend_overlay(grey, np.ones((20, 30)), name, 1.0)
        assert out.dtype == np.uint8 and out.shape == (20, 30, 3)
        top = cv2.applyColorMap(np.full((1, 1), 255, np.uint8), COLORMAPS[name])[0, 0, ::-1]
        assert np.abs(out.astype(int) - top.astype(int)).max() <= 1
    # Garbage in the map: NaN and negatives show nothing, values above 1 the top colour.
    bad = np.zeros((20, 30))
    bad[0, :4] = [np.nan, -np.inf, -2.0, 7.0]
    out = blend_overlay(grey, bad.T.copy().T, "jet", 1.0)  # a non-contiguous view, too
    np.testing.assert_array_equal(out[0, :3], grey_rgb[0, :3])
    np.testing.assert_array_equal(
        out[0, 3], blend_overlay(grey, np.ones((20, 30)), "jet", 1.0)[0, 3]
    )
    # Half-way mixes.
    half = blend_overlay(grey, np.ones((20, 30)), "hot", 0.5).astype(int)
    full = blend_overlay(grey, np.ones((20, 30)), "hot", 1.0).astype(int)
    assert np.abs(half - (grey_rgb + full) / 2).max() <= 1


@pytest.mark.parametrize(
    ("grey", "map01", "colormap", "opacity", "message"),
    [
        (np.zeros((4, 4), np.float32), np.zeros((4, 4)), "jet", 0.5, "uint8"),
        (np.zeros((4, 4), np.uint8), np.zeros((4, 5)), "jet", 0.5, "differs"),
        (np.zeros((4, 4), np.uint8), np.zeros((4, 4)), "rainbowz", 0.5, "choose one of"),
        (np.zeros((4, 4), np.uint8), np.zeros((4, 4)), "jet", 1.5, "opacity"),
    ],
)
def test_blend_overlay_bad_input(grey, map01, colormap, opacity, message) -> None:
    with pytest.raises(ValueError, match=message):
        blend_overlay(grey, map01, colormap, opacity)


def test_map_correlation() -> None:
    a = np.arange(12.0).reshape(3, 4)
    assert map_correlation(a, 2 * a + 1) == pytest.approx(1.0)
    assert map_correlation(a, -a) == pytest.approx(-1.0)
    assert np.isnan(map_correlation(a, np.ones_like(a)))
    with pytest.raises(ValueError, match="shape"):
        map_correlation(a, a.T)
