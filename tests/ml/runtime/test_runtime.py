"""The ONNX runtime wrapper: provider choice, model identity, embeddings, ModelError."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from engine_helpers import write_toy_model

from app.ml.runtime.model import EmbeddingModel, ModelError, choose_providers, default_model_path

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


@pytest.mark.parametrize(
    ("available", "device", "expected"),
    [
        ([CPU], "auto", [CPU]),
        (["AzureExecutionProvider", CPU], "auto", [CPU]),
        ([CUDA, CPU], "auto", [CUDA, CPU]),
        ([CUDA, CPU], "cpu", [CPU]),
        ([CUDA, CPU], "CUDA", [CUDA, CPU]),
    ],
)
def test_choose_providers(available, device, expected):
    assert choose_providers(available, device) == expected


def test_cuda_request_without_cuda_build_is_a_clear_error():
    with pytest.raises(ModelError, match="onnxruntime-gpu"):
        choose_providers([CPU], "cuda")
    with pytest.raises(ModelError, match="unknown device"):
        choose_providers([CPU], "tpu")


def test_cuda_session_failure_falls_back_to_cpu(toy_model_path, monkeypatch, caplog):
    """A CUDA build on a machine without a usable GPU still runs, on the CPU."""
    import onnxruntime as ort

    real = ort.InferenceSession

    def fake_session(data, sess_options=None, providers=None):
        if providers and providers[0] == CUDA:
            raise RuntimeError("CUDA driver version is insufficient")
        return real(data, sess_options=sess_options, providers=providers)

    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(ort, "InferenceSession", fake_session)
    model = EmbeddingModel.load(toy_model_path)
    assert model.provider == CPU
    assert "using the CPU" in caplog.text


def test_identity_name_and_hash(toy_model_path, toy_model):
    assert toy_model.sha256 == hashlib.sha256(toy_model_path.read_bytes()).hexdigest()
    assert toy_model.name == "toy-test"
    assert toy_model.identity == f"toy-test sha256:{toy_model.sha256}"
    assert toy_model.provider == CPU
    assert toy_model.spec.size == 32
    assert toy_model.embedding_dim == 192


def test_embeddings_are_unit_vectors_and_batching_does_not_change_them(toy_model, ct_phantom):
    volume = ct_phantom(n_slices=11)
    seen = []
    whole = toy_model.embed_volume(volume, batch_size=4, progress=lambda d, t: seen.append((d, t)))
    assert whole.shape == (11, 192) and whole.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(whole, axis=1), 1.0, atol=1e-5)
    assert seen == [(4, 11), (8, 11), (11, 11)]
    some = toy_model.embed_slices(volume, [3, 7])
    np.testing.assert_allclose(some, whole[[3, 7]], atol=1e-5)
    emb, feats = toy_model.embed_slices(volume, [0], with_features=True)
    assert feats.shape == (1, 3, 8, 8)


def test_missing_model_file(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        EmbeddingModel.load(tmp_path / "nope.onnx")


def test_default_model_path_honours_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PRIORSYNC_MODEL", str(tmp_path / "m.onnx"))
    assert default_model_path() == tmp_path / "m.onnx"


@pytest.mark.parametrize(
    "content", [b"", b"this is not a protobuf at all" * 10, b"\x08\x07\x12\x00" + b"\xff" * 64]
)
def test_corrupt_model_file(tmp_path, content):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="bad.onnx"):
        EmbeddingModel.load(path)


def test_truncated_real_model_file(tmp_path, toy_model_path):
    path = tmp_path / "cut.onnx"
    path.write_bytes(toy_model_path.read_bytes()[:200])
    with pytest.raises(ModelError):
        EmbeddingModel.load(path)


def test_onnx_model_without_priorsync_metadata_is_refused(tmp_path):
    path = write_toy_model(tmp_path / "plain.onnx", metadata={"priorsync.pixel_mm": "abc"})
    with pytest.raises(ModelError, match="not a PriorSync embedding model"):
        EmbeddingModel.load(path)


def test_onnx_model_with_other_outputs_is_refused(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "other",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "other.onnx"
    path.write_bytes(model.SerializeToString())
    del onnx
    with pytest.raises(ModelError, match="needs input 'slices'"):
        EmbeddingModel.load(path)
