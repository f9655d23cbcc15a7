"""ONNX export: same numbers as PyTorch, metadata, size; the shipped model reloads."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from app.core.volume import Geometry, Volume
from app.ml.runtime.preprocess import InputSpec, prepare_slices
from app.paths import models_dir

torch = pytest.importorskip("torch", reason="the export tests need PyTorch (the train extra)")

from app.ml.train.anatomy.export import (  # noqa: E402  (after the importorskip guard)
    export_onnx,
    load_onnx_metadata,
    load_onnx_weights,
)
from app.ml.train.anatomy.model import EmbeddingNet, NetConfig  # noqa: E402
from app.ml.train.common.onnx_writer import fold_batchnorm  # noqa: E402

MAX_BYTES = 20 * 1024 * 1024
REQUIRED_KEYS = (
    "priorsync.input_size",
    "priorsync.pixel_mm",
    "priorsync.windows",
    "priorsync.embedding_dim",
    "priorsync.version",
    "priorsync.training_data",
    "priorsync.name",
)


def realistic_inputs(n: int = 6) -> np.ndarray:
    """Preprocessed slices of a noisy body phantom, as the app would feed the model."""
    size = 320
    c = (np.arange(size) - size / 2) * 1.2  # mm
    x, y = np.meshgrid(c, c)
    body = (x / 150) ** 2 + (y / 100) ** 2 <= 1
    lung = ((np.abs(x) - 60) / 45) ** 2 + (y / 55) ** 2 <= 1
    rng = np.random.default_rng(0)
    voxels = np.full((n, size, size), -1000, dtype=np.int16)
    for k in range(n):
        img = np.where(body, 40, -1000) + rng.normal(0, 15, body.shape)
        img[lung] = -850
        img[x**2 + (y - 70 + 3 * k) ** 2 <= 14**2] = 900  # a vertebra that moves along z
        img[(x + 20 - 5 * k) ** 2 + (y + 10) ** 2 <= (20 + 4 * k) ** 2] = 250  # contrast
        voxels[k] = np.clip(img, -1024, 3000)
    geom = Geometry(origin=(0, 0, 0), spacing=(1.2, 1.2, 3.0), direction=np.eye(3))
    return prepare_slices(Volume(voxels, geom))


def trained_like_model(config: NetConfig | None = None) -> EmbeddingNet:
    """Random weights with non-trivial batch-norm statistics (so folding matters)."""
    torch.manual_seed(0)
    model = EmbeddingNet(config)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.from_numpy(realistic_inputs()))
    return model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = trained_like_model(NetConfig(widths=(8, 16, 24, 32), embedding_dim=16))
    path = tmp_path_factory.mktemp("onnx") / "m.onnx"
    export_onnx(model, InputSpec(), path, name="test-net", version="9.9", training_data="none")
    return model, path


def test_onnxruntime_matches_pytorch(exported) -> None:
    model, path = exported
    x = realistic_inputs()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    emb, feat = session.run(["embedding", "features"], {"slices": x})
    with torch.no_grad():
        t_emb, t_feat = model(torch.from_numpy(x))
    assert emb.shape == (6, 16) and feat.shape == (6, 32, 8, 8)
    np.testing.assert_allclose(emb, t_emb.numpy(), atol=1e-4)
    np.testing.assert_allclose(feat, t_feat.numpy(), atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # The embedding is the L2-normalised head of the pooled features.
    assert np.abs(emb[0] - emb[-1]).max() > 1e-3


def test_batch_axis_is_dynamic(exported) -> None:
    _, path = exported
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = realistic_inputs(5)
    one = np.concatenate(
        [session.run(["embedding"], {"slices": x[i : i + 1]})[0] for i in range(5)]
    )
    (all_five,) = session.run(["embedding"], {"slices": x})
    np.testing.assert_allclose(one, all_five, atol=1e-5)


def test_graph_metadata_and_size(exported) -> None:
    _, path = exported
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in proto.graph.input] == ["slices"]
    assert [o.name for o in proto.graph.output] == ["embedding", "features"]
    # Batch-norm is folded into the convolutions.
    assert not any(n.op_type == "BatchNormalization" for n in proto.graph.node)
    meta = load_onnx_metadata(path)
    for key in REQUIRED_KEYS:
        assert key in meta
    assert meta["priorsync.name"] == "test-net"
    assert meta["priorsync.embedding_dim"] == "16"
    assert InputSpec.from_metadata(meta) == InputSpec()
    assert path.stat().st_size < MAX_BYTES
    assert not list(path.parent.glob("*.tmp"))  # the atomic write left nothing behind


def test_folding_keeps_the_outputs(exported) -> None:
    model, _ = exported
    x = torch.from_numpy(realistic_inputs(3))
    with torch.no_grad():
        a = model(x)
        b = fold_batchnorm(model)(x)
    for u, v in zip(a, b, strict=True):
        torch.testing.assert_close(u, v, atol=1e-5, rtol=1e-4)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # original intact


def test_weights_reload_from_onnx(exported) -> None:
    _, path = exported
    net = load_onnx_weights(path)
    x = realistic_inputs()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    emb, feat = session.run(["embedding", "features"], {"slices": x})
    with torch.no_grad():
        t_emb, t_feat = net(torch.from_numpy(x))
    np.testing.assert_allclose(t_emb.numpy(), emb, atol=1e-4)
    np.testing.assert_allclose(t_feat.numpy(), feat, atol=1e-4)


def test_reload_rejects_a_model_without_architecture(exported, tmp_path) -> None:
    _, path = exported
    proto = onnx.load(str(path))
    keep = [p for p in proto.metadata_props if p.key != "priorsync.architecture"]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    bad = tmp_path / "bad.onnx"
    onnx.save(proto, str(bad))
    with pytest.raises(ValueError, match="architecture"):
        load_onnx_weights(bad)


def test_shipped_model_is_valid_and_reloads() -> None:
    """The committed model: metadata, size, and its weights rebuild the same network."""
    path = models_dir() / "priorsync-embed.onnx"
    assert path.is_file(), f"the shipped model {path} is missing"
    assert path.stat().st_size < MAX_BYTES
    meta = load_onnx_metadata(path)
    for key in REQUIRED_KEYS:
        assert meta.get(key), f"shipped model lacks metadata {key}"
    spec = InputSpec.from_metadata(meta)
    assert len(json.loads(meta["priorsync.windows"])) == spec.channels
    net = load_onnx_weights(path)
    x = (
        realistic_inputs(4)
        if spec == InputSpec()
        else np.random.default_rng(0).random(
            (4, spec.channels, spec.size, spec.size), dtype=np.float32
        )
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    emb, feat = session.run(["embedding", "features"], {"slices": x})
    assert emb.shape == (4, int(meta["priorsync.embedding_dim"]))
    with torch.no_grad():
        t_emb, t_feat = net(torch.from_numpy(x))
    np.testing.assert_allclose(t_emb.numpy(), emb, atol=1e-4)
    np.testing.assert_allclose(t_feat.numpy(), feat, atol=1e-4)
