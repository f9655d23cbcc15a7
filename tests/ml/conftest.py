"""Fixtures for the matching-engine tests (helpers live in ``engine_helpers``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_helpers import phantom_volume, write_toy_model


@pytest.fixture(scope="session")
def toy_model_path(tmp_path_factory) -> Path:
    """A tiny contract-conforming ONNX model (see ``engine_helpers``)."""
    return write_toy_model(tmp_path_factory.mktemp("model") / "toy.onnx")


@pytest.fixture(scope="session")
def toy_model(toy_model_path):
    """The toy model, loaded on the CPU."""
    from app.ml.runtime.model import EmbeddingModel

    return EmbeddingModel.load(toy_model_path, device="cpu")


@pytest.fixture
def ct_phantom():
    """The :func:`engine_helpers.phantom_volume` factory."""
    return phantom_volume


@pytest.fixture(scope="session")
def toy_sketch_paths(tmp_path_factory) -> tuple[Path, Path]:
    """``(abnormality, sketch)`` toy model files (see ``sketch_helpers``)."""
    from sketch_helpers import write_toy_abnormality_model, write_toy_sketch_model

    folder = tmp_path_factory.mktemp("sketch-models")
    return (
        write_toy_abnormality_model(folder / "abn.onnx"),
        write_toy_sketch_model(folder / "sketch.onnx"),
    )


@pytest.fixture(scope="session")
def toy_sketch_models(toy_sketch_paths):
    """The toy sketch models, loaded on the CPU."""
    from app.ml.sketch.models import SketchModels

    return SketchModels.load(*toy_sketch_paths, device="cpu")
