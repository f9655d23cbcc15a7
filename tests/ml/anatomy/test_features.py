"""Feature-map vectors: one model pass gives embeddings and features; they compare by cosine."""

from __future__ import annotations

import numpy as np
import pytest

from app.ml.anatomy.features import embed_with_features, feature_similarity, feature_vectors
from app.ml.anatomy.index import IndexCache
from app.ml.anatomy.match import Matcher


def test_feature_vectors_are_unit_float16_rows():
    maps = np.random.default_rng(0).normal(size=(5, 4, 3, 3)).astype(np.float32)
    maps[2] = 0.0  # an empty map must not divide by zero
    v = feature_vectors(maps)
    assert v.dtype == np.float16 and v.shape == (5, 36)
    norms = np.linalg.norm(v.astype(np.float32), axis=1)
    np.testing.assert_allclose(norms[[0, 1, 3, 4]], 1.0, atol=1e-3)
    assert norms[2] == 0.0
    sim = feature_similarity(v, v)
    np.testing.assert_allclose(np.diag(sim)[[0, 1, 3, 4]], 1.0, atol=2e-3)


def test_feature_similarity_refuses_vectors_of_another_model():
    with pytest.raises(ValueError, match="cannot be compared"):
        feature_similarity(np.ones((3, 8), np.float16), np.ones((4, 9), np.float16))


def test_one_pass_gives_the_models_embeddings_and_maps(toy_model, ct_phantom):
    volume = ct_phantom(n_slices=37)
    calls = []
    emb, feats = embed_with_features(
        toy_model, volume, batch_size=16, progress=lambda d, t: calls.append((d, t))
    )
    np.testing.assert_allclose(emb, toy_model.embed_volume(volume), atol=1e-6)
    _, maps = toy_model.embed_slices(volume, [5], with_features=True)
    np.testing.assert_allclose(feats[5], feature_vectors(maps)[0], atol=1e-3)
    assert feats.shape == (37, maps[0].size)
    assert calls == [(16, 37), (32, 37), (37, 37)]


def test_an_index_cached_without_features_gets_them_once(toy_model, ct_phantom, tmp_path):
    volume = ct_phantom(n_slices=20)
    cache = IndexCache(tmp_path)
    index = Matcher(toy_model, cache=cache).index(volume)
    assert index.features is not None and len(index.features) == 20
    # An entry written before feature maps were kept (as an older version did).
    index.features = None
    cache.save(index)
    assert cache.load(index.identity, index.model_sha256).features is None
    again = Matcher(toy_model, cache=cache).index(volume)
    assert again.features is not None
    np.testing.assert_allclose(
        again.features.astype(np.float32), index_features(toy_model, volume), atol=1e-3
    )
    # ... and saved, so the next session finds them.
    assert cache.load(index.identity, index.model_sha256).features is not None


def index_features(model, volume) -> np.ndarray:
    return embed_with_features(model, volume)[1].astype(np.float32)
