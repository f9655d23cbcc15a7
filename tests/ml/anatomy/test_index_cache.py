"""Series index: hnswlib queries, identity, and the atomic, self-healing disk cache."""

from __future__ import annotations

import numpy as np
import pytest

from app.ml.anatomy.index import CacheMiss, IndexCache, build_index, series_identity


def unit_vectors(n: int, d: int = 16, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


class Describer:
    """A ``describe`` callback that counts how often the cache had to embed."""

    def __init__(self, n_slices: int, thumbs: bool = True) -> None:
        self.calls = 0
        self.emb = unit_vectors(n_slices)
        self.thumbs = (
            np.random.default_rng(1).integers(0, 255, (n_slices, 8, 8), dtype=np.uint8)
            if thumbs
            else None
        )

    def __call__(self, volume):
        self.calls += 1
        return self.emb, self.thumbs


def test_query_finds_each_slice_itself_first():
    emb = unit_vectors(40)
    index = build_index(emb, np.arange(40.0))
    idx, score = index.query(emb, k=3)
    np.testing.assert_array_equal(idx[:, 0], np.arange(40))
    np.testing.assert_allclose(score[:, 0], 1.0, atol=1e-5)
    assert np.all(np.diff(score, axis=1) <= 1e-6)  # best first


def test_similarity_from_knn_is_exact_when_k_covers_the_series():
    emb, queries = unit_vectors(50, seed=2), unit_vectors(7, seed=3)
    index = build_index(emb, np.arange(50.0))
    np.testing.assert_allclose(index.similarity(queries), queries @ emb.T, atol=1e-5)
    partial = index.similarity(queries, k=5)
    exact = queries @ emb.T
    top = np.argsort(-exact, axis=1)[:, :5]
    np.testing.assert_allclose(
        np.take_along_axis(partial, top, 1), np.take_along_axis(exact, top, 1), atol=1e-5
    )
    # Everything else sits at each row's floor (its 5th best score).
    assert np.all(partial <= np.take_along_axis(exact, top[:, :1], 1) + 1e-5)


def test_query_caps_k_at_the_series_length():
    index = build_index(unit_vectors(3), np.arange(3.0))
    idx, _ = index.query(unit_vectors(1, seed=9), k=10)
    assert idx.shape == (1, 3)


def test_series_identity_is_stable_and_content_sensitive(ct_phantom):
    a = ct_phantom(n_slices=10, seed=1)
    b = ct_phantom(n_slices=10, seed=1)
    assert series_identity(a) == series_identity(b)
    b.voxels[5, ::8, ::8] += 100
    assert series_identity(a) != series_identity(b)
    c = ct_phantom(n_slices=10, seed=1, z0=50.0)
    assert series_identity(c) != series_identity(a)


def test_cache_round_trip_embeds_once(tmp_path, ct_phantom):
    volume = ct_phantom(n_slices=12)
    cache = IndexCache(tmp_path)
    describe = Describer(12)
    first = cache.get_or_build(volume, "sha-a", describe)
    second = IndexCache(tmp_path).get_or_build(volume, "sha-a", describe)
    assert describe.calls == 1
    np.testing.assert_array_equal(first.embeddings, second.embeddings)
    np.testing.assert_array_equal(first.thumbnails, second.thumbnails)
    np.testing.assert_allclose(second.slice_z, volume.slice_z)
    assert second.query(first.embeddings[4], 1)[0][0, 0] == 4
    # Nothing but the two entry files: no temp files left behind.
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".bin", ".npz"]


def test_another_model_gets_its_own_entry(tmp_path, ct_phantom):
    volume = ct_phantom(n_slices=8)
    cache = IndexCache(tmp_path)
    describe = Describer(8)
    cache.get_or_build(volume, "sha-a", describe)
    cache.get_or_build(volume, "sha-b", describe)
    assert describe.calls == 2
    assert len(list(tmp_path.glob("*.npz"))) == 2


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_npz_is_rebuilt(tmp_path, ct_phantom, damage):
    volume = ct_phantom(n_slices=8)
    cache = IndexCache(tmp_path)
    describe = Describer(8)
    cache.get_or_build(volume, "sha", describe)
    npz, _ = cache.paths(series_identity(volume), "sha")
    data = npz.read_bytes()
    npz.write_bytes(
        {"truncate": data[: len(data) // 2], "garbage": b"\x00junk" * 50, "empty": b""}[damage]
    )
    index = cache.get_or_build(volume, "sha", describe)
    assert describe.calls == 2
    assert index.n_slices == 8
    # The rebuilt entry is sound again.
    assert cache.load(series_identity(volume), "sha").n_slices == 8


def test_corrupt_graph_is_rebuilt_from_cached_embeddings(tmp_path, ct_phantom):
    volume = ct_phantom(n_slices=8)
    cache = IndexCache(tmp_path)
    describe = Describer(8)
    cache.get_or_build(volume, "sha", describe)
    _, graph = cache.paths(series_identity(volume), "sha")
    blob = bytearray(graph.read_bytes())
    blob[10:30] = b"\xff" * 20  # hnswlib would trust these bytes; the checksum does not
    graph.write_bytes(bytes(blob))
    index = cache.get_or_build(volume, "sha", describe)
    assert describe.calls == 1  # no re-embedding
    assert index.query(describe.emb[3], 1)[0][0, 0] == 3
    graph.unlink()
    assert cache.get_or_build(volume, "sha", describe).n_slices == 8
    assert describe.calls == 1


def test_stale_entries_are_rejected(tmp_path, ct_phantom, monkeypatch):
    volume = ct_phantom(n_slices=8)
    cache = IndexCache(tmp_path)
    describe = Describer(8)
    cache.get_or_build(volume, "sha", describe)
    identity = series_identity(volume)
    # An entry from an older format version.
    monkeypatch.setattr("app.ml.anatomy.index.FORMAT_VERSION", 999)
    with pytest.raises(CacheMiss, match="format"):
        cache.load(identity, "sha")
    monkeypatch.undo()
    # An entry whose recorded identity is not the requested one (e.g. renamed file).
    npz, _ = cache.paths(identity, "sha")
    other_npz, other_bin = cache.paths("another-series", "sha")
    npz.rename(other_npz)
    cache.paths(identity, "sha")[1].rename(other_bin)
    with pytest.raises(CacheMiss, match="another series"):
        cache.load("another-series", "sha")


def test_entry_that_does_not_fit_the_series_is_rebuilt(tmp_path, ct_phantom):
    volume = ct_phantom(n_slices=8)
    cache = IndexCache(tmp_path)
    cache.get_or_build(volume, "sha", Describer(8))
    # Same identity (forced), different slice count: never trust it.
    wrong = build_index(unit_vectors(5), np.arange(5.0), series_identity(volume), "sha")
    cache.save(wrong)
    describe = Describer(8)
    assert cache.get_or_build(volume, "sha", describe).n_slices == 8
    assert describe.calls == 1


def test_failed_write_leaves_the_previous_entry_intact(tmp_path, ct_phantom, monkeypatch):
    volume = ct_phantom(n_slices=8)
    cache = IndexCache(tmp_path)
    describe = Describer(8)
    cache.get_or_build(volume, "sha", describe)
    npz, _ = cache.paths(series_identity(volume), "sha")
    before = npz.read_bytes()

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("app.ml.anatomy.index.np.savez_compressed", boom)
    with pytest.raises(OSError):
        cache.save(cache.load(series_identity(volume), "sha"))
    monkeypatch.undo()
    assert npz.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_unwritable_cache_does_not_stop_indexing(tmp_path, ct_phantom, monkeypatch):
    volume = ct_phantom(n_slices=6)
    cache = IndexCache(tmp_path / "cache")

    def boom(*args, **kwargs):
        raise OSError(13, "Permission denied")

    monkeypatch.setattr(IndexCache, "save", boom)
    index = cache.get_or_build(volume, "sha", Describer(6))
    assert index.n_slices == 6


def test_old_entries_are_pruned(tmp_path, ct_phantom):
    cache = IndexCache(tmp_path, max_entries=2)
    for seed in range(4):
        cache.get_or_build(ct_phantom(n_slices=4, seed=seed), "sha", Describer(4))
    assert len(list(tmp_path.glob("*.npz"))) == 2
    assert len(list(tmp_path.glob("*.bin"))) == 2


def test_feature_vectors_survive_the_cache_and_bad_ones_are_rebuilt(ct_phantom, tmp_path):
    volume = ct_phantom(n_slices=6)
    emb = unit_vectors(6)
    feats = unit_vectors(6, d=32, seed=5).astype(np.float16)
    cache = IndexCache(tmp_path)
    index = cache.get_or_build(volume, "sha", lambda v: (emb, None, feats))
    assert index.features is not None and index.features.dtype == np.float16
    loaded = cache.load(index.identity, "sha")
    np.testing.assert_array_equal(loaded.features, feats)
    # Features of the wrong length: the entry is rejected, not trusted.
    index.features = feats[:4]
    cache.save(index)
    with pytest.raises(CacheMiss, match="features"):
        cache.load(index.identity, "sha")
    with pytest.raises(ValueError, match="feature vector"):
        build_index(emb, np.arange(6.0), features=feats[:5])
