"""Do the shipped model's saliency maps mean something? Randomisation and deletion checks.

Both run on simulated follow-up pairs of a real holdout CT (a follow-up slice
and the prior slice at the same true level). benchmarks/bench_saliency.py
prints the same figures over more pairs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.ml.evaluation.saliency_metrics import deletion_drops, map_correlation
from app.ml.runtime.model import EmbeddingModel, default_model_path
from app.ml.saliency.gradcam import (
    SimilaritySaliency,
    body_mask_on_input,
)
from app.sim.followup import SIM_PRESETS, identity_scan, simulate_followup, true_correspondence
from app.sim.roles import bodies
from app.sim.sources import available_sources, load_source

pytestmark = pytest.mark.slow

N_PAIRS = 10


@pytest.fixture(scope="module")
def pairs():
    local = available_sources(bodies("validation"))
    if not local:
        pytest.skip(
            "needs a real holdout CT from the shared data: a model trained on CT anatomy "
            "gives no meaningful saliency on synthetic phantoms"
        )
    source = "chest-lung2" if "chest-lung2" in local else local[0]
    src = load_source(source)
    current = simulate_followup(src, SIM_PRESETS["standard"], np.random.default_rng(0))
    prior = identity_scan(src)
    prior_z, covered = true_correspondence(current, prior)
    rows = np.flatnonzero(covered)
    pick = rows[np.linspace(0, len(rows) - 1, N_PAIRS + 2).round().astype(int)[1:-1]]
    z = prior.volume.slice_z
    return [(current.volume, int(i), src, int(np.argmin(np.abs(z - prior_z[i])))) for i in pick]


@pytest.fixture(scope="module")
def trained() -> SimilaritySaliency:
    path = default_model_path()
    if not path.is_file():
        pytest.skip(f"no shipped model at {path}")
    return SimilaritySaliency(EmbeddingModel.load(path, device="cpu"))


@pytest.fixture(scope="module")
def random_weights(trained, tmp_path_factory) -> SimilaritySaliency:
    """The shipped architecture with fresh (untrained) weights."""
    torch = pytest.importorskip("torch", reason="building a random-weights model needs PyTorch")
    from app.ml.train.anatomy.export import export_onnx
    from app.ml.train.anatomy.model import EmbeddingNet, NetConfig

    arch = json.loads(trained.model.metadata["priorsync.architecture"])
    arch["widths"] = tuple(arch["widths"])
    torch.manual_seed(0)
    net = EmbeddingNet(NetConfig(**arch)).eval()
    path = tmp_path_factory.mktemp("random") / "random.onnx"
    export_onnx(net, trained.spec, path, name="random", version="0", training_data="none")
    return SimilaritySaliency(EmbeddingModel.load(path, device="cpu"))


def test_maps_change_when_the_weights_are_randomised(pairs, trained, random_weights) -> None:
    """Maps that survive weight randomisation would show the image, not what the model learned.

    Compared inside the body: an untrained network's map is a blob over the
    body, and any map inside the body shares that silhouette with it, which
    says nothing about which anatomy drives the match. (The benchmark prints
    the whole-image figure too.)
    """
    corrs = []
    for q_vol, q_idx, m_vol, m_idx in pairs:
        ours = trained.pair_maps(q_vol, q_idx, m_vol, m_idx)
        theirs = random_weights.pair_maps(q_vol, q_idx, m_vol, m_idx)
        for a, b, vol, idx in [
            (ours.query, theirs.query, q_vol, q_idx),
            (ours.match, theirs.match, m_vol, m_idx),
        ]:
            assert a.max() > 0, "the trained model gave an empty map"
            c = map_correlation(a, b, body_mask_on_input(vol, idx, trained.spec))
            # An untrained head often leaves one side's map empty (all evidence negative):
            # no correlation is defined there, and it is left out rather than counted as 0.
            if not np.isnan(c):
                corrs.append(c)
    assert len(corrs) >= N_PAIRS // 2
    assert np.mean(corrs) < 0.5


def test_deleting_the_most_salient_region_hurts_most(pairs, trained) -> None:
    """Filling what the prior slice's map marks drops the similarity more than the least marked."""
    res = [deletion_drops(trained, *p, rng=np.random.default_rng(k)) for k, p in enumerate(pairs)]
    most = np.array([r.drop_most for r in res])
    least = np.array([r.drop_least for r in res])
    assert most.mean() > least.mean()
    assert most.mean() > 0
